package ruler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"

	"github.com/aiops-dev/aiops/internal/atomicfile"
)

// stateVersion is bumped when the state file's format changes
// incompatibly; a file of another version is ignored with a warning.
const stateVersion = 1

// keptAlert is one alert firing because of keep_firing_for.
type keptAlert struct {
	File            string            `json:"file"`
	Group           string            `json:"group"`
	Rule            string            `json:"rule"`
	Labels          map[string]string `json:"labels"`
	Annotations     map[string]string `json:"annotations,omitempty"`
	Value           float64           `json:"value"`
	ActiveAt        time.Time         `json:"active_at"`
	FiredAt         time.Time         `json:"fired_at"`
	KeepFiringSince time.Time         `json:"keep_firing_since"`
}

type stateDoc struct {
	Version int         `json:"version"`
	Alerts  []keptAlert `json:"alerts"`
}

// stateFile holds the keep_firing_for alerts of every group, and writes
// them to path whenever they change.
type stateFile struct {
	path   string
	logger *slog.Logger

	mu     sync.Mutex
	groups map[string][]keptAlert // by rules.GroupKey
	dirty  bool
}

func newStateFile(path string, logger *slog.Logger) *stateFile {
	return &stateFile{path: path, logger: logger, groups: map[string][]keptAlert{}}
}

// record takes the keep_firing_for alerts of g after an evaluation and
// saves the file if they changed.
func (s *stateFile) record(g *rules.Group) {
	var kept []keptAlert
	for _, rule := range g.Rules() {
		ar, ok := rule.(*rules.AlertingRule)
		if !ok || ar.KeepFiringFor() <= 0 {
			continue
		}
		for _, a := range ar.ActiveAlerts() {
			if a.State != rules.StateFiring || a.KeepFiringSince.IsZero() {
				continue
			}
			kept = append(kept, keptAlert{
				File: g.File(), Group: g.Name(), Rule: ar.Name(),
				Labels: a.Labels.Map(), Annotations: a.Annotations.Map(), Value: a.Value,
				ActiveAt: a.ActiveAt, FiredAt: a.FiredAt, KeepFiringSince: a.KeepFiringSince,
			})
		}
	}
	slices.SortFunc(kept, func(a, b keptAlert) int {
		return labels.Compare(labels.FromMap(a.Labels), labels.FromMap(b.Labels))
	})
	key := rules.GroupKey(g.File(), g.Name())

	s.mu.Lock()
	defer s.mu.Unlock()
	if sameKept(s.groups[key], kept) {
		return
	}
	if len(kept) == 0 {
		delete(s.groups, key)
	} else {
		s.groups[key] = kept
	}
	s.dirty = true
	if err := s.writeLocked(); err != nil {
		s.logger.Error("saving keep_firing_for state failed", "file", s.path, "err", err)
	}
}

func sameKept(a, b []keptAlert) bool {
	return slices.EqualFunc(a, b, func(x, y keptAlert) bool {
		return x.Rule == y.Rule && x.KeepFiringSince.Equal(y.KeepFiringSince) &&
			x.ActiveAt.Equal(y.ActiveAt) && maps.Equal(x.Labels, y.Labels)
	})
}

// retain forgets groups that no longer exist after a reload.
func (s *stateFile) retain(groups []*rules.Group) {
	live := map[string]bool{}
	for _, g := range groups {
		live[rules.GroupKey(g.File(), g.Name())] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.groups {
		if !live[k] {
			delete(s.groups, k)
			s.dirty = true
		}
	}
}

// flush writes the file if anything changed since the last write.
func (s *stateFile) flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writeLocked()
}

func (s *stateFile) writeLocked() error {
	if s.path == "" || !s.dirty {
		return nil
	}
	doc := stateDoc{Version: stateVersion, Alerts: []keptAlert{}}
	for _, k := range slices.Sorted(maps.Keys(s.groups)) {
		doc.Alerts = append(doc.Alerts, s.groups[k]...)
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	if err := atomicfile.Write(s.path, b, 0o600); err != nil {
		return err
	}
	s.dirty = false
	return nil
}

// load reads the saved alerts. A missing file is an empty state; an
// unreadable one is an error, so that a bad disk is noticed rather than
// alerts silently dropped.
func (s *stateFile) load() ([]keptAlert, error) {
	if s.path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ruler: state file: %w", err)
	}
	var doc stateDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("ruler: state file %s: %w", s.path, err)
	}
	if doc.Version != stateVersion {
		s.logger.Warn("ignoring keep_firing_for state of another version", "file", s.path, "version", doc.Version)
		return nil, nil
	}
	return doc.Alerts, nil
}

