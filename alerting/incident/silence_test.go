package incident

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/prometheus/alertmanager/silence"

	"github.com/aiops-dev/aiops/internal/testutil"
)

func newSilences(t *testing.T) *silence.Silences {
	t.Helper()
	sils, err := silence.New(silence.Options{Retention: time.Hour, Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	return sils
}

// TestSilenceIncident silences an incident's alerts in the Alertmanager's
// silence store: the silence matches those alerts and not others, and the
// incident's log (and so the feed) records it.
func TestSilenceIncident(t *testing.T) {
	ctx := context.Background()
	m := startManager(t, openEmbedded(t, t.TempDir()), testutil.NewClock(testutil.Epoch))
	sils := newSilences(t)
	// The Alertmanager's silences run on the wall clock and cannot be
	// given another, so the Silencer checks against the same.
	s := NewSilencer(sils, m, nil)
	send(t, m, "k", mkAlert(errRate, testutil.Epoch, time.Time{}), mkAlert(errRate2, testutil.Epoch, time.Time{}))
	id := only(t, m).ID

	inc, sil, err := s.SilenceIncident(ctx, id, SilenceSpec{Duration: time.Hour}, Action{Actor: "alice", Comment: "deploying the fix", IfVersion: 3})
	if err != nil {
		t.Fatal(err)
	}
	if sil.State != "active" || sil.CreatedBy != "alice" || sil.Comment != "deploying the fix" || len(sil.MatcherSets) != 2 ||
		!strings.Contains(sil.Matchers, `alertname="HighErrorRate"`) || sil.EndsAt.Sub(sil.StartsAt) > time.Hour || sil.EndsAt.Sub(sil.StartsAt) < 59*time.Minute {
		t.Fatalf("silence %+v", sil)
	}
	if inc.Version != 4 {
		t.Fatalf("incident version %d after the silence", inc.Version)
	}
	evs := mustTimeline(t, m, id)
	if last := evs[len(evs)-1]; last.Type != EventSilenced || last.Silence == nil || last.Silence.ID != sil.ID || last.Actor != "alice" {
		t.Fatalf("timeline ends with %+v", last)
	}
	fevs, err := m.Feed(FeedOptions{}).Read(ctx, "", 0)
	if err != nil || fevs[len(fevs)-1].Type != EventSilenced {
		t.Fatalf("feed: %v\n%s", err, describe(fevs))
	}
	matching := func(ls model.LabelSet) int {
		t.Helper()
		found, _, err := sils.Query(ctx, silence.QState(silence.SilenceStateActive), silence.QMatches(ls))
		if err != nil {
			t.Fatal(err)
		}
		return len(found)
	}
	if matching(errRate) != 1 || matching(errRate2) != 1 || matching(pool) != 0 {
		t.Fatalf("silence matches errRate %d, errRate2 %d, pool %d", matching(errRate), matching(errRate2), matching(pool))
	}

	// Refused.
	for _, c := range []struct {
		spec SilenceSpec
		a    Action
		id   string
		want error
	}{
		{SilenceSpec{Duration: time.Hour}, Action{Comment: "x", IfVersion: 3}, id, ErrStale},
		{SilenceSpec{Duration: time.Hour, Matchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "job", "api")}}, Action{Comment: "x"}, id, ErrInvalid},
		{SilenceSpec{Duration: time.Hour}, Action{}, id, ErrInvalid},
		{SilenceSpec{Duration: time.Hour}, Action{Comment: "x"}, "inc-none", ErrNotFound},
	} {
		if _, _, err := s.SilenceIncident(ctx, c.id, c.spec, c.a); !errors.Is(err, c.want) {
			t.Errorf("%+v %+v: %v, want %v", c.spec, c.a, err, c.want)
		}
	}
	must(t)(m.Resolve(ctx, id, Action{}))
	if _, _, err := s.SilenceIncident(ctx, id, SilenceSpec{Duration: time.Hour}, Action{Comment: "x"}); !errors.Is(err, ErrResolved) {
		t.Errorf("silencing a resolved incident: %v", err)
	}
}

