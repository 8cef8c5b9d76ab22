package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/aiops-dev/aiops/analyzer/results/correlate"
	"github.com/aiops-dev/aiops/collector"
	"github.com/aiops-dev/aiops/internal/freeport"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// startAiops runs aiops's all-in-one collector on an embedded store, as
// `aiops serve` does, and returns its OTLP/gRPC address.
func startAiops(t *testing.T) (*embedded.Store, string) {
	t.Helper()
	store := storetest.Embedded(t)
	cfg := collector.DefaultConfig()
	cfg.OTLP.GRPCEndpoint = freeport.Addr(t)
	cfg.OTLP.HTTPEndpoint = freeport.Addr(t)
	cfg.Queue.Dir = t.TempDir()
	cfg.Batch.FlushTimeout = 50 * time.Millisecond
	c, err := collector.New(cfg, collector.Deps{Store: store, Logger: testutil.Logger(t), Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("collector: %v", err)
		}
	})
	select {
	case <-c.Started():
	case err := <-done:
		t.Fatalf("collector stopped while starting: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("collector did not start within 60s")
	}
	return store, cfg.OTLP.GRPCEndpoint
}

// TestTelemetryReachesAiops runs the simulator binary's code against a
// running aiops collector: the series the shipped rules select exist with
// the labels the rules use, spans form the engine's service graph, and
// logs carry the ids of stored spans.
func TestTelemetryReachesAiops(t *testing.T) {
	store, endpoint := startAiops(t)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	scenarioFile := filepath.Join(dir, "scenario.yaml")
	os.WriteFile(tokenFile, []byte("t0ken\n"), 0o600)
	// Short faults, so that the error series exist too: LLM errors and
	// failed jobs, 5xx answers, 401s. The simulated clock follows the
	// wall clock (the store takes recent data only), so demand is made
	// flat: what the test sees must not depend on the hour it runs at.
	os.WriteFile(scenarioFile, []byte(`
engine:
  trough_ratio: 1
faults:
  - {fault: llm_outage, target: openai, intensity: 1, duration: 3s}
  - {fault: bad_config, target: api-1, intensity: 0.5, duration: 3s}
  - {fault: auth_attack, target: api, intensity: 50, duration: 3s}
`), 0o600)
	// The simulated clock starts at the wall clock truncated to the step.
	begin := time.Now().Add(-time.Minute)
	var stderr bytes.Buffer
	code := run(context.Background(), []string{
		"--otlp-endpoint", endpoint, "--control-addr", "127.0.0.1:0", "--token-file", tokenFile,
		"--scenario", scenarioFile, "--seed", "3", "--export-interval", "200ms", "--run-for", "5s",
		"--trace-ratio", "0.5", "--log.level", "warn",
	}, &bytes.Buffer{}, &stderr)
	if code != 0 {
		t.Fatalf("workflow-sim exited with %d:\n%s", code, stderr.String())
	}
	end := time.Now().Add(time.Minute)

	selectors := ruleSelectors(t)
	testutil.Eventually(t, 30*time.Second, "every series the rules select is stored", func() (bool, string) {
		for _, sel := range selectors {
			if n, _ := countSeries(t, store, begin, end, sel.matchers); n == 0 {
				return false, "nothing for " + sel.text
			}
		}
		return true, ""
	})
	for _, sel := range selectors {
		_, names := countSeries(t, store, begin, end, sel.matchers)
		for _, l := range append([]string{"job", "instance"}, sel.grouping...) {
			if !names[l] {
				t.Errorf("%s: no series has label %s (the rules group by it)", sel.text, l)
			}
		}
	}

	ctx := context.Background()
	var g *correlate.Graph
	want := [][2]string{{"api", "auth"}, {"api", "postgres"}, {"api", "redis"}, {"api", "openai"}, {"api", "worker"},
		{"auth", "postgres"}, {"worker", "postgres"}, {"worker", "auth"}, {"worker", "openai"}}
	testutil.Eventually(t, 30*time.Second, "the service graph", func() (bool, string) {
		var err error
		if g, err = correlate.BuildGraph(ctx, store, begin, end); err != nil {
			return false, err.Error()
		}
		for _, e := range want {
			if _, ok := g.Edge(e[0], e[1]); !ok {
				return false, fmt.Sprintf("no edge %s → %s in %v", e[0], e[1], g.Edges)
			}
		}
		return true, ""
	})
	if e, _ := g.Edge("api", "openai"); e.Errors == 0 {
		t.Errorf("api → openai has no failed calls during the outage: %+v", e)
	}

	// Spans and logs travel in separate queues: wait until every log's
	// span is stored.
	testutil.Eventually(t, 30*time.Second, "logs carry the ids of stored spans", func() (bool, string) {
		spans, err := store.QuerySpans(ctx, storage.SpanQuery{ServiceName: "api", Start: begin, End: end, Limit: 100000})
		if err != nil {
			return false, err.Error()
		}
		ids := map[[2]string]bool{}
		errorSpans := 0
		for _, s := range spans {
			ids[[2]string{s.TraceID, s.SpanID}] = true
			if s.StatusCode == "Error" {
				errorSpans++
			}
			if s.ResourceAttributes["service.instance.id"] == "" || s.ResourceAttributes["host.name"] == "" {
				return false, fmt.Sprintf("span without instance or host: %+v", s)
			}
		}
		logs, err := store.QueryLogs(ctx, storage.LogQuery{ServiceName: "api", Start: begin, End: end, Limit: 100000})
		if err != nil {
			return false, err.Error()
		}
		withTrace, errorLogs := 0, 0
		for _, l := range logs {
			if l.TraceID != "" {
				withTrace++
				if !ids[[2]string{l.TraceID, l.SpanID}] {
					return false, fmt.Sprintf("log %q: trace %q span %q: no such span stored", l.Body, l.TraceID, l.SpanID)
				}
			}
			if l.SeverityNumber >= 17 {
				errorLogs++
			}
		}
		return errorSpans > 0 && withTrace > 0 && errorLogs > 0,
			fmt.Sprintf("%d spans (%d errors), %d logs (%d with trace ids, %d errors)", len(spans), errorSpans, len(logs), withTrace, errorLogs)
	})
}

