package promapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	promstorage "github.com/prometheus/prometheus/storage"
	v1 "github.com/prometheus/prometheus/web/api/v1"

	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
)

func serve(t *testing.T, opts Options) *httptest.Server {
	t.Helper()
	api, err := New(opts)
	if err != nil {
		t.Fatalf("new API: %v", err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(func() {
		srv.Close()
		api.Close()
	})
	return srv
}

// queryOnly hides everything of a store but querying, as a store that is
// not a Prometheus TSDB (ClickHouse) looks to the API.
type queryOnly struct {
	promstorage.SampleAndChunkQueryable
}

func TestStorageWithoutTSDB(t *testing.T) {
	store := storetest.Embedded(t)
	loadFixture(t, store)
	srv := serve(t, Options{Config: DefaultConfig(), Storage: queryOnly{store}})

	for _, c := range []struct {
		path   string
		params url.Values
		code   int
		body   string
	}{
		{"/api/v1/query", url.Values{"query": {"sum(http_requests_total)"}, "time": {unix(fixtureEnd)}}, 200,
			`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000600,"440"]}]}}`},
		{"/api/v1/query_exemplars", url.Values{"query": {"http_requests_total"}}, 200, `{"status":"success","data":[]}`},
		{"/api/v1/metadata", nil, 200, `{"status":"success","data":{}}`},
		{"/api/v1/status/tsdb", nil, 500, `{"status":"error","errorType":"internal","error":"not available: this storage is not a Prometheus TSDB"}`},
		{"/api/v1/status/tsdb/blocks", nil, 500, `{"status":"error","errorType":"internal","error":"error getting block metadata: not available: this storage is not a Prometheus TSDB"}`},
	} {
		if got := call(t, srv, http.MethodGet, c.path, c.params); got.code != c.code || got.body != c.body {
			t.Errorf("GET %s:\n got %d %s\nwant %d %s", c.path, got.code, got.body, c.code, c.body)
		}
	}
}

func TestTSDBStatus(t *testing.T) {
	store := storetest.Embedded(t)
	loadFixture(t, store)
	srv := newTestAPI(t, DefaultConfig(), store)
	got := call(t, srv, http.MethodGet, "/api/v1/status/tsdb", nil)
	if got.code != 200 || !strings.Contains(got.body, `"numSeries":3,`) ||
		!strings.Contains(got.body, `"seriesCountByMetricName":[{"name":"http_requests_total","value":2},{"name":"process_resident_memory_bytes","value":1}]`) {
		t.Errorf("GET /api/v1/status/tsdb = %d %s", got.code, got.body)
	}
	got = call(t, srv, http.MethodGet, "/api/v1/status/tsdb/blocks", nil)
	if want := `{"status":"success","data":{"blocks":[]}}`; got.code != 200 || got.body != want {
		t.Errorf("GET /api/v1/status/tsdb/blocks = %d %s, want %s", got.code, got.body, want)
	}
}

type alertingParts struct {
	group *rules.Group
}

func (a alertingParts) RuleGroups() []*rules.Group           { return []*rules.Group{a.group} }
func (a alertingParts) AlertingRules() []*rules.AlertingRule { return nil }
func (alertingParts) Alertmanagers() []*url.URL {
	return []*url.URL{{Scheme: "http", Host: "127.0.0.1:9093", Path: "/api/v2/alerts"}}
}
func (alertingParts) DroppedAlertmanagers() []*url.URL { return nil }

// The alerting component plugs its rules and Alertmanagers in.
func TestRulesAndAlertmanagersPlugIn(t *testing.T) {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr("sum by (job) (rate(http_requests_total[5m]))")
	if err != nil {
		t.Fatal(err)
	}
	parts := alertingParts{group: rules.NewGroup(rules.GroupOptions{
		Name: "api", File: "rules.yml", Interval: time.Minute,
		Rules: []rules.Rule{rules.NewRecordingRule("job:http_requests:rate5m", expr, labels.EmptyLabels())},
	})}
	srv := serve(t, Options{
		Config:        DefaultConfig(),
		Storage:       storetest.Embedded(t),
		Rules:         func(context.Context) v1.RulesRetriever { return parts },
		Alertmanagers: func(context.Context) v1.AlertmanagerRetriever { return parts },
	})

	got := call(t, srv, http.MethodGet, "/api/v1/rules", nil)
	if got.code != 200 || !strings.Contains(got.body, `"name":"job:http_requests:rate5m","query":"sum by (job) (rate(http_requests_total[5m]))"`) {
		t.Errorf("GET /api/v1/rules = %d %s", got.code, got.body)
	}
	got = call(t, srv, http.MethodGet, "/api/v1/alertmanagers", nil)
	if want := `{"status":"success","data":{"activeAlertmanagers":[{"url":"http://127.0.0.1:9093/api/v2/alerts"}],"droppedAlertmanagers":[]}}`; got.code != 200 || got.body != want {
		t.Errorf("GET /api/v1/alertmanagers = %d %s, want %s", got.code, got.body, want)
	}
}

type metadataFunc func(ctx context.Context, metric string, limit int) (map[string][]metadata.Metadata, error)

func (f metadataFunc) MetricMetadata(ctx context.Context, metric string, limit int) (map[string][]metadata.Metadata, error) {
	return f(ctx, metric, limit)
}

func TestMetadataSource(t *testing.T) {
	counter := metadata.Metadata{Type: "counter", Help: "Requests."}
	counterOtherHelp := metadata.Metadata{Type: "counter", Help: "Requests served."}
	gauge := metadata.Metadata{Type: "gauge", Help: "Depth.", Unit: "jobs"}
	var asked []string
	src := metadataFunc(func(_ context.Context, metric string, limit int) (map[string][]metadata.Metadata, error) {
		asked = append(asked, fmt.Sprintf("%q %d", metric, limit))
		switch metric {
		case "broken":
			return nil, errors.New("disk on fire")
		case "away":
			return nil, fmt.Errorf("query metadata: %w", storage.ErrUnavailable)
		}
		// A source may ignore the limits and repeat itself; the API trims.
		return map[string][]metadata.Metadata{
			"requests_total": {counter, counterOtherHelp, counter},
			"queue_depth":    {gauge},
		}, nil
	})
	srv := serve(t, Options{Config: DefaultConfig(), Storage: storetest.Embedded(t), Metadata: src})

	for _, c := range []struct {
		params url.Values
		code   int
		body   string
	}{
		{nil, 200, `{"status":"success","data":{"queue_depth":[{"type":"gauge","unit":"jobs","help":"Depth."}],` +
			`"requests_total":[{"type":"counter","unit":"","help":"Requests."},{"type":"counter","unit":"","help":"Requests served."}]}}`},
		{url.Values{"limit_per_metric": {"1"}}, 200, `{"status":"success","data":{"queue_depth":[{"type":"gauge","unit":"jobs","help":"Depth."}],` +
			`"requests_total":[{"type":"counter","unit":"","help":"Requests."}]}}`},
		{url.Values{"limit": {"1"}}, 200, `{"status":"success","data":{"queue_depth":[{"type":"gauge","unit":"jobs","help":"Depth."}]}}`},
		{url.Values{"limit": {"-1"}, "metric": {"requests_total"}, "limit_per_metric": {"-5"}}, 200,
			`{"status":"success","data":{"requests_total":[{"type":"counter","unit":"","help":"Requests."},{"type":"counter","unit":"","help":"Requests served."}]}}`},
		{url.Values{"metric": {"broken"}}, 500, `{"status":"error","errorType":"internal","error":"disk on fire"}`},
		{url.Values{"metric": {"away"}}, 500, `{"status":"error","errorType":"unavailable","error":"query metadata: storage unavailable"}`},
	} {
		if got := call(t, srv, http.MethodGet, "/api/v1/metadata", c.params); got.code != c.code || got.body != c.body {
			t.Errorf("GET /api/v1/metadata?%s:\n got %d %s\nwant %d %s", c.params.Encode(), got.code, got.body, c.code, c.body)
		}
	}
	want := []string{`"" 0`, `"" 0`, `"" 1`, `"requests_total" 0`, `"broken" 0`, `"away" 0`}
	if fmt.Sprint(asked) != fmt.Sprint(want) {
		t.Errorf("source asked %v, want %v", asked, want)
	}
}

func TestCORS(t *testing.T) {
	store := storetest.Embedded(t)
	for _, c := range []struct {
		origin, allowed, want string
	}{
		{"", "https://grafana.example.com", ""}, // default: no cross-origin callers
		{"https://grafana\\.example\\.com", "https://grafana.example.com", "https://grafana.example.com"},
		{"https://grafana\\.example\\.com", "https://evil.example.com", ""},
		{".*", "https://anyone.example.com", "*"},
	} {
		srv := serve(t, Options{Config: DefaultConfig(), Storage: store, CORSOrigin: c.origin})
		for _, path := range []string{"/api/v1/query?query=1", "/api/v1/metadata"} {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
			req.Header.Set("Origin", c.allowed)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != c.want {
				t.Errorf("CORS origin %q, request from %s to %s: Access-Control-Allow-Origin %q, want %q", c.origin, c.allowed, path, got, c.want)
			}
		}
	}
	if _, err := New(Options{Config: DefaultConfig(), Storage: store, CORSOrigin: "("}); err == nil {
		t.Error("New accepted an invalid CORS origin regexp")
	}
}

func TestEngineMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := serve(t, Options{Config: DefaultConfig(), Storage: storetest.Embedded(t), Registerer: reg, Gatherer: reg})
	call(t, srv, http.MethodGet, "/api/v1/query", url.Values{"query": {"1"}})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for _, want := range []string{"aiops_prometheus_engine_query_duration_seconds", "aiops_prometheus_engine_queries_concurrent_max"} {
		if !names[want] {
			t.Errorf("metric %s not registered; have %v", want, names)
		}
	}
}
