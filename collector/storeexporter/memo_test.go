package storeexporter

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	prw "github.com/prometheus/prometheus/storage/remote/otlptranslator/prometheusremotewrite"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/aiops-dev/aiops/collector/internal/obs"
)

// refRecorder records appends like the translator's output, returning a
// reference derived from the labels, and checks that every reference it
// is handed belongs to the labels it comes with.
type refRecorder struct {
	appends []recorded
	badRefs []string
	withRef int
}

func (r *refRecorder) Append(ref promstorage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts promstorage.AOptions) (promstorage.SeriesRef, error) {
	want := promstorage.SeriesRef(ls.Hash() | 1)
	if ref != 0 && ref != want {
		r.badRefs = append(r.badRefs, ls.String())
	}
	if ref != 0 {
		r.withRef++
	}
	r.appends = append(r.appends, recorded{ls: ls, st: st, t: t, v: v, h: h, fh: fh, opts: opts})
	return want, nil
}

func (*refRecorder) Commit() error   { return nil }
func (*refRecorder) Rollback() error { return nil }

// perSeries renders appends grouped by series, in append order within a
// series: the order the store sees per series. Order across series does
// not reach the store.
func perSeries(appends []recorded) map[string][]string {
	out := map[string][]string{}
	for _, a := range appends {
		s := fmt.Sprintf("st=%d t=%d v=%x", a.st, a.t, math.Float64bits(a.v))
		if a.h != nil {
			s += " h=" + a.h.String() + fmt.Sprintf(" hint=%d count=%x sum=%x", a.h.CounterResetHint, a.h.Count, math.Float64bits(a.h.Sum))
		}
		if a.fh != nil {
			s += " fh=" + a.fh.String()
		}
		s += fmt.Sprintf(" meta=%+v family=%q exemplars=%v", a.opts.Metadata, a.opts.MetricFamilyName, a.opts.Exemplars)
		k := a.ls.String()
		out[k] = append(out[k], s)
	}
	return out
}