// selector is a vector selector of a shipped rule, and the labels the
// rule groups its results by.
type selector struct {
	text     string
	matchers []*labels.Matcher
	grouping []string
}

// ruleSelectors returns the selectors of the shipped rules that read the
// engine's telemetry: not recording rules' outputs (they contain a
// colon), not the analyzer's results (aiops_*), not the Go runtime's
// metrics (the engine's services are Python).
func ruleSelectors(t *testing.T) []selector {
	t.Helper()
	files, err := filepath.Glob("../../deploy/rules/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule files: %v", err)
	}
	seen := map[string]*selector{}
	p := parser.NewParser(parser.Options{})
	for _, f := range files {
		groups, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, p, nil)
		if len(errs) > 0 {
			t.Fatalf("%s: %v", f, errs)
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				expr, err := p.ParseExpr(r.Expr)
				if err != nil {
					t.Fatalf("%s: %s: %v", f, r.Expr, err)
				}
				collect(expr, nil, seen)
			}
		}
	}
	var out []selector
	for _, s := range seen {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].text < out[j].text })
	return out
}

func collect(node parser.Node, grouping []string, seen map[string]*selector) {
	switch n := node.(type) {
	case *parser.AggregateExpr:
		grouping = append(append([]string(nil), grouping...), n.Grouping...)
	case *parser.VectorSelector:
		if strings.Contains(n.Name, ":") || strings.HasPrefix(n.Name, "aiops_") || strings.HasPrefix(n.Name, "go_") {
			return
		}
		key := n.String()
		s := seen[key]
		if s == nil {
			s = &selector{text: key, matchers: n.LabelMatchers}
			seen[key] = s
		}
		for _, l := range grouping {
			if l != "le" || strings.HasSuffix(n.Name, "_bucket") {
				s.grouping = appendNew(s.grouping, l)
			}
		}
		return
	}
	for _, c := range parser.Children(node) {
		collect(c, grouping, seen)
	}
}

func appendNew(xs []string, x string) []string {
	for _, y := range xs {
		if y == x {
			return xs
		}
	}
	return append(xs, x)
}

// countSeries counts the stored series ms selects and the label names
// they carry.
func countSeries(t *testing.T, store *embedded.Store, from, to time.Time, ms []*labels.Matcher) (int, map[string]bool) {
	t.Helper()
	q, err := store.Querier(from.UnixMilli(), to.UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	set := q.Select(context.Background(), false, nil, ms...)
	n, names := 0, map[string]bool{}
	for set.Next() {
		n++
		set.At().Labels().Range(func(l labels.Label) { names[l.Name] = true })
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return n, names
}

// TestFlags: bad flags are refused, naming the flag.
func TestFlags(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("x"), 0o600)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte(" \n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("faults:\n  - fault: meteor\n"), 0o600)
	base := []string{"--otlp-endpoint", "off", "--control-addr", "127.0.0.1:0"}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--otlp-endpoint", "off"}, 2, "--token-file: must be set"},
		{append(base, "--token-file", tok, "--export-interval", "0s"), 2, "--export-interval: must be in [10ms, 10m], got 0s"},
		{append(base, "--token-file", tok, "--trace-ratio", "2"), 2, "--trace-ratio: must be in [0, 1], got 2"},
		{append(base, "--token-file", tok, "--start", "yesterday"), 2, "--start: want an RFC 3339 time or now"},
		{[]string{"--otlp-endpoint", "localhost", "--token-file", tok}, 2, "--otlp-endpoint: want HOST:PORT or off"},
		{append(base, "--token-file", empty), 1, "--token-file: " + empty + " is empty"},
		{append(base, "--token-file", tok, "--scenario", bad), 1, `faults[0].fault: unknown fault "meteor"`},
		{append(base, "--token-file", tok, "--run-for", "300ms", "--export-interval", "100ms"), 0, ""},
	} {
		var stderr bytes.Buffer
		code := run(context.Background(), tc.args, &bytes.Buffer{}, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
	}
}
