package incidents

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/prometheus/alertmanager/notify"

	"github.com/aiops-dev/aiops/alerting"
	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/analyzer/results/correlate"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// TestEndToEnd: a sample crosses a rule's threshold in the embedded
// store; the rule fires; the embedded Alertmanager groups the alert and
// hands the group to the incident manager; the incident shows up through
// the REST API (behind the auth middleware), is acknowledged there, and
// resolves by itself once the alert has resolved and the quiet period
// has passed.
func TestEndToEnd(t *testing.T) {
	dir := t.TempDir()
	store := storetest.EmbeddedWith(t, embedded.Config{Retention: model.Duration(time.Hour), OutOfOrderWindow: model.Duration(time.Hour)})
	ctx, cancel := context.WithCancel(context.Background())

	icfg := incident.DefaultConfig()
	icfg.AutoResolveAfter = model.Duration(300 * time.Millisecond)
	icfg.CheckInterval = model.Duration(50 * time.Millisecond)
	mgr, err := incident.New(ctx, icfg, incident.Deps{
		Events: store, RootCauses: correlate.StoreRanker{Events: store, Spans: store}, Logger: testutil.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}

	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	acfg := alerting.DefaultConfig()
	acfg.RuleFiles = []string{write("rules.yml", `groups:
  - name: pool
    interval: 100ms
    rules:
      - alert: PoolAlmostFull
        expr: db_client_connection_count / db_client_connection_max > 0.9
        labels:
          severity: critical
        annotations:
          summary: 'pool {{ $labels.pool }} at {{ $value | humanizePercentage }}'
`)}
	acfg.AlertmanagerConfigFile = write("alertmanager.yml", `route:
  receiver: oncall
  group_by: [alertname]
  group_wait: 50ms
  group_interval: 200ms
receivers:
  - name: oncall
`)
	acfg.DataDir = filepath.Join(dir, "alerting")
	acfg.ExternalURL = "https://aiops.example.com"
	al, err := alerting.New(acfg, alerting.Deps{
		Storage:    store,
		Engine:     promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute}),
		GroupSinks: []notify.Notifier{mgr},
		Logger:     testutil.Logger(t),
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	go func() { al.Run(ctx); done <- struct{}{} }()
	go func() { mgr.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })

	e := newEnv(t, envOptions{store: store, mgr: mgr, am: al.Alertmanager()})

	appendPool := func(count float64) {
		app := store.Appender(context.Background())
		now := time.Now().UnixMilli()
		for _, s := range []struct {
			name string
			v    float64
		}{{"db_client_connection_count", count}, {"db_client_connection_max", 100}} {
			if _, err := app.Append(0, labels.FromStrings("__name__", s.name, "pool", "main", "service_name", "api"), now, s.v); err != nil {
				t.Fatal(err)
			}
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	appendPool(95)

	var list incidentList
	testutil.WaitFor(t, "the incident in GET /api/v1/incidents", 10*time.Second, func() bool {
		e.do(http.MethodGet, "/api/v1/incidents?status=open", e.readTok, nil).decode(t, &list)
		return len(list.Incidents) == 1
	})
	inc := list.Incidents[0]
	if inc.Title != "PoolAlmostFull on api" || inc.Severity != "critical" || inc.Service != "api" || inc.Receiver != "oncall" ||
		inc.GroupLabels["alertname"] != "PoolAlmostFull" || inc.Summary != "pool main at 95%" || inc.FiringAlerts != 1 {
		t.Errorf("incident %+v", inc)
	}
	if len(inc.Links) != 1 || inc.Links[0].Expr != "db_client_connection_count / db_client_connection_max > 0.9" ||
		!strings.HasPrefix(inc.Links[0].GeneratorURL, "https://aiops.example.com/graph?g0.expr=") {
		t.Errorf("links %+v", inc.Links)
	}
	if inc.RootCauses == nil || inc.RootCauses.Error != "" {
		t.Errorf("root causes %+v", inc.RootCauses)
	}

	var cur struct {
		Alerts []currentAlert `json:"alerts"`
	}
	e.do(http.MethodGet, "/api/v1/current_alerts?match[]=PoolAlmostFull", e.readTok, nil).decode(t, &cur)
	if len(cur.Alerts) != 1 || cur.Alerts[0].IncidentID != inc.ID || cur.Alerts[0].Receivers[0] != "oncall" {
		t.Fatalf("current alerts %+v", cur.Alerts)
	}

	r := e.do(http.MethodGet, "/api/v1/incidents/"+inc.ID, e.readTok, nil)
	r = e.do(http.MethodPost, "/api/v1/incidents/"+inc.ID+"/acknowledge", e.writeTok, map[string]string{"comment": "draining the pool"},
		"If-Match", r.header.Get("ETag"))
	if r.status != http.StatusOK {
		t.Fatalf("acknowledge: %d %s", r.status, r.body)
	}

	// The pool drains: the alert resolves, and after the quiet period the
	// incident resolves by itself.
	appendPool(10)
	testutil.WaitFor(t, "the incident to resolve", 10*time.Second, func() bool {
		e.do(http.MethodGet, "/api/v1/incidents/"+inc.ID, e.readTok, nil).decode(t, &inc)
		return inc.Status == incident.StatusResolved
	})
	if inc.ResolvedBy != incident.SystemActor || inc.AcknowledgedBy != e.writeID || inc.FiringAlerts != 0 {
		t.Errorf("resolved incident %+v", inc)
	}
	var tl timeline
	e.do(http.MethodGet, "/api/v1/incidents/"+inc.ID+"/timeline", e.readTok, nil).decode(t, &tl)
	var types []string
	for _, ev := range tl.Events {
		types = append(types, string(ev.Type))
	}
	if want := []string{"opened", "alert_firing", "acknowledged", "alert_resolved", "resolved"}; !slices.Equal(types, want) {
		t.Fatalf("timeline %v, want %v", types, want)
	}
}
