package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/internal/clitest"
	"github.com/aiops-dev/aiops/internal/freeport"
	"github.com/aiops-dev/aiops/internal/testutil"
)

func freeAddr(t *testing.T) string { return freeport.Addr(t) }

// testServer is `aiops serve` running in-process.
type testServer struct {
	http, grpc string
	otlpHTTP   string
	token      string
	stderr     *testutil.SyncBuffer
	stop       func() int
}

func startServe(t *testing.T, dataDir string, extra ...string) *testServer {
	t.Helper()
	ts := &testServer{http: freeAddr(t), grpc: freeAddr(t), otlpHTTP: freeAddr(t), stderr: &testutil.SyncBuffer{}}
	args := append([]string{"serve", "--data-dir", dataDir, "--http-addr", ts.http,
		"--otlp-grpc-addr", ts.grpc, "--otlp-http-addr", ts.otlpHTTP}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, io.Discard, ts.stderr) }()
	var once sync.Once
	code := 0
	ts.stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(60 * time.Second):
				t.Errorf("server did not stop within 60s; log:\n%s", ts.stderr)
			}
		})
		return code
	}
	t.Cleanup(func() { ts.stop() })

	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + ts.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case c := <-done:
			t.Fatalf("server exited with %d before it was ready; log:\n%s", c, ts.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready within 60s; log:\n%s", ts.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b, err := os.ReadFile(filepath.Join(dataDir, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	ts.token = strings.TrimSpace(string(b))
	return ts
}

func (ts *testServer) get(t *testing.T, path, token string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+ts.http+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// query returns the value of an instant query's single sample, or "" when
// the result is empty.
func (ts *testServer) query(t *testing.T, q string) string {
	t.Helper()
	code, body := ts.get(t, "/api/v1/query?query="+url.QueryEscape(q), ts.token)
	if code != http.StatusOK {
		t.Fatalf("query %s: %d %s", q, code, body)
	}
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("query %s: %v: %s", q, err, body)
	}
	if len(r.Data.Result) == 0 {
		return ""
	}
	return fmt.Sprint(r.Data.Result[0].Value[1])
}

// TestServeEndToEnd runs `aiops serve` on the embedded store: the OTel SDK
// sends a counter over OTLP/gRPC, the query API returns it to a caller
// with a token and refuses callers without one, and the data survives a
// restart.
func TestServeEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	ts := startServe(t, dataDir)

	ctx := context.Background()
	exp, err := otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(ts.grpc), otlpmetricgrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewPeriodicReader(exp, sdkmetric.WithInterval(time.Hour))
	res := resource.NewSchemaless(attribute.String("service.name", "checkout"), attribute.String("service.instance.id", "i-1"))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader), sdkmetric.WithResource(res))
	counter, err := mp.Meter("e2e").Int64Counter("orders.placed")
	if err != nil {
		t.Fatal(err)
	}
	counter.Add(ctx, 42, metric.WithAttributes(attribute.String("region", "eu")))
	if err := mp.ForceFlush(ctx); err != nil {
		t.Fatalf("OTLP export: %v", err)
	}
	mp.Shutdown(ctx)

	const q = `orders_placed_total{job="checkout",instance="i-1",region="eu"}`
	var got string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if got = ts.query(t, q); got != "" {
			break
		}
	}
	if got != "42" {
		t.Fatalf("%s = %q, want 42; log:\n%s", q, got, ts.stderr)
	}

	if code, body := ts.get(t, "/api/v1/query?query=up", ""); code != http.StatusUnauthorized {
		t.Errorf("query without a token: %d %s, want 401", code, body)
	}
	if code, _ := ts.get(t, "/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d, want 401", code)
	}
	if code, body := ts.get(t, "/metrics", ts.token); code != http.StatusOK || !bytes.Contains(body, []byte("aiops_collector_")) {
		t.Errorf("/metrics: %d, want 200 with collector metrics", code)
	} else if !bytes.Contains(body, []byte(`aiops_auth_failures_total{reason="missing"} 2`)) {
		t.Errorf("/metrics does not count the two requests without a token as aiops_auth_failures_total{reason=\"missing\"}")
	}
	if !strings.Contains(ts.stderr.String(), "Request refused") {
		t.Errorf("refused requests are not logged:\n%s", ts.stderr)
	}
	if code, _ := ts.get(t, "/healthz", ""); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	if strings.Contains(ts.stderr.String(), ts.token) {
		t.Error("the admin token appears in the log")
	}

	if code := ts.stop(); code != 0 {
		t.Fatalf("serve exited with %d; log:\n%s", code, ts.stderr)
	}
	ts = startServe(t, dataDir)
	if got := ts.query(t, q); got != "42" {
		t.Errorf("after restart %s = %q, want 42", q, got)
	}
}

