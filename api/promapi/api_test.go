package promapi

import (
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

func TestEndpoints(t *testing.T) {
	store := storetest.Embedded(t)
	loadFixture(t, store)
	srv := newTestAPI(t, DefaultConfig(), store)

	start, end := unix(fixtureStart), unix(fixtureEnd)
	const (
		seriesGET200  = `{"__name__":"http_requests_total","instance":"a:8080","job":"api","method":"GET","status":"200"}`
		seriesPOST500 = `{"__name__":"http_requests_total","instance":"b:8080","job":"api","method":"POST","status":"500"}`
		seriesMemory  = `{"__name__":"process_resident_memory_bytes","instance":"a:8080","job":"api"}`
	)
	both := []string{http.MethodGet, http.MethodPost}
	getOnly := []string{http.MethodGet}

	cases := []struct {
		name    string
		methods []string
		path    string
		params  url.Values
		code    int
		body    string
	}{
		{
			name: "instant vector", methods: both, path: "/api/v1/query",
			params: url.Values{"query": {"http_requests_total"}, "time": {end}},
			code:   200,
			body: `{"status":"success","data":{"resultType":"vector","result":[` +
				`{"metric":` + seriesGET200 + `,"value":[1700000600,"400"]},` +
				`{"metric":` + seriesPOST500 + `,"value":[1700000600,"40"]}]}}`,
		},
		{
			name: "instant aggregation", methods: both, path: "/api/v1/query",
			params: url.Values{"query": {"sum by (job) (http_requests_total)"}, "time": {"1700000600.5"}},
			code:   200,
			body:   `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"api"},"value":[1700000600.500,"440"]}]}}`,
		},
		{
			name: "instant scalar", methods: both, path: "/api/v1/query",
			params: url.Values{"query": {"scalar(process_resident_memory_bytes) / 1e6"}, "time": {end}},
			code:   200,
			body:   `{"status":"success","data":{"resultType":"scalar","result":[1700000600,"1.04"]}}`,
		},
		{
			name: "instant range vector with @ and negative offset", methods: both, path: "/api/v1/query",
			params: url.Values{"query": {`http_requests_total{status="500"}[30s] @ 1700000300 offset -1m`}, "time": {end}},
			code:   200,
			body: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":` + seriesPOST500 +
				`,"values":[[1700000345,"23"],[1700000360,"24"]]}]}}`,
		},
		{
			name: "range query", methods: both, path: "/api/v1/query_range",
			params: url.Values{"query": {`http_requests_total{status="500"}`}, "start": {"1700000540"}, "end": {end}, "step": {"30s"}},
			code:   200,
			body: `{"status":"success","data":{"resultType":"matrix","result":[{"metric":` + seriesPOST500 +
				`,"values":[[1700000540,"36"],[1700000570,"38"],[1700000600,"40"]]}]}}`,
		},
		{
			name: "range query rate", methods: both, path: "/api/v1/query_range",
			params: url.Values{"query": {`sum(rate(http_requests_total{status="200"}[1m]))`}, "start": {"1700000540"}, "end": {end}, "step": {"60"}},
			code:   200,
			body:   `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000540,"0.6666666666666666"],[1700000600,"0.6666666666666666"]]}]}}`,
		},
		{
			name: "series", methods: both, path: "/api/v1/series",
			params: url.Values{"match[]": {"http_requests_total", `{__name__=~"process_.*"}`}, "start": {start}, "end": {end}},
			code:   200,
			body:   `{"status":"success","data":[` + seriesGET200 + `,` + seriesPOST500 + `,` + seriesMemory + `]}`,
		},
		{
			name: "series outside the data", methods: both, path: "/api/v1/series",
			params: url.Values{"match[]": {"http_requests_total"}, "start": {"1600000000"}, "end": {"1600000600"}},
			code:   200,
			body:   `{"status":"success","data":[]}`,
		},
		{
			name: "labels", methods: both, path: "/api/v1/labels",
			params: url.Values{"start": {start}, "end": {end}},
			code:   200,
			body:   `{"status":"success","data":["__name__","instance","job","method","status"]}`,
		},
		{
			name: "labels with match", methods: both, path: "/api/v1/labels",
			params: url.Values{"match[]": {"process_resident_memory_bytes"}},
			code:   200,
			body:   `{"status":"success","data":["__name__","instance","job"]}`,
		},
		{
			name: "label values", methods: getOnly, path: "/api/v1/label/__name__/values",
			code: 200,
			body: `{"status":"success","data":["http_requests_total","process_resident_memory_bytes"]}`,
		},
		{
			name: "label values with match", methods: getOnly, path: "/api/v1/label/status/values",
			params: url.Values{"match[]": {`http_requests_total{method="POST"}`}, "start": {start}, "end": {end}},
			code:   200,
			body:   `{"status":"success","data":["500"]}`,
		},
		{
			name: "metadata", methods: getOnly, path: "/api/v1/metadata",
			code: 200,
			body: `{"status":"success","data":{` +
				`"http_requests_total":[{"type":"counter","unit":"","help":"Total HTTP requests."}],` +
				`"process_resident_memory_bytes":[{"type":"gauge","unit":"bytes","help":"Resident memory size in bytes."}]}}`,
		},
		{
			name: "metadata for one metric", methods: getOnly, path: "/api/v1/metadata",
			params: url.Values{"metric": {"process_resident_memory_bytes"}},
			code:   200,
			body:   `{"status":"success","data":{"process_resident_memory_bytes":[{"type":"gauge","unit":"bytes","help":"Resident memory size in bytes."}]}}`,
		},
		{
			name: "metadata limit", methods: getOnly, path: "/api/v1/metadata",
			params: url.Values{"limit": {"1"}, "limit_per_metric": {"1"}},
			code:   200,
			body:   `{"status":"success","data":{"http_requests_total":[{"type":"counter","unit":"","help":"Total HTTP requests."}]}}`,
		},
		{
			name: "metadata limit 0", methods: getOnly, path: "/api/v1/metadata",
			params: url.Values{"limit": {"0"}},
			code:   200,
			body:   `{"status":"success","data":{}}`,
		},
		{
			name: "metadata unknown metric", methods: getOnly, path: "/api/v1/metadata",
			params: url.Values{"metric": {"nope"}},
			code:   200,
			body:   `{"status":"success","data":{}}`,
		},
		{
			name: "metadata bad limit", methods: getOnly, path: "/api/v1/metadata",
			params: url.Values{"limit": {"ten"}},
			code:   400,
			body:   `{"status":"error","errorType":"bad_data","error":"limit must be a number"}`,
		},
		{
			name: "metadata bad limit_per_metric", methods: getOnly, path: "/api/v1/metadata",
			params: url.Values{"limit_per_metric": {"x"}},
			code:   400,
			body:   `{"status":"error","errorType":"bad_data","error":"limit_per_metric must be a number"}`,
		},
		{
			name: "buildinfo", methods: getOnly, path: "/api/v1/status/buildinfo",
			code: 200,
			body: `{"status":"success","data":{"version":"1.2.3","revision":"0123abcd","branch":"","buildUser":"","buildDate":"","goVersion":"go1.26.8"}}`,
		},
		{
			name: "format_query", methods: both, path: "/api/v1/format_query",
			params: url.Values{"query": {`sum   by(job)(rate(http_requests_total{status=~"5.."}[5m]))`}},
			code:   200,
			body:   `{"status":"success","data":"sum by (job) (rate(http_requests_total{status=~\"5..\"}[5m]))"}`,
		},
		{
			name: "parse_query", methods: both, path: "/api/v1/parse_query",
			params: url.Values{"query": {`up{job="api"}`}},
			code:   200,
			body: `{"status":"success","data":{"anchored":false,"matchers":[{"name":"job","type":"=","value":"api"},{"name":"__name__","type":"=","value":"up"}],` +
				`"name":"up","offset":0,"offsetExpr":null,"smoothed":false,"startOrEnd":null,"timestamp":null,"type":"vectorSelector"}}`,
		},
		{
			name: "exemplars", methods: both, path: "/api/v1/query_exemplars",
			params: url.Values{"query": {"sum(rate(http_requests_total[5m]))"}, "start": {start}, "end": {end}},
			code:   200,
			body: `{"status":"success","data":[{"seriesLabels":` + seriesGET200 +
				`,"exemplars":[{"labels":{"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"},"value":"1","timestamp":1700000600}]}]}`,
		},
		{
			name: "no exemplars in range", methods: both, path: "/api/v1/query_exemplars",
			params: url.Values{"query": {"http_requests_total"}, "start": {start}, "end": {"1700000599"}},
			code:   200,
			body:   `{"status":"success","data":[]}`,
		},
		{
			name: "targets: aiops scrapes nothing", methods: getOnly, path: "/api/v1/targets",
			code: 200,
			body: `{"status":"success","data":{"activeTargets":[],"droppedTargets":[],"droppedTargetCounts":{}}}`,
		},
		{
			name: "rules until alerting plugs in", methods: getOnly, path: "/api/v1/rules",
			code: 200,
			body: `{"status":"success","data":{"groups":[]}}`,
		},
		{
			name: "alerts until alerting plugs in", methods: getOnly, path: "/api/v1/alerts",
			code: 200,
			body: `{"status":"success","data":{"alerts":[]}}`,
		},
		{
			name: "remote write receiver is off", methods: []string{http.MethodPost}, path: "/api/v1/write",
			code: 404,
			body: "remote write receiver needs to be enabled with --web.enable-remote-write-receiver\n",
		},
		{
			name: "admin API is off", methods: []string{http.MethodPost}, path: "/api/v1/admin/tsdb/snapshot",
			code: 500,
			body: `{"status":"error","errorType":"unavailable","error":"admin APIs disabled"}`,
		},
		{
			name: "bad PromQL", methods: both, path: "/api/v1/query",
			params: url.Values{"query": {`sum(rate(http_requests_total[5m])`}},
			code:   400,
			body:   `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:34: parse error: unclosed left parenthesis"}`,
		},
		{
			name: "bad PromQL in a range query", methods: both, path: "/api/v1/query_range",
			params: url.Values{"query": {`rate(http_requests_total[5m]`}, "start": {start}, "end": {end}, "step": {"15s"}},
			code:   400,
			body:   `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:29: parse error: unclosed left parenthesis"}`,
		},
		{
			name: "bad function", methods: both, path: "/api/v1/query",
			params: url.Values{"query": {`rat(http_requests_total[5m])`}},
			code:   400,
			body:   `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:1: parse error: unknown function with name \"rat\""}`,
		},
		{
			name: "bad time", methods: both, path: "/api/v1/query",
			params: url.Values{"query": {"1"}, "time": {"yesterday"}},
			code:   400,
			body:   `{"status":"error","errorType":"bad_data","error":"invalid parameter \"time\": invalid time value for 'time': cannot parse \"yesterday\" to a valid timestamp"}`,
		},
		{
			name: "range end before start", methods: both, path: "/api/v1/query_range",
			params: url.Values{"query": {"1"}, "start": {end}, "end": {start}, "step": {"15s"}},
			code:   400,
			body:   `{"status":"error","errorType":"bad_data","error":"invalid parameter \"end\": end timestamp must not be before start time"}`,
		},
		{
			name: "range too many points", methods: both, path: "/api/v1/query_range",
			params: url.Values{"query": {"1"}, "start": {"0"}, "end": {end}, "step": {"1s"}},
			code:   400,
			body:   `{"status":"error","errorType":"bad_data","error":"exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"}`,
		},
		{
			name: "series without match", methods: both, path: "/api/v1/series",
			code: 400,
			body: `{"status":"error","errorType":"bad_data","error":"no match[] parameter provided"}`,
		},
		{
			name: "execution error", methods: both, path: "/api/v1/query",
			params: url.Values{"query": {`label_replace(sum by (instance) (http_requests_total), "instance", "x", "", "")`}, "time": {end}},
			code:   422,
			body:   `{"status":"error","errorType":"execution","error":"vector cannot contain metrics with the same labelset"}`,
		},
	}
	for _, c := range cases {
		for _, method := range c.methods {
			t.Run(method+" "+c.name, func(t *testing.T) {
				got := call(t, srv, method, c.path, c.params)
				if got.code != c.code || got.body != c.body {
					t.Errorf("%s %s %v:\n got %d %s\nwant %d %s", method, c.path, c.params, got.code, got.body, c.code, c.body)
				}
				if strings.HasPrefix(c.body, "{") && got.contentType != "application/json" {
					t.Errorf("Content-Type = %q, want application/json", got.contentType)
				}
			})
		}
	}
}

// Prometheus registers some endpoints for GET only; so do we.
func TestGetOnlyEndpointsRefusePost(t *testing.T) {
	store := storetest.Embedded(t)
	srv := newTestAPI(t, DefaultConfig(), store)
	for _, path := range []string{"/api/v1/metadata", "/api/v1/label/job/values", "/api/v1/status/buildinfo"} {
		if got := call(t, srv, http.MethodPost, path, nil); got.code != http.StatusMethodNotAllowed {
			t.Errorf("POST %s = %d %s, want 405", path, got.code, got.body)
		}
	}
}

func TestBinaryBuildInfo(t *testing.T) {
	bi := BinaryBuildInfo("0.1.0")
	if bi.Version != "0.1.0" || bi.GoVersion != runtime.Version() {
		t.Errorf("BinaryBuildInfo = %+v", bi)
	}
}
