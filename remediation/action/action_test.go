package action

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/sim/chaos"
	"github.com/aiops-dev/aiops/sim/control"
	"github.com/aiops-dev/aiops/sim/engine"
	"github.com/aiops-dev/aiops/sim/model"
	"github.com/aiops-dev/aiops/sim/truth"
)

func params(kv ...string) Params {
	p := Params{}
	for i := 0; i+1 < len(kv); i += 2 {
		p[kv[i]] = Value{Str: kv[i+1]}
	}
	return p
}

// simulator serves the workflow engine simulator's control API.
func simulator(t *testing.T) (*engine.Engine, string) {
	t.Helper()
	mc := model.DefaultConfig()
	mc.Start = testutil.Epoch
	e, err := engine.New(engine.Config{Model: mc, Levels: truth.DefaultLevels(), Step: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h, err := control.NewHandler(e, "sim-token", testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return e, s.URL
}

// TestWorkflowDriver drives the simulator's real control API: every
// action lands on the timeline as the control API names it; refusals are
// permanent, a wrong token too; scaling is clamped to its bounds.
func TestWorkflowDriver(t *testing.T) {
	e, url := simulator(t)
	w, err := NewWorkflow(WorkflowConfig{URL: url, Token: Static("sim-token")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, c := range []struct {
		action  string
		p       Params
		want    chaos.Action
		outcome string
	}{
		{"workflow.restart_instance", params("service", "api", "instance", "api-1"), chaos.Action{Action: chaos.ActRestartInstance, Target: "api/api-1"}, "started"},
		{"workflow.restart_service", params("service", "auth"), chaos.Action{Action: chaos.ActRestartService, Target: "auth"}, "started"},
		{"workflow.scale", params("service", "api", "replicas", "40", "max", "12"), chaos.Action{Action: chaos.ActScale, Target: "api", Params: map[string]string{"replicas": "12"}}, ""},
		{"workflow.trip_breaker", params("breaker", "llm-openai"), chaos.Action{Action: chaos.ActTripBreaker, Target: "llm-openai"}, ""},
		{"workflow.reset_breaker", params("breaker", "llm-openai"), chaos.Action{Action: chaos.ActResetBreaker, Target: "llm-openai"}, ""},
		{"workflow.set_flag", params("flag", "degrade_document_processing", "enabled", "true"), chaos.Action{Action: chaos.ActSetFlag, Target: "degrade_document_processing", Params: map[string]string{"enabled": "true"}}, ""},
		{"workflow.rate_limit", params("service", "api", "route", "POST /v1/auth/login", "per_client_rps", "0.05"), chaos.Action{Action: chaos.ActSetRateLimit, Target: "api", Params: map[string]string{"route": "POST /v1/auth/login", "per_client_rps": "0.05"}}, ""},
		{"workflow.expand_volume", params("volume", "postgres-data", "add_bytes", "1073741824"), chaos.Action{Action: chaos.ActExpandVolume, Target: "postgres-data", Params: map[string]string{"add_bytes": "1073741824"}}, ""},
		{"workflow.clean_volume", params("volume", "postgres-data"), chaos.Action{Action: chaos.ActCleanVolume, Target: "postgres-data"}, ""},
	} {
		res, err := w.Do(ctx, Call{Action: c.action, Params: c.p})
		if err != nil {
			t.Fatalf("%s: %v", c.action, err)
		}
		if c.outcome != "" && res.Outcome != c.outcome {
			t.Errorf("%s: outcome %q, want %q", c.action, res.Outcome, c.outcome)
		}
		tl := e.Timeline()
		last := tl.Events[len(tl.Events)-1]
		if last.Action == nil || last.Action.Action.Action != c.want.Action || last.Action.Target != c.want.Target {
			t.Fatalf("%s: the simulator received %+v, want %+v", c.action, last.Action, c.want)
		}
		for k, v := range c.want.Params {
			if last.Action.Params[k] != v {
				t.Errorf("%s: param %s = %q, want %q", c.action, k, last.Action.Params[k], v)
			}
		}
	}
	// Restarting an instance already starting does nothing more.
	if res, err := w.Do(ctx, Call{Action: "workflow.restart_instance", Params: params("service", "api", "instance", "api-1")}); err != nil || res.Outcome != "in_progress" {
		t.Errorf("repeated restart: %+v %v", res, err)
	}
	for _, c := range []Call{
		{Action: "workflow.restart_service", Params: params("service", "nosuch")},
		{Action: "workflow.scale", Params: params("service", "api", "replicas", "many")},
		{Action: "workflow.scale", Params: params("service", "api", "replicas", "4", "min", "5", "max", "3")},
		{Action: "workflow.restart_instance", Params: params("service", "api")},
		{Action: "workflow.rollback", Params: params("service", "api")}, // 409: no previous version
	} {
		if _, err := w.Do(ctx, c); !errors.Is(err, ErrPermanent) {
			t.Errorf("%s %v: %v, want a permanent error", c.Action, c.Params, err)
		}
	}
	bad, _ := NewWorkflow(WorkflowConfig{URL: url, Token: Static("wrong-token")})
	_, err = bad.Do(ctx, Call{Action: "workflow.restart_service", Params: params("service", "api")})
	if !errors.Is(err, ErrPermanent) || strings.Contains(err.Error(), "wrong-token") {
		t.Errorf("wrong token: %v", err)
	}
	if _, err := NewWorkflow(WorkflowConfig{URL: "localhost:8088", Token: Static("x")}); err == nil {
		t.Error("a URL without a scheme is accepted")
	}
}

func TestKubernetesDriver(t *testing.T) {
	replicas := int32(3)
	minR := int32(2)
	cs := fake.NewClientset(
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "prod"}, Spec: appsv1.DeploymentSpec{Replicas: &replicas}},
		&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "prod"}, Spec: appsv1.StatefulSetSpec{Replicas: &replicas}},
		&autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "prod"},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{MinReplicas: &minR, MaxReplicas: 10}},
		&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "api-7f9c-x2", Namespace: "prod"}},
		&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "api", Namespace: "kube-system"}, Spec: appsv1.DeploymentSpec{Replicas: &replicas}},
	)
	k, err := NewKubernetesWith(cs, []string{"prod"}, func() time.Time { return testutil.Epoch })
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	get := func() *appsv1.Deployment {
		d, err := cs.AppsV1().Deployments("prod").Get(ctx, "api", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	// Rollout restart: the annotation kubectl sets, from the call's key.
	call := Call{Action: "kubernetes.rollout_restart", Params: params("namespace", "prod", "kind", "Deployment", "name", "api"), Key: "2026-03-10T10:00:00Z"}
	if _, err := k.Do(ctx, call); err != nil {
		t.Fatal(err)
	}
	if got := get().Spec.Template.Annotations[RestartedAtAnnotation]; got != "2026-03-10T10:00:00Z" {
		t.Fatalf("restartedAt = %q", got)
	}
	gen := get().ResourceVersion
	if _, err := k.Do(ctx, call); err != nil {
		t.Fatal(err)
	}
	if got := get().Spec.Template.Annotations[RestartedAtAnnotation]; got != "2026-03-10T10:00:00Z" {
		t.Fatalf("a repeated call changed restartedAt to %q (resource version %s)", got, gen)
	}

	// Scale within bounds, both required.
	res, err := k.Do(ctx, Call{Action: "kubernetes.scale", Params: params("namespace", "prod", "kind", "Deployment", "name", "api", "replicas", "50", "min", "2", "max", "8")})
	if err != nil || *get().Spec.Replicas != 8 || res.Outcome != "scaled" {
		t.Fatalf("scale: %+v %v, replicas %d", res, err, *get().Spec.Replicas)
	}
	if _, err := k.Do(ctx, Call{Action: "kubernetes.scale", Params: params("namespace", "prod", "kind", "StatefulSet", "name", "db", "replicas", "0", "min", "1", "max", "5")}); err != nil {
		t.Fatal(err)
	}
	if s, _ := cs.AppsV1().StatefulSets("prod").Get(ctx, "db", metav1.GetOptions{}); *s.Spec.Replicas != 1 {
		t.Fatalf("statefulset replicas %d, want the lower bound 1", *s.Spec.Replicas)
	}
	if _, err := k.Do(ctx, Call{Action: "kubernetes.scale", Params: params("namespace", "prod", "kind", "Deployment", "name", "api", "replicas", "5")}); !errors.Is(err, ErrPermanent) {
		t.Errorf("scale without bounds: %v", err)
	}

	// HPA: min and max, min above max refused.
	if _, err := k.Do(ctx, Call{Action: "kubernetes.patch_hpa", Params: params("namespace", "prod", "name", "api", "min_replicas", "4", "max_replicas", "20")}); err != nil {
		t.Fatal(err)
	}
	hpa, _ := cs.AutoscalingV2().HorizontalPodAutoscalers("prod").Get(ctx, "api", metav1.GetOptions{})
	if *hpa.Spec.MinReplicas != 4 || hpa.Spec.MaxReplicas != 20 {
		t.Fatalf("hpa %d..%d", *hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	if _, err := k.Do(ctx, Call{Action: "kubernetes.patch_hpa", Params: params("namespace", "prod", "name", "api", "min_replicas", "30")}); !errors.Is(err, ErrPermanent) {
		t.Errorf("min above max: %v", err)
	}

	// Delete a pod by name; gone already is fine.
	for range 2 {
		if _, err := k.Do(ctx, Call{Action: "kubernetes.delete_pod", Params: params("namespace", "prod", "name", "api-7f9c-x2")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().Pods("prod").Get(ctx, "api-7f9c-x2", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("pod still there: %v", err)
	}

	// Only the namespaces configured; names are required (never a selector).
	if _, err := k.Do(ctx, Call{Action: "kubernetes.rollout_restart", Params: params("namespace", "kube-system", "kind", "Deployment", "name", "api")}); !errors.Is(err, ErrPermanent) {
		t.Errorf("other namespace: %v", err)
	}
	if _, err := k.Do(ctx, Call{Action: "kubernetes.delete_pod", Params: params("namespace", "prod", "name", "")}); !errors.Is(err, ErrPermanent) {
		t.Errorf("no name: %v", err)
	}
	if _, err := k.Do(ctx, Call{Action: "kubernetes.rollout_restart", Params: params("namespace", "prod", "kind", "Deployment", "name", "nosuch")}); !errors.Is(err, ErrPermanent) {
		t.Errorf("missing deployment: %v", err)
	}
	if _, err := NewKubernetesWith(cs, nil, nil); err == nil {
		t.Error("no namespaces accepted")
	}
}

func TestWebhookDriver(t *testing.T) {
	var (
		mu       sync.Mutex
		attempts int
		keys     []string
		bodies   []string
		auth     string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		auth = r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/flaky":
			if attempts < 3 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			io.WriteString(w, "ok")
		case "/refuse":
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	wh, err := NewWebhook(WebhookConfig{AllowedURLPrefixes: []string{srv.URL + "/"}, MaxAttempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p := params("url", srv.URL+"/flaky", "body", `{"a":1}`)
	p["headers"] = Value{Map: map[string]string{"Authorization": "Bearer tok-123"}}
	res, err := wh.Do(ctx, Call{Action: "webhook", Params: p, Key: "ex-1/steps[0]"})
	if err != nil || res.Outcome != "sent" || attempts != 3 {
		t.Fatalf("flaky endpoint: %+v %v after %d attempts", res, err, attempts)
	}
	if keys[0] != "ex-1/steps[0]" || keys[2] != keys[0] || bodies[2] != `{"a":1}` || auth != "Bearer tok-123" {
		t.Errorf("keys %v bodies %v auth %q", keys, bodies, auth)
	}
	attempts = 0
	if _, err := wh.Do(ctx, Call{Action: "webhook", Params: params("url", srv.URL+"/refuse")}); !errors.Is(err, ErrPermanent) || attempts != 1 {
		t.Errorf("400: %v after %d attempts", err, attempts)
	}
	// A URL outside the allowed prefixes, or one carrying a secret in a
	// query, never shows the secret in the error.
	_, err = wh.Do(ctx, Call{Action: "webhook", Params: params("url", "https://evil.example.com/x?token=s3cr3t")})
	if !errors.Is(err, ErrPermanent) || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("outside the prefixes: %v", err)
	}
	open, _ := NewWebhook(WebhookConfig{MaxAttempts: 1})
	_, err = open.Do(ctx, Call{Action: "webhook", Params: params("url", "http://127.0.0.1:1/hook?token=s3cr3t")})
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("unreachable: %v", err)
	}
}

func TestExecDriver(t *testing.T) {
	e, err := NewExec(ExecConfig{Allowed: []string{"/bin/echo", "/bin/false"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// No shell: what would be expanded by one is one argument, printed.
	p := params("command", "/bin/echo")
	p["args"] = Value{List: []string{"restart", "$(touch /tmp/pwned); `id`", "*"}}
	res, err := e.Do(ctx, Call{Action: "exec", Params: p})
	if err != nil || res.Detail != "restart $(touch /tmp/pwned); `id` *" {
		t.Fatalf("%+v %v", res, err)
	}
	if _, err := e.Do(ctx, Call{Action: "exec", Params: params("command", "/bin/sh")}); !errors.Is(err, ErrPermanent) {
		t.Errorf("a command not allowed: %v", err)
	}
	if _, err := e.Do(ctx, Call{Action: "exec", Params: params("command", "/bin/../bin/echo")}); !errors.Is(err, ErrPermanent) {
		t.Errorf("an unclean path: %v", err)
	}
	if _, err := e.Do(ctx, Call{Action: "exec", Params: params("command", "/bin/false")}); err == nil || errors.Is(err, ErrPermanent) {
		t.Errorf("a failing command: %v", err)
	}
	if _, err := NewExec(ExecConfig{Allowed: []string{"echo"}}); err == nil {
		t.Error("a relative command is allowed")
	}
}

// TestBreakers: consecutive failures open the breaker for that driver
// and target only; refusals do not count.
func TestBreakers(t *testing.T) {
	var calls atomic.Int32
	fail := true
	next := DriverFunc(func(_ context.Context, c Call) (Result, error) {
		calls.Add(1)
		if c.Params.String("refuse") != "" {
			return Result{}, Permanent(errors.New("no"))
		}
		if fail {
			return Result{}, errors.New("500")
		}
		return Result{Outcome: "done"}, nil
	})
	b := NewBreakers(next, BreakerConfig{Failures: 3, OpenFor: time.Hour})
	ctx := context.Background()
	api := Call{Action: "workflow.restart_service", Target: map[string]string{"service": "api"}}
	for range 3 {
		if _, err := b.Do(ctx, api); err == nil || errors.Is(err, ErrBreakerOpen) {
			t.Fatalf("before opening: %v", err)
		}
	}
	if _, err := b.Do(ctx, api); !errors.Is(err, ErrBreakerOpen) || calls.Load() != 3 {
		t.Fatalf("after 3 failures: %v, %d calls", err, calls.Load())
	}
	if got := b.Open(); len(got) != 1 || got[0] != "workflow{service=api}" {
		t.Errorf("open breakers %v", got)
	}
	fail = false
	if _, err := b.Do(ctx, Call{Action: "workflow.restart_service", Target: map[string]string{"service": "auth"}}); err != nil {
		t.Errorf("another target: %v", err)
	}
	refuse := Call{Action: "workflow.scale", Target: map[string]string{"service": "worker"}, Params: params("refuse", "1")}
	for range 5 {
		if _, err := b.Do(ctx, refuse); errors.Is(err, ErrBreakerOpen) {
			t.Fatal("refusals opened the breaker")
		}
	}
}

func TestNotifyAndWait(t *testing.T) {
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Header.Get("Authorization")+" "+string(b))
	}))
	defer srv.Close()
	n, err := NewNotify(NotifyConfig{Channels: map[string]Channel{"oncall": {URL: Static(srv.URL), Token: Static("t")}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if res, err := n.Do(ctx, Call{Action: "notify", Params: params("message", "api restarted")}); err != nil || res.Outcome != "sent" {
		t.Fatalf("%+v %v", res, err)
	}
	if len(got) != 1 || got[0] != `Bearer t {"text":"api restarted"}` {
		t.Errorf("sent %q", got)
	}
	p := params("message", "x")
	p["channels"] = Value{List: []string{"nosuch"}}
	if _, err := n.Do(ctx, Call{Action: "notify", Params: p}); !errors.Is(err, ErrPermanent) {
		t.Errorf("unknown channel: %v", err)
	}
	none, _ := NewNotify(NotifyConfig{})
	if res, err := none.Do(ctx, Call{Action: "notify", Params: params("message", "x")}); err != nil || res.Outcome != "recorded" {
		t.Errorf("no channels: %+v %v", res, err)
	}
	var slept time.Duration
	w := Wait{Sleep: func(_ context.Context, d time.Duration) error { slept = d; return nil }}
	if _, err := w.Do(ctx, Call{Action: "wait", Params: params("duration", "90s")}); err != nil || slept != 90*time.Second {
		t.Errorf("wait: %v %s", err, slept)
	}
}

// TestWorkflowPathSegments: a parameter that lands in the control API's
// path is one segment, whatever it holds. Target labels come from
// telemetry (a query over what services send), so an instance named ".."
// must not become /services/api/restart (every instance) once a proxy or
// router cleans the path, and "a/b" must arrive as the name "a/b", not
// as "a%2Fb" escaped twice. Found from outside by reading the requests
// aiops serve sent the simulator for targets rendered from labels.
func TestWorkflowPathSegments(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.RequestURI)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"outcome":"started"}`)
	}))
	t.Cleanup(srv.Close)
	w, err := NewWorkflow(WorkflowConfig{URL: srv.URL + "/control/", Token: Static("sim-token")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, bad := range []string{"..", "."} {
		_, err := w.Do(ctx, Call{Action: "workflow.restart_instance", Params: params("service", "api", "instance", bad)})
		if !errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "instance") {
			t.Errorf("instance %q: %v, want a permanent error naming instance", bad, err)
		}
		_, err = w.Do(ctx, Call{Action: "workflow.restart_service", Params: params("service", bad)})
		if !errors.Is(err, ErrPermanent) {
			t.Errorf("service %q: %v, want a permanent error", bad, err)
		}
	}
	mu.Lock()
	if len(seen) != 0 {
		t.Fatalf("requests sent for dot segments: %v", seen)
	}
	mu.Unlock()
	for in, want := range map[string]string{
		"a/b":      "/control/services/api/instances/a%2Fb/restart",
		"x?y#z":    "/control/services/api/instances/x%3Fy%23z/restart",
		"%2e%2e":   "/control/services/api/instances/%252e%252e/restart",
		"api-1":    "/control/services/api/instances/api-1/restart",
		"a b":      "/control/services/api/instances/a%20b/restart",
		"..%2Fapi": "/control/services/api/instances/..%252Fapi/restart",
	} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		if _, err := w.Do(ctx, Call{Action: "workflow.restart_instance", Params: params("service", "api", "instance", in)}); err != nil {
			t.Fatalf("instance %q: %v", in, err)
		}
		mu.Lock()
		if len(seen) != 1 || seen[0] != want {
			t.Errorf("instance %q sent as %v, want %s", in, seen, want)
		}
		mu.Unlock()
	}
}

// TestWebhookPrefixCannotBeEscaped: the allow-list holds for URLs that a
// template fills from alert labels. Found reviewing the driver after the
// workflow driver's dot segments: a raw string prefix let
// https://hooks/aiops/../admin through (a server cleans it to /admin),
// a prefix without its slash let https://hooks.example.com.evil.net in,
// and a redirect from an allowed endpoint took the request, with its
// headers, anywhere.
func TestWebhookPrefixCannotBeEscaped(t *testing.T) {
	var hits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(other.Close)
	allowed := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/redirect") {
			http.Redirect(w, r, other.URL+"/stolen", http.StatusTemporaryRedirect)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(allowed.Close)
	w, err := NewWebhook(WebhookConfig{AllowedURLPrefixes: []string{allowed.URL + "/aiops/", "https://hooks.example.com"}, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, u := range []string{
		allowed.URL + "/aiops/../admin",
		allowed.URL + "/aiops/%2e%2e/admin",
		allowed.URL + "/aiops/x/../../admin",
		"https://hooks.example.com.evil.net/x",
		"https://hooks.example.com@evil.net/x",
		"https://user@hooks.example.com/x",
	} {
		_, err := w.Do(ctx, Call{Action: "webhook", Params: params("url", u)})
		if !errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "allowed") {
			t.Errorf("%s: %v, want refused as not under an allowed prefix", u, err)
		}
	}
	for _, u := range []string{allowed.URL + "/aiops/restart", allowed.URL + "/aiops/a..b", "https://HOOKS.example.com/x"} {
		_, err := w.Do(ctx, Call{Action: "webhook", Params: params("url", u)})
		if err != nil && strings.Contains(err.Error(), "allowed prefix") {
			t.Errorf("%s: refused: %v", u, err)
		}
	}
	if _, err := w.Do(ctx, Call{Action: "webhook", Params: params("url", allowed.URL+"/aiops/redirect")}); err == nil {
		t.Error("a redirect away from the allowed prefix was followed as success")
	}
	if hits.Load() != 0 {
		t.Fatalf("the redirect target got %d requests", hits.Load())
	}
}