// shippedRunbooks are the runbooks in deploy/runbooks.
var shippedRunbooks, _ = filepath.Abs("../../deploy/runbooks/workflow-engine.yml")

// TestServeRefusesBadConfig checks that an invalid configuration stops the
// binary at start with the key and the reason.
func TestServeRefusesBadConfig(t *testing.T) {
	monster := "groups:\n- name: g\n  rules:\n  - alert: Monster\n    expr: 1" + strings.Repeat("+1", 20_000) + "\n"
	for name, tc := range map[string]struct {
		yaml  string
		files map[string]string // beside the configuration file
		want  []string
	}{
		"write timeout below the query timeout": {
			yaml: "server:\n  write_timeout: 1m\n",
			want: []string{"server.write_timeout: must be longer than query.timeout (2m)"},
		},
		"no connections": {
			yaml: "server:\n  max_connections: 0\n",
			want: []string{"server.max_connections: must be > 0"},
		},
		"not a duration": {
			yaml: "alerting:\n  evaluation_interval: often\n",
			want: []string{"alerting.evaluation_interval (line 2)", `"often"`},
		},
		"rule path matching nothing": {
			yaml: "alerting:\n  rule_files: [rulez/*.yml]\n",
			want: []string{"alerting.rule_files[0]", "rulez/*.yml", "matches no file"},
		},
		"monster rule": {
			yaml:  "alerting:\n  rule_files: [monster.yml]\n",
			files: map[string]string{"monster.yml": monster},
			want:  []string{"monster.yml", `"Monster"`, "query.max_depth"},
		},
		"unknown key":      {yaml: "server:\n  http_adr: :9090\n", want: []string{"line 2", "http_adr"}},
		"bad value":        {yaml: "storage:\n  embedded:\n    retention: 0s\n", want: []string{"storage.embedded.retention: must be > 0"}},
		"bad role":         {yaml: "role: everything\n", want: []string{`role: must be one of`, `"everything"`}},
		"ingester on disk": {yaml: "role: ingester\n", want: []string{"storage.backend: the ingester role writes to ClickHouse"}},
		"bad analyzer":     {yaml: "analyzer:\n  selectors:\n    - selector: 'up{'\n", want: []string{"analyzer.selectors[0]"}},
		"bad query":        {yaml: "query:\n  max_samples: -1\n", want: []string{"query.max_samples: must be > 0"}},
		"not yaml":         {yaml: "role: [\n", want: []string{"config"}},
		"self-monitoring too often": {
			yaml: "self_monitoring:\n  interval: 10ms\n",
			want: []string{"self_monitoring.interval: must be 0 (off) or at least 1s, got 10ms"},
		},
		"slack without a channel": {
			yaml:  "slack:\n  bot_token_file: bot.token\n",
			files: map[string]string{"bot.token": "xoxb-never-shown"},
			want:  []string{"slack.channel: must name a channel"},
		},
		"slack token file missing": {yaml: "slack:\n  bot_token_file: nope.token\n  channel: C1\n", want: []string{"slack.bot_token_file: read", "nope.token"}},
		"slack key misspelt":       {yaml: "slack:\n  bot_token: xoxb-1\n", want: []string{"line 2", "bot_token"}},
		"slack user not an id": {
			yaml:  "slack:\n  bot_token_file: bot.token\n  channel: C1\n  users:\n    alice: {principal: alice, scopes: [write]}\n",
			files: map[string]string{"bot.token": "xoxb-never-shown"},
			want:  []string{"slack.users.alice: not a Slack user id"},
		},
		"bad remediation":          {yaml: "remediation:\n  runbook_files: [rb.yml]\n  max_runs: {count: 3}\n", want: []string{"remediation.max_runs.window: required"}},
		"ha lease unknown":         {yaml: "ha:\n  lease: etcd\n", want: []string{`ha.lease: must be "store" or "kafka"`}},
		"ha ttl too short":         {yaml: "ha:\n  lease: store\n  store: {ttl: 1s}\n", want: []string{"ha.store.ttl: must be at least 2s"}},
		"ha on the embedded store": {yaml: "ha:\n  lease: store\n", want: []string{"ha.lease: the replicas of an HA pair share one ClickHouse"}},
		"ha without the gossip":    {yaml: "storage: {backend: clickhouse}\nha:\n  lease: store\n", want: []string{"ha.lease: needs alerting.cluster"}},
		"ha kafka without brokers": {yaml: "ha:\n  lease: kafka\n", want: []string{"ha.kafka.brokers"}},
		"runbook without its driver": {yaml: "remediation:\n  runbook_files: [" + shippedRunbooks + "]\n",
			want: []string{"workflow-engine.yml", "remediation.drivers.workflow is not configured"}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "aiops.yaml")
			os.WriteFile(path, []byte(tc.yaml), 0o600)
			for name, content := range tc.files {
				os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600)
			}
			var stderr bytes.Buffer
			code := run(context.Background(), []string{"serve", "--config", path, "--data-dir", t.TempDir()}, io.Discard, &stderr)
			if code == 0 {
				t.Fatalf("serve with %s exited 0", name)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("error %q does not mention %q", stderr.String(), w)
				}
			}
			if strings.Contains(stderr.String(), "xoxb-never-shown") {
				t.Errorf("error shows a secret: %q", stderr.String())
			}
		})
	}
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--config", "/nonexistent/aiops.yaml"}, io.Discard, &stderr); code == 0 || !strings.Contains(stderr.String(), "/nonexistent/aiops.yaml") {
		t.Errorf("missing config file: code %d, %q", code, stderr.String())
	}
}

