package kafkaexporter

import (
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/aiops-dev/aiops/collector/internal/kafkaotlp"
)

// The functions below group a payload by partition key and cut groups that
// do not fit in one message into pieces of whole data points, log records
// or spans. They never modify their input: exporterhelper retries a failed
// push with the same payload. A payload whose resources all share one key
// (the common case) is used as it is; otherwise resources are copied into
// their groups.

func groupMetrics(md pmetric.Metrics) map[string]pmetric.Metrics {
	out := map[string]pmetric.Metrics{}
	rms := md.ResourceMetrics()
	if key, ok := oneKey(rms.Len(), func(i int) string { return kafkaotlp.ResourceKey(rms.At(i).Resource().Attributes()) }); ok {
		out[key] = md
		return out
	}
	for i := range rms.Len() {
		rm := rms.At(i)
		key := kafkaotlp.ResourceKey(rm.Resource().Attributes())
		g, ok := out[key]
		if !ok {
			g = pmetric.NewMetrics()
			out[key] = g
		}
		rm.CopyTo(g.ResourceMetrics().AppendEmpty())
	}
	return out
}

func groupLogs(ld plog.Logs) map[string]plog.Logs {
	out := map[string]plog.Logs{}
	rls := ld.ResourceLogs()
	if key, ok := oneKey(rls.Len(), func(i int) string { return kafkaotlp.ResourceKey(rls.At(i).Resource().Attributes()) }); ok {
		out[key] = ld
		return out
	}
	for i := range rls.Len() {
		rl := rls.At(i)
		key := kafkaotlp.ResourceKey(rl.Resource().Attributes())
		g, ok := out[key]
		if !ok {
			g = plog.NewLogs()
			out[key] = g
		}
		rl.CopyTo(g.ResourceLogs().AppendEmpty())
	}
	return out
}

func groupTraces(td ptrace.Traces) map[string]ptrace.Traces {
	out := map[string]ptrace.Traces{}
	rss := td.ResourceSpans()
	if key, ok := oneKey(rss.Len(), func(i int) string { return kafkaotlp.ResourceKey(rss.At(i).Resource().Attributes()) }); ok {
		out[key] = td
		return out
	}
	for i := range rss.Len() {
		rs := rss.At(i)
		key := kafkaotlp.ResourceKey(rs.Resource().Attributes())
		g, ok := out[key]
		if !ok {
			g = ptrace.NewTraces()
			out[key] = g
		}
		rs.CopyTo(g.ResourceSpans().AppendEmpty())
	}
	return out
}

// oneKey reports whether all n resources have the same key, and which.
func oneKey(n int, key func(int) string) (string, bool) {
	if n == 0 {
		return "", false
	}
	first := key(0)
	for i := 1; i < n; i++ {
		if key(i) != first {
			return "", false
		}
	}
	return first, true
}

// halveMetrics returns two payloads holding the first and the second half
// of md's data points, in order.
func halveMetrics(md pmetric.Metrics) (pmetric.Metrics, pmetric.Metrics) {
	half := md.DataPointCount() / 2
	a, b := pmetric.NewMetrics(), pmetric.NewMetrics()
	md.CopyTo(a)
	md.CopyTo(b)
	keepMetricPoints(a, 0, half)
	keepMetricPoints(b, half, md.DataPointCount())
	return a, b
}

// keepMetricPoints removes every data point whose position in md is
// outside [lo, hi), then metrics, scopes and resources left empty.
func keepMetricPoints(md pmetric.Metrics, lo, hi int) {
	i := 0
	keep := func() bool { in := i >= lo && i < hi; i++; return !in }
	md.ResourceMetrics().RemoveIf(func(rm pmetric.ResourceMetrics) bool {
		rm.ScopeMetrics().RemoveIf(func(sm pmetric.ScopeMetrics) bool {
			sm.Metrics().RemoveIf(func(m pmetric.Metric) bool {
				switch m.Type() {
				case pmetric.MetricTypeGauge:
					m.Gauge().DataPoints().RemoveIf(func(pmetric.NumberDataPoint) bool { return keep() })
					return m.Gauge().DataPoints().Len() == 0
				case pmetric.MetricTypeSum:
					m.Sum().DataPoints().RemoveIf(func(pmetric.NumberDataPoint) bool { return keep() })
					return m.Sum().DataPoints().Len() == 0
				case pmetric.MetricTypeHistogram:
					m.Histogram().DataPoints().RemoveIf(func(pmetric.HistogramDataPoint) bool { return keep() })
					return m.Histogram().DataPoints().Len() == 0
				case pmetric.MetricTypeExponentialHistogram:
					m.ExponentialHistogram().DataPoints().RemoveIf(func(pmetric.ExponentialHistogramDataPoint) bool { return keep() })
					return m.ExponentialHistogram().DataPoints().Len() == 0
				case pmetric.MetricTypeSummary:
					m.Summary().DataPoints().RemoveIf(func(pmetric.SummaryDataPoint) bool { return keep() })
					return m.Summary().DataPoints().Len() == 0
				}
				return true
			})
			return sm.Metrics().Len() == 0
		})
		return rm.ScopeMetrics().Len() == 0
	})
}

func halveLogs(ld plog.Logs) (plog.Logs, plog.Logs) {
	n := ld.LogRecordCount()
	a, b := plog.NewLogs(), plog.NewLogs()
	ld.CopyTo(a)
	ld.CopyTo(b)
	keepLogRecords(a, 0, n/2)
	keepLogRecords(b, n/2, n)
	return a, b
}

func keepLogRecords(ld plog.Logs, lo, hi int) {
	i := 0
	ld.ResourceLogs().RemoveIf(func(rl plog.ResourceLogs) bool {
		rl.ScopeLogs().RemoveIf(func(sl plog.ScopeLogs) bool {
			sl.LogRecords().RemoveIf(func(plog.LogRecord) bool { in := i >= lo && i < hi; i++; return !in })
			return sl.LogRecords().Len() == 0
		})
		return rl.ScopeLogs().Len() == 0
	})
}

func halveTraces(td ptrace.Traces) (ptrace.Traces, ptrace.Traces) {
	n := td.SpanCount()
	a, b := ptrace.NewTraces(), ptrace.NewTraces()
	td.CopyTo(a)
	td.CopyTo(b)
	keepSpans(a, 0, n/2)
	keepSpans(b, n/2, n)
	return a, b
}

func keepSpans(td ptrace.Traces, lo, hi int) {
	i := 0
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			ss.Spans().RemoveIf(func(ptrace.Span) bool { in := i >= lo && i < hi; i++; return !in })
			return ss.Spans().Len() == 0
		})
		return rs.ScopeSpans().Len() == 0
	})
}
