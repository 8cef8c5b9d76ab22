package promapi

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

// Each engine key of Config reaches the engine.
func TestEngineConfig(t *testing.T) {
	store := storetest.Embedded(t)
	loadFixture(t, store)
	at := func(d time.Duration) string { return unix(fixtureEnd.Add(d)) }

	for _, c := range []struct {
		name   string
		mutate func(*Config)
		path   string // default /api/v1/query
		query  url.Values
		code   int
		body   string
	}{
		{
			name: "default lookback delta sees a sample 4m old", mutate: func(*Config) {},
			query: url.Values{"query": {"process_resident_memory_bytes"}, "time": {at(4 * time.Minute)}},
			code:  200,
			body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"process_resident_memory_bytes","instance":"a:8080","job":"api"},` +
				`"value":[1700000840,"1040000"]}]}}`,
		},
		{
			name: "lookback_delta 1m does not", mutate: func(c *Config) { c.LookbackDelta = model.Duration(time.Minute) },
			query: url.Values{"query": {"process_resident_memory_bytes"}, "time": {at(4 * time.Minute)}},
			code:  200,
			body:  `{"status":"success","data":{"resultType":"vector","result":[]}}`,
		},
		{
			name: "subquery_step 1m", mutate: func(*Config) {},
			query: url.Values{"query": {"count_over_time(process_resident_memory_bytes[10m:])"}, "time": {at(0)}},
			code:  200,
			body:  `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"instance":"a:8080","job":"api"},"value":[1700000600,"10"]}]}}`,
		},
		{
			name: "subquery_step 30s", mutate: func(c *Config) { c.SubqueryStep = model.Duration(30 * time.Second) },
			query: url.Values{"query": {"count_over_time(process_resident_memory_bytes[10m:])"}, "time": {at(0)}},
			code:  200,
			body:  `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"instance":"a:8080","job":"api"},"value":[1700000600,"20"]}]}}`,
		},
		{
			name: "experimental functions on", mutate: func(*Config) {},
			query: url.Values{"query": {"limitk(1, process_resident_memory_bytes)"}, "time": {at(0)}},
			code:  200,
			body: `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"__name__":"process_resident_memory_bytes","instance":"a:8080","job":"api"},` +
				`"value":[1700000600,"1040000"]}]}}`,
		},
		{
			name: "experimental functions off", mutate: func(c *Config) { c.ExperimentalPromQL = false },
			query: url.Values{"query": {"limitk(1, process_resident_memory_bytes)"}, "time": {at(0)}},
			code:  400,
			body:  `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:1: parse error: limitk() is experimental and must be enabled with --enable-feature=promql-experimental-functions"}`,
		},
		{
			name: "format_query uses the same parser", mutate: func(c *Config) { c.ExperimentalPromQL = false },
			path:  "/api/v1/format_query",
			query: url.Values{"query": {"mad_over_time(process_resident_memory_bytes[5m])"}},
			code:  400,
			body:  `{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:1: parse error: function \"mad_over_time\" is not enabled"}`,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mutate(&cfg)
			srv := newTestAPI(t, cfg, store)
			path := c.path
			if path == "" {
				path = "/api/v1/query"
			}
			got := call(t, srv, http.MethodGet, path, c.query)
			if got.code != c.code || got.body != c.body {
				t.Errorf("GET %s %v:\n got %d %s\nwant %d %s", path, c.query, got.code, got.body, c.code, c.body)
			}
		})
	}
}