// restore puts saved keep_firing_for alerts back into their rules, before
// the first evaluation. An alert whose rule is gone, or whose
// keep_firing_for ran out while aiops was down, is dropped.
//
// The rule API offers no way to add an alert, so each rule evaluates once
// over a query that returns exactly the saved alerts; the alerts that
// creates are then given their saved state.
func (r *Ruler) restore(saved []keptAlert, now time.Time) {
	if len(saved) == 0 {
		return
	}
	byRule := map[[3]string][]keptAlert{}
	for _, k := range saved {
		id := [3]string{k.File, k.Group, k.Rule}
		byRule[id] = append(byRule[id], k)
	}
	var restored []keptAlert
	for _, g := range r.manager.RuleGroups() {
		for _, rule := range g.Rules() {
			ar, ok := rule.(*rules.AlertingRule)
			if !ok || ar.KeepFiringFor() <= 0 {
				continue
			}
			var live []keptAlert
			for _, k := range byRule[[3]string{g.File(), g.Name(), ar.Name()}] {
				if now.Sub(k.KeepFiringSince) < ar.KeepFiringFor() {
					live = append(live, k)
				}
			}
			if len(live) > 0 {
				restored = append(restored, r.restoreRule(ar, live, now)...)
			}
		}
	}
	r.opts.Logger.Info("keep_firing_for state restored", "saved", len(saved), "restored", len(restored))
	// What is in memory now is what the file should say; each group's next
	// evaluation rewrites the file when that changes.
	r.state.mu.Lock()
	for _, k := range restored {
		key := rules.GroupKey(k.File, k.Group)
		r.state.groups[key] = append(r.state.groups[key], k)
	}
	r.state.dirty = len(restored) != len(saved)
	r.state.mu.Unlock()
}

func (r *Ruler) restoreRule(ar *rules.AlertingRule, kept []keptAlert, now time.Time) []keptAlert {
	vec := make(promql.Vector, 0, len(kept))
	want := make(map[uint64]keptAlert, len(kept))
	for _, k := range kept {
		ls := labels.FromMap(k.Labels)
		want[ls.Hash()] = k
		vec = append(vec, promql.Sample{Metric: ls.DropReserved(func(n string) bool { return n == labels.AlertName }), F: k.Value, T: now.UnixMilli()})
	}
	query := func(context.Context, string, time.Time) (promql.Vector, error) { return vec, nil }
	if _, err := ar.Eval(context.Background(), 0, now, query, r.opts.ExternalURL, 0); err != nil {
		r.opts.Logger.Warn("restoring keep_firing_for alerts failed", "rule", ar.Name(), "err", err)
		return nil
	}
	var restored []keptAlert
	ar.ForEachActiveAlert(func(a *rules.Alert) {
		k, ok := want[a.Labels.Hash()]
		if !ok {
			// Templated labels came out differently from the saved ones;
			// make the stray alert disappear at the next evaluation.
			a.State = rules.StateInactive
			a.ResolvedAt = now.Add(-time.Hour)
			a.LastSentAt = a.ResolvedAt
			return
		}
		a.State = rules.StateFiring
		a.ActiveAt, a.FiredAt, a.KeepFiringSince = k.ActiveAt, k.FiredAt, k.KeepFiringSince
		a.Annotations = labels.FromMap(k.Annotations)
		// Send at the first evaluation: the Alertmanager restarted too.
		a.LastSentAt = time.Time{}
		restored = append(restored, k)
	})
	slices.SortFunc(restored, func(a, b keptAlert) int {
		return labels.Compare(labels.FromMap(a.Labels), labels.FromMap(b.Labels))
	})
	return restored
}