func flatErrors(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, flatErrors(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

// gen makes OTLP requests whose series identities repeat across requests,
// covering every metric type and what the translator warns or errs about.
type gen struct {
	rnd   *rand.Rand
	round int
}

func (g *gen) pick(n int) int { return g.rnd.IntN(n) }

func (g *gen) attrs(m pcommon.Map, pool [][2]string) {
	for range g.pick(4) {
		kv := pool[g.pick(len(pool))]
		switch kv[1] {
		case "<int>":
			m.PutInt(kv[0], int64(g.pick(3)))
		case "<bool>":
			m.PutBool(kv[0], g.pick(2) == 0)
		case "<double>":
			m.PutDouble(kv[0], float64(g.pick(3))/2)
		default:
			m.PutStr(kv[0], kv[1]+fmt.Sprint(g.pick(3)))
		}
	}
}

var (
	resourcePool = [][2]string{
		{"host.name", "h"}, {"k8s.pod.name", "pod-"}, {"r.x", "rx"}, {"r_x", "ry"},
		{"deployment.environment", "env"}, {"process.pid", "<int>"}, {"cloud.ok", "<bool>"},
	}
	pointPool = [][2]string{
		{"route", "/r"}, {"status", "<int>"}, {"a.b", "ab"}, {"a_b", "ab2"},
		{"method", "GET"}, {"ratio", "<double>"}, {"ok", "<bool>"}, {"__name__", "sneaky"},
		{"job", "override"}, {"1st", "x"},
	}
	rarePool = [][2]string{{"", "empty-key"}, {"__", "underscores"}}
)

func (g *gen) ts(offset int) pcommon.Timestamp {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(g.round) * 10 * time.Second)
	return pcommon.NewTimestampFromTime(base.Add(time.Duration(offset) * time.Millisecond))
}

func (g *gen) flags() pmetric.DataPointFlags {
	if g.pick(12) == 0 {
		return pmetric.DefaultDataPointFlags.WithNoRecordedValue(true)
	}
	return pmetric.DefaultDataPointFlags
}

func (g *gen) exemplars(es pmetric.ExemplarSlice) {
	if g.pick(10) != 0 {
		return
	}
	e := es.AppendEmpty()
	e.SetDoubleValue(float64(g.pick(100)))
	e.SetTimestamp(g.ts(1))
	e.SetTraceID(pcommon.TraceID{1, 2, 3})
	e.FilteredAttributes().PutStr("user", "u")
}

func (g *gen) request() pmetric.Metrics {
	g.round++
	md := pmetric.NewMetrics()
	for range 1 + g.pick(3) {
		rm := md.ResourceMetrics().AppendEmpty()
		ra := rm.Resource().Attributes()
		ra.PutStr("service.name", fmt.Sprint("svc", g.pick(2)))
		if g.pick(2) == 0 {
			ra.PutStr("service.namespace", "ns")
		}
		if g.pick(4) != 0 {
			ra.PutStr("service.instance.id", fmt.Sprint("i", g.pick(3)))
		}
		g.attrs(ra, resourcePool)
		if g.pick(40) == 0 {
			g.attrs(ra, rarePool)
		}
		for range 1 + g.pick(2) {
			sm := rm.ScopeMetrics().AppendEmpty()
			if g.pick(2) == 0 {
				sm.Scope().SetName("lib" + fmt.Sprint(g.pick(2)))
				sm.Scope().SetVersion("1.0")
				sm.SetSchemaUrl("https://example.com/schema")
				if g.pick(2) == 0 {
					sm.Scope().Attributes().PutStr("scope.attr", "s")
				}
			}
			for range 1 + g.pick(6) {
				g.metric(sm.Metrics().AppendEmpty())
			}
		}
	}
	return md
}

func (g *gen) pointAttrs(m pcommon.Map) {
	g.attrs(m, pointPool)
	if g.pick(60) == 0 {
		g.attrs(m, rarePool)
	}
}

func (g *gen) metric(m pmetric.Metric) {
	units := []string{"", "s", "By", "{request}", "1", "ms"}
	m.SetName([]string{"http.server.duration", "queue.depth", "jobs", "cpu.utilization", "llm_tokens"}[g.pick(5)])
	m.SetUnit(units[g.pick(len(units))])
	if g.pick(3) == 0 {
		m.SetDescription("what it measures")
	}
	temporality := func() pmetric.AggregationTemporality {
		switch g.pick(10) {
		case 0:
			return pmetric.AggregationTemporalityDelta
		case 1:
			return pmetric.AggregationTemporalityUnspecified
		}
		return pmetric.AggregationTemporalityCumulative
	}
	n := 1 + g.pick(5)
	if g.pick(30) == 0 {
		n = 0
	}
	switch g.pick(7) {
	case 0, 1:
		dps := m.SetEmptyGauge().DataPoints()
		for i := range n {
			g.number(dps.AppendEmpty(), i, false)
		}
	case 2, 3:
		s := m.SetEmptySum()
		s.SetIsMonotonic(g.pick(3) != 0)
		s.SetAggregationTemporality(temporality())
		for i := range n {
			g.number(s.DataPoints().AppendEmpty(), i, true)
		}
	case 4:
		h := m.SetEmptyHistogram()
		h.SetAggregationTemporality(temporality())
		for i := range n {
			dp := h.DataPoints().AppendEmpty()
			g.pointAttrs(dp.Attributes())
			dp.SetTimestamp(g.ts(i))
			if g.pick(2) == 0 {
				dp.SetStartTimestamp(g.ts(-100000))
			}
			bounds := [][]float64{{0.1, 0.5, 1}, {1, 10}, {}, {0.25, math.Inf(1)}, {5}}[g.pick(5)]
			dp.ExplicitBounds().FromRaw(bounds)
			var total uint64
			for range len(bounds) + 1 {
				c := uint64(g.pick(5))
				total += c
				dp.BucketCounts().Append(c)
			}
			if g.pick(15) == 0 {
				dp.BucketCounts().FromRaw(nil)
			}
			dp.SetCount(total)
			if g.pick(4) != 0 {
				dp.SetSum(float64(total) * 0.3)
			}
			dp.SetFlags(g.flags())
			g.exemplars(dp.Exemplars())
		}
	case 5:
		h := m.SetEmptyExponentialHistogram()
		h.SetAggregationTemporality(temporality())
		for i := range n {
			dp := h.DataPoints().AppendEmpty()
			g.pointAttrs(dp.Attributes())
			dp.SetTimestamp(g.ts(i))
			dp.SetScale(int32([]int{-2, 0, 3, 8, 24}[g.pick(5)]))
			dp.Positive().SetOffset(int32(g.pick(5)) - 2)
			var total uint64
			for range g.pick(6) {
				c := uint64(g.pick(4))
				total += c
				dp.Positive().BucketCounts().Append(c)
			}
			dp.SetZeroCount(uint64(g.pick(2)))
			dp.SetCount(total + dp.ZeroCount())
			if g.pick(6) == 0 {
				dp.SetCount(0)
			}
			dp.SetSum(1.5)
			dp.SetFlags(g.flags())
			g.exemplars(dp.Exemplars())
		}
	case 6:
		s := m.SetEmptySummary()
		for i := range n {
			dp := s.DataPoints().AppendEmpty()
			g.pointAttrs(dp.Attributes())
			dp.SetTimestamp(g.ts(i))
			dp.SetCount(uint64(g.pick(50)))
			dp.SetSum(float64(g.pick(1000)) / 10)
			for _, q := range [][]float64{{0.5, 0.99}, {0}, {}, {0.5, 0.9, 0.99, 1}}[g.pick(4)] {
				qv := dp.QuantileValues().AppendEmpty()
				qv.SetQuantile(q)
				qv.SetValue(float64(g.pick(100)))
			}
			dp.SetFlags(g.flags())
		}
	}
	if g.pick(80) == 0 {
		// A metric with no data type at all.
		fresh := pmetric.NewMetric()
		fresh.SetName(m.Name())
		fresh.CopyTo(m)
	}
}

func (g *gen) number(dp pmetric.NumberDataPoint, i int, exemplars bool) {
	g.pointAttrs(dp.Attributes())
	dp.SetTimestamp(g.ts(i))
	if g.pick(2) == 0 {
		dp.SetStartTimestamp(g.ts(-50000))
	}
	switch g.pick(3) {
	case 0:
		dp.SetIntValue(int64(g.pick(1000)))
	default:
		dp.SetDoubleValue(float64(g.pick(1000)) / 7)
	}
	dp.SetFlags(g.flags())
	if exemplars {
		g.exemplars(dp.Exemplars())
	}
}

// TestMemoMatchesTranslator is the differential test of the translation
// cache: for many generated requests, under every translation setting,
// the memoised path appends exactly what Prometheus's translator appends
// (per series, in order, with the same start times, values, staleness
// markers, histograms, metadata and exemplars) and reports the same
// errors and warnings. Series identities repeat across requests, so most
// points take the cached path; one variant narrows the cache's keys to
// two bits so that almost every lookup collides and must be caught by
// verification, another bounds the cache to a few series.
func TestMemoMatchesTranslator(t *testing.T) {
	variants := map[string]TranslationConfig{
		"default":            {},
		"promote some":       {PromoteResourceAttributes: []string{"host.name", "r.x", ""}},
		"promote all":        {PromoteAllResourceAttributes: true, IgnoreResourceAttributes: []string{"process.pid"}},
		"scope metadata":     {PromoteScopeMetadata: true},
		"keep identifying":   {KeepIdentifyingResourceAttributes: true},
		"no target_info":     {DisableTargetInfo: true},
		"utf8":               {Strategy: "NoUTF8EscapingWithSuffixes"},
		"no suffixes":        {Strategy: "UnderscoreEscapingWithoutSuffixes"},
		"nhcb":               {ConvertHistogramsToNHCB: true},
		"short lookback":     {LookbackDelta: 4 * time.Millisecond},
		"colliding keys":     {},
		"tiny cache":         {CacheSeries: 3},
		"tiny cache collide": {CacheSeries: 5},
	}
	ctx := context.Background()
	for name, cfg := range variants {
		t.Run(name, func(t *testing.T) {
			w := NewMetricsWriter(nil, cfg, obs.NewUnregistered(), slog.New(slog.DiscardHandler), "test")
			if strings.Contains(name, "collid") {
				w.cache.resources.mask, w.cache.metrics.mask, w.cache.series.mask = 3, 3, 3
			}
			g := &gen{rnd: rand.New(rand.NewPCG(1, uint64(len(name))))}
			var points, samples int
			var last pmetric.Metrics
			for round := range 300 {
				md := g.request()
				if round%3 == 2 {
					// The same points again a second later, as a client
					// sends them every interval: the positional path.
					md = pmetric.NewMetrics()
					last.CopyTo(md)
					shift(md, time.Second)
				}
				last = md
				points += md.DataPointCount()

				want := &refRecorder{}
				conv := prw.NewPrometheusConverter(want)
				wantAnnots, wantErr := conv.FromMetrics(ctx, md, w.settings)

				got := &refRecorder{}
				gotAnnots, gotErr := w.translateMemo(ctx, got, md)

				if len(got.appends) != len(want.appends) {
					t.Fatalf("round %d: %d samples appended, translator appends %d", g.round, len(got.appends), len(want.appends))
				}
				samples += len(got.appends)
				gs, ws := perSeries(got.appends), perSeries(want.appends)
				for k, w := range ws {
					if !slices.Equal(gs[k], w) {
						t.Fatalf("round %d: series %s:\n got  %q\n want %q", g.round, k, gs[k], w)
					}
				}
				if len(gs) != len(ws) {
					t.Fatalf("round %d: %d series, translator makes %d", g.round, len(gs), len(ws))
				}
				ge, we := flatErrors(gotErr), flatErrors(wantErr)
				slices.Sort(ge)
				slices.Sort(we)
				if !slices.Equal(ge, we) {
					t.Fatalf("round %d: errors\n got  %q\n want %q", g.round, ge, we)
				}
				ga, _ := gotAnnots.AsStrings("", 0, 0)
				wa, _ := wantAnnots.AsStrings("", 0, 0)
				slices.Sort(ga)
				slices.Sort(wa)
				if !slices.Equal(ga, wa) {
					t.Fatalf("round %d: warnings\n got  %q\n want %q", g.round, ga, wa)
				}
				if len(got.badRefs) > 0 {
					t.Fatalf("round %d: references handed with the wrong labels: %v", g.round, got.badRefs[:1])
				}
			}
			if n := w.cache.series.len(); n == 0 {
				t.Fatal("nothing was cached")
			}
			t.Logf("%d points, %d samples, %d series entries cached", points, samples, w.cache.series.len())
		})
	}
}

// TestMemoHits checks that the cache is used: after the first request,
// points of known series are appended with the store's reference and
// without the translator.
func TestMemoHits(t *testing.T) {
	w := NewMetricsWriter(nil, TranslationConfig{}, obs.NewUnregistered(), slog.New(slog.DiscardHandler), "test")
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "svc")
	rm.Resource().Attributes().PutStr("host.name", "h1")
	dps := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetEmptyGauge().DataPoints()
	rm.ScopeMetrics().At(0).Metrics().At(0).SetName("g")
	for i := range 10 {
		dp := dps.AppendEmpty()
		dp.Attributes().PutInt("i", int64(i))
		dp.SetTimestamp(pcommon.Timestamp(1e9))
	}
	first := &refRecorder{}
	if _, err := w.translateMemo(context.Background(), first, md); err != nil {
		t.Fatal(err)
	}
	second := &refRecorder{}
	if _, err := w.translateMemo(context.Background(), second, md); err != nil {
		t.Fatal(err)
	}
	if w.cache.series.len() != 10 {
		t.Fatalf("%d series cached, want 10", w.cache.series.len())
	}
	if first.withRef != 0 {
		t.Errorf("first request: %d appends with a reference, want 0", first.withRef)
	}
	// 10 points and target_info, all by reference.
	if len(second.appends) != 11 || second.withRef != 11 || len(second.badRefs) > 0 {
		t.Fatalf("second request: %d appends, %d by reference, bad refs %v; want 11 by reference", len(second.appends), second.withRef, second.badRefs)
	}
}

// shift moves every point of md by d.
func shift(md pmetric.Metrics, d time.Duration) {
	move := func(ts pcommon.Timestamp) pcommon.Timestamp { return ts + pcommon.Timestamp(d) }
	for _, rm := range md.ResourceMetrics().All() {
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					for _, p := range m.Gauge().DataPoints().All() {
						p.SetTimestamp(move(p.Timestamp()))
						p.SetDoubleValue(p.DoubleValue() + 1)
					}
				case pmetric.MetricTypeSum:
					for _, p := range m.Sum().DataPoints().All() {
						p.SetTimestamp(move(p.Timestamp()))
					}
				case pmetric.MetricTypeHistogram:
					for _, p := range m.Histogram().DataPoints().All() {
						p.SetTimestamp(move(p.Timestamp()))
					}
				case pmetric.MetricTypeExponentialHistogram:
					for _, p := range m.ExponentialHistogram().DataPoints().All() {
						p.SetTimestamp(move(p.Timestamp()))
					}
				case pmetric.MetricTypeSummary:
					for _, p := range m.Summary().DataPoints().All() {
						p.SetTimestamp(move(p.Timestamp()))
					}
				}
			}
		}
	}
}
