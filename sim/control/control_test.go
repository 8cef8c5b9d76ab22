package control_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/sim/control"
	"github.com/aiops-dev/aiops/sim/engine"
	"github.com/aiops-dev/aiops/sim/model"
	"github.com/aiops-dev/aiops/sim/truth"
)

const token = "s3cret-token"

type server struct {
	*httptest.Server
	e *engine.Engine
}

func start(t *testing.T) *server {
	t.Helper()
	mc := model.DefaultConfig()
	mc.Start = testutil.Epoch
	e, err := engine.New(engine.Config{Model: mc, Levels: truth.DefaultLevels(), Step: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h, err := control.NewHandler(e, token, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return &server{s, e}
}

type response struct {
	code int
	body map[string]any
	raw  string
}

func (s *server) do(t *testing.T, method, path, body, tok string) response {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{code: resp.StatusCode, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	return r
}

func (s *server) call(t *testing.T, method, path, body string) response {
	t.Helper()
	return s.do(t, method, path, body, token)
}

func TestAuth(t *testing.T) {
	s := start(t)
	for _, tok := range []string{"", "wrong", token + "x", strings.ToUpper(token)} {
		r := s.do(t, "GET", "/state", "", tok)
		if r.code != http.StatusUnauthorized || r.body["error"] == nil {
			t.Errorf("token %q: %d %s, want 401", tok, r.code, r.raw)
		}
	}
	req, _ := http.NewRequest("POST", s.URL+"/services/api/restart", nil)
	req.Header.Set("Authorization", "Basic "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("basic auth: %d %v, want 401 with WWW-Authenticate", resp.StatusCode, resp.Header)
	}
	if r := s.do(t, "GET", "/healthz", "", ""); r.code != 200 {
		t.Errorf("/healthz without a token: %d", r.code)
	}
	if r := s.do(t, "GET", "/openapi.yaml", "", ""); r.code != 200 || !strings.Contains(r.raw, "openapi: 3") {
		t.Errorf("/openapi.yaml: %d", r.code)
	}
	if r := s.call(t, "GET", "/state", ""); r.code != 200 || r.body["services"] == nil {
		t.Errorf("/state with the token: %d %s", r.code, r.raw)
	}
	// Nothing reached the engine without the token.
	for _, ev := range s.e.Timeline().Events {
		t.Errorf("unauthorised request recorded: %+v", ev)
	}
	if _, err := control.NewHandler(s.e, " ", nil); err == nil {
		t.Error("an empty token was accepted")
	}
}

func TestBadInput(t *testing.T) {
	s := start(t)
	for _, tc := range []struct {
		method, path, body string
		code               int
		field              string
	}{
		{"POST", "/services/api/scale", `{"replicas": 10000}`, 400, "replicas"},
		{"POST", "/services/api/scale", `{"replicas": 0}`, 400, "replicas"},
		{"POST", "/services/api/scale", `{"replicas": -3}`, 400, "replicas"},
		{"POST", "/services/api/scale", `{"replicas": "five"}`, 400, "replicas"},
		{"POST", "/services/api/scale", `{"replicas": 2.5}`, 400, "replicas"},
		{"POST", "/services/api/scale", `{}`, 400, "replicas"},
		{"POST", "/services/api/scale", `{"replicas": 4, "force": true}`, 400, "force"},
		{"POST", "/services/api/scale", `not json`, 400, "body"},
		{"POST", "/services/api/scale", ``, 400, "body"},
		{"POST", "/services/api/scale", `{"replicas": 4}{"replicas": 5}`, 400, "body"},
		{"POST", "/services/nope/scale", `{"replicas": 4}`, 404, ""},
		{"POST", "/services/nope/restart", ``, 404, ""},
		{"POST", "/services/api/instances/api-99/restart", ``, 404, ""},
		{"POST", "/services/auth/instances/api-0/restart", ``, 404, ""},
		{"POST", "/services/api/rollback", ``, 409, ""},
		{"POST", "/breakers/nope/trip", ``, 404, ""},
		{"PUT", "/flags/nope", `{"enabled": true}`, 404, ""},
		{"PUT", "/flags/degrade_document_processing", `{"enabled": "yes"}`, 400, "enabled"},
		{"PUT", "/flags/degrade_document_processing", `{}`, 400, "enabled"},
		{"POST", "/volumes/nope/clean", ``, 404, ""},
		{"POST", "/volumes/postgres-data/expand", `{"add_bytes": -1}`, 400, "add_bytes"},
		{"POST", "/volumes/postgres-data/expand", `{"add_bytes": 1e30}`, 400, "add_bytes"},
		{"PUT", "/services/api/rate-limit", `{"route": "POST /v1/auth/login"}`, 400, "per_client_rps"},
		{"PUT", "/services/api/rate-limit", `{"per_client_rps": 1}`, 400, "route"},
		{"PUT", "/services/api/rate-limit", `{"route": "GET /nope", "per_client_rps": 1}`, 404, ""},
		{"PUT", "/services/auth/rate-limit", `{"route": "POST /v1/login", "per_client_rps": 1}`, 400, "service"},
		{"PUT", "/services/api/rate-limit", `{"route": "POST /v1/auth/login", "per_client_rps": -1}`, 400, "per_client_rps"},
		{"POST", "/chaos", `{"fault": "meteor", "duration": "90s"}`, 400, "fault"},
		{"POST", "/chaos", `{"target": "api"}`, 400, "fault"},
		{"POST", "/chaos", `{"fault": "traffic_surge", "duration": "soon"}`, 400, "duration"},
		{"POST", "/chaos", `{"fault": "traffic_surge", "duration": "-5s"}`, 400, "duration"},
		{"POST", "/chaos", `{"fault": "traffic_surge", "start": "tomorrow"}`, 400, "start"},
		{"POST", "/chaos", `{"fault": "traffic_surge", "intensity": 1000}`, 400, "intensity"},
		{"POST", "/chaos", `{"fault": "traffic_surge", "intensity": 0}`, 400, "intensity"},
		{"POST", "/chaos", `{"fault": "traffic_surge", "intensity": "ten"}`, 400, "intensity"},
		{"POST", "/chaos", `{"fault": "traffic_surge", "target": "worker"}`, 400, "target"},
		{"POST", "/chaos", `{"fault": "llm_outage", "target": "api"}`, 400, "target"},
		{"POST", "/chaos", `{"fault": "traffic_surge", "target": "nope"}`, 404, ""},
		{"POST", "/chaos", `{"fault": "cpu_hog", "target": "api-42"}`, 404, ""},
		{"POST", "/chaos", `{"fault": "traffic_surge", "magnitude": 3}`, 400, "magnitude"},
		{"DELETE", "/chaos/f999", ``, 404, ""},
		{"GET", "/chaos/f999", ``, 404, ""},
		{"GET", "/nope", ``, 404, ""},
	} {
		r := s.call(t, tc.method, tc.path, tc.body)
		if r.code != tc.code {
			t.Errorf("%s %s %s: %d %s, want %d", tc.method, tc.path, tc.body, r.code, r.raw, tc.code)
			continue
		}
		msg, _ := r.body["error"].(string)
		if msg == "" {
			t.Errorf("%s %s %s: no error message: %s", tc.method, tc.path, tc.body, r.raw)
		}
		if tc.field != "" && (r.body["field"] != tc.field || !strings.HasPrefix(msg, tc.field+":")) {
			t.Errorf("%s %s %s: error %q (field %v) does not name %s", tc.method, tc.path, tc.body, msg, r.body["field"], tc.field)
		}
	}
	// Refused actions are on the timeline; the engine did not change.
	st := s.e.State()
	if st.Services[0].Replicas != 3 {
		t.Errorf("a refused scale changed the api to %d replicas", st.Services[0].Replicas)
	}
	refused := 0
	for _, ev := range s.e.Timeline().Events {
		if ev.Kind == truth.ActionReceived && ev.Action.Error != "" {
			refused++
		}
	}
	if refused == 0 {
		t.Error("refused actions are not on the timeline")
	}
}

// TestIdempotentActions: repeating an action that is under way or in
// effect does nothing more.
func TestIdempotentActions(t *testing.T) {
	s := start(t)
	process := func(id string) int {
		for _, svc := range s.e.State().Services {
			for _, i := range svc.Instances {
				if i.ID == id {
					return i.Process
				}
			}
		}
		t.Fatalf("no instance %s", id)
		return 0
	}
	before := process("api-1")
	if r := s.call(t, "POST", "/services/api/instances/api-1/restart", ""); r.code != 200 || r.body["outcome"] != "started" {
		t.Fatalf("restart: %d %s", r.code, r.raw)
	}
	for range 3 {
		if r := s.call(t, "POST", "/services/api/instances/api-1/restart", ""); r.code != 200 || r.body["outcome"] != "in_progress" {
			t.Fatalf("repeated restart: %d %s", r.code, r.raw)
		}
	}
	if got := process("api-1"); got != before+1 {
		t.Fatalf("api-1 restarted %d times, want once", got-before)
	}
	// Once ready, a new restart is a new restart.
	for range 5 {
		if _, err := s.e.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if r := s.call(t, "POST", "/services/api/instances/api-1/restart", ""); r.body["outcome"] != "started" || process("api-1") != before+2 {
		t.Fatalf("restart after ready: %s, process %d", r.raw, process("api-1"))
	}

	procs := func() (out []int) {
		for _, i := range s.e.State().Services[1].Instances {
			out = append(out, i.Process)
		}
		return out
	}
	first := procs()
	if r := s.call(t, "POST", "/services/auth/restart", ""); r.body["outcome"] != "started" {
		t.Fatalf("rolling restart: %s", r.raw)
	}
	if r := s.call(t, "POST", "/services/auth/restart", ""); r.body["outcome"] != "in_progress" {
		t.Fatalf("repeated rolling restart: %s", r.raw)
	}
	for range 12 {
		if _, err := s.e.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	after := procs()
	for k := range first {
		if after[k] != first[k]+1 {
			t.Errorf("auth instance %d: process %d → %d, want one restart", k, first[k], after[k])
		}
	}
	if st := s.e.State(); st.Services[1].Rollout != "" || st.Services[1].Ready != 3 {
		t.Errorf("rolling restart did not finish: %+v", st.Services[1])
	}

	for _, want := range []string{"changed", "unchanged"} {
		if r := s.call(t, "POST", "/breakers/llm-openai/trip", ""); r.body["outcome"] != want {
			t.Errorf("trip: %s, want %s", r.raw, want)
		}
	}
	for _, want := range []string{"changed", "unchanged"} {
		if r := s.call(t, "POST", "/services/worker/scale", `{"replicas": 5}`); r.body["outcome"] != want {
			t.Errorf("scale: %s, want %s", r.raw, want)
		}
	}
}

func TestChaos(t *testing.T) {
	s := start(t)
	r := s.call(t, "POST", "/chaos", `{"fault": "traffic_surge", "target": "api", "intensity": 10, "duration": "90s"}`)
	if r.code != http.StatusCreated || r.body["id"] != "f1" || r.body["state"] != "pending" {
		t.Fatalf("inject: %d %s", r.code, r.raw)
	}
	fix, _ := r.body["fix"].(map[string]any)
	if acts, _ := fix["actions"].([]any); len(acts) == 0 {
		t.Errorf("the fault has no fix: %s", r.raw)
	}
	if r := s.call(t, "POST", "/chaos", `{"fault": "db_slow"}`); r.code != 201 {
		t.Fatalf("inject with defaults: %d %s", r.code, r.raw)
	} else if f, _ := r.body["fix"].(map[string]any); f["escalate"] != true || r.body["target"] != "postgres" || r.body["duration"] != "10m0s" {
		t.Errorf("db_slow: %s", r.raw)
	}
	if _, err := s.e.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(s.call(t, "GET", "/chaos", "").raw), &list); err != nil || len(list) != 2 || list[0]["state"] != "active" {
		t.Fatalf("list: %v %v", list, err)
	}
	if r := s.call(t, "DELETE", "/chaos/f1", ""); r.code != 200 || r.body["state"] != "ended" || r.body["end_reason"] != "stopped" {
		t.Fatalf("stop: %d %s", r.code, r.raw)
	}
	if r := s.call(t, "DELETE", "/chaos/f1", ""); r.code != 200 || r.body["state"] != "ended" {
		t.Fatalf("stop again: %d %s", r.code, r.raw)
	}
	if r := s.call(t, "GET", "/chaos/f2", ""); r.code != 200 || r.body["fault"] != "db_slow" {
		t.Fatalf("get: %d %s", r.code, r.raw)
	}
	var cat []map[string]any
	if err := json.Unmarshal([]byte(s.call(t, "GET", "/chaos/catalogue", "").raw), &cat); err != nil || len(cat) != 14 {
		t.Fatalf("catalogue: %d entries, %v", len(cat), err)
	}
	tl := s.call(t, "GET", "/timeline", "")
	if tl.code != 200 || !strings.Contains(tl.raw, `"fault_injected"`) || !strings.Contains(tl.raw, `"fault_ended"`) {
		t.Errorf("timeline: %s", tl.raw)
	}
}

// TestOpenAPIDocumentsEveryRoute: the document and the handler agree.
func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(control.OpenAPI, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	served := map[string]bool{}
	for _, r := range control.Routes() {
		key := strings.ToLower(r.Method) + " " + r.Path
		served[key] = true
		if doc.Paths[r.Path][strings.ToLower(r.Method)] == nil {
			t.Errorf("%s %s is not in openapi.yaml", r.Method, r.Path)
		}
	}
	var documented []string
	for path, ops := range doc.Paths {
		for method := range ops {
			if !served[method+" "+path] {
				documented = append(documented, method+" "+path)
			}
		}
	}
	sort.Strings(documented)
	for _, d := range documented {
		t.Errorf("openapi.yaml documents %s, which is not served", d)
	}
}
