package runbook

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"

	"github.com/aiops-dev/aiops/internal/testutil"
)

// good is a runbook with every section, lint-clean.
const good = `runbooks:
  - name: restart-failing-instance
    description: one instance answers errors; restart it
    trigger:
      alert: HighErrorRate
      matchers: ['job="api"']
    target:
      service: '{{ $labels.job }}'
      instance: '{{ $labels.instance }}'
    preconditions:
      - name: no deploy under way
        expr: count(count by (service_version) (target_info{job="{{ $target.service }}"})) == 1
    steps:
      - name: restart
        action: workflow.restart_instance
        params:
          service: '{{ $target.service }}'
          instance: '{{ $target.instance }}'
        timeout: 30s
        retries: 2
        idempotent: true
        verify:
          expr: |
            sum(rate(http_server_request_duration_seconds_count{job="{{ $target.service }}",http_response_status_code=~"5.."}[1m]))
              / sum(rate(http_server_request_duration_seconds_count{job="{{ $target.service }}"}[1m])) < 0.01
          for: 1m
          within: 5m
      - name: page
        action: webhook
        params:
          url: https://hooks.example.com/page
          headers:
            Authorization: 'Bearer {{ secret "hook" }}'
          body: '{"instance": "{{ $target.instance }}"}'
        verify:
          expr: vector(1)
          within: 1m
    escalate:
      message: 'restarting {{ $target.instance }} did not help'
      notify: [oncall]
    safety:
      approval: {required: true, approvers: [alice], timeout: 10m}
      cooldown: 30m
      max_runs: {count: 3, window: 1h}
      lease_ttl: 5m
      blast_radius:
        max_targets: 1
        max_fraction: 0.5
        population: count(up{job="{{ $target.service }}"})
        min_healthy: count(up{job="{{ $target.service }}"} == 1) >= 2
      maintenance_windows:
        - {name: weekly, days: [sun], start: "02:00", duration: 2h, time_zone: Europe/Berlin}
        - {name: migration, start: "2026-03-01T00:00:00Z", end: "2026-03-01T06:00:00Z"}
    secrets:
      hook: {env: HOOK_TOKEN}
`

func load(t *testing.T, text string) ([]Runbook, Problems) {
	t.Helper()
	rbs, ps := Parse("rb.yml", []byte(text))
	if len(ps) > 0 {
		return nil, ps
	}
	return rbs, Validate(rbs, ValidateOptions{})
}

func TestGoodRunbook(t *testing.T) {
	rbs, ps := load(t, good)
	if len(ps) > 0 {
		t.Fatalf("problems in a good runbook:\n%v", ps)
	}
	rb := rbs[0]
	if rb.Source.File != "rb.yml" || rb.Source.Line != 2 || rb.Source.Column != 11 {
		t.Errorf("source %+v", rb.Source)
	}
	if p := rb.Source.Pos("steps[1].params.headers.Authorization"); p.Line != 33 {
		t.Errorf("position of a header: %+v", p)
	}
	if rb.Trigger.Kind() != TriggerAlert || rb.FailureMode(0) != OnFailureNext || rb.FailureMode(1) != OnFailureEscalate {
		t.Errorf("trigger %q, failure modes %q %q", rb.Trigger.Kind(), rb.FailureMode(0), rb.FailureMode(1))
	}
	if rb.Steps[1].Params["headers"].Kind != KindMap || rb.Steps[0].Params["service"].Kind != KindString {
		t.Errorf("params %+v", rb.Steps[1].Params)
	}
}