// TestServeRefusesReadableAdminToken: like ssh with a private key, serve
// refuses an admin token file other users may read.
func TestServeRefusesReadableAdminToken(t *testing.T) {
	tok := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tok, []byte("aiops_admin_0123456789abcdef\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(tok, 0o644) // whatever the umask
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"serve", "--data-dir", t.TempDir(), "--admin-token-file", tok,
		"--http-addr", freeAddr(t), "--otlp-grpc-addr", freeAddr(t), "--otlp-http-addr", freeAddr(t)}, io.Discard, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "server.admin_token_file") || !strings.Contains(stderr.String(), "chmod 600") {
		t.Errorf("serve with a 0644 admin token file: exit %d, %q", code, stderr.String())
	}
}

func TestHelpDescribesEveryServeFlag(t *testing.T) {
	var stdout bytes.Buffer
	if code := run(context.Background(), []string{"serve", "--help"}, &stdout, io.Discard); code != 0 {
		t.Fatalf("serve --help exited %d", code)
	}
	for _, flag := range []string{"--config", "--data-dir", "--http-addr", "--otlp-grpc-addr", "--otlp-http-addr", "--storage", "--clickhouse-addr", "--admin-token-file"} {
		if !strings.Contains(stdout.String(), flag) {
			t.Errorf("serve --help does not describe %s", flag)
		}
	}
}

