package query

// Query is one dashboard query.
type Query struct {
	Name string
	Expr string
}

// Queries are the representative dashboard queries, over the series
// Dataset generates.
func Queries() []Query {
	return []Query{
		// A per-series rate: every request counter (2,000 series).
		{"rate", `rate(http_requests_total[5m])`},
		// The usual "requests per second by service" panel.
		{"sum_by_rate", `sum by (service) (rate(http_requests_total[5m]))`},
		// p95 latency from a classic histogram (6,000 bucket series).
		{"histogram_quantile", `histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))`},
		// The ten busiest endpoints.
		{"topk", `topk(10, sum by (service, method, route) (rate(http_requests_total[5m])))`},
		// A Grafana-variable style selector: regex matchers on five labels.
		{"regex_selector", `http_requests_total{service=~"svc-0[0-4]",instance=~".+-[0-2]",route=~"/api/v1/.+",method=~"GET|POST",status=~"5.."}`},
	}
}
