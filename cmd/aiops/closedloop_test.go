package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/sim/control"
	simengine "github.com/aiops-dev/aiops/sim/engine"
	"github.com/aiops-dev/aiops/sim/scenario"
	"github.com/aiops-dev/aiops/sim/telemetry"
	"github.com/aiops-dev/aiops/sim/truth"
)

// simStep is the simulator's step and export interval in the closed-loop
// test, and aiops's rule evaluation interval.
const simStep = time.Second

// startSim runs the simulated workflow engine in-process as
// cmd/workflow-sim runs it, sending its telemetry over OTLP/gRPC to
// otlpAddr and serving its control API on ln. Its clock starts history
// before now: that stretch is simulated at once (aiops takes the old
// points within its out-of-order window), then it runs in real time.
func startSim(t *testing.T, otlpAddr string, ln net.Listener, token string, history time.Duration) *simengine.Engine {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	sc := scenario.Default()
	opts := telemetry.DefaultOptions()
	opts.Seed = 7
	var err error
	if opts.Metrics, err = otlpmetricgrpc.New(ctx, otlpmetricgrpc.WithEndpoint(otlpAddr), otlpmetricgrpc.WithInsecure()); err != nil {
		t.Fatal(err)
	}
	if opts.Spans, err = otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(otlpAddr), otlptracegrpc.WithInsecure()); err != nil {
		t.Fatal(err)
	}
	if opts.Logs, err = otlploggrpc.New(ctx, otlploggrpc.WithEndpoint(otlpAddr), otlploggrpc.WithInsecure()); err != nil {
		t.Fatal(err)
	}
	cfg := simengine.Config{Model: sc.Engine, Levels: sc.ServiceLevels, Step: simStep, Telemetry: &opts, Logger: testutil.Logger(t)}
	cfg.Model.Seed = 7
	cfg.Model.Start = time.Now().Add(-history).Truncate(simStep)
	eng, err := simengine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := control.NewHandler(eng, token, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	if err := eng.RunFor(ctx, time.Since(cfg.Model.Start).Truncate(simStep)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); eng.Run(ctx, time.Now) }()
	t.Cleanup(func() {
		cancel()
		<-done
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		eng.Shutdown(sctx)
	})
	return eng
}