// TestLintClasses: each class of error is reported at the line of the
// offending value (and, for PromQL without templates, at its column).
func TestLintClasses(t *testing.T) {
	for _, c := range []struct {
		name, yaml string
		line, col  int
		class      string
		msg        string
	}{
		{"unknown key", `runbooks:
  - name: a
    trigger: {alert: A}
    target: {service: x}
    stpes: []
`, 5, 5, ClassUnknownKey, `did you mean "steps"`},
		{"unknown key deep", `runbooks:
  - name: a
    trigger: {alert: A}
    target: {service: x}
    steps:
      - action: wait
        params: {duration: 1s}
        verify: {expr: up, within: 1m, fro: 1m}
`, 8, 40, ClassUnknownKey, `"fro"`},
		{"bad duration", `runbooks:
  - name: a
    safety:
      cooldown: 5 minutes
`, 4, 17, ClassType, "duration"},
		{"bad PromQL", `runbooks:
  - name: a
    trigger: {alert: A}
    target: {service: x}
    steps:
      - action: workflow.restart_service
        params: {service: x}
        verify:
          expr: sum(rate(x[1m])) <
          within: 1m
    safety: {cooldown: 1m, max_runs: {count: 1, window: 1h}}
`, 9, 35, ClassPromQL, "unexpected end of input"},
		{"bad PromQL in a block", `runbooks:
  - name: a
    trigger: {alert: A}
    target: {service: x}
    preconditions:
      - expr: |
          up
            and on() foo{
    steps:
      - action: workflow.restart_service
        params: {service: x}
        verify: {expr: up, within: 1m}
    safety: {cooldown: 1m, max_runs: {count: 1, window: 1h}}
`, 8, 26, ClassPromQL, "inside braces"},
		{"bad matcher", `runbooks:
  - name: a
    trigger:
      alert: A
      matchers: ['job="api"', 'job=~"(api"']
    target: {service: x}
    steps:
      - action: notify
        params: {message: hi}
        verify: {expr: up, within: 1m}
`, 5, 31, ClassMatcher, "bad matcher"},
		{"unknown action", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: x}
    steps:
      - action: workflow.restrat_service
        params: {service: x}
        verify: {expr: up, within: 1m}
`, 6, 17, ClassAction, `did you mean "workflow.restart_service"`},
		{"unknown parameter", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: x}
    steps:
      - action: workflow.scale
        params: {service: x, replicas: 3, replica: 4}
        verify: {expr: up, within: 1m}
`, 7, 52, ClassAction, `no parameter "replica"`},
		{"no verify", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: x}
    steps:
      - action: workflow.restart_service
        params: {service: x}
`, 6, 7, ClassVerify, "no step has a verify"},
		{"last change unverified", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: x}
    steps:
      - action: workflow.restart_service
        params: {service: x}
        verify: {expr: up, within: 1m}
      - action: workflow.scale
        params: {service: x, replicas: 4}
`, 9, 9, ClassVerify, "has no verify"},
		{"verify cannot hold", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: x}
    steps:
      - action: workflow.restart_service
        params: {service: x}
        verify: {expr: up, for: 10m, within: 5m}
`, 8, 46, ClassVerify, "shorter than for"},
		{"no cooldown", `runbooks:
  - name: a
    trigger: {alert: A}
    target: {service: x}
    steps:
      - action: workflow.restart_service
        params: {service: x}
        verify: {expr: up, within: 1m}
    safety:
      max_runs: {count: 1, window: 1h}
`, 10, 7, ClassUnsafe, "no cooldown"},
		// A template reading a target label the runbook does not define
		// renders empty and a step acts on that: found from outside, `aiops
		// runbook lint` said OK to params {service: '{{ $target.nope }}'}.
		{"missing target field", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: x}
    steps:
      - action: workflow.restart_service
        params: {service: '{{ $target.servce }}'}
        verify: {expr: up, within: 1m}
`, 7, 27, ClassTemplate, `$target.servce: the target has no label "servce" (it has service)`},
		{"target reads itself", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: x, instance: '{{ $target.service }}-0'}
    steps:
      - action: workflow.restart_service
        params: {service: x}
        verify: {expr: up, within: 1m}
`, 4, 36, ClassTemplate, `$target is empty while the target renders`},
		{"missing target field in verify", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: x}
    steps:
      - action: workflow.restart_service
        params: {service: x}
        verify: {expr: 'up{job="{{ $target.job }}"}', within: 1m}
`, 8, 24, ClassTemplate, `the target has no label "job"`},
		{"too many retries", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: x}
    steps:
      - action: workflow.restart_service
        params: {service: x}
        retries: 50
        verify: {expr: up, within: 1m}
`, 8, 18, ClassUnsafe, "retries"},
		{"secret in a target", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: '{{ secret "x" }}'}
    secrets: {x: {env: X}}
    steps:
      - action: notify
        params: {message: hi}
        verify: {expr: up, within: 1m}
`, 4, 23, ClassUnsafe, "must not read a secret"},
		{"undeclared secret", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: x}
    steps:
      - action: webhook
        params: {url: 'https://x/{{ secret "tok" }}'}
        verify: {expr: up, within: 1m}
`, 7, 23, ClassTemplate, `secret "tok" is not declared`},
		{"bad template", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: '{{ $labels.job }'}
    steps:
      - action: notify
        params: {message: hi}
        verify: {expr: up, within: 1m}
`, 4, 23, ClassTemplate, "unexpected"},
		{"missing parameter", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: x}
    steps:
      - action: workflow.restart_instance
        params: {service: x}
        verify: {expr: up, within: 1m}
`, 7, 17, ClassRequired, `"instance"`},
		{"wrong parameter type", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: x}
    steps:
      - action: workflow.scale
        params: {service: x, replicas: many}
        verify: {expr: up, within: 1m}