// TestExampleConfigsLoad keeps the example configurations under deploy/
// valid: each loads, and validates, as `aiops serve --config` would.
func TestExampleConfigsLoad(t *testing.T) {
	files, err := filepath.Glob("../../deploy/examples/*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("example configs: %v, %v", files, err)
	}
	for _, f := range files {
		c := &serveCommand{configFile: f}
		if _, err := c.config(); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestServeAllInOneExample starts the shipped all-in-one example as it
// is: its rule files and Alertmanager configuration are found relative
// to the configuration file, every shipped rule group is loaded, and the
// Alertmanager API serves the configured routes.
func TestServeAllInOneExample(t *testing.T) {
	dataDir := t.TempDir()
	ts := startServe(t, dataDir, "--config", "../../deploy/examples/all-in-one.yaml")
	// --data-dir holds the server's whole state: the example must not
	// place anything relative to the working directory.
	if _, err := os.Stat(filepath.Join(dataDir, "queue")); err != nil {
		t.Errorf("collector queue not under --data-dir: %v", err)
	}
	if _, err := os.Stat("data"); err == nil {
		t.Errorf("the example wrote ./data in the working directory despite --data-dir")
	}
	code, body := ts.get(t, "/api/v1/rules", ts.token)
	if code != http.StatusOK {
		t.Fatalf("/api/v1/rules: %d %s", code, body)
	}
	var rules struct {
		Data struct {
			Groups []struct {
				File string `json:"file"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &rules); err != nil {
		t.Fatal(err)
	}
	shipped, err := filepath.Glob("../../deploy/rules/*.yml")
	if err != nil || len(shipped) == 0 {
		t.Fatalf("no shipped rule files: %v", err)
	}
	files := map[string]bool{}
	for _, g := range rules.Data.Groups {
		files[filepath.Base(g.File)] = true
	}
	for _, f := range shipped {
		if !files[filepath.Base(f)] {
			t.Errorf("shipped rule file %s not loaded; groups from %v", f, files)
		}
	}
	code, body = ts.get(t, "/api/v2/status", ts.token)
	if code != http.StatusOK || !strings.Contains(string(body), "oncall-webhook") {
		t.Errorf("/api/v2/status: %d, want the example's receivers in:\n%.400s", code, body)
	}
}

// gaugeSender sends a gauge over OTLP/gRPC, one point per call.
type gaugeSender struct {
	exp    *otlpmetricgrpc.Exporter
	reader *sdkmetric.ManualReader
	gauge  metric.Int64Gauge
}

func newGaugeSender(t *testing.T, addr, service string) *gaugeSender {
	t.Helper()
	exp, err := otlpmetricgrpc.New(context.Background(), otlpmetricgrpc.WithEndpoint(addr), otlpmetricgrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader),
		sdkmetric.WithResource(resource.NewSchemaless(attribute.String("service.name", service))))
	gauge, _ := mp.Meter("e2e").Int64Gauge("queue.depth")
	return &gaugeSender{exp: exp, reader: reader, gauge: gauge}
}

func (g *gaugeSender) send(t *testing.T, v int64) {
	t.Helper()
	ctx := context.Background()
	g.gauge.Record(ctx, v)
	var rm metricdata.ResourceMetrics
	if err := g.reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	if err := g.exp.Export(ctx, &rm); err != nil {
		t.Fatalf("export %d: %v", v, err)
	}
}

// readyz returns /readyz's status and body.
func (ts *testServer) readyz(t *testing.T) (int, string) {
	t.Helper()
	code, body := ts.get(t, "/readyz", "")
	return code, string(body)
}

// TestServeOnClickHouseReadiness runs `aiops serve --storage clickhouse`
// against a private ClickHouse: while the server is down, /readyz stays
// ready (the ClickHouse store's write-ahead log takes the data) and says
// degraded, and recovers when it is back; data sent before and during
// the outage is all queryable afterwards.
func TestServeOnClickHouseReadiness(t *testing.T) {
	ch := chtest.Start(t)
	db := ch.NewDatabase(t)
	cfgPath := filepath.Join(t.TempDir(), "aiops.yaml")
	os.WriteFile(cfgPath, []byte("storage:\n  backend: clickhouse\n  clickhouse:\n    database: "+db+"\n    read_timeout: 5s\n    dial_timeout: 2s\n"), 0o600)
	ts := startServe(t, t.TempDir(), "--config", cfgPath, "--clickhouse-addr", ch.NativeAddr())
	g := newGaugeSender(t, ts.grpc, "billing")
	g.send(t, 1)

	if err := ch.Kill(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "readyz to say degraded while ClickHouse is down", 90*time.Second, func() bool {
		code, body := ts.readyz(t)
		return code == http.StatusOK && strings.HasPrefix(body, "ready, degraded:")
	})
	// Accepted while ClickHouse is down: it waits in the write-ahead log.
	g.send(t, 2)
	ch.Restart(t)
	testutil.WaitFor(t, "readyz to recover", 90*time.Second, func() bool {
		code, body := ts.readyz(t)
		return code == http.StatusOK && body == "ready\n"
	})
	testutil.WaitFor(t, "both points to be queryable", 90*time.Second, func() bool {
		return ts.query(t, `count_over_time(queue_depth{job="billing"}[10m])`) == "2"
	})
}

// TestServeStartsWhileClickHouseIsDown starts `aiops serve --storage
// clickhouse` while ClickHouse is down: it listens and is ready (degraded)
// at once, takes OTLP points into the ClickHouse store's write-ahead log,
// answers queries with a clear error, and once ClickHouse is up creates
// the schema and stores every point.
func TestServeStartsWhileClickHouseIsDown(t *testing.T) {
	ch := chtest.Start(t)
	db := ch.NewDatabase(t)
	if err := ch.Kill(); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(t.TempDir(), "aiops.yaml")
	os.WriteFile(cfgPath, []byte("storage:\n  backend: clickhouse\n  clickhouse:\n    database: "+db+"\n    read_timeout: 5s\n    dial_timeout: 2s\n"), 0o600)
	ts := startServe(t, t.TempDir(), "--config", cfgPath, "--clickhouse-addr", ch.NativeAddr())
	if code, body := ts.readyz(t); code != http.StatusOK || !strings.HasPrefix(body, "ready, degraded:") {
		t.Errorf("/readyz with ClickHouse down: %d %q, want 200 saying degraded", code, body)
	}
	// Five series, one point each.
	for i := range 5 {
		newGaugeSender(t, ts.grpc, fmt.Sprintf("early%d", i)).send(t, int64(i))
	}
	if code, body := ts.get(t, "/api/v1/query?query=up", ts.token); code == http.StatusOK || !bytes.Contains(body, []byte("not connected")) {
		t.Errorf("query with ClickHouse down: %d %s, want an error saying why", code, body)
	}

	ch.Restart(t)
	testutil.WaitFor(t, "readyz to say ready", 90*time.Second, func() bool {
		code, body := ts.readyz(t)
		return code == http.StatusOK && body == "ready\n"
	})
	testutil.Eventually(t, 90*time.Second, "every point to be queryable", func() (bool, string) {
		got := ts.query(t, `count(last_over_time(queue_depth{job=~"early."}[10m]))`)
		return got == "5", fmt.Sprintf("%q series, want 5; log:\n%s", got, ts.stderr)
	})
}

// TestServeAlertsBecomeIncidents runs the whole alerting path of one
// server: a rule fires, the embedded Alertmanager groups it, an incident
// opens and is served by the REST API; a read token may look but not act,
// a write token acknowledges (and is audited); and the real amtool works
// against the server's Alertmanager API with a bearer token.
func TestServeAlertsBecomeIncidents(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yml")
	os.WriteFile(rules, []byte(`groups:
  - name: e2e
    interval: 500ms
    rules:
      - alert: CheckoutDown
        expr: vector(1)
        labels: {severity: critical, service: checkout}
        annotations: {summary: checkout is down}
`), 0o600)
	amConf := filepath.Join(dir, "alertmanager.yml")
	os.WriteFile(amConf, []byte("route:\n  receiver: oncall\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: oncall\n"), 0o600)
	cfg := filepath.Join(dir, "aiops.yaml")
	os.WriteFile(cfg, []byte("alerting:\n  rule_files: ["+rules+"]\n  alertmanager_config_file: "+amConf+"\n  evaluation_interval: 500ms\n"), 0o600)
	dataDir := filepath.Join(dir, "data")
	ts := startServe(t, dataDir, "--config", cfg)

	var list struct {
		Incidents []struct {
			ID, Status, Service, Severity string
		} `json:"incidents"`
	}
	testutil.WaitFor(t, "the rule's alert to open an incident", 90*time.Second, func() bool {
		code, body := ts.get(t, "/api/v1/incidents?status=open", ts.token)
		if code != http.StatusOK {
			t.Fatalf("list incidents: %d %s", code, body)
		}
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatalf("list incidents: %v: %s", err, body)
		}
		return len(list.Incidents) == 1
	})
	inc := list.Incidents[0]
	if inc.Service != "checkout" || inc.Severity != "critical" {
		t.Errorf("incident = %+v, want service checkout, severity critical", inc)
	}

	var tokens [2]string
	for i, scopes := range []string{"read", "write"} {
		var out bytes.Buffer
		if code := run(context.Background(), []string{"token", "create", "--data-dir", dataDir, "--name", "e2e-" + scopes, "--scopes", scopes}, &out, io.Discard); code != 0 {
			t.Fatalf("token create: exit %d", code)
		}
		tokens[i] = strings.SplitN(out.String(), "\n", 2)[0]
	}
	reader, writer := tokens[0], tokens[1]
	post := func(path, token string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+ts.http+path, strings.NewReader(`{"comment":"on it"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ackPath := "/api/v1/incidents/" + inc.ID + "/acknowledge"
	if code, _ := ts.get(t, "/api/v1/incidents/"+inc.ID, reader); code != http.StatusOK {
		t.Errorf("read token GET incident: %d", code)
	}
	if code := post(ackPath, reader); code != http.StatusForbidden {
		t.Errorf("read token acknowledge: %d, want 403", code)
	}
	if code := post(ackPath, ""); code != http.StatusUnauthorized {
		t.Errorf("acknowledge without a token: %d, want 401", code)
	}
	if code := post(ackPath, writer); code != http.StatusOK {
		t.Errorf("write token acknowledge: %d, want 200", code)
	}
	code, body := ts.get(t, "/api/v1/incidents/"+inc.ID, reader)
	if code != http.StatusOK || !bytes.Contains(body, []byte(`"status":"acknowledged"`)) {
		t.Errorf("after acknowledge: %d %s", code, body)
	}

	// amtool, the real Alertmanager client, against the server.
	httpConf := filepath.Join(dir, "amtool-http.yml")
	os.WriteFile(httpConf, []byte("authorization:\n  type: Bearer\n  credentials: "+writer+"\n"), 0o600)
	amtool := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(clitest.Amtool(t), append([]string{"--alertmanager.url=http://" + ts.http, "--http.config.file=" + httpConf}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("amtool %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := amtool("alert", "query", "alertname=CheckoutDown"); !strings.Contains(out, "CheckoutDown") {
		t.Errorf("amtool alert query:\n%s", out)
	}
	id := strings.TrimSpace(amtool("silence", "add", "alertname=CheckoutDown", "--comment=maintenance", "--duration=1h", "--author=e2e"))
	if out := amtool("silence", "query", "-q"); !strings.Contains(out, id) {
		t.Errorf("amtool silence query does not list %s:\n%s", id, out)
	}

	// Write actions are audited under the token's id, never its secret.
	code, body = ts.get(t, "/api/v1/incidents/"+inc.ID+"/timeline", reader)
	if code != http.StatusOK || bytes.Contains(body, []byte(writer)) {
		t.Errorf("timeline: %d, or it holds the token", code)
	}
	if strings.Contains(ts.stderr.String(), writer) || strings.Contains(ts.stderr.String(), reader) {
		t.Error("a token appears in the server log")
	}
}

// TestServeKeepsStatePrivate: everything aiops keeps under its data dir
// (aiops.db with audit records and token hashes, the TSDB, the queue,
// alerting and analyzer state, the admin token) is its user's alone:
// directories 0700, files 0600, including what an older aiops left with
// wider permissions.
func TestServeKeepsStatePrivate(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	if err := os.MkdirAll(filepath.Join(dataDir, "alerting"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, "alerting", "rules-state.json"), []byte(`{"version":1,"alerts":[]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	ts := startServe(t, dataDir)
	newGaugeSender(t, ts.grpc, "private").send(t, 1)
	testutil.WaitFor(t, "the point to be stored", 30*time.Second, func() bool {
		return ts.query(t, `queue_depth{job="private"}`) == "1"
	})
	if code := ts.stop(); code != 0 {
		t.Fatalf("serve exited with %d", code)
	}
	seen := map[string]bool{}
	err := filepath.WalkDir(dataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dataDir, path)
		seen[strings.SplitN(rel, string(filepath.Separator), 2)[0]] = true
		if info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want no group or other permissions", rel, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"aiops.db", "tsdb", "queue", "alerting", "admin.token"} {
		if !seen[want] {
			t.Errorf("no %s under the data dir; the test checks less than it should (saw %v)", want, seen)
		}
	}
}
