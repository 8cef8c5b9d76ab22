package promapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

// hostile are queries nobody writes by hand, each past the default
// query.max_depth; their sizes are what Prometheus's parser, evaluator or
// AST translator take seconds and hundreds of megabytes over (measured,
// docs/BENCHMARKS.md). The attacker's 100,000-term sum overflows the
// evaluator's stack; these are smaller so that today's code fails the
// tests slowly rather than by crashing them.
var hostile = map[string]string{
	"sum chain":       "1" + strings.Repeat("+1", 20_000),
	"or chain":        "up" + strings.Repeat(" or up", 5_000),
	"nested parens":   strings.Repeat("(", 10_000) + "1" + strings.Repeat(")", 10_000),
	"nested calls":    strings.Repeat("abs(", 5_000) + "vector(1)" + strings.Repeat(")", 5_000),
	"right-deep sum":  strings.Repeat("1+(", 5_000) + "1" + strings.Repeat(")", 5_000),
	"unary minus run": strings.Repeat("-", 20_000) + "vector(1)",
}

// ordinary are queries people write; they must stay well inside the bounds.
var ordinary = []string{
	`up`,
	`sum by (job) (rate(http_requests_total{job="api", status=~"5.."}[5m])) / sum by (job) (rate(http_requests_total{job="api"}[5m])) > 0.05`,
	`histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m])))`,
	`max_over_time(rate(x[5m])[1h:1m] offset -5m @ end())`,
	`label_replace(up{instance=~"a|b|c"}, "host", "$1", "instance", "(.*):.*") * on(job) group_left(team) (team_info == 1)`,
	`predict_linear(node_filesystem_avail_bytes{mountpoint="/"}[6h], 4 * 3600) < 0 and on() (hour() >= 8 <= 18)`,
	"sum(rate(a[5m])) # a comment with an apostrophe: don't (+++\n + sum(rate(b[5m]))",
	`{"unquoted.utf8"="x"} or {__name__="or"} or {a="1+1+1+1+1+1+1", b='((((('}`,
	`sum by (job) (x) + on (job) group_left () sum by (job) (y) * ignoring (a) z ^ 2 % 3 atan2 w`,
	strings.Repeat("(a + b) * ", 100) + "c",
}

func TestDepthBoundNeverUndercounts(t *testing.T) {
	p := parser.NewParser(ParserOptions(DefaultConfig()))
	queries := append([]string(nil), ordinary...)
	for _, q := range hostile {
		queries = append(queries, q)
	}
	queries = append(queries, shippedRuleExprs(t)...)
	for _, q := range queries {
		expr, err := p.ParseExpr(q)
		if err != nil {
			t.Fatalf("%.60q: %v", q, err)
		}
		exact, bound := exprDepth(expr, 1<<30), depthBound(q)
		if bound < exact {
			t.Errorf("%.80q: depthBound = %d, below the true depth %d", q, bound, exact)
		}
	}
}

// shippedRuleExprs are the expressions of deploy/rules: what aiops ships
// must pass its own bounds.
func shippedRuleExprs(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("../../deploy/rules/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped rule files: %v", err)
	}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		groups, errs := rulefmt.Parse(b, false, model.UTF8Validation, parser.NewParser(ParserOptions(DefaultConfig())), slog.New(slog.DiscardHandler))
		if len(errs) > 0 {
			t.Fatalf("%s: %v", f, errs)
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				out = append(out, r.Expr)
			}
		}
	}
	return out
}

func TestBoundedParserAcceptsOrdinaryQueries(t *testing.T) {
	p := NewParser(DefaultConfig())
	for _, q := range append(append([]string(nil), ordinary...), shippedRuleExprs(t)...) {
		if _, err := p.ParseExpr(q); err != nil {
			t.Errorf("%.80q: %v", q, err)
		}
	}
	// A query exactly at the limit passes; one level more does not.
	cfg := DefaultConfig()
	cfg.MaxDepth = 5
	p = NewParser(cfg)
	if _, err := p.ParseExpr("1+1+1+1+1"); err != nil { // four operators over a literal: depth 5
		t.Errorf("depth 5 at max_depth 5: %v", err)
	}
	if _, err := p.ParseExpr("1+1+1+1+1+1"); err == nil || !strings.Contains(err.Error(), "query.max_depth") {
		t.Errorf("depth 6 at max_depth 5: %v, want an error naming query.max_depth", err)
	}
}