`, 7, 40, ClassType, "must be an integer"},
		{"two triggers", `runbooks:
  - name: a
    trigger: {alert: A, manual: true}
    target: {service: x}
    steps:
      - action: notify
        params: {message: hi}
        verify: {expr: up, within: 1m}
`, 3, 14, ClassRequired, "exactly one"},
		{"empty target", `runbooks:
  - name: a
    trigger: {manual: true}
    steps:
      - action: notify
        params: {message: hi}
        verify: {expr: up, within: 1m}
`, 2, 11, ClassRequired, "never \"everything\""},
		{"duplicate name", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: x}
    steps:
      - action: notify
        params: {message: hi}
        verify: {expr: up, within: 1m}
  - name: a
    trigger: {manual: true}
    target: {service: x}
    steps:
      - action: notify
        params: {message: hi}
        verify: {expr: up, within: 1m}
`, 9, 11, ClassDuplicate, "also defined at rb.yml:2"},
		{"bad window", `runbooks:
  - name: a
    trigger: {manual: true}
    target: {service: x}
    steps:
      - action: notify
        params: {message: hi}
        verify: {expr: up, within: 1m}
    safety:
      maintenance_windows:
        - days: [sun, funday]
          start: "02:00"
          duration: 1h
`, 11, 17, ClassValue, "funday"},
		{"syntax", "runbooks:\n  - name: a\n    x: y: z\n", 3, 1, ClassSyntax, "mapping values"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ps := load(t, c.yaml)
			for _, p := range ps {
				if p.Class == c.class && p.Line == c.line && p.Column == c.col && strings.Contains(p.Message, c.msg) {
					if p.File != "rb.yml" {
						t.Errorf("file %q", p.File)
					}
					return
				}
			}
			t.Fatalf("want %s at %d:%d containing %q; got:\n%v", c.class, c.line, c.col, c.msg, ps)
		})
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := writeFile(dir+"/"+name, text); err != nil {
			t.Fatal(err)
		}
	}
	write("a.yml", good)
	write("b.yml", "runbooks:\n  - name: b\n    bogus: 1\n")
	rbs, ps, err := LoadFiles(dir + "/*.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(rbs) != 1 || rbs[0].Name != "restart-failing-instance" {
		t.Errorf("runbooks %d", len(rbs))
	}
	if len(ps) != 1 || ps[0].Class != ClassUnknownKey || ps[0].Runbook != "b" || ps[0].Field != "bogus" || !strings.HasSuffix(ps[0].File, "b.yml") {
		t.Errorf("problems %+v", ps)
	}
	if _, _, err := LoadFiles(dir + "/missing.yml"); err == nil {
		t.Error("a missing file is not an error")
	}
}

