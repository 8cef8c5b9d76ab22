package incident

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/analyzer/results"
	"github.com/aiops-dev/aiops/analyzer/results/correlate"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
)

// correlate.StoreRanker is what serve passes.
var _ RootCauser = correlate.StoreRanker{}

func anomalyEvent(t *testing.T, service string, at time.Time, score float64) storage.Event {
	t.Helper()
	an := results.Anomaly{Series: map[string]string{"__name__": "latency", "job": service}, Time: at, Score: score, Value: 1}
	payload, err := json.Marshal(an)
	if err != nil {
		t.Fatal(err)
	}
	return storage.Event{ID: fmt.Sprintf("anomaly-%s-%d", service, at.UnixNano()), Time: at, Kind: results.AnomalyKind,
		Subject: service, Labels: an.Series, Payload: payload}
}

// TestRootCauses: the ranking is computed when the incident opens, from
// the anomalies and spans around its first alert, and again on request.
func TestRootCauses(t *testing.T) {
	c := newClock()
	store := openEmbedded(t, t.TempDir())
	t.Cleanup(func() { store.Close() })
	ctx := context.Background()
	if err := store.AppendEvents(ctx, []storage.Event{
		anomalyEvent(t, "postgres", t0.Add(-10*time.Minute), 0.9),
		anomalyEvent(t, "api", t0.Add(-5*time.Minute), 0.95),
		anomalyEvent(t, "ancient", t0.Add(-2*time.Hour), 1), // outside the window
	}); err != nil {
		t.Fatal(err)
	}
	var spans []storage.Span
	for i := range 20 {
		st := t0.Add(-8*time.Minute + time.Duration(i)*time.Second)
		spans = append(spans, storage.Span{
			TraceID: fmt.Sprintf("%032x", i+1), SpanID: fmt.Sprintf("%016x", i+1), Name: "SELECT", Kind: "Client",
			ServiceName: "api", StartTime: st, EndTime: st.Add(time.Second), StatusCode: "Error",
			Attributes: map[string]string{"peer.service": "postgres"},
		})
	}
	if err := store.AppendSpans(ctx, spans); err != nil {
		t.Fatal(err)
	}

	m, err := New(ctx, testConfig(), Deps{Events: store, RootCauses: correlate.StoreRanker{Events: store, Spans: store}, Logger: testutil.Logger(t), Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	send(t, m, "k", mkAlert(errRate, t0.Add(-time.Minute), time.Time{}))
	inc := only(t, m)
	rc := inc.RootCauses
	if rc == nil || rc.Error != "" || len(rc.Causes) != 2 {
		t.Fatalf("root causes at open: %+v", rc)
	}
	if rc.Causes[0].Service != "postgres" || rc.Causes[1].Service != "api" {
		t.Errorf("ranking %+v, want postgres (called by api, first anomalous) before api", rc.Causes)
	}
	if want := t0.Add(-16 * time.Minute); !rc.Start.Equal(want) || !rc.End.Equal(t0) {
		t.Errorf("window [%s, %s], want [%s, %s]", rc.Start, rc.End, want, t0)
	}

	// Redis went wrong even earlier; a refresh sees it.
	if err := store.AppendEvents(ctx, []storage.Event{anomalyEvent(t, "redis", t0.Add(-12*time.Minute), 0.99)}); err != nil {
		t.Fatal(err)
	}
	c.Add(time.Minute)
	inc, err = m.RefreshRootCauses(ctx, inc.ID, Action{Actor: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if len(inc.RootCauses.Causes) != 3 || inc.Version != 3 {
		t.Fatalf("refreshed: version %d, %+v", inc.Version, inc.RootCauses)
	}
	evs := mustTimeline(t, m, inc.ID)
	if evs[2].Type != EventRootCauses || evs[2].Actor != "alice" {
		t.Errorf("refresh event %+v", evs[2])
	}
}

type failingRanker struct{}

func (failingRanker) RootCauses(ctx context.Context, start, end time.Time) ([]correlate.Cause, *correlate.Graph, error) {
	return nil, nil, errors.New("spans unreadable")
}

// TestRootCausesFailure: an incident opens even when the ranking fails,
// and says why it has none.
func TestRootCausesFailure(t *testing.T) {
	store := openEmbedded(t, t.TempDir())
	t.Cleanup(func() { store.Close() })
	m, err := New(context.Background(), testConfig(), Deps{Events: store, RootCauses: failingRanker{}, Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	send(t, m, "k", mkAlert(pool, t0, time.Time{}))
	inc := only(t, m)
	if inc.RootCauses == nil || inc.RootCauses.Error != "spans unreadable" || inc.Status != StatusOpen {
		t.Fatalf("%+v", inc.RootCauses)
	}
}
