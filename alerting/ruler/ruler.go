// Package ruler evaluates Prometheus rule files (recording and alerting
// rules) over an aiops store with Prometheus's own rule manager.
//
// Rule groups, intervals, `for`, `keep_firing_for`, labels, annotation
// templates, the ALERTS and ALERTS_FOR_STATE series and /api/v1/rules are
// Prometheus's. The store is read through its Queryable and written through
// its AppendableV2, so recording rules and ALERTS series land next to the
// data they were computed from, on any backend.
//
// Alert state across restarts: Prometheus restores how long an alert has
// been pending or firing from the ALERTS_FOR_STATE series it keeps in the
// store, which covers every alert whose expression is still true after the
// restart. It does not bring back an alert that was firing only because of
// keep_firing_for (its expression had already turned false), so the ruler
// keeps those alerts in a small state file (Options.StateFile), written
// whenever the set changes, and puts them back before the first evaluation.
package ruler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	promstorage "github.com/prometheus/prometheus/storage"
)

// Options configure a Ruler.
type Options struct {
	// Files are rule file paths or globs (filepath.Match syntax), as
	// Prometheus's rule_files.
	Files []string
	// EvaluationInterval is the interval of groups that set none.
	EvaluationInterval time.Duration
	// ResendDelay is how often a firing alert is sent again to the
	// Alertmanager while it keeps firing (--rules.alert.resend-delay).
	ResendDelay time.Duration
	// OutageTolerance is how long aiops may have been down for `for` state
	// to be restored (--rules.alert.for-outage-tolerance).
	OutageTolerance time.Duration
	// ForGracePeriod is the least time a restored pending alert waits
	// before firing (--rules.alert.for-grace-period).
	ForGracePeriod time.Duration
	// ExternalURL is $externalURL in templates and the base of each
	// alert's generator URL.
	ExternalURL *url.URL
	// ExternalLabels are $externalLabels in templates.
	ExternalLabels labels.Labels
	// StateFile keeps alerts that fire because of keep_firing_for across
	// restarts; empty keeps them in memory only.
	StateFile string

	// Storage is read by rule expressions and receives recording rule
	// results and the ALERTS / ALERTS_FOR_STATE series.
	Storage interface {
		promstorage.Queryable
		promstorage.AppendableV2
	}
	// Engine evaluates expressions; Parser parses rule files and must
	// accept what Engine does.
	Engine promql.QueryEngine
	Parser parser.Parser
	// Notify receives alerts to send, as Prometheus's notifier would.
	Notify rules.NotifyFunc

	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

func (o *Options) defaults() error {
	switch {
	case o.Storage == nil:
		return errors.New("ruler: Options.Storage is required")
	case o.Engine == nil:
		return errors.New("ruler: Options.Engine is required")
	case o.Notify == nil:
		return errors.New("ruler: Options.Notify is required")
	}
	if o.EvaluationInterval <= 0 {
		o.EvaluationInterval = time.Minute
	}
	if o.ResendDelay <= 0 {
		o.ResendDelay = time.Minute
	}
	if o.OutageTolerance <= 0 {
		o.OutageTolerance = time.Hour
	}
	if o.ForGracePeriod < 0 {
		o.ForGracePeriod = 0
	}
	if o.ExternalURL == nil {
		o.ExternalURL = &url.URL{Scheme: "http", Host: "localhost:9090"}
	}
	if o.Parser == nil {
		o.Parser = parser.NewParser(parser.Options{})
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Ruler runs rule groups. Build it with New, start it with Run.
type Ruler struct {
	opts    Options
	manager *rules.Manager
	state   *stateFile

	mu    sync.Mutex // serialises Reload
	files []string   // in force

	startOnce sync.Once
	stopOnce  sync.Once
}

// New loads the rule files (failing on any invalid one) and the saved
// keep_firing_for state. Evaluation starts with Run.
func New(opts Options) (*Ruler, error) {
	if err := opts.defaults(); err != nil {
		return nil, err
	}
	var reg prometheus.Registerer
	if opts.Registerer != nil {
		reg = prometheus.WrapRegistererWithPrefix("aiops_", opts.Registerer)
	}
	r := &Ruler{opts: opts, state: newStateFile(opts.StateFile, opts.Logger)}
	r.manager = rules.NewManager(&rules.ManagerOptions{
		ExternalURL:     opts.ExternalURL,
		QueryFunc:       rules.EngineQueryFunc(opts.Engine, opts.Storage),
		NotifyFunc:      opts.Notify,
		Context:         context.Background(),
		AppendableV2:    opts.Storage,
		Queryable:       opts.Storage,
		Logger:          opts.Logger.With("component", "rule manager"),
		Registerer:      reg,
		OutageTolerance: opts.OutageTolerance,
		ForGracePeriod:  opts.ForGracePeriod,
		ResendDelay:     opts.ResendDelay,
		Parser:          opts.Parser,
	})
	if err := r.load(context.Background()); err != nil {
		return nil, err
	}
	saved, err := r.state.load()
	if err != nil {
		return nil, err
	}
	r.restore(saved, time.Now())
	return r, nil
}

// Run evaluates the rules until ctx is done, then stops the groups and
// saves the keep_firing_for state.
func (r *Ruler) Run(ctx context.Context) error {
	started := false
	r.startOnce.Do(func() {
		started = true
		go r.manager.Run()
	})
	if !started {
		return errors.New("ruler: Run called twice")
	}
	<-ctx.Done()
	r.stop()
	return nil
}

// Close stops evaluation (if Run never started it, the groups waiting to
// start are released) and saves the keep_firing_for state. Run calls it
// when its context is done.
func (r *Ruler) Close() error {
	// The manager's groups wait for Run before their first evaluation, and
	// Stop waits for them to finish; start them so that they can.
	r.startOnce.Do(func() { go r.manager.Run() })
	r.stop()
	return nil
}

func (r *Ruler) stop() {
	r.stopOnce.Do(func() {
		r.manager.Stop()
		if err := r.state.flush(); err != nil {
			r.opts.Logger.Error("saving keep_firing_for state failed", "err", err)
		}
	})
}

// Reload reads the rule files again. It checks every file first; when one
// is invalid the error names each problem as file:line:column: reason and
// the rules in force keep running, state and all. Unchanged groups keep
// evaluating without interruption; changed groups take over the state of
// their predecessors.
func (r *Ruler) Reload(ctx context.Context) error {
	if err := r.load(ctx); err != nil {
		return fmt.Errorf("rules not reloaded, the previous rules keep running: %w", err)
	}
	return nil
}

func (r *Ruler) load(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	files, err := Expand(r.opts.Files)
	if err != nil {
		return fmt.Errorf("rule_files%w", err)
	}
	if err := CheckFiles(files, r.opts.Parser); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.manager.Update(r.opts.EvaluationInterval, files, r.opts.ExternalLabels, r.opts.ExternalURL.String(), r.evalIteration); err != nil {
		return err
	}
	r.files = files
	r.state.retain(r.manager.RuleGroups())
	r.opts.Logger.Info("rules loaded", "files", len(files), "groups", len(r.manager.RuleGroups()))
	return nil
}

// Files returns the rule files in force.
func (r *Ruler) Files() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.files)
}

// Manager is Prometheus's rule manager: RuleGroups and AlertingRules, what
// the query API's /api/v1/rules and /api/v1/alerts read.
func (r *Ruler) Manager() *rules.Manager { return r.manager }

// Expand resolves rule file globs into a sorted list of files without
// duplicates. Unlike Prometheus, a pattern that matches nothing is an
// error: a mistyped path would otherwise start aiops with no alerting at
// all, and nobody would know until an outage went unnoticed.
func Expand(patterns []string) ([]string, error) {
	var files []string
	for i, p := range patterns {
		m, err := filepath.Glob(p)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %q: %w", i, p, err)
		}
		if len(m) == 0 {
			return nil, fmt.Errorf("[%d]: %q matches no file", i, p)
		}
		files = append(files, m...)
	}
	slices.Sort(files)
	return slices.Compact(files), nil
}

// CheckFiles parses and validates rule files as the rule manager will load
// them, and reports every problem found, each as "file: line:col: ...".
func CheckFiles(files []string, p parser.Parser) error {
	var errs []error
	seen := map[string]bool{}
	for _, f := range files {
		_, fileErrs := rulefmt.ParseFile(f, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
		for _, err := range fileErrs {
			// The YAML decoder can report one syntax error twice.
			if !seen[err.Error()] {
				seen[err.Error()] = true
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// evalIteration evaluates one group and then records its keep_firing_for
// alerts.
func (r *Ruler) evalIteration(ctx context.Context, g *rules.Group, ts time.Time) {
	rules.DefaultEvalIterationFunc(ctx, g, ts)
	r.state.record(g)
}

// Parser is the PromQL parser rule files are checked with.
func (r *Ruler) Parser() parser.Parser { return r.opts.Parser }
