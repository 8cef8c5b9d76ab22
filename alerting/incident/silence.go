package incident

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/prometheus/alertmanager/silence"
	"github.com/prometheus/alertmanager/silence/silencepb"
)

// SilenceStore is what silencing needs of the Alertmanager: its silences
// (from alertmanager.Alertmanager.Silences(), which saves each change
// before Set and Expire return).
type SilenceStore interface {
	Set(ctx context.Context, s *silencepb.Silence) error
	Expire(ctx context.Context, id string) error
	QueryAt(ctx context.Context, at time.Time, params ...silence.QueryParam) ([]*silencepb.Silence, int, error)
}

// Silence is a silence as people see it: matchers in Prometheus selector
// syntax.
type Silence struct {
	ID string `json:"id"`
	// Matchers is the first matcher set; MatcherSets lists every set when
	// a silence (created through another API) has several, any of which
	// silences.
	Matchers    string    `json:"matchers"`
	MatcherSets []string  `json:"matcher_sets"`
	StartsAt    time.Time `json:"starts_at"`
	EndsAt      time.Time `json:"ends_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	CreatedBy   string    `json:"created_by"`
	Comment     string    `json:"comment"`
	// State is active, pending or expired.
	State string `json:"state"`
}

// SilenceSpec is a silence to create.
type SilenceSpec struct {
	// Matchers select the alerts to silence; a matcher on the metric name
	// stands for the alertname, as in Prometheus's ALERTS series.
	Matchers []*labels.Matcher
	// StartsAt is when the silence starts; zero means now, a later time
	// makes a pending silence.
	StartsAt time.Time
	// EndsAt is when it ends; or give Duration, counted from StartsAt.
	EndsAt   time.Time
	Duration time.Duration
	// Comment says why; it is required.
	Comment string
}

// MaxCommentBytes bounds the comment of an action or a silence.
const MaxCommentBytes = 4 << 10

// Silencer creates, lists and expires the Alertmanager's silences, and
// silences an incident's alerts, recording it in the incident's log.
type Silencer struct {
	store SilenceStore
	mg    *Manager
	now   func() time.Time
}

// NewSilencer returns a Silencer over store that records incident
// silences through mg. now is the clock silences are checked against
// (must not end in the past, are pending or active); it should be the
// store's own, which for the Alertmanager's is the wall clock. Nil means
// time.Now.
func NewSilencer(store SilenceStore, mg *Manager, now func() time.Time) *Silencer {
	if now == nil {
		now = time.Now
	}
	return &Silencer{store: store, mg: mg, now: now}
}

// Silences returns the silences in any of states (all when none is
// given), the most recently changed first.
func (s *Silencer) Silences(ctx context.Context, states ...silence.SilenceState) ([]Silence, error) {
	var params []silence.QueryParam
	if len(states) > 0 {
		for _, st := range states {
			switch st {
			case silence.SilenceStateActive, silence.SilenceStatePending, silence.SilenceStateExpired:
			default:
				return nil, fmt.Errorf("%w: state: must be active, pending or expired, got %q", ErrInvalid, st)
			}
		}
		params = append(params, silence.QState(states...))
	}
	now := s.now()
	found, _, err := s.store.QueryAt(ctx, now, params...)
	if err != nil {
		return nil, fmt.Errorf("list silences: %w", err)
	}
	out := make([]Silence, 0, len(found))
	for _, sil := range found {
		out = append(out, viewSilence(sil, now))
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].UpdatedAt.Equal(out[j].UpdatedAt) {
			return out[i].UpdatedAt.After(out[j].UpdatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Silence returns one silence; silence.ErrNotFound when there is none.
func (s *Silencer) Silence(ctx context.Context, id string) (Silence, error) {
	now := s.now()
	found, _, err := s.store.QueryAt(ctx, now, silence.QIDs(id))
	if err != nil {
		return Silence{}, fmt.Errorf("silence %s: %w", id, err)
	}
	if len(found) == 0 {
		return Silence{}, fmt.Errorf("silence %s: %w", id, silence.ErrNotFound)
	}
	return viewSilence(found[0], now), nil
}

// CreateSilence creates a silence of one matcher set, by actor. Invalid
// specs are refused with ErrInvalid naming the field (matchers,
// comment, ends_at, duration).
func (s *Silencer) CreateSilence(ctx context.Context, spec SilenceSpec, actor string) (Silence, error) {
	if len(spec.Matchers) == 0 {
		return Silence{}, fmt.Errorf(`%w: matchers: required: a selector such as {alertname="HighErrorRate", job="api"}`, ErrInvalid)
	}
	ms := make([]*labels.Matcher, len(spec.Matchers))
	for i, m := range spec.Matchers {
		c := *m
		if c.Name == labels.MetricName {
			c.Name = "alertname"
		}
		ms[i] = &c
	}
	// Sorted by name, the same silence reads the same however it was
	// written.
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	return s.create(ctx, [][]*labels.Matcher{ms}, spec, actor)
}

func (s *Silencer) create(ctx context.Context, sets [][]*labels.Matcher, spec SilenceSpec, actor string) (Silence, error) {
	if strings.TrimSpace(spec.Comment) == "" {
		return Silence{}, fmt.Errorf("%w: comment: required: say why alerts are silenced", ErrInvalid)
	}
	if len(spec.Comment) > MaxCommentBytes {
		return Silence{}, fmt.Errorf("%w: comment: longer than %d bytes", ErrInvalid, MaxCommentBytes)
	}
	now := s.now()
	start, end := spec.StartsAt, spec.EndsAt
	if start.IsZero() {
		start = now
	}
	switch {
	case spec.Duration < 0:
		return Silence{}, fmt.Errorf("%w: duration: must be > 0", ErrInvalid)
	case !end.IsZero() && spec.Duration > 0:
		return Silence{}, fmt.Errorf("%w: duration: give ends_at or duration, not both", ErrInvalid)
	case spec.Duration > 0:
		end = start.Add(spec.Duration)
	case end.IsZero():
		return Silence{}, fmt.Errorf("%w: ends_at: required: give ends_at or duration", ErrInvalid)
	}
	if !end.After(start) {
		return Silence{}, fmt.Errorf("%w: ends_at: must be after starts_at (%s)", ErrInvalid, start.Format(time.RFC3339))
	}
	if !end.After(now) {
		return Silence{}, fmt.Errorf("%w: ends_at: must be in the future", ErrInvalid)
	}
	sil := &silencepb.Silence{
		StartsAt: timestamppb.New(start), EndsAt: timestamppb.New(end),
		CreatedBy: actor, Comment: spec.Comment,
	}
	for _, ms := range sets {
		set := &silencepb.MatcherSet{}
		for _, m := range ms {
			set.Matchers = append(set.Matchers, &silencepb.Matcher{Type: pbTypes[m.Type], Name: m.Name, Pattern: m.Value})
		}
		sil.MatcherSets = append(sil.MatcherSets, set)
	}
	if err := s.store.Set(ctx, sil); err != nil {
		// The Alertmanager's own validation: a matcher set that matches
		// everything, a bad regular expression.
		if strings.HasPrefix(err.Error(), "invalid silence") {
			return Silence{}, fmt.Errorf("%w: matchers: %v", ErrInvalid, err)
		}
		// Its limits (alerting.max_silence_size_bytes,
		// alerting.max_silences).
		if strings.Contains(err.Error(), "exceeded maximum") {
			return Silence{}, fmt.Errorf("%w: silence: %v", ErrInvalid, err)
		}
		return Silence{}, fmt.Errorf("create silence: %w", err)
	}
	created, err := s.Silence(ctx, sil.Id)
	if err != nil {
		return Silence{}, errors.Join(errors.New("silence created but not found"), err)
	}
	return created, nil
}

// ExpireSilence ends a silence now; expiring an expired silence changes
// nothing.
func (s *Silencer) ExpireSilence(ctx context.Context, id string) (Silence, error) {
	if err := s.store.Expire(ctx, id); err != nil {
		return Silence{}, fmt.Errorf("silence %s: %w", id, err)
	}
	return s.Silence(ctx, id)
}

// SilenceIncident silences the incident's alerts: one matcher set per
// alert, matching its labels exactly, so alerts that join the group later
// are not silenced and still reach the incident. spec's Matchers must be
// empty; its times and comment are the silence's (a.Comment is used when
// spec.Comment is empty). The silence is recorded in the incident's log
// ("silenced"). An incident without alerts, or a resolved one, is
// refused (ErrInvalid, ErrResolved). When recording fails after the
// silence was created, the error says so and the silence is returned.
func (s *Silencer) SilenceIncident(ctx context.Context, id string, spec SilenceSpec, a Action) (Incident, Silence, error) {
	if len(spec.Matchers) > 0 {
		return Incident{}, Silence{}, fmt.Errorf("%w: matchers: an incident's silence matches its alerts", ErrInvalid)
	}
	if spec.Comment == "" {
		spec.Comment = a.Comment
	}
	inc, err := s.mg.Get(id)
	if err != nil {
		return Incident{}, Silence{}, err
	}
	if inc.Status == StatusResolved {
		return inc, Silence{}, fmt.Errorf("%w: %s cannot be silenced", ErrResolved, id)
	}
	if a.IfVersion != 0 && a.IfVersion != inc.Version {
		return inc, Silence{}, fmt.Errorf("%w: %s is at version %d, not %d", ErrStale, id, inc.Version, a.IfVersion)
	}
	var sets [][]*labels.Matcher
	for _, al := range inc.Alerts {
		var ms []*labels.Matcher
		for _, name := range slices.Sorted(maps.Keys(al.Labels)) {
			ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, name, al.Labels[name]))
		}
		if len(ms) > 0 {
			sets = append(sets, ms)
		}
	}
	if len(sets) == 0 {
		return inc, Silence{}, fmt.Errorf("%w: %s has no alerts to silence", ErrInvalid, id)
	}
	sil, err := s.create(ctx, sets, spec, a.Actor)
	if err != nil {
		return inc, Silence{}, err
	}
	// Recorded whatever the incident's version is now: the silence exists.
	rec := a
	rec.IfVersion = 0
	inc, err = s.mg.change(ctx, id, rec, func(t *tx) error {
		t.add(Event{Type: EventSilenced, Actor: a.Actor, Comment: spec.Comment,
			Silence: &SilenceRef{ID: sil.ID, StartsAt: sil.StartsAt, EndsAt: sil.EndsAt}})
		return nil
	})
	if err != nil {
		return inc, sil, fmt.Errorf("silence %s created, but not recorded in incident %s: %w", sil.ID, id, err)
	}
	return inc, sil, nil
}

var matchTypes = map[silencepb.Matcher_Type]labels.MatchType{
	silencepb.Matcher_EQUAL: labels.MatchEqual, silencepb.Matcher_NOT_EQUAL: labels.MatchNotEqual,
	silencepb.Matcher_REGEXP: labels.MatchRegexp, silencepb.Matcher_NOT_REGEXP: labels.MatchNotRegexp,
}

var pbTypes = map[labels.MatchType]silencepb.Matcher_Type{
	labels.MatchEqual: silencepb.Matcher_EQUAL, labels.MatchNotEqual: silencepb.Matcher_NOT_EQUAL,
	labels.MatchRegexp: silencepb.Matcher_REGEXP, labels.MatchNotRegexp: silencepb.Matcher_NOT_REGEXP,
}

func viewSilence(s *silencepb.Silence, now time.Time) Silence {
	v := Silence{
		ID: s.Id, MatcherSets: []string{}, StartsAt: s.StartsAt.AsTime().UTC(), EndsAt: s.EndsAt.AsTime().UTC(),
		UpdatedAt: s.UpdatedAt.AsTime().UTC(), CreatedBy: s.CreatedBy, Comment: s.Comment,
		State: string(silence.StateFromProtoAt(s, now)),
	}
	sets := s.MatcherSets
	if len(sets) == 0 && len(s.Matchers) > 0 {
		sets = []*silencepb.MatcherSet{{Matchers: s.Matchers}}
	}
	for _, set := range sets {
		parts := make([]string, 0, len(set.Matchers))
		for _, m := range set.Matchers {
			parts = append(parts, (&labels.Matcher{Type: matchTypes[m.Type], Name: m.Name, Value: m.Pattern}).String())
		}
		v.MatcherSets = append(v.MatcherSets, "{"+strings.Join(parts, ", ")+"}")
	}
	if len(v.MatcherSets) > 0 {
		v.Matchers = v.MatcherSets[0]
	}
	return v
}
