package incidents

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
	"github.com/prometheus/common/model"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/notify"

	"github.com/aiops-dev/aiops/alerting/alertmanager"
	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/analyzer/results/correlate"
	"github.com/aiops-dev/aiops/api/auth"
	"github.com/aiops-dev/aiops/internal/restapi"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// policy is the scope rule the integrator applies to this API: reading
// needs read, changing needs write.
func policy(r *http.Request) (auth.Scope, bool) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return auth.ScopeRead, false
	}
	return auth.ScopeWrite, false
}

// env is the API over real parts: the embedded store, the incident
// manager, an embedded Alertmanager, API tokens and the auth middleware,
// served over HTTP beside a stand-in for Prometheus's /api/v1/ routes.
type env struct {
	t        *testing.T
	store    *embedded.Store
	mgr      *incident.Manager
	am       *alertmanager.Alertmanager
	silencer *incident.Silencer
	api      *API
	srv      *httptest.Server
	readTok  string
	writeTok string
	writeID  string
	v        validator.Validator
}

type envOptions struct {
	cfg incident.Config
	now func() time.Time
	// store replaces the env's own (the end-to-end test shares one with
	// the alerting component).
	store *embedded.Store
	mgr   *incident.Manager
	am    *alertmanager.Alertmanager
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	e := &env{t: t, store: o.store, mgr: o.mgr, am: o.am}
	if e.store == nil {
		e.store = storetest.EmbeddedWith(t, embedded.Config{Retention: model.Duration(24 * time.Hour), OutOfOrderWindow: model.Duration(24 * time.Hour)})
	}
	if e.mgr == nil {
		cfg := o.cfg
		if cfg.CheckInterval == 0 {
			cfg = incident.DefaultConfig()
		}
		m, err := incident.New(context.Background(), cfg, incident.Deps{
			Events: e.store, Logger: testutil.Logger(t), Now: o.now,
			RootCauses: correlate.StoreRanker{Events: e.store, Spans: e.store},
		})
		if err != nil {
			t.Fatal(err)
		}
		e.mgr = m
	}
	if e.am == nil {
		am, err := alertmanager.New(alertmanager.Options{DataDir: t.TempDir(), Logger: testutil.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { am.Close() })
		e.am = am
	}
	// The silences run on the wall clock, as the Alertmanager's do.
	e.silencer = incident.NewSilencer(e.am.Silences(), e.mgr, nil)
	api, err := New(Options{Incidents: e.mgr, Alertmanager: e.am, Silences: e.silencer, Events: e.store, Queryable: e.store, Logger: testutil.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	e.api = api

	tokens := auth.NewTokenStore(e.store, nil)
	ctx := context.Background()
	if e.readTok, _, err = tokens.Create(ctx, "grafana", []auth.Scope{auth.ScopeRead}, 0, "test"); err != nil {
		t.Fatal(err)
	}
	var tok auth.Token
	if e.writeTok, tok, err = tokens.Create(ctx, "oncall-bot", []auth.Scope{auth.ScopeWrite}, 0, "test"); err != nil {
		t.Fatal(err)
	}
	e.writeID = tok.ID

	mux := http.NewServeMux()
	// The integrator mounts Prometheus's query API at /api/v1/; ours must
	// take precedence on its own paths only.
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Handler", "prometheus")
		w.WriteHeader(http.StatusTeapot)
	})
	api.Mount(mux)
	guard := &auth.Middleware{Auth: auth.Chain{tokens}, Policy: policy, WriteError: auth.JSONError, Logger: testutil.Logger(t)}
	e.srv = httptest.NewServer(guard.Wrap(mux))
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

var validatorMu sync.Mutex

func (e *env) documented(method, path string) bool {
	for _, rt := range e.api.routes() {
		if rt.method == method && restapi.PathMatches(rt.path, path) {
			return true
		}
	}
	return false
}

// resp is one answer, checked against the OpenAPI document.
type resp struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request with a token and checks the request and the
// response against the OpenAPI document. hdr is name, value, ...
func (e *env) do(method, path, token string, body any, hdr ...string) resp {
	e.t.Helper()
	var raw []byte
	switch b := body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			e.t.Fatal(err)
		}
	}
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(raw))
	if err != nil {
		e.t.Fatal(err)
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := resp{status: res.StatusCode, header: res.Header, body: out}
	e.validate(req, raw, r)
	return r
}

// validate checks a response (and, when it is not meant to be refused by
// validation, the request) against the document.
func (e *env) validate(req *http.Request, body []byte, r resp) {
	e.t.Helper()
	if r.header.Get("X-Handler") == "prometheus" || !e.documented(req.Method, req.URL.Path) {
		return // not ours, or a path the API refuses as unknown
	}
	u, _ := url.Parse(req.URL.String())
	vreq := &http.Request{Method: req.Method, URL: u, Header: req.Header, Body: io.NopCloser(bytes.NewReader(body))}
	vres := &http.Response{StatusCode: r.status, Header: r.header, Body: io.NopCloser(bytes.NewReader(r.body)), Request: vreq}
	validatorMu.Lock()
	defer validatorMu.Unlock()
	if r.status < 400 {
		if ok, errs := e.v.ValidateHttpRequest(vreq); !ok {
			e.t.Errorf("%s %s: request does not fit the OpenAPI document: %s", req.Method, req.URL.Path, verrs(errs))
		}
		vreq.Body = io.NopCloser(bytes.NewReader(body))
	}
	if ok, errs := e.v.ValidateHttpResponse(vreq, vres); !ok {
		e.t.Errorf("%s %s: %d response does not fit the OpenAPI document: %s\nbody: %s", req.Method, req.URL.Path, r.status, verrs(errs), r.body)
	}
}

func verrs[T interface{ Error() string }](errs []T) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}

func (r resp) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// wantError checks an error answer: status, errorType and, for 400s, the
// field named.
func (r resp) wantError(t *testing.T, status int, code, field string) {
	t.Helper()
	var e restapi.Error
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body %q: %v", r.body, err)
	}
	if r.status != status || e.Status != "error" || e.ErrorType != code || e.Field != field {
		t.Fatalf("got %d %+v, want %d errorType=%q field=%q", r.status, e, status, code, field)
	}
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func mkAlert(ls model.LabelSet, start, end time.Time) *alert.Alert {
	a := model.Alert{Labels: ls, StartsAt: start, EndsAt: end,
		Annotations:  model.LabelSet{"summary": "it broke"},
		GeneratorURL: "https://aiops.example.com/graph?g0.expr=" + url.QueryEscape(`rate(errors[5m]) > 1`)}
	if end.IsZero() {
		a.EndsAt = time.Now().Add(time.Hour)
	}
	return alert.New(a, start, false)
}

// group hands an alert group to the manager as the dispatcher would.
func (e *env) group(key string, alerts ...*alert.Alert) {
	e.t.Helper()
	ctx := notify.WithGroupKey(context.Background(), key)
	ctx = notify.WithReceiverName(ctx, "oncall")
	ctx = notify.WithGroupLabels(ctx, model.LabelSet{"alertname": alerts[0].Labels["alertname"]})
	if v := e.mgr.Notify(ctx, alerts...); v.Err() != nil {
		e.t.Fatal(v.Err())
	}
}