// TestRenderSecrets: a secret's value reaches the action's parameters
// and nothing else; errors that would echo it are redacted.
func TestRenderSecrets(t *testing.T) {
	rbs, ps := load(t, good)
	if len(ps) > 0 {
		t.Fatal(ps)
	}
	rb := &rbs[0]
	const value = "s3cr3t-t0ken-value"
	sec, err := SecretSource{Getenv: func(k string) (string, bool) { return value, k == "HOOK_TOKEN" }}.Resolve(rb.Secrets)
	if err != nil {
		t.Fatal(err)
	}
	r := &Renderer{}
	d := Data{Labels: map[string]string{"job": "api", "instance": "api-1"}}
	target, err := r.RenderTarget(context.Background(), rb, d, testutil.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	d.Target = target
	st, err := r.RenderStep(context.Background(), rb, rb.Steps[1], "steps[1]", d, testutil.Epoch, sec)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Params["headers"].Map["Authorization"]; got != "Bearer "+value {
		t.Errorf("action gets %q", got)
	}
	if got := st.Masked["headers"].Map["Authorization"]; got != "Bearer <secret:hook>" {
		t.Errorf("masked %q", got)
	}
	for _, s := range []string{fmt.Sprint(st.Masked), fmt.Sprint(FormatParams(st.Masked)), sec.String(), fmt.Sprintf("%v %+v", sec, sec)} {
		if strings.Contains(s, value) {
			t.Errorf("secret shows in %q", s)
		}
	}
	if got := sec.Redact("401 for Bearer " + value); got != "401 for Bearer <secret:hook>" {
		t.Errorf("redacted %q", got)
	}
	if _, err := (SecretSource{Getenv: func(string) (string, bool) { return "", false }}).Resolve(rb.Secrets); err == nil || !strings.Contains(err.Error(), "HOOK_TOKEN") {
		t.Errorf("unset variable: %v", err)
	}
	// A template that fails after reading a secret must not echo it.
	_, err = r.Render(context.Background(), "x", `{{ secret "hook" | printf "%s" | query }}`, d, testutil.Epoch, sec)
	if err == nil || strings.Contains(err.Error(), value) {
		t.Errorf("failing template: %v", err)
	}
}

func TestRenderQueryAndTargets(t *testing.T) {
	r := &Renderer{Query: func(_ context.Context, q string, ts time.Time) (promql.Vector, error) {
		if !ts.Equal(testutil.Epoch) {
			t.Errorf("query at %s", ts)
		}
		return promql.Vector{{Metric: labels.FromStrings("instance", "api-2"), F: 7}}, nil
	}}
	out, err := r.Render(context.Background(), "x", `{{ with query "up" }}{{ (first .).Labels.instance }}={{ (first .).Value }}{{ end }}`, Data{}, testutil.Epoch, nil)
	if err != nil || out.Value != "api-2=7" {
		t.Fatalf("%+v %v", out, err)
	}
	rb := &Runbook{Target: map[string]string{"service": "{{ $labels.job }}"}}
	if _, err := r.RenderTarget(context.Background(), rb, Data{}, testutil.Epoch); err == nil || !strings.Contains(err.Error(), "rendered empty") {
		t.Errorf("empty target: %v", err)
	}
	rb.Target["service"] = `{{ "*" }}`
	if _, err := r.RenderTarget(context.Background(), rb, Data{}, testutil.Epoch); err == nil || !strings.Contains(err.Error(), "everything") {
		t.Errorf("wildcard target: %v", err)
	}
	if !Overlaps(map[string]string{"service": "api"}, map[string]string{"service": "api", "instance": "api-0"}) ||
		Overlaps(map[string]string{"instance": "api-0"}, map[string]string{"service": "api"}) ||
		Overlaps(map[string]string{"service": "api"}, map[string]string{"service": "auth"}) {
		t.Error("Overlaps")
	}
	if TargetKey(map[string]string{"service": "api", "instance": "api-0"}) != "instance=api-0,service=api" {
		t.Error("TargetKey")
	}
}

// TestWindows: weekly windows keep their wall-clock time across daylight
// saving changes; one-off windows are half-open.
func TestWindows(t *testing.T) {
	w := Window{Days: []string{"sun"}, Start: "02:00", Duration: modelDuration(2 * time.Hour), TimeZone: "Europe/Berlin"}
	if err := w.Validate(); err != nil {
		t.Fatal(err)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	for _, c := range []struct {
		at   time.Time
		want bool
	}{
		{time.Date(2026, 3, 22, 2, 30, 0, 0, berlin), true},  // a Sunday, winter time
		{time.Date(2026, 3, 22, 4, 0, 0, 0, berlin), false},  // its end
		{time.Date(2026, 3, 22, 1, 59, 0, 0, berlin), false}, // before
		{time.Date(2026, 3, 23, 2, 30, 0, 0, berlin), false}, // a Monday
		{time.Date(2026, 7, 5, 3, 59, 0, 0, berlin), true},   // a Sunday, summer time
		{time.Date(2026, 7, 5, 0, 30, 0, 0, time.UTC), true}, // 02:30 in Berlin
	} {
		if got := w.Contains(c.at); got != c.want {
			t.Errorf("Contains(%s) = %v", c.at, got)
		}
	}
	long := Window{Days: []string{"fri"}, Start: "22:00", Duration: modelDuration(60 * time.Hour)}
	if !long.Contains(time.Date(2026, 3, 15, 12, 0, 0, 0, time.UTC)) { // Sunday noon
		t.Error("a weekend-long window does not contain Sunday noon")
	}
	once := Window{Start: "2026-03-01T00:00:00Z", End: "2026-03-01T06:00:00Z"}
	if !once.Contains(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)) || once.Contains(time.Date(2026, 3, 1, 6, 0, 0, 0, time.UTC)) {
		t.Error("one-off window bounds")
	}
	for _, at := range testutil.Instants() {
		in := w.Contains(at)
		local := at.In(berlin)
		want := local.Weekday() == time.Sunday && local.Hour() >= 2 && local.Hour() < 4
		if in != want {
			t.Errorf("at %s (%s): %v, want %v", at, local, in, want)
		}
	}
}

func writeFile(name, text string) error { return os.WriteFile(name, []byte(text), 0o644) }

func modelDuration(d time.Duration) model.Duration { return model.Duration(d) }