// TestSilences creates, lists, gets and expires silences; what is wrong
// with a spec is refused naming the field.
func TestSilences(t *testing.T) {
	ctx := context.Background()
	m := startManager(t, openEmbedded(t, t.TempDir()), testutil.NewClock(testutil.Epoch))
	sils := newSilences(t)
	s := NewSilencer(sils, m, nil)
	sel := func(s string) []*labels.Matcher {
		ms, err := parser.NewParser(parser.Options{}).ParseMetricSelector(s)
		if err != nil {
			t.Fatal(err)
		}
		return ms
	}
	sil, err := s.CreateSilence(ctx, SilenceSpec{Matchers: sel(`{__name__="HighErrorRate", job=~"api|web"}`), Duration: 2 * time.Hour, Comment: "deploying"}, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if sil.Matchers != `{alertname="HighErrorRate", job=~"api|web"}` || sil.State != "active" || sil.CreatedBy != "bob" {
		t.Fatalf("created %+v", sil)
	}
	pending, err := s.CreateSilence(ctx, SilenceSpec{Matchers: sel(`{service="postgres"}`), StartsAt: time.Now().Add(time.Hour), Duration: time.Hour, Comment: "window"}, "bob")
	if err != nil || pending.State != "pending" {
		t.Fatalf("pending: %+v %v", pending, err)
	}
	if got, err := s.Silences(ctx, silence.SilenceStateActive); err != nil || len(got) != 1 || got[0].ID != sil.ID {
		t.Fatalf("active: %+v %v", got, err)
	}
	if got, err := s.Silences(ctx); err != nil || len(got) != 2 || got[0].ID != pending.ID {
		t.Fatalf("all, newest change first: %+v %v", got, err)
	}
	if got, err := s.ExpireSilence(ctx, sil.ID); err != nil || got.State != "expired" {
		t.Fatalf("expired: %+v %v", got, err)
	}
	if _, err := s.Silence(ctx, "no-such"); !errors.Is(err, silence.ErrNotFound) {
		t.Fatalf("unknown silence: %v", err)
	}
	if _, err := s.Silences(ctx, "sleeping"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "state:") {
		t.Fatalf("bad state: %v", err)
	}

	// Validation runs on the Silencer's clock, before the store is asked.
	at := testutil.Epoch
	fixed := NewSilencer(sils, m, func() time.Time { return at })
	ok := SilenceSpec{Matchers: sel(`{job="api"}`), Duration: time.Hour, Comment: "x"}
	for _, c := range []struct {
		field  string
		mutate func(*SilenceSpec)
	}{
		{"matchers", func(s *SilenceSpec) { s.Matchers = nil }},
		{"comment", func(s *SilenceSpec) { s.Comment = " " }},
		{"duration", func(s *SilenceSpec) { s.EndsAt = at.Add(time.Hour) }},                  // both given
		{"ends_at", func(s *SilenceSpec) { s.Duration = 0 }},                                 // neither
		{"ends_at", func(s *SilenceSpec) { s.Duration, s.EndsAt = 0, at.Add(-time.Minute) }}, // past
		{"ends_at", func(s *SilenceSpec) { s.StartsAt = at.Add(-2 * time.Hour) }},            // past
		{"ends_at", func(s *SilenceSpec) {
			s.Duration, s.EndsAt = 0, at.Add(-3*time.Hour)
			s.StartsAt = at.Add(-2 * time.Hour)
		}},
	} {
		spec := ok
		c.mutate(&spec)
		_, err := fixed.CreateSilence(ctx, spec, "x")
		if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), ErrInvalid.Error()+": "+c.field+":") {
			t.Errorf("%s: %v", c.field, err)
		}
	}
	comment := strings.Repeat("x", MaxCommentBytes+1)
	if _, err := fixed.CreateSilence(ctx, SilenceSpec{Matchers: ok.Matchers, Duration: time.Hour, Comment: comment}, "x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("long comment: %v", err)
	}
	// The Alertmanager's own check: a set that matches everything.
	if _, err := s.CreateSilence(ctx, SilenceSpec{Matchers: sel(`{job=~".*"}`), Duration: time.Hour, Comment: "x"}, "x"); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "matchers:") {
		t.Errorf("matching everything: %v", err)
	}
}

// TestSilenceOverLimitIsInvalid: a silence over the store's size limit
// (alerting.max_silence_size_bytes) is refused as invalid (400 in the
// REST API), naming the limit.
func TestSilenceOverLimitIsInvalid(t *testing.T) {
	sils, err := silence.New(silence.Options{Retention: time.Hour, Metrics: prometheus.NewRegistry(),
		Limits: silence.Limits{MaxSilenceSizeBytes: func() int { return 1024 }}})
	if err != nil {
		t.Fatal(err)
	}
	s := NewSilencer(sils, nil, nil)
	ms := []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "alertname", strings.Repeat("x", 2000))}
	_, err = s.CreateSilence(context.Background(), SilenceSpec{Matchers: ms, Duration: time.Hour, Comment: "big"}, "alice")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "maximum size") {
		t.Fatalf("CreateSilence over the size limit: %v, want ErrInvalid naming the limit", err)
	}
}
