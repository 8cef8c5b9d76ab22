package promapi

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/storage/embedded"
)

// fixtureStart is the first sample's time; fixture data is 10 minutes of
// 15 s samples from here, so the last sample is at fixtureEnd.
var (
	fixtureStart = time.Unix(1700000000, 0).UTC()
	fixtureEnd   = fixtureStart.Add(10 * time.Minute)
)

type fixtureSeries struct {
	lset   labels.Labels
	family string
	meta   metadata.Metadata
	// value at sample i (0..40)
	value func(i int) float64
}

var fixture = []fixtureSeries{
	{
		lset:   labels.FromStrings("__name__", "http_requests_total", "job", "api", "instance", "a:8080", "method", "GET", "status", "200"),
		family: "http_requests_total",
		meta:   metadata.Metadata{Type: model.MetricTypeCounter, Help: "Total HTTP requests."},
		value:  func(i int) float64 { return float64(10 * i) },
	},
	{
		lset:   labels.FromStrings("__name__", "http_requests_total", "job", "api", "instance", "b:8080", "method", "POST", "status", "500"),
		family: "http_requests_total",
		meta:   metadata.Metadata{Type: model.MetricTypeCounter, Help: "Total HTTP requests."},
		value:  func(i int) float64 { return float64(i) },
	},
	{
		lset:   labels.FromStrings("__name__", "process_resident_memory_bytes", "job", "api", "instance", "a:8080"),
		family: "process_resident_memory_bytes",
		meta:   metadata.Metadata{Type: model.MetricTypeGauge, Help: "Resident memory size in bytes.", Unit: "bytes"},
		value:  func(i int) float64 { return 1_000_000 + float64(1000*i) },
	},
}

// loadFixture appends the fixture through the AppenderV2 path the OTLP
// translator uses, with metadata.
func loadFixture(t testing.TB, s promstorage.AppendableV2) {
	t.Helper()
	app := s.AppenderV2(context.Background())
	for i := 0; i <= 40; i++ {
		ts := fixtureStart.Add(time.Duration(i) * 15 * time.Second).UnixMilli()
		for j, f := range fixture {
			opts := promstorage.AOptions{MetricFamilyName: f.family, Metadata: f.meta}
			if i == 40 && j == 0 {
				opts.Exemplars = []exemplar.Exemplar{{Labels: labels.FromStrings("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736"), Value: 1, Ts: ts, HasTs: true}}
			}
			if _, err := app.Append(0, f.lset, 0, ts, f.value(i), nil, nil, opts); err != nil {
				t.Fatalf("append %s: %v", f.lset, err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatalf("commit fixture: %v", err)
	}
}

// newTestAPI serves an API over store on an httptest server.
func newTestAPI(t testing.TB, cfg Config, store *embedded.Store) *httptest.Server {
	t.Helper()
	api, err := New(Options{
		Config:    cfg,
		Storage:   store,
		Metadata:  store,
		BuildInfo: BuildInfo{Version: "1.2.3", Revision: "0123abcd", GoVersion: "go1.26.8"},
	})
	if err != nil {
		t.Fatalf("new API: %v", err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		srv.Close()
		if err := api.Close(); err != nil {
			t.Errorf("close API: %v", err)
		}
	})
	return srv
}

type response struct {
	code        int
	contentType string
	body        string
}

// call sends params as the query string (GET) or as a form body (POST).
func call(t testing.TB, srv *httptest.Server, method, path string, params url.Values) response {
	t.Helper()
	var req *http.Request
	var err error
	switch method {
	case http.MethodGet:
		u := srv.URL + path
		if len(params) > 0 {
			u += "?" + params.Encode()
		}
		req, err = http.NewRequest(method, u, nil)
	case http.MethodPost:
		req, err = http.NewRequest(method, srv.URL+path, strings.NewReader(params.Encode()))
		if err == nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
	default:
		t.Fatalf("unsupported method %s", method)
	}
	if err != nil {
		t.Fatalf("build request: %v", err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, path, err)
	}
	return response{code: resp.StatusCode, contentType: resp.Header.Get("Content-Type"), body: string(b)}
}

func unix(t time.Time) string { return model.TimeFromUnixNano(t.UnixNano()).String() }
