package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/api/auth"
	"github.com/aiops-dev/aiops/api/promapi"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/remediation/action"
	"github.com/aiops-dev/aiops/remediation/engine"
	"github.com/aiops-dev/aiops/remediation/runbook"
	"github.com/aiops-dev/aiops/storage"
)

// fullStore refuses every write, as a full disk does.
type fullStore struct {
	storage.EventStore
	full atomic.Bool
}

func (f *fullStore) AppendEvents(ctx context.Context, evs []storage.Event) error {
	if f.full.Load() {
		return errors.New("database or disk is full")
	}
	return f.EventStore.AppendEvents(ctx, evs)
}

// TestStoreFullAnswers: when the store cannot record a run, the request
// gets a 503 within the record timeout instead of hanging while the
// engine retries, and nothing acts.
func TestStoreFullAnswers(t *testing.T) {
	s := storetest.Embedded(t)
	store := &fullStore{EventStore: s}
	rbs, ps := runbook.Parse("rb.yml", []byte(`runbooks:
  - name: restart-api
    trigger: {manual: true}
    target: {service: api}
    steps:
      - action: workflow.restart_service
        params: {service: api}
        verify: {expr: vector(1), within: 1m}
    safety: {cooldown: 10m, max_runs: {count: 3, window: 1h}}
`))
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	pe, err := promapi.NewEngine(promapi.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pe.Close() })
	var calls atomic.Int64
	eng, err := engine.New(context.Background(), engine.Config{Runbooks: rbs}, engine.Deps{
		Events: store, Query: engine.PromQuerier{Engine: pe, Queryable: s},
		Actions: action.DriverFunc(func(context.Context, action.Call) (action.Result, error) {
			calls.Add(1)
			return action.Result{Outcome: "started"}, nil
		}),
		Logger: testutil.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Options{Engine: eng, Logger: testutil.Logger(t), RecordTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Mount(mux)
	store.full.Store(true)
	req := httptest.NewRequest(http.MethodPost, "/api/v1/runbooks/restart-api/run", strings.NewReader(`{"target": {"service": "api"}}`))
	req.Header.Set("Content-Type", "application/json")
	req = req.WithContext(auth.WithPrincipal(req.Context(), auth.Principal{ID: "t1", Name: "tester", Scopes: []auth.Scope{auth.ScopeExecute}}))
	w := httptest.NewRecorder()
	start := time.Now()
	mux.ServeHTTP(w, req)
	if w.Code != http.StatusServiceUnavailable || time.Since(start) > 20*time.Second {
		t.Errorf("run on a full store: %d after %s: %s", w.Code, time.Since(start), w.Body)
	}
	if n := calls.Load(); n != 0 || len(eng.List(engine.Filter{})) != 0 {
		t.Errorf("%d actions, %d executions on a full store", n, len(eng.List(engine.Filter{})))
	}
}