// TestClosedLoop is the whole loop with real parts: the simulated
// workflow engine sends its telemetry over OTLP to `aiops serve` (the
// embedded store, the shipped rules and runbooks); a fault with a fix is
// injected through the simulator's chaos API; the shipped rule fires, an
// incident opens, the shipped runbook acts through the simulator's
// control API, its verification holds, the simulator is healthy again by
// its own judgement, and the incident resolves as fixed by the run. Then
// the rails on the live server: the same run again is refused by the
// cooldown, a dry run plans and does nothing, the kill switch refuses
// runs until an admin releases it, a read token may not run at all, a run
// needing approval waits for its approver, and the run limit refuses.
// (Every rail is covered case by case in remediation/engine.)
func TestClosedLoop(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const simToken = "closed-loop-sim-token"
	tokenFile := filepath.Join(dir, "sim.token")
	os.WriteFile(tokenFile, []byte(simToken+"\n"), 0o600)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	simURL := "http://" + ln.Addr().String()
	amConf := filepath.Join(dir, "alertmanager.yml")
	os.WriteFile(amConf, []byte("route:\n  receiver: oncall\n  group_by: [alertname, job]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: oncall\n"), 0o600)
	// A runbook of the test's own, for the approval and run-limit rails.
	extra := filepath.Join(dir, "extra.yml")
	os.WriteFile(extra, []byte(`runbooks:
  - name: flag-with-approval
    description: Degrade a feature once a person approves.
    trigger: {manual: true}
    target: {flag: '{{ $labels.flag }}'}
    steps:
      - action: workflow.set_flag
        params: {flag: '{{ $target.flag }}', enabled: 'true'}
        verify: {expr: vector(1), within: 1m}
    safety:
      approval: {required: true, approvers: [loop-approver], timeout: 10m}
      cooldown: 1h
      max_runs: {count: 1, window: 1h}
`), 0o600)
	cfg := filepath.Join(dir, "aiops.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`alerting:
  rule_files: [%q]
  alertmanager_config_file: %q
  evaluation_interval: 1s
  external_url: http://aiops.test
incidents:
  auto_resolve_after: 5m
  service_labels: [service, service_name, job]
remediation:
  runbook_files: [%q, %q]
  condition_interval: 5s
  drivers:
    workflow:
      url: %s
      token: {file: %q}
`, filepath.Join(root, "deploy/rules/*.yml"), amConf, filepath.Join(root, "deploy/runbooks/*.yml"), extra, simURL, tokenFile)), 0o600)
	dataDir := filepath.Join(dir, "data")
	ts := startServe(t, dataDir, "--config", cfg)
	sim := startSim(t, ts.grpc, ln, simToken, 10*time.Minute)

	api := func(method, path, token, body string) (int, []byte) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, "http://"+ts.http+path, rd)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	firing := func() string { return ts.query(t, `count(ALERTS{alertstate="firing"})`) }

	// Quiet first: the simulator healthy, no alert firing.
	testutil.Eventually(t, 3*time.Minute, "a healthy, quiet start", func() (bool, string) {
		h := sim.Health()
		n := firing()
		series := ts.query(t, `count(target_info)`)
		return h.Healthy && n == "" && series != "", fmt.Sprintf("healthy %v, firing %q, %s resources stored", h.Healthy, n, series)
	})

	// A broken configuration on one api replica; its fix is a restart.
	req, _ := http.NewRequest(http.MethodPost, simURL+"/chaos", strings.NewReader(`{"fault": "bad_config", "target": "api-1", "duration": "30m"}`))
	req.Header.Set("Authorization", "Bearer "+simToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("inject: %s", resp.Status)
	}
	injected := sim.Now()

	actions := func() []truth.Event {
		var out []truth.Event
		for _, ev := range sim.Timeline().Events {
			if ev.Kind == truth.ActionReceived && !ev.Time.Before(injected) {
				out = append(out, ev)
			}
		}
		return out
	}
	type execution struct {
		ID, Runbook, State, Reason string
		Target                     map[string]string
		Trigger                    struct {
			IncidentID string `json:"incident_id"`
		}
	}
	var fixed execution
	// The shipped rule looks at the last minute (telemetry every second):
	// it fires within a minute, the run acts at once and its check holds
	// for a minute.
	testutil.Eventually(t, 8*time.Minute, "the runbook fixed the fault", func() (bool, string) {
		code, body := api(http.MethodGet, "/api/v1/executions", ts.token, "")
		var out struct{ Executions []execution }
		if code != http.StatusOK || json.Unmarshal(body, &out) != nil {
			return false, fmt.Sprintf("%d %s", code, body)
		}
		for _, x := range out.Executions {
			if x.Runbook == "restart-failing-instance" && x.State == "succeeded" {
				fixed = x
				return true, ""
			}
		}
		return false, fmt.Sprintf("executions %s; firing %s; sim healthy %v", body, firing(), sim.Health().Healthy)
	})
	if fixed.Target["instance"] != "api-1" {
		t.Errorf("the run targeted %v, want api-1", fixed.Target)
	}
	acts := actions()
	if len(acts) != 1 || acts[0].Action.Action.Action != "restart_instance" || acts[0].Action.Target != "api/api-1" {
		t.Fatalf("the simulator received %+v, want one restart of api-1", acts)
	}
	testutil.Eventually(t, time.Minute, "the simulator healthy again", func() (bool, string) {
		return sim.Health().Healthy, "unhealthy"
	})

	// The incident resolves itself as fixed by the run once the alert
	// clears (the errors leave the rule's 1-minute window).
	testutil.Eventually(t, 6*time.Minute, "the incident resolved by the runbook", func() (bool, string) {
		code, body := api(http.MethodGet, "/api/v1/incidents/"+fixed.Trigger.IncidentID, ts.token, "")
		var inc struct {
			Status  string
			FixedBy *struct {
				RunID   string `json:"run_id"`
				Runbook string
			} `json:"fixed_by"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &inc) != nil {
			return false, fmt.Sprintf("%d %s", code, body)
		}
		return inc.Status == "resolved" && inc.FixedBy != nil && inc.FixedBy.RunID == fixed.ID,
			fmt.Sprintf("status %s fixed_by %+v; firing %s", inc.Status, inc.FixedBy, firing())
	})

	// The rails on the live server.
	var tokens [3]string
	for i, scopes := range []string{"read", "execute", "approve"} {
		var out strings.Builder
		name := "loop-" + scopes
		if scopes == "approve" {
			name = "loop-approver"
		}
		if code := run(context.Background(), []string{"token", "create", "--data-dir", dataDir, "--name", name, "--scopes", scopes}, &out, io.Discard); code != 0 {
			t.Fatalf("token create: exit %d", code)
		}
		tokens[i] = strings.SplitN(out.String(), "\n", 2)[0]
	}
	reader, executor, approver := tokens[0], tokens[1], tokens[2]
	refused := func(code int, body []byte, rail string) {
		t.Helper()
		var e struct{ Rail string }
		if json.Unmarshal(body, &e); code != http.StatusConflict || e.Rail != rail {
			t.Errorf("want a refusal by %s, got %d %s", rail, code, body)
		}
	}
	code, body := api(http.MethodPost, "/api/v1/runbooks/restart-failing-instance/run", executor, `{"target": {"service": "api", "instance": "api-1"}}`)
	refused(code, body, "cooldown")
	code, body = api(http.MethodPost, "/api/v1/runbooks/trip-failing-llm-breaker/run", executor, `{"target": {"breaker": "llm-openai"}, "dry_run": true}`)
	if code != http.StatusOK || !strings.Contains(string(body), `"dry_run":true`) || !strings.Contains(string(body), "trip_breaker") {
		t.Errorf("dry run: %d %s", code, body)
	}
	if code, body := api(http.MethodPost, "/api/v1/runbooks/trip-failing-llm-breaker/run", reader, `{"target": {"breaker": "llm-openai"}}`); code != http.StatusForbidden {
		t.Errorf("a read token runs a runbook: %d %s", code, body)
	}
	if code, body := api(http.MethodPost, "/api/v1/remediation/kill_switch/engage", executor, `{"reason": "closed-loop test"}`); code != http.StatusOK {
		t.Fatalf("engage: %d %s", code, body)
	}
	code, body = api(http.MethodPost, "/api/v1/runbooks/trip-failing-llm-breaker/run", executor, `{"target": {"breaker": "llm-openai"}}`)
	refused(code, body, "kill_switch")
	if code, _ := api(http.MethodPost, "/api/v1/remediation/kill_switch/release", executor, `{}`); code != http.StatusForbidden {
		t.Errorf("an execute token released the kill switch: %d", code)
	}
	if code, body := api(http.MethodPost, "/api/v1/remediation/kill_switch/release", ts.token, `{"reason": "done"}`); code != http.StatusOK {
		t.Errorf("release: %d %s", code, body)
	}
	if n := len(actions()); n != 1 {
		t.Errorf("the simulator received %d actions, want the one fix: %+v", n, actions())
	}

	// Approval: the run waits for the approver; nobody else may approve.
	code, body = api(http.MethodPost, "/api/v1/runbooks/flag-with-approval/run", executor, `{"target": {"flag": "degrade_document_processing"}}`)
	var pending execution
	if json.Unmarshal(body, &pending); code != http.StatusCreated || pending.State != "pending_approval" {
		t.Fatalf("a run needing approval: %d %s", code, body)
	}
	if n := len(actions()); n != 1 {
		t.Errorf("the simulator was acted on before the approval: %+v", actions())
	}
	if code, body := api(http.MethodPost, "/api/v1/executions/"+pending.ID+"/approve", executor, `{}`); code != http.StatusForbidden {
		t.Errorf("an execute token approved: %d %s", code, body)
	}
	if code, body := api(http.MethodPost, "/api/v1/executions/"+pending.ID+"/approve", approver, `{"comment": "go"}`); code != http.StatusOK {
		t.Fatalf("approve: %d %s", code, body)
	}
	testutil.Eventually(t, time.Minute, "the approved run done", func() (bool, string) {
		_, body := api(http.MethodGet, "/api/v1/executions/"+pending.ID, reader, "")
		return strings.Contains(string(body), `"state":"succeeded"`) && len(actions()) == 2, string(body)
	})
	if a := actions()[1]; a.Action.Action.Action != "set_flag" {
		t.Errorf("the approved run did %+v", a.Action)
	}
	// The run limit (one an hour) refuses another target; nothing acts.
	code, body = api(http.MethodPost, "/api/v1/runbooks/flag-with-approval/run", executor, `{"target": {"flag": "another_flag"}}`)
	refused(code, body, "max_runs")
	if n := len(actions()); n != 2 {
		t.Errorf("the simulator received %d actions, want 2: %+v", n, actions())
	}
	if strings.Contains(ts.stderr.String(), simToken) {
		t.Error("the simulator's token is in the server log")
	}
}
