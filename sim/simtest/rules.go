package simtest

import (
	"context"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/rules"
	prw "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"github.com/prometheus/prometheus/util/teststorage"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Rules evaluates alert rule files over a Prometheus TSDB that the
// simulator's metrics are written into, at simulated times.
type Rules struct {
	t       testing.TB
	store   *teststorage.TestStorage
	engine  *promql.Engine
	groups  []*rules.Group
	conv    *prw.PrometheusConverter
	setting prw.Settings
}

// RuleFiles returns the shipped rule files, from a directory dir levels
// below the repository root ("../.." for sim/engine).
func RuleFiles(t testing.TB, root string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "deploy", "rules", "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped rule files under %s: %v", root, err)
	}
	return files
}

// NewRules loads the rule files, to be evaluated every interval.
func NewRules(t testing.TB, interval time.Duration, files ...string) *Rules {
	t.Helper()
	r := &Rules{t: t, store: teststorage.New(t)}
	r.engine = promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute,
		EnableAtModifier: true, EnableNegativeOffset: true})
	p := parser.NewParser(parser.Options{EnableExperimentalFunctions: true})
	m := rules.NewManager(&rules.ManagerOptions{
		AppendableV2: r.store,
		Queryable:    r.store,
		QueryFunc:    rules.EngineQueryFunc(r.engine, r.store),
		Context:      context.Background(),
		Parser:       p,
		// Alerts are read from the rules; nothing is sent anywhere.
		NotifyFunc: func(context.Context, string, ...*rules.Alert) {},
	})
	groups, errs := m.LoadGroups(interval, labels.EmptyLabels(), "", nil, false, files...)
	if len(errs) > 0 {
		t.Fatalf("load rules: %v", errs)
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		r.groups = append(r.groups, groups[k])
	}
	// Prometheus's defaults for its OTLP endpoint, as aiops's collector
	// uses them (docs/COLLECTOR.md).
	r.setting = prw.Settings{AddMetricSuffixes: true, LookbackDelta: 5 * time.Minute,
		LabelNameUnderscoreSanitization: true, LabelNamePreserveMultipleUnderscores: true}
	r.conv = prw.NewPrometheusConverter(nil)
	return r
}

// Append writes one collection of the simulator's metrics.
func (r *Rules) Append(rms []*metricdata.ResourceMetrics) {
	r.t.Helper()
	app := r.store.AppenderV2(context.Background())
	r.conv.Reset(app)
	if _, err := r.conv.FromMetrics(context.Background(), ToPdata(rms), r.setting); err != nil {
		r.t.Fatalf("translate metrics: %v", err)
	}
	r.conv.Reset(nil)
	if err := app.Commit(); err != nil {
		r.t.Fatalf("commit metrics: %v", err)
	}
}

// Eval evaluates every group at ts, recording rules before the alerts
// that use them (groups in file order, as a rule manager would within
// one interval).
func (r *Rules) Eval(ts time.Time) {
	for _, g := range r.groups {
		g.Eval(context.Background(), ts)
	}
}

// Firing returns the firing alerts: alert name → the label sets.
func (r *Rules) Firing() map[string][]labels.Labels {
	out := map[string][]labels.Labels{}
	for _, g := range r.groups {
		for _, rule := range g.AlertingRules() {
			for _, a := range rule.ActiveAlerts() {
				if a.State == rules.StateFiring {
					out[rule.Name()] = append(out[rule.Name()], a.Labels)
				}
			}
		}
	}
	return out
}

// Query evaluates a PromQL expression at ts.
func (r *Rules) Query(expr string, ts time.Time) promql.Vector {
	r.t.Helper()
	q, err := r.engine.NewInstantQuery(context.Background(), r.store, nil, expr, ts)
	if err != nil {
		r.t.Fatalf("query %s: %v", expr, err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		r.t.Fatalf("query %s: %v", expr, res.Err)
	}
	v, err := res.Vector()
	if err != nil {
		r.t.Fatalf("query %s: %v", expr, err)
	}
	// Close gives the result's memory back to the engine: copy it.
	return append(promql.Vector(nil), v...)
}

// Range returns the samples of the series expr selects over [from, to].
func (r *Rules) Range(expr string, from, to time.Time, step time.Duration) promql.Matrix {
	r.t.Helper()
	q, err := r.engine.NewRangeQuery(context.Background(), r.store, nil, expr, from, to, step)
	if err != nil {
		r.t.Fatalf("query %s: %v", expr, err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		r.t.Fatalf("query %s: %v", expr, res.Err)
	}
	m, err := res.Matrix()
	if err != nil {
		r.t.Fatalf("query %s: %v", expr, err)
	}
	// Close gives the result's memory back to the engine: copy it.
	out := make(promql.Matrix, len(m))
	for k, s := range m {
		out[k] = promql.Series{Metric: s.Metric, Floats: append([]promql.FPoint(nil), s.Floats...)}
	}
	return out
}

// Storage is the TSDB the metrics are written to, for components under
// test that query it themselves.
func (r *Rules) Storage() *teststorage.TestStorage { return r.store }

// Engine is the PromQL engine the rules are evaluated with.
func (r *Rules) Engine() *promql.Engine { return r.engine }

// Active returns a copy of every alert in the firing state, with its
// labels (the rule's included) and when it fired.
func (r *Rules) Active() []rules.Alert {
	var out []rules.Alert
	for _, g := range r.groups {
		for _, rule := range g.AlertingRules() {
			for _, a := range rule.ActiveAlerts() {
				if a.State == rules.StateFiring {
					out = append(out, *a)
				}
			}
		}
	}
	return out
}
