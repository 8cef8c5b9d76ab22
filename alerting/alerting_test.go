package alerting

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/notify"

	"github.com/aiops-dev/aiops/alerting/webhook"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage/embedded"
)

type sink struct {
	mu     sync.Mutex
	groups []string // "<receiver> <status>"
}

func (s *sink) Notify(ctx context.Context, alerts ...*alert.Alert) notify.NotifyVerdict {
	recv, _ := notify.ReceiverName(ctx)
	status := "resolved"
	for _, a := range alerts {
		if !a.Resolved() {
			status = "firing"
		}
	}
	s.mu.Lock()
	s.groups = append(s.groups, recv+" "+status)
	s.mu.Unlock()
	return notify.Success()
}

func (s *sink) seen(g string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.groups {
		if x == g {
			return true
		}
	}
	return false
}

// TestEndToEnd evaluates a rule over the embedded store, routes its alert
// through the embedded Alertmanager to a webhook and a group sink, and
// reloads over HTTP, refusing a broken rule file.
func TestEndToEnd(t *testing.T) {
	cfgDir := t.TempDir()
	store := storetest.EmbeddedWith(t, embedded.Config{Retention: model.Duration(time.Hour), OutOfOrderWindow: model.Duration(time.Hour)})

	var (
		mu       sync.Mutex
		messages []webhook.Message
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m webhook.Message
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			t.Errorf("webhook body: %v", err)
		}
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

	ruleFile := filepath.Join(cfgDir, "rules.yml")
	goodRules := `groups:
  - name: pool
    interval: 100ms
    rules:
      - alert: PoolAlmostFull
        expr: db_client_connection_count / db_client_connection_max > 0.9
        labels:
          severity: critical
        annotations:
          summary: 'pool {{ $labels.pool }} at {{ $value | humanizePercentage }}'
`
	write(t, ruleFile, goodRules)
	write(t, filepath.Join(cfgDir, "alertmanager.yml"), `route:
  receiver: oncall
  group_by: [alertname]
  group_wait: 50ms
  group_interval: 200ms
receivers:
  - name: oncall
    webhook_configs:
      - url: `+hook.URL+`
`)
	cfg := DefaultConfig()
	cfg.RuleFiles = []string{"rules.yml"}
	cfg.AlertmanagerConfigFile = "alertmanager.yml"
	cfg.ResolvePaths(cfgDir)
	cfg.DataDir = t.TempDir()
	cfg.ExternalURL = "https://aiops.example.com"
	cfg.ExternalLabels = map[string]string{"cluster": "prod"}
	s := &sink{}
	a, err := New(cfg, Deps{
		Storage:    store,
		Engine:     promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute}),
		GroupSinks: []notify.Notifier{s},
		Logger:     testutil.Logger(t),
		// A real registry: the rule manager's and the Alertmanager's
		// metrics must not collide.
		Registerer: prometheus.NewRegistry(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

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
	testutil.WaitFor(t, "firing notification", 5*time.Second, func() bool { return len(got()) >= 1 })
	m := got()[0]
	if m.Status != "firing" || len(m.Alerts) != 1 {
		t.Fatalf("notification %+v", m)
	}
	al := m.Alerts[0]
	if al.Labels["cluster"] != "prod" || al.Labels["severity"] != "critical" || al.Labels["pool"] != "main" {
		t.Errorf("labels %v", al.Labels)
	}
	if al.Annotations["summary"] != "pool main at 95%" {
		t.Errorf("summary %q", al.Annotations["summary"])
	}
	if !strings.HasPrefix(al.GeneratorURL, "https://aiops.example.com/graph?g0.expr=") {
		t.Errorf("generator URL %q", al.GeneratorURL)
	}
	if m.ExternalURL != "https://aiops.example.com" {
		t.Errorf("external URL %q", m.ExternalURL)
	}
	testutil.WaitFor(t, "sink firing group", 2*time.Second, func() bool { return s.seen("oncall firing") })

	// The v2 API lists the alert.
	api := httptest.NewServer(a.APIHandler())
	t.Cleanup(api.Close)
	resp, err := http.Get(api.URL + "/api/v2/alerts?filter=alertname%3D%22PoolAlmostFull%22")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"pool":"main"`) {
		t.Errorf("GET /api/v2/alerts: %d %s", resp.StatusCode, body)
	}
	if r := a.RulesRetriever(ctx); len(r.AlertingRules()) != 1 {
		t.Errorf("rules retriever: %d alerting rules", len(r.AlertingRules()))
	}
	if u := a.AlertmanagerRetriever(ctx).Alertmanagers(); len(u) != 1 || u[0].String() != "https://aiops.example.com/api/v2/alerts" {
		t.Errorf("alertmanagers %v", u)
	}

	// /-/reload refuses a broken rule file with file and line.
	reload := httptest.NewServer(a.ReloadHandler())
	t.Cleanup(reload.Close)
	write(t, ruleFile, goodRules+"      - alert: Broken\n        expr: sum(\n")
	resp, err = http.Post(reload.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), ruleFile+": 12:15:") {
		t.Errorf("reload of a broken file: %d %s", resp.StatusCode, body)
	}
	if resp, err := http.Get(reload.URL); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /-/reload: %v %v", resp, err)
	}
	write(t, ruleFile, goodRules)
	if resp, err := http.Post(reload.URL, "", nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("reload: %v %v", resp, err)
	}

	// The pool drains: resolved notification to the webhook and the sink.
	appendPool(10)
	testutil.WaitFor(t, "resolved notification", 5*time.Second, func() bool {
		all := got()
		return all[len(all)-1].Status == "resolved"
	})
	testutil.WaitFor(t, "sink resolved group", 2*time.Second, func() bool { return s.seen("oncall resolved") })
	if n := len(got()); n != 2 {
		t.Errorf("%d webhook notifications, want firing then resolved", n)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.EvaluationInterval = 0 }, "alerting.evaluation_interval: must be > 0"},
		{func(c *Config) { c.RuleFiles = []string{"rules/[.yml"} }, "alerting.rule_files[0]"},
		{func(c *Config) { c.DataDir = "" }, "alerting.data_dir"},
		{func(c *Config) { c.ExternalURL = "aiops:9090" }, "alerting.external_url"},
		{func(c *Config) { c.ExternalLabels = map[string]string{"": "y"} }, "alerting.external_labels"},
		{func(c *Config) { c.ForGracePeriod = -1 }, "alerting.for_grace_period"},
		{func(c *Config) { c.Retention = 0 }, "alerting.retention"},
		{func(c *Config) { c.MaxSilences = -1 }, "alerting.max_silences"},
		{func(c *Config) { c.MaxSilenceSizeBytes = 5 << 20 }, "alerting.max_silence_size_bytes"},
		{func(c *Config) { c.Cluster.Peers = []string{"b:9094"} }, "alerting.cluster.listen_address: must be set"},
		{func(c *Config) { c.Cluster.ListenAddress = "9094" }, "alerting.cluster.listen_address"},
		{func(c *Config) { c.Cluster = ClusterConfig{ListenAddress: ":9094", Peers: []string{"b"}} }, "alerting.cluster.peers[0]"},
		{func(c *Config) { c.Cluster = ClusterConfig{ListenAddress: ":9094", PeerTimeout: -1} }, "alerting.cluster.peer_timeout"},
	}
	for _, c := range cases {
		cfg := DefaultConfig()
		c.edit(&cfg)
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate: %v, want %q", err, c.want)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestNewErrorsAndClose checks start-up errors name the key and the file,
// and that Close without Run returns.
func TestNewErrorsAndClose(t *testing.T) {
	store := storetest.EmbeddedWith(t, embedded.Config{Retention: model.Duration(time.Hour)})
	deps := Deps{Storage: store, Engine: promql.NewEngine(promql.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute}), Logger: testutil.Logger(t)}
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yml")
	write(t, rules, "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up ==\n")
	cfg := DefaultConfig()
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.RuleFiles = []string{rules}
	if _, err := New(cfg, deps); err == nil || !strings.HasPrefix(err.Error(), "alerting.rule_files: "+rules+": 5:15:") {
		t.Errorf("New with a broken rule file: %v", err)
	}
	write(t, rules, "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n")
	// A path that matches nothing (a typo) would start with no alerting.
	typo := filepath.Join(dir, "rulez", "*.yml")
	cfg.RuleFiles = []string{rules, typo}
	if _, err := New(cfg, deps); err == nil || err.Error() != fmt.Sprintf("alerting.rule_files[1]: %q matches no file", typo) {
		t.Errorf("New with a rule file path that matches nothing: %v", err)
	}
	cfg.RuleFiles = []string{rules}
	amFile := filepath.Join(dir, "am.yml")
	write(t, amFile, "route:\n  receiver: nobody\n")
	cfg.AlertmanagerConfigFile = amFile
	if _, err := New(cfg, deps); err == nil || !strings.HasPrefix(err.Error(), "alerting.alertmanager_config_file: "+amFile+":") {
		t.Errorf("New with a broken Alertmanager file: %v", err)
	}
	cfg.AlertmanagerConfigFile = ""
	a, err := New(cfg, deps)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error)
	go func() { closed <- a.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close without Run did not return")
	}
	for _, f := range []string{"silences", "nflog", "alerts"} {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, f)); err != nil {
			t.Errorf("no %s snapshot after Close: %v", f, err)
		}
	}

	// State that does not load is the data dir's fault, not the
	// Alertmanager configuration's.
	write(t, filepath.Join(cfg.DataDir, "silences"), "\x05garbage")
	if _, err := New(cfg, deps); err == nil || !strings.HasPrefix(err.Error(), "alerting.data_dir: ") {
		t.Errorf("New with an unreadable silences file: %v, want an error naming alerting.data_dir", err)
	}
}
