package jaeger

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/embedded"
)

type answer struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Code    int    `json:"code"`
		Msg     string `json:"msg"`
		TraceID string `json:"traceID"`
	} `json:"errors"`
}

type env struct {
	t   *testing.T
	srv *httptest.Server
}

// newEnv serves the API over an embedded store holding the trace fixture,
// with the clock an hour after the fixture starts.
func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	s := storetest.Embedded(t, embedded.WithClock(testutil.NewClock(testutil.Epoch).Now))
	if err := s.AppendSpans(context.Background(), storetest.TraceFixture()); err != nil {
		t.Fatal(err)
	}
	return newEnvOn(t, cfg, s)
}

func newEnvOn(t *testing.T, cfg Config, spans Spans) *env {
	t.Helper()
	api, err := New(Options{Config: cfg, Spans: spans, Logger: testutil.Logger(t),
		Now: func() time.Time { return testutil.Epoch.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Mount(mux)
	e := &env{t: t, srv: httptest.NewServer(mux)}
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) get(path string, into any) (int, answer) {
	e.t.Helper()
	res, err := http.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if ct := res.Header.Get("Content-Type"); ct != "application/json" {
		e.t.Errorf("%s: Content-Type %q", path, ct)
	}
	var a answer
	if err := json.Unmarshal(b, &a); err != nil {
		e.t.Fatalf("%s: %v: %s", path, err, b)
	}
	if into != nil && res.StatusCode == http.StatusOK {
		if err := json.Unmarshal(a.Data, into); err != nil {
			e.t.Fatalf("%s: data: %v: %s", path, err, b)
		}
	}
	return res.StatusCode, a
}

func us(t time.Time) string { return fmt.Sprint(t.UnixMicro()) }

func TestServicesAndOperations(t *testing.T) {
	e := newEnv(t, DefaultConfig())
	var services []string
	if code, _ := e.get("/api/services", &services); code != 200 || !slices.Equal(services, []string{"api", "auth", "db", "worker"}) {
		t.Errorf("services: %d %v", code, services)
	}
	var names []string
	if code, _ := e.get("/api/services/db/operations", &names); code != 200 || !slices.Equal(names, []string{"INSERT documents", "SELECT sessions"}) {
		t.Errorf("operations of db: %d %v", code, names)
	}
	if code, _ := e.get("/api/services/nobody/operations", &names); code != 200 || len(names) != 0 {
		t.Errorf("operations of an unknown service: %d %v", code, names)
	}
	var ops []Operation
	if code, _ := e.get("/api/operations?service=auth&spanKind=server", &ops); code != 200 ||
		!slices.Equal(ops, []Operation{{Name: "POST /validate", SpanKind: "server"}}) {
		t.Errorf("server operations of auth: %d %v", code, ops)
	}
	if code, _ := e.get("/api/operations?service=auth&spanKind=client", &ops); code != 200 || len(ops) != 0 {
		t.Errorf("client operations of auth: %d %v", code, ops)
	}
	if code, a := e.get("/api/operations?service=auth&spanKind=sideways", nil); code != 400 || !strings.Contains(a.Errors[0].Msg, "spanKind") {
		t.Errorf("a bad span kind: %d %+v", code, a)
	}
}

// TestTraceByID checks the Jaeger shape of one fixture trace: its spans,
// typed tags, the tags derived from kind, status and scope, events as
// logs, links as references, processes.
func TestTraceByID(t *testing.T) {
	e := newEnv(t, DefaultConfig())
	fixture := storetest.TraceFixture()
	root := fixture[0] // trace 0: error status, an event, a link, trace state
	var traces []Trace
	code, a := e.get("/api/traces/"+root.TraceID, &traces)
	if code != 200 || len(traces) != 1 {
		t.Fatalf("trace: %d %+v", code, a)
	}
	tr := traces[0]
	if tr.TraceID != strings.TrimLeft(root.TraceID[:16], "0")+root.TraceID[16:] && tr.TraceID != root.TraceID[16:] {
		t.Errorf("trace id %s", tr.TraceID)
	}
	if len(tr.Spans) != 3 { // api, auth, db (worker skipped when i%3 == 0)
		t.Fatalf("got %d spans, want 3", len(tr.Spans))
	}
	sp := tr.Spans[0]
	if sp.SpanID != root.SpanID || sp.OperationName != root.Name || sp.StartTime != root.StartTime.UnixMicro() ||
		sp.Duration != root.EndTime.Sub(root.StartTime).Microseconds() {
		t.Errorf("root span %+v", sp)
	}
	tag := func(kvs []KeyValue, key string) (KeyValue, bool) {
		i := slices.IndexFunc(kvs, func(kv KeyValue) bool { return kv.Key == key })
		if i < 0 {
			return KeyValue{}, false
		}
		return kvs[i], true
	}
	for key, want := range map[string]KeyValue{
		"http.response.status_code": {Type: "int64", Value: float64(502)},
		"sampled":                   {Type: "bool", Value: true},
		"ratio":                     {Type: "float64", Value: 0.25},
		"span.kind":                 {Type: "string", Value: "server"},
		"otel.status_code":          {Type: "string", Value: "ERROR"},
		"otel.status_description":   {Type: "string", Value: "upstream failed"},
		"error":                     {Type: "bool", Value: true},
		"otel.scope.name":           {Type: "string", Value: "fastapi"},
		"otel.scope.version":        {Type: "string", Value: "0.1.0"},
		"w3c.tracestate":            {Type: "string", Value: "vendor=a1"},
	} {
		got, ok := tag(sp.Tags, key)
		if !ok || got.Type != want.Type || got.Value != want.Value {
			t.Errorf("tag %s: got %+v (present %v), want %+v", key, got, ok, want)
		}
	}
	if !slices.IsSortedFunc(sp.Tags, func(a, b KeyValue) int { return strings.Compare(a.Key, b.Key) }) {
		t.Errorf("tags not sorted by key: %v", sp.Tags)
	}
	if len(sp.Logs) != 1 || sp.Logs[0].Timestamp != root.Events[0].Time.UnixMicro() ||
		sp.Logs[0].Fields[0] != (KeyValue{Key: "event", Type: "string", Value: "exception"}) {
		t.Errorf("logs %+v", sp.Logs)
	}
	if len(sp.References) != 1 || sp.References[0].RefType != "FOLLOWS_FROM" || sp.References[0].SpanID != "00000000000000aa" {
		t.Errorf("references of the root %+v", sp.References)
	}
	child := tr.Spans[1]
	if len(child.References) != 1 || child.References[0] != (Reference{RefType: "CHILD_OF", TraceID: tr.TraceID, SpanID: root.SpanID}) {
		t.Errorf("references of the child %+v", child.References)
	}
	p, ok := tr.Processes[sp.ProcessID]
	if !ok || p.ServiceName != "api" {
		t.Fatalf("process %q of the root: %+v", sp.ProcessID, tr.Processes)
	}
	if kv, ok := tag(p.Tags, "k8s.pod.ordinal"); !ok || kv.Type != "int64" {
		t.Errorf("process tags %+v", p.Tags)
	}
	if _, ok := tag(p.Tags, "service.name"); ok {
		t.Errorf("service.name is a process tag: %+v", p.Tags)
	}
	if len(tr.Processes) != 3 {
		t.Errorf("%d processes, want 3 (api, auth, db)", len(tr.Processes))
	}

	// The short form of the id finds it too; an unknown id is a 404.
	if code, _ := e.get("/api/traces/"+strings.TrimLeft(root.TraceID, "0"), &traces); code != 200 || len(traces) != 1 {
		t.Errorf("trace by its short id: %d", code)
	}
	if code, a := e.get("/api/traces/0123456789abcdef0123456789abcdef", nil); code != 404 || a.Errors[0].Msg != "trace not found" {
		t.Errorf("an unknown trace: %d %+v", code, a)
	}
	for _, bad := range []string{"xyz", strings.Repeat("a", 33)} {
		if code, _ := e.get("/api/traces/"+bad, nil); code != 400 {
			t.Errorf("trace id %q: %d, want 400", bad, code)
		}
	}
	// Several by id: the missing one is reported in errors.
	code, a = e.get("/api/traces?traceID="+root.TraceID+"&traceID=dead", &traces)
	if code != 200 || len(traces) != 1 || len(a.Errors) != 1 || a.Errors[0].TraceID != "000000000000dead" {
		t.Errorf("traces by id: %d %d traces %+v", code, len(traces), a.Errors)
	}
}

func TestSearch(t *testing.T) {
	e := newEnv(t, DefaultConfig())
	start, end := testutil.Epoch, testutil.Epoch.Add(time.Hour)
	base := "/api/traces?service=api&start=" + us(start) + "&end=" + us(end)
	var traces []Trace
	if code, a := e.get(base+"&limit=5", &traces); code != 200 || len(traces) != 5 {
		t.Fatalf("search: %d %d traces %+v", code, len(traces), a)
	}
	// Newest first: the fixture's traces start 10 s apart.
	for i := 1; i < len(traces); i++ {
		if traces[i-1].Spans[0].StartTime <= traces[i].Spans[0].StartTime {
			t.Errorf("traces not newest first: %d then %d", traces[i-1].Spans[0].StartTime, traces[i].Spans[0].StartTime)
		}
	}
	// error=true is the status; tags are JSON or tag=k:v.
	if code, _ := e.get(base+"&tags="+url.QueryEscape(`{"error":"true"}`), &traces); code != 200 || len(traces) != 12 {
		t.Errorf("error traces: %d, %d traces, want 12", code, len(traces))
	}
	if code, _ := e.get(base+"&tag=http.response.status_code:502", &traces); code != 200 || len(traces) != 12 {
		t.Errorf("traces by tag: %d, %d traces, want 12", code, len(traces))
	}
	if code, _ := e.get(base+"&operation="+url.QueryEscape("POST /v1/documents")+"&minDuration=1ms", &traces); code != 200 || len(traces) != 30 {
		t.Errorf("traces by operation: %d, %d traces, want 30", code, len(traces))
	}
	if code, _ := e.get("/api/traces?service=api&start="+us(start.Add(-time.Hour))+"&end="+us(start.Add(-time.Minute)), &traces); code != 200 || len(traces) != 0 {
		t.Errorf("a range before the data: %d, %d traces", code, len(traces))
	}

	for _, bad := range []string{
		"/api/traces",                                    // no service
		base + "&limit=100000",                           // beyond max_traces
		base + "&limit=-1",                               // negative
		base + "&minDuration=fast",                       // not a duration
		base + "&minDuration=2s&maxDuration=1s",          // inverted
		base + "&tags=notjson",                           // malformed tags
		base + "&tag=nocolon",                            // malformed tag
		"/api/traces?service=api&start=0&end=" + us(end), // beyond max_range
		"/api/traces?service=api&start=" + us(end) + "&end=" + us(start), // inverted range
		"/api/traces?service=api&end=99999999999999999999",               // not an int64
		"/api/traces?service=api&end=9223372036854775807",                // past time.Duration
	} {
		if code, a := e.get(bad, nil); code != 400 || len(a.Errors) != 1 || a.Errors[0].Code != 400 {
			t.Errorf("%s: %d %+v, want 400 with an error", bad, code, a)
		}
	}
}

func TestSpanLimit(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxSpans = 2
	e := newEnv(t, cfg)
	id := storetest.TraceFixture()[0].TraceID
	var traces []Trace
	if code, _ := e.get("/api/traces/"+id, &traces); code != 200 || len(traces) != 1 || len(traces[0].Spans) != 2 ||
		len(traces[0].Warnings) != 1 || !strings.Contains(traces[0].Warnings[0], "traces.max_spans") {
		t.Errorf("a trace past the span limit: %d %+v", code, traces)
	}
}

func TestDependencies(t *testing.T) {
	e := newEnv(t, DefaultConfig())
	var deps []Dependency
	end := testutil.Epoch.Add(time.Hour).UnixMilli()
	if code, a := e.get(fmt.Sprintf("/api/dependencies?endTs=%d&lookback=%d", end, time.Hour.Milliseconds()), &deps); code != 200 {
		t.Fatalf("dependencies: %d %+v", code, a)
	}
	want := []Dependency{{"api", "auth", 60}, {"auth", "db", 20}, {"auth", "worker", 40}, {"worker", "db", 40}}
	if !slices.Equal(deps, want) {
		t.Errorf("dependencies: got %v, want %v", deps, want)
	}
	if code, _ := e.get(fmt.Sprintf("/api/dependencies?endTs=%d&lookback=%d&service=worker", end, time.Hour.Milliseconds()), &deps); code != 200 ||
		!slices.Equal(deps, []Dependency{{"auth", "worker", 40}, {"worker", "db", 40}}) {
		t.Errorf("dependencies of worker: %v", deps)
	}
	// The default range is the day before the clock's now.
	if code, _ := e.get("/api/dependencies", &deps); code != 200 || len(deps) != 4 {
		t.Errorf("default dependencies: %d %v", code, deps)
	}
	if code, _ := e.get(fmt.Sprintf("/api/dependencies?endTs=%d&lookback=%d", end, (30*24*time.Hour).Milliseconds()), nil); code != 400 {
		t.Errorf("a month of dependencies: %d, want 400 (traces.max_range)", code)
	}
	if code, _ := e.get("/api/dependencies?lookback=-5", nil); code != 400 {
		t.Errorf("a negative lookback: %d, want 400", code)
	}
}

// blocking is a span store whose reads wait for their context.
type blocking struct{ storage.Store }

func (blocking) Services(ctx context.Context) ([]string, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestTimeout(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Timeout = model.Duration(50 * time.Millisecond)
	e := newEnvOn(t, cfg, blocking{storetest.Embedded(t)})
	if code, a := e.get("/api/services", nil); code != 503 || !strings.Contains(a.Errors[0].Msg, "traces.timeout") {
		t.Errorf("a slow store: %d %+v, want 503 naming traces.timeout", code, a)
	}
}

func TestConfigValidate(t *testing.T) {
	for key, mutate := range map[string]func(*Config){
		"traces.max_range":       func(c *Config) { c.MaxRange = 0 },
		"traces.max_traces":      func(c *Config) { c.MaxTraces = 0 },
		"traces.max_spans":       func(c *Config) { c.MaxSpans = -1 },
		"traces.timeout":         func(c *Config) { c.Timeout = 0 },
		"traces.max_concurrency": func(c *Config) { c.MaxConcurrency = 0 },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), key+":") {
			t.Errorf("%s: %v", key, err)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Error(err)
	}
}
