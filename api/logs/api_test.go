package logs

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

	"github.com/aiops-dev/aiops/internal/restapi"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/embedded"
)

type env struct {
	t   *testing.T
	srv *httptest.Server
	v   validator.Validator
	mu  sync.Mutex
}

func newEnv(t *testing.T, cfg Config, records Records) *env {
	t.Helper()
	api, err := New(Options{Config: cfg, Records: records, Logger: testutil.Logger(t),
		Now: func() time.Time { return testutil.Epoch.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Mount(mux)
	e := &env{t: t, srv: httptest.NewServer(mux)}
	t.Cleanup(e.srv.Close)
	doc, err := libopenapi.NewDocument(api.OpenAPI())
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

// get requests path and checks the response against the OpenAPI
// document.
func (e *env) get(path string) (int, []byte) {
	e.t.Helper()
	res, err := http.Get(e.srv.URL + path)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	u, _ := url.Parse(path)
	// The auth middleware sits in front of the API in aiops; the document
	// says a credential is needed.
	req := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{"Authorization": {"Bearer t"}}}
	if u.Path != "/api/v1/logs" && u.Path != "/api/v1/logs/openapi.json" {
		return res.StatusCode, body // refused as unknown: not in the document
	}
	vres := &http.Response{StatusCode: res.StatusCode, Header: res.Header, Body: io.NopCloser(bytes.NewReader(body)), Request: req}
	e.mu.Lock()
	defer e.mu.Unlock()
	if res.StatusCode < 400 {
		if ok, errs := e.v.ValidateHttpRequest(req); !ok {
			e.t.Errorf("GET %s: request does not fit the OpenAPI document: %v", path, errs)
		}
	}
	if ok, errs := e.v.ValidateHttpResponse(req, vres); !ok {
		var b strings.Builder
		for _, err := range errs {
			b.WriteString("\n  " + err.Error())
		}
		e.t.Errorf("GET %s: %d response does not fit the OpenAPI document:%s\n%s", path, res.StatusCode, b.String(), body)
	}
	return res.StatusCode, body
}

func (e *env) page(path string) Page {
	e.t.Helper()
	status, body := e.get(path)
	if status != http.StatusOK {
		e.t.Fatalf("GET %s: %d %s", path, status, body)
	}
	var p Page
	if err := json.Unmarshal(body, &p); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func fixtureStore(t *testing.T) *embedded.Store {
	s := storetest.Embedded(t, embedded.WithClock(testutil.NewClock(testutil.Epoch).Now))
	if err := s.AppendLogs(context.Background(), storetest.LogFixture()); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFiltersAndPaging(t *testing.T) {
	e := newEnv(t, DefaultConfig(), fixtureStore(t))
	start := "&start=" + testutil.Epoch.Format(time.RFC3339)
	all := e.page("/api/v1/logs?limit=1000" + start)
	if len(all.Logs) != 120 || all.NextCursor != "" {
		t.Fatalf("got %d records (cursor %q), want all 120 on one page", len(all.Logs), all.NextCursor)
	}
	for i := 1; i < len(all.Logs); i++ {
		if all.Logs[i].Time.After(all.Logs[i-1].Time) {
			t.Fatalf("not newest first at %d", i)
		}
	}
	// A record with a trace links to it in the Jaeger-compatible API.
	linked := 0
	for _, l := range all.Logs {
		if l.TraceID != "" {
			linked++
			if l.Trace != "/api/traces/"+l.TraceID {
				t.Errorf("record %q links to %q", l.Body, l.Trace)
			}
		} else if l.Trace != "" {
			t.Errorf("record %q without a trace links to %q", l.Body, l.Trace)
		}
	}
	if linked != 40 {
		t.Errorf("%d records link to traces, want 40", linked)
	}

	// Paging by 7 visits every record once, in order.
	var paged []string
	cursor := ""
	for range 30 {
		p := e.page("/api/v1/logs?limit=7" + start + cursor)
		for _, l := range p.Logs {
			paged = append(paged, l.ID)
		}
		if p.NextCursor == "" {
			break
		}
		cursor = "&cursor=" + p.NextCursor
	}
	if len(paged) != 120 {
		t.Fatalf("paging by 7 gave %d records, want 120", len(paged))
	}
	for i, l := range all.Logs {
		if paged[i] != l.ID {
			t.Fatalf("paging differs at %d", i)
		}
	}

	for _, c := range []struct {
		query string
		want  int
	}{
		{"&service=worker&min_severity=warn", 30},
		{"&min_severity=17", 30},
		{"&min_severity=ERROR", 30},
		{"&contains=" + url.QueryEscape("status 500"), 40},
		{"&regexp=" + url.QueryEscape(`request \d*7 finished`), 12},
		{"&attribute=" + url.QueryEscape("http.route=/b") + "&attribute=" + url.QueryEscape("host.name=node-1"), 10},
		{"&trace_id=abc003", 1},
		{"&trace_id=00000000000000000000000000ABC003", 1},
		{"&end=" + testutil.Epoch.Add(20*time.Second).Format(time.RFC3339) + "&service=api", 21},
	} {
		p := e.page("/api/v1/logs?limit=1000" + start + c.query)
		if len(p.Logs) != c.want {
			t.Errorf("%s: got %d records, want %d", c.query, len(p.Logs), c.want)
		}
	}
}

func TestBadRequestsNameTheParameter(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxLimit = 50
	e := newEnv(t, cfg, fixtureStore(t))
	for _, c := range []struct{ query, field string }{
		{"start=yesterday", "start"},
		{"end=1700000000&start=1800000000", "end"},
		{"start=2020-01-01T00:00:00Z", "start"}, // longer than max_range
		{"min_severity=loud", "min_severity"},
		{"min_severity=25", "min_severity"},
		{"regexp=" + url.QueryEscape("(unclosed"), "regexp"},
		{"trace_id=xyz", "trace_id"},
		{"attribute=novalue", "attribute"},
		{"attribute=a%3D1&attribute=a%3D2", "attribute"},
		{"limit=0", "limit"},
		{"limit=51", "limit"},
		{"cursor=bm90IGEgY3Vyc29y", "cursor"},
	} {
		status, body := e.get("/api/v1/logs?" + c.query)
		var eb restapi.Error
		json.Unmarshal(body, &eb)
		if status != http.StatusBadRequest || eb.ErrorType != "invalid" || eb.Field != c.field {
			t.Errorf("%s: got %d %s, want 400 naming %s", c.query, status, body, c.field)
		}
	}
	res, err := http.Post(e.srv.URL+"/api/v1/logs", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") == "" {
		t.Errorf("POST: got %d, Allow %q", res.StatusCode, res.Header.Get("Allow"))
	}
	if status, _ := e.get("/api/v1/logs/nothing"); status != http.StatusNotFound {
		t.Errorf("unknown path: got %d, want 404", status)
	}
	if status, body := e.get("/api/v1/logs/openapi.json"); status != http.StatusOK || !bytes.Contains(body, []byte(`"openapi":"3.1.0"`)) {
		t.Errorf("openapi.json: %d %.80s", status, body)
	}
}

// slowRecords answers after the request's deadline.
type slowRecords struct{}

func (slowRecords) QueryLogs(ctx context.Context, _ storage.LogQuery) ([]storage.LogRecord, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestTimeoutIsReported(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Timeout = 1
	e := newEnv(t, cfg, slowRecords{})
	status, body := e.get("/api/v1/logs")
	if status != http.StatusServiceUnavailable || !strings.Contains(string(body), "logs.timeout") {
		t.Errorf("got %d %s, want 503 naming logs.timeout", status, body)
	}
}

func TestConfigNamesKey(t *testing.T) {
	for _, c := range []struct {
		mutate func(*Config)
		key    string
	}{
		{func(c *Config) { c.MaxRange = 0 }, "logs.max_range"},
		{func(c *Config) { c.MaxLimit = -1 }, "logs.max_limit"},
		{func(c *Config) { c.Timeout = 0 }, "logs.timeout"},
		{func(c *Config) { c.MaxConcurrency = 0 }, "logs.max_concurrency"},
	} {
		cfg := DefaultConfig()
		c.mutate(&cfg)
		if err := cfg.Validate(); err == nil || !strings.HasPrefix(err.Error(), c.key+":") {
			t.Errorf("got %v, want an error naming %s", err, c.key)
		}
	}
}
