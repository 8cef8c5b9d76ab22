package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"

	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"

	"github.com/aiops-dev/aiops/api/auth"
	"github.com/aiops-dev/aiops/api/promapi"
	"github.com/aiops-dev/aiops/internal/restapi"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/remediation/action"
	"github.com/aiops-dev/aiops/remediation/engine"
	"github.com/aiops-dev/aiops/remediation/runbook"
	"github.com/aiops-dev/aiops/storage"
)

const secretValue = "hunter2-SECRET-7781"

const runbooks = `runbooks:
  - name: rollback-api
    description: roll the api back
    trigger: {manual: true}
    target: {service: api}
    steps:
      - action: webhook
        params:
          url: https://deploys.example.com/rollback
          headers: {Authorization: 'Bearer {{ secret "deploy" }}'}
        verify: {expr: vector(1), within: 1m}
    secrets:
      deploy: {env: DEPLOY_TOKEN}
    safety:
      approval: {required: true, approvers: [alice], timeout: 10m}
`

type env struct {
	t      *testing.T
	store  storage.Store
	eng    *engine.Engine
	api    *API
	srv    *httptest.Server
	tokens map[string]string
	v      validator.Validator
	calls  chan action.Call
}

func newEnv(t *testing.T) *env {
	t.Helper()
	s := storetest.Embedded(t)
	rbs, ps := runbook.Parse("rb.yml", []byte(runbooks))
	if ps = append(ps, runbook.Validate(rbs, runbook.ValidateOptions{})...); len(ps) > 0 {
		t.Fatal(ps)
	}
	pe, err := promapi.NewEngine(promapi.DefaultConfig(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pe.Close() })
	e := &env{t: t, store: s, tokens: map[string]string{}, calls: make(chan action.Call, 10)}
	eng, err := engine.New(context.Background(), engine.Config{Runbooks: rbs}, engine.Deps{
		Events: s, Query: engine.PromQuerier{Engine: pe, Queryable: s},
		Actions: action.DriverFunc(func(_ context.Context, c action.Call) (action.Result, error) {
			e.calls <- c
			return action.Result{Outcome: "sent"}, nil
		}),
		Secrets: runbook.SecretSource{Getenv: func(k string) (string, bool) { return secretValue, k == "DEPLOY_TOKEN" }},
		Logger:  testutil.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.eng = eng
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	a, err := New(Options{Engine: eng, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	e.api = a
	ts := auth.NewTokenStore(s, nil)
	for name, scopes := range map[string][]auth.Scope{
		"reader": {auth.ScopeRead}, "writer": {auth.ScopeWrite}, "runner": {auth.ScopeExecute},
		"alice": {auth.ScopeApprove}, "bob": {auth.ScopeApprove}, "admin": {auth.ScopeAdmin},
	} {
		tok, _, err := ts.Create(ctx, name, scopes, 0, "test")
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[name] = tok
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Handler", "prometheus")
		w.WriteHeader(http.StatusTeapot)
	})
	a.Mount(mux)
	policy := func(r *http.Request) (auth.Scope, bool) {
		if need, ok := a.Scope(r); ok {
			return need, false
		}
		if r.Method == http.MethodGet {
			return auth.ScopeRead, false
		}
		return auth.ScopeWrite, false
	}
	guard := &auth.Middleware{Auth: auth.Chain{ts}, Policy: policy, Audit: &auth.EventAuditor{Events: s, Logger: testutil.Logger(t)},
		WriteError: auth.JSONError, Logger: testutil.Logger(t)}
	e.srv = httptest.NewServer(guard.Wrap(mux))
	t.Cleanup(e.srv.Close)
	doc, err := libopenapi.NewDocument(a.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(doc, config.WithFormatAssertions())
	if len(errs) > 0 {
		t.Fatalf("OpenAPI validator: %v", errs)
	}
	e.v = v
	return e
}

type resp struct {
	status int
	body   []byte
}

var validatorMu sync.Mutex

func (e *env) do(method, path, who string, body any) resp {
	e.t.Helper()
	var raw []byte
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		raw, ct = []byte(b), "application/yaml"
	default:
		raw, _ = json.Marshal(b)
	}
	req, _ := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(raw))
	if raw != nil {
		req.Header.Set("Content-Type", ct)
	}
	if who != "" {
		req.Header.Set("Authorization", "Bearer "+e.tokens[who])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	documented := false
	for _, rt := range e.api.routes() {
		documented = documented || rt.method == method && restapi.PathMatches(rt.path, req.URL.Path)
	}
	if documented && res.StatusCode != http.StatusUnauthorized && res.StatusCode != http.StatusForbidden {
		u, _ := url.Parse(req.URL.String())
		vreq := &http.Request{Method: method, URL: u, Header: req.Header, Body: io.NopCloser(bytes.NewReader(raw))}
		vres := &http.Response{StatusCode: res.StatusCode, Header: res.Header, Body: io.NopCloser(bytes.NewReader(out)), Request: vreq}
		validatorMu.Lock()
		if ok, errs := e.v.ValidateHttpResponse(vreq, vres); !ok {
			var msgs []string
			for _, x := range errs {
				msgs = append(msgs, x.Error())
			}
			e.t.Errorf("%s %s: %d does not fit the OpenAPI document: %s\n%s", method, path, res.StatusCode, strings.Join(msgs, "; "), out)
		}
		validatorMu.Unlock()
	}
	return resp{res.StatusCode, out}
}

func (r resp) want(t *testing.T, status int) resp {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	return r
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// TestScopes: reading, executing and approving are separate; write does
// not imply execute or approve; releasing the kill switch needs admin.
func TestScopes(t *testing.T) {
	e := newEnv(t)
	e.do("GET", "/api/v1/runbooks", "reader", nil).want(t, 200)
	run := map[string]any{"target": map[string]string{"service": "api"}}
	for _, who := range []string{"reader", "writer", "alice"} {
		e.do("POST", "/api/v1/runbooks/rollback-api/run", who, run).want(t, http.StatusForbidden)
	}
	var x engine.Execution
	e.do("POST", "/api/v1/runbooks/rollback-api/run", "runner", run).want(t, http.StatusCreated).decode(t, &x)
	if x.State != engine.StatePendingApproval || x.Trigger.RequestedBy == "" {
		t.Fatalf("execution %+v", x)
	}
	for _, who := range []string{"reader", "writer", "runner"} {
		e.do("POST", "/api/v1/executions/"+x.ID+"/approve", who, nil).want(t, http.StatusForbidden)
	}
	// bob has the scope but is not an approver of this runbook.
	e.do("POST", "/api/v1/executions/"+x.ID+"/approve", "bob", nil).want(t, http.StatusForbidden)
	e.do("POST", "/api/v1/executions/"+x.ID+"/approve", "alice", map[string]string{"comment": "go"}).want(t, 200)
	select {
	case c := <-e.calls:
		if c.Params["headers"].Map["Authorization"] != "Bearer "+secretValue {
			t.Fatalf("the action did not get the secret")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the approved run did not act")
	}
	testutil.Eventually(t, 10*time.Second, "succeeded", func() (bool, string) {
		var got struct{ Execution engine.Execution }
		e.do("GET", "/api/v1/executions/"+x.ID, "reader", nil).want(t, 200).decode(t, &got)
		return got.Execution.State == engine.StateSucceeded, string(got.Execution.State)
	})
	e.do("POST", "/api/v1/executions/"+x.ID+"/approve", "alice", nil).want(t, http.StatusConflict)

	e.do("POST", "/api/v1/remediation/kill_switch/engage", "writer", map[string]string{"reason": "x"}).want(t, http.StatusForbidden)
	e.do("POST", "/api/v1/remediation/kill_switch/engage", "runner", map[string]string{}).want(t, http.StatusBadRequest)
	e.do("POST", "/api/v1/remediation/kill_switch/engage", "runner", map[string]string{"reason": "game day"}).want(t, 200)
	var refused apiError
	e.do("POST", "/api/v1/runbooks/rollback-api/run", "runner", run).want(t, http.StatusConflict).decode(t, &refused)
	if refused.Rail != engine.RailKillSwitch {
		t.Fatalf("refusal %+v", refused)
	}
	e.do("POST", "/api/v1/remediation/kill_switch/release", "runner", nil).want(t, http.StatusForbidden)
	var k engine.KillSwitch
	e.do("POST", "/api/v1/remediation/kill_switch/release", "admin", map[string]string{"reason": "over"}).want(t, 200).decode(t, &k)
	if k.Engaged {
		t.Fatal("still engaged")
	}
}

// TestEndpoints: listing, filters, dry runs, validation, errors; every
// answer fits the OpenAPI document, and no answer or audit record holds
// a secret.
func TestEndpoints(t *testing.T) {
	e := newEnv(t)
	var list struct{ Runbooks []map[string]any }
	e.do("GET", "/api/v1/runbooks", "reader", nil).want(t, 200).decode(t, &list)
	if len(list.Runbooks) != 1 || list.Runbooks[0]["name"] != "rollback-api" || list.Runbooks[0]["source"].(map[string]any)["line"].(float64) != 2 {
		t.Fatalf("runbooks %+v", list)
	}
	e.do("GET", "/api/v1/runbooks/rollback-api", "reader", nil).want(t, 200)
	e.do("GET", "/api/v1/runbooks/nosuch", "reader", nil).want(t, 404)

	var plan struct {
		DryRun bool        `json:"dry_run"`
		Plan   engine.Plan `json:"plan"`
	}
	e.do("POST", "/api/v1/runbooks/rollback-api/run", "runner", map[string]any{"target": map[string]string{"service": "api"}, "dry_run": true}).want(t, 200).decode(t, &plan)
	if !plan.DryRun || len(plan.Plan.Steps) != 1 || plan.Plan.Steps[0].Params["headers"] != "{Authorization:Bearer <secret:deploy>}" || plan.Plan.Approval == nil {
		t.Fatalf("plan %+v", plan)
	}
	if len(e.eng.List(engine.Filter{})) != 0 {
		t.Fatal("a dry run created an execution")
	}
	e.do("POST", "/api/v1/runbooks/rollback-api/run", "runner", map[string]any{"target": map[string]string{}}).want(t, 400)
	e.do("POST", "/api/v1/runbooks/rollback-api/run", "runner", map[string]any{"target": map[string]string{"service": "*"}}).want(t, 409)
	e.do("POST", "/api/v1/runbooks/rollback-api/run", "runner", map[string]any{"target": map[string]string{"service": "api"}, "bogus": 1}).want(t, 400)
	e.do("POST", "/api/v1/runbooks/nosuch/run", "runner", map[string]any{"target": map[string]string{"service": "api"}}).want(t, 404)

	var x engine.Execution
	e.do("POST", "/api/v1/runbooks/rollback-api/run", "runner", map[string]any{"target": map[string]string{"service": "api"}}).want(t, 201).decode(t, &x)
	var xs struct{ Executions []engine.Execution }
	e.do("GET", "/api/v1/executions?state=pending_approval&runbook=rollback-api", "reader", nil).want(t, 200).decode(t, &xs)
	if len(xs.Executions) != 1 {
		t.Fatalf("executions %+v", xs)
	}
	e.do("GET", "/api/v1/executions?state=sleeping", "reader", nil).want(t, 400)
	e.do("GET", "/api/v1/executions?limit=0", "reader", nil).want(t, 400)
	e.do("POST", "/api/v1/executions/"+x.ID+"/deny", "alice", map[string]string{"reason": "not now"}).want(t, 200)
	e.do("POST", "/api/v1/executions/nosuch/cancel", "runner", nil).want(t, 404)
	e.do("GET", "/api/v1/remediation/kill_switch", "reader", nil).want(t, 200)
	e.do("GET", "/api/v1/remediation/records", "reader", nil).want(t, 200)
	e.do("GET", "/api/v1/remediation/actions", "reader", nil).want(t, 200)
	e.do("GET", "/api/v1/remediation/refusals?since=1h", "reader", nil).want(t, 200)
	e.do("GET", "/api/v1/remediation/refusals?since=yesterday", "reader", nil).want(t, 400)
	e.do("GET", "/api/v1/remediation/openapi.json", "reader", nil).want(t, 200)
	e.do("DELETE", "/api/v1/executions/"+x.ID, "admin", nil).want(t, 405)
	e.do("GET", "/api/v1/executions/"+x.ID+"/nothing", "reader", nil).want(t, 404)
	// Prometheus's routes stay Prometheus's.
	if r := e.do("GET", "/api/v1/query", "reader", nil); r.status != http.StatusTeapot {
		t.Fatalf("/api/v1/query answered %d", r.status)
	}

	var val struct {
		Valid    bool
		Problems []runbook.Problem
	}
	e.do("POST", "/api/v1/runbooks/validate?file=mine.yml", "reader", "runbooks:\n  - name: a\n    trigger: {alert: A}\n    target: {x: y}\n    steps:\n      - action: nope\n").want(t, 200).decode(t, &val)
	found := false
	for _, p := range val.Problems {
		found = found || p.File == "mine.yml" && p.Line == 6 && p.Column == 17 && p.Class == runbook.ClassAction
	}
	if val.Valid || !found {
		t.Fatalf("validate %+v", val)
	}
	e.do("POST", "/api/v1/runbooks/validate", "reader", runbooks).want(t, 200).decode(t, &val)
	if !val.Valid {
		t.Fatalf("the shipped example is not valid: %+v", val.Problems)
	}

	// Every answer so far, every audit record: no secret.
	evs, err := e.store.QueryEvents(context.Background(), storage.EventQuery{Limit: 100000})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if strings.Contains(string(ev.Payload), secretValue) {
			t.Errorf("the secret is in a %s event", ev.Kind)
		}
	}
	for _, p := range []string{"/api/v1/executions", "/api/v1/executions/" + x.ID, "/api/v1/runbooks", "/api/v1/remediation/refusals"} {
		if r := e.do("GET", p, "reader", nil); bytes.Contains(r.body, []byte(secretValue)) {
			t.Errorf("the secret is in GET %s", p)
		}
	}
}

// TestOpenAPICoversRoutes: every route is in the document and every path
// of the document is a route.
func TestOpenAPICoversRoutes(t *testing.T) {
	a, err := New(Options{Engine: &engine.Engine{}})
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(a.OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, rt := range a.routes() {
		ops, ok := doc.Paths[rt.path]
		if !ok || ops[strings.ToLower(rt.method)] == nil {
			t.Errorf("%s %s is not in openapi.yaml", rt.method, rt.path)
		}
		seen[rt.path] = true
	}
	for p := range doc.Paths {
		if !seen[p] {
			t.Errorf("openapi.yaml has %s, which is no route", p)
		}
	}

}