func TestBoundedParserRefusesLongInput(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxLength = 100
	p := NewParser(cfg)
	long := `up{job="` + strings.Repeat("a", 100) + `"}`
	if _, err := p.ParseExpr(long); err == nil || !strings.Contains(err.Error(), "query.max_length") {
		t.Errorf("ParseExpr: %v", err)
	}
	if _, err := p.ParseMetricSelector(long); err == nil || !strings.Contains(err.Error(), "query.max_length") {
		t.Errorf("ParseMetricSelector: %v", err)
	}
	if _, err := p.ParseMetricSelectors([]string{"up", long}); err == nil || !strings.Contains(err.Error(), "query.max_length") {
		t.Errorf("ParseMetricSelectors: %v", err)
	}
	if _, err := p.ParseMetricSelector(`up{job="a"}`); err != nil {
		t.Errorf("short selector: %v", err)
	}
}

// TestHostileQueriesRefused sends each hostile query to every endpoint that
// parses PromQL, as a read-scoped client could: each must be answered 400
// bad_data, naming the bound, without evaluating it.
func TestHostileQueriesRefused(t *testing.T) {
	store := storetest.Embedded(t)
	loadFixture(t, store)
	srv := newTestAPI(t, DefaultConfig(), store)
	end := unix(fixtureEnd)

	endpoints := []struct {
		path   string
		params func(q string) url.Values
	}{
		{"/api/v1/query", func(q string) url.Values { return url.Values{"query": {q}, "time": {end}} }},
		{"/api/v1/query_range", func(q string) url.Values {
			return url.Values{"query": {q}, "start": {unix(fixtureStart)}, "end": {end}, "step": {"15s"}}
		}},
		{"/api/v1/parse_query", func(q string) url.Values { return url.Values{"query": {q}} }},
		{"/api/v1/format_query", func(q string) url.Values { return url.Values{"query": {q}} }},
		{"/api/v1/query_exemplars", func(q string) url.Values {
			return url.Values{"query": {q}, "start": {unix(fixtureStart)}, "end": {end}}
		}},
	}
	for name, q := range hostile {
		for _, ep := range endpoints {
			got := call(t, srv, http.MethodPost, ep.path, ep.params(q))
			if got.code != http.StatusBadRequest || !isBadData(got.body, "query.max_depth") {
				t.Errorf("%s to %s: %d %.200s, want 400 bad_data naming query.max_depth", name, ep.path, got.code, got.body)
			}
		}
	}

	// Past query.max_length, selectors too: match[] of series, labels and
	// label values.
	long := `{job="` + strings.Repeat("a", DefaultConfig().MaxLength) + `"}`
	for _, path := range []string{"/api/v1/query", "/api/v1/series", "/api/v1/labels", "/api/v1/label/job/values"} {
		params := url.Values{"match[]": {long}, "query": {long}}
		got := call(t, srv, http.MethodPost, path, params)
		if path == "/api/v1/label/job/values" {
			got = call(t, srv, http.MethodGet, path, params)
		}
		if got.code != http.StatusBadRequest || !isBadData(got.body, "query.max_length") {
			t.Errorf("long selector to %s: %d %.200s, want 400 bad_data naming query.max_length", path, got.code, got.body)
		}
	}
}

func isBadData(body, mention string) bool { return isError(body, "bad_data", mention) }

// isError reports whether body is the API's error of errorType, with a
// message that mentions mention.
func isError(body, errorType, mention string) bool {
	var resp struct{ Status, ErrorType, Error string }
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		return false
	}
	return resp.Status == "error" && resp.ErrorType == errorType && strings.Contains(resp.Error, mention)
}

// TestParseQueryAnswerIsBounded: the largest query parse_query accepts
// gets an answer of bounded size.
func TestParseQueryAnswerIsBounded(t *testing.T) {
	store := storetest.Embedded(t)
	srv := newTestAPI(t, DefaultConfig(), store)
	// As many terms as fit in query.max_length, balanced so that the depth
	// stays small: (((1+1)+(1+1))+((1+1)+(1+1)))...
	q := "1"
	for len(q)*2+3 <= DefaultConfig().MaxLength {
		q = "(" + q + "+" + q + ")"
	}
	got := call(t, srv, http.MethodPost, "/api/v1/parse_query", url.Values{"query": {q}})
	if got.code != http.StatusOK {
		t.Fatalf("parse_query of %d bytes: %d %.200s", len(q), got.code, got.body)
	}
	// Each term becomes a JSON object of its own; what bounds the answer
	// is the bound on the query's length.
	if limit := 200 * len(q); len(got.body) > limit {
		t.Errorf("parse_query of %d bytes answered %d bytes, more than %d", len(q), len(got.body), limit)
	}
}
