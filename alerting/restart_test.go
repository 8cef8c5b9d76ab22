package alerting

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/prometheus/alertmanager/silence"
	"github.com/prometheus/alertmanager/silence/silencepb"

	"github.com/aiops-dev/aiops/alerting/alertmanager"
	"github.com/aiops-dev/aiops/alerting/webhook"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// TestRestart stops and restarts the store and the alerting component over
// the same directories while an alert fires: the alert is firing again
// with its original active time, the silence is still there, and the
// receiver is not notified a second time.
func TestRestart(t *testing.T) {
	storeDir, dataDir, cfgDir := t.TempDir(), t.TempDir(), t.TempDir()
	var (
		mu       sync.Mutex
		messages []webhook.Message
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m webhook.Message
		json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		messages = append(messages, m)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)
	got := func() []webhook.Message {
		mu.Lock()
		defer mu.Unlock()
		return append([]webhook.Message(nil), messages...)
	}
	write(t, filepath.Join(cfgDir, "rules.yml"), `groups:
  - name: temp
    interval: 100ms
    rules:
      - alert: Hot
        expr: test_temperature_celsius > 50
        for: 200ms
`)
	write(t, filepath.Join(cfgDir, "alertmanager.yml"), `route:
  receiver: hook
  group_by: [alertname]
  group_wait: 50ms
  group_interval: 200ms
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: `+hook.URL+`
`)
	cfg := DefaultConfig()
	cfg.RuleFiles = []string{"rules.yml"}
	cfg.AlertmanagerConfigFile = "alertmanager.yml"
	cfg.ResolvePaths(cfgDir)
	cfg.DataDir = dataDir

	start := func() (*embedded.Store, *Alerting, func()) {
		store := storetest.EmbeddedWith(t, embedded.Config{DataDir: storeDir, Retention: model.Duration(time.Hour), OutOfOrderWindow: model.Duration(time.Hour)})
		a, err := New(cfg, Deps{
			Storage: store,
			Engine:  promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute}),
			Logger:  testutil.Logger(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); a.Run(ctx) }()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cancel()
				<-done
				if err := store.Close(); err != nil {
					t.Error(err)
				}
			})
		}
		t.Cleanup(stop)
		return store, a, stop
	}
	hot := func(a *Alerting) *rules.Alert {
		for _, r := range a.Ruler().Manager().AlertingRules() {
			if as := r.ActiveAlerts(); len(as) == 1 && as[0].State == rules.StateFiring {
				return as[0]
			}
		}
		return nil
	}
	temperature := func(store *embedded.Store, v float64) {
		app := store.Appender(context.Background())
		if _, err := app.Append(0, labels.FromStrings("__name__", "test_temperature_celsius", "room", "server"), time.Now().UnixMilli(), v); err != nil {
			t.Fatal(err)
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}

	store, a, stop := start()
	temperature(store, 80)
	testutil.WaitFor(t, "firing notification", 5*time.Second, func() bool { return len(got()) == 1 })
	firedBefore := *hot(a)
	sil := &silencepb.Silence{
		Matchers: []*silencepb.Matcher{{Type: silencepb.Matcher_EQUAL, Name: "room", Pattern: "lab"}},
		StartsAt: timestamppb.Now(), EndsAt: timestamppb.New(time.Now().Add(time.Hour)),
		CreatedBy: "test", Comment: "lab closed",
	}
	if err := a.Alertmanager().Silences().Set(context.Background(), sil); err != nil {
		t.Fatal(err)
	}
	// Prometheus restores an alert's active time from ALERTS_FOR_STATE
	// only if its last sample lies a whole wall-clock second after the
	// active time (both are truncated to seconds; an alert that seems not
	// to have waited out its `for` starts waiting again). Wait for such
	// a sample, which also gives the notification time to be logged.
	testutil.WaitFor(t, "ALERTS_FOR_STATE a second after the alert became active", 5*time.Second, func() bool {
		last, ok := lastSample(t, store, labels.MustNewMatcher(labels.MatchEqual, "__name__", "ALERTS_FOR_STATE"))
		return ok && last/1000 > firedBefore.ActiveAt.Unix()
	})
	stop()

	store, a, _ = start()
	testutil.WaitFor(t, "Hot firing again", 5*time.Second, func() bool { return hot(a) != nil })
	if h := hot(a); h.ActiveAt.Unix() != firedBefore.ActiveAt.Unix() {
		t.Errorf("Hot active since %s after the restart, was %s", h.ActiveAt, firedBefore.ActiveAt)
	}
	testutil.WaitFor(t, "alert back in the Alertmanager", 5*time.Second, func() bool {
		infos, err := a.Alertmanager().ListAlerts(context.Background(), alertmanager.AlertFilter{})
		return err == nil && len(infos) == 1
	})
	if sils, _, err := a.Alertmanager().Silences().Query(context.Background(), silence.QIDs(sil.Id)); err != nil || len(sils) != 1 {
		t.Errorf("silence after restart: %v %v", sils, err)
	}
	time.Sleep(time.Second)
	if n := len(got()); n != 1 {
		t.Fatalf("%d notifications after the restart, want the one from before", n)
	}
	temperature(store, 20)
	testutil.WaitFor(t, "resolved notification", 5*time.Second, func() bool {
		all := got()
		return len(all) == 2 && all[1].Status == "resolved"
	})
}

// lastSample is the timestamp of the newest sample of the series
// matching ms.
func lastSample(t *testing.T, store *embedded.Store, ms ...*labels.Matcher) (int64, bool) {
	t.Helper()
	q, err := store.Querier(0, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	last, found := int64(0), false
	set := q.Select(context.Background(), false, nil, ms...)
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != chunkenc.ValNone {
			last, found = max(last, it.AtT()), true
		}
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return last, found
}
