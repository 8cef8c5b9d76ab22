package collector

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// maxProblems bounds how many problems one rejection lists.
const maxProblems = 5

// problems collects what is wrong with a request, naming the place in the
// OTLP structure, so the client can see what to fix.
type problems struct {
	list  []string
	total int
}

func (p *problems) add(format string, args ...any) {
	p.total++
	if len(p.list) < maxProblems {
		p.list = append(p.list, fmt.Sprintf(format, args...))
	}
}

func (p *problems) err(what string) error {
	if p.total == 0 {
		return nil
	}
	msg := "invalid " + what + ": " + strings.Join(p.list, "; ")
	if p.total > len(p.list) {
		msg += fmt.Sprintf(" (and %d more)", p.total-len(p.list))
	}
	return errors.New(msg)
}

// validateMetrics checks the parts of the OTLP metrics data model that
// Prometheus's translator needs and cannot repair. Such a request is
// rejected whole, before it is queued: a client that sends it gets
// InvalidArgument / 400 and the reasons, rather than having part of it
// vanish later.
func validateMetrics(md pmetric.Metrics) error {
	var p problems
	rms := md.ResourceMetrics()
	for i := range rms.Len() {
		sms := rms.At(i).ScopeMetrics()
		for j := range sms.Len() {
			ms := sms.At(j).Metrics()
			for k := range ms.Len() {
				validateMetric(&p, metricAt{i, j, k}, ms.At(k))
			}
		}
	}
	return p.err("metrics")
}

// metricAt locates a metric in a request; it is formatted only when
// something is wrong, keeping validation cheap on the hot path.
type metricAt struct{ r, s, m int }

func (a metricAt) String() string {
	return fmt.Sprintf("resource_metrics[%d].scope_metrics[%d].metrics[%d]", a.r, a.s, a.m)
}

type namedMetricAt struct {
	metricAt
	name string
}

func (a namedMetricAt) String() string { return fmt.Sprintf("%s (%q)", a.metricAt, a.name) }

func validateMetric(p *problems, loc metricAt, m pmetric.Metric) {
	if m.Name() == "" {
		p.add("%s: metric name is empty", loc)
		return
	}
	at := namedMetricAt{loc, m.Name()}
	temporality := func(t pmetric.AggregationTemporality) {
		if t == pmetric.AggregationTemporalityUnspecified {
			p.add("%s: aggregation temporality is unspecified", at)
		}
	}
	switch m.Type() {
	case pmetric.MetricTypeEmpty:
		p.add("%s: metric has no data (none of gauge, sum, histogram, exponential_histogram, summary is set)", at)
	case pmetric.MetricTypeGauge:
	case pmetric.MetricTypeSum:
		temporality(m.Sum().AggregationTemporality())
	case pmetric.MetricTypeHistogram:
		temporality(m.Histogram().AggregationTemporality())
		dps := m.Histogram().DataPoints()
		for x := range dps.Len() {
			dp := dps.At(x)
			bounds, counts := dp.ExplicitBounds(), dp.BucketCounts()
			if counts.Len() != 0 && counts.Len() != bounds.Len()+1 {
				p.add("%s data point %d: %d bucket counts for %d explicit bounds, want %d", at, x, counts.Len(), bounds.Len(), bounds.Len()+1)
			}
			for b := 1; b < bounds.Len(); b++ {
				if !(bounds.At(b) > bounds.At(b-1)) {
					p.add("%s data point %d: explicit bounds are not strictly increasing at index %d", at, x, b)
					break
				}
			}
		}
	case pmetric.MetricTypeExponentialHistogram:
		temporality(m.ExponentialHistogram().AggregationTemporality())
		dps := m.ExponentialHistogram().DataPoints()
		for x := range dps.Len() {
			// The OTLP spec's range; the translator downscales what
			// Prometheus cannot store.
			if s := dps.At(x).Scale(); s < -10 || s > 20 {
				p.add("%s data point %d: scale %d outside [-10, 20]", at, x, s)
			}
		}
	case pmetric.MetricTypeSummary:
		dps := m.Summary().DataPoints()
		for x := range dps.Len() {
			qs := dps.At(x).QuantileValues()
			for q := range qs.Len() {
				if v := qs.At(q).Quantile(); v < 0 || v > 1 || math.IsNaN(v) {
					p.add("%s data point %d: quantile %v outside [0, 1]", at, x, v)
					break
				}
			}
		}
	}
}

// validateTraces rejects spans without identity: the OTLP spec requires a
// non-zero trace id and span id, and stores key spans by them.
func validateTraces(td ptrace.Traces) error {
	var p problems
	rss := td.ResourceSpans()
	for i := range rss.Len() {
		sss := rss.At(i).ScopeSpans()
		for j := range sss.Len() {
			spans := sss.At(j).Spans()
			for k := range spans.Len() {
				s := spans.At(k)
				at := fmt.Sprintf("resource_spans[%d].scope_spans[%d].spans[%d] (%q)", i, j, k, s.Name())
				if s.TraceID().IsEmpty() {
					p.add("%s: trace_id is empty or all zero", at)
				}
				if s.SpanID().IsEmpty() {
					p.add("%s: span_id is empty or all zero", at)
				}
			}
		}
	}
	return p.err("traces")
}
