package limits

import (
	"encoding/binary"
	"math"
	"time"
	"unicode/utf8"
	"unsafe"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// Admit removes from md the data points that break the limits and
// returns what it removed; now is the collector's clock. Metrics, scopes
// and resources it empties are removed too.
//
// It runs in one pass over the request, before the translator, and costs
// a few nanoseconds per point: the timestamp of every point against
// MaxFuture and MaxAge, and the number of its attributes against
// LabelLimit (the translator is quadratic in it); the attributes of
// every resource and scope (their number, names and string values
// against the limits and for valid UTF-8: they reach every series of the
// resource, or target_info, and a resource or scope that breaks a limit
// takes all its points with it); metric names and units (length, UTF-8).
// The names and values of a point's own attributes are checked once per
// new series, on the labels the translator made of them (CheckLabels),
// not on every point of every request.
func (c Config) Admit(md pmetric.Metrics, now time.Time) Refusals {
	a := admission{timeWindow: c.window(now)}
	md.ResourceMetrics().RemoveIf(func(rm pmetric.ResourceMetrics) bool {
		sms := rm.ScopeMetrics()
		if v := a.attrs(rm.Resource().Attributes(), "resource attribute"); v.Reason != "" {
			for _, sm := range sms.All() {
				a.refuseScope(sm, v)
			}
			return true
		}
		if sms.Len() == 0 {
			return false
		}
		sms.RemoveIf(a.scope)
		return sms.Len() == 0
	})
	return a.refused
}

type admission struct {
	timeWindow
	refused Refusals
}

func (a *admission) refuseScope(sm pmetric.ScopeMetrics, v Violation) {
	for _, m := range sm.Metrics().All() {
		a.refuseMetric(m, v)
	}
}

func (a *admission) refuseMetric(m pmetric.Metric, v Violation) {
	if v.Metric == "" {
		v.Metric = m.Name()
	}
	a.refused.Add(v, pointCount(m))
}

// scope admits the points of one scope; it reports whether the scope is
// left empty and should be removed.
func (a *admission) scope(sm pmetric.ScopeMetrics) bool {
	s := sm.Scope()
	if !utf8.ValidString(s.Name()) || !utf8.ValidString(s.Version()) {
		a.refuseScope(sm, Violation{Reason: InvalidUTF8, Where: "scope name or version"})
		return true
	}
	if v := a.attrs(s.Attributes(), "scope attribute"); v.Reason != "" {
		a.refuseScope(sm, v)
		return true
	}
	ms := sm.Metrics()
	if ms.Len() == 0 {
		return false
	}
	ms.RemoveIf(a.metric)
	return ms.Len() == 0
}

// metric admits the points of one metric; it reports whether the metric
// is left without points and should be removed.
func (a *admission) metric(m pmetric.Metric) bool {
	name := m.Name()
	switch {
	case a.c.MetricNameLengthLimit > 0 && len(name) > a.c.MetricNameLengthLimit:
		a.refuseMetric(m, Violation{Reason: MetricNameLength, Got: len(name), Limit: a.c.MetricNameLengthLimit})
		return true
	case !utf8.ValidString(name):
		a.refuseMetric(m, Violation{Reason: InvalidUTF8, Where: "metric name"})
		return true
	case !utf8.ValidString(m.Unit()):
		a.refuseMetric(m, Violation{Reason: InvalidUTF8, Where: "unit"})
		return true
	}
	before := pointCount(m)
	if before == 0 {
		return false
	}
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		m.Gauge().DataPoints().RemoveIf(func(p pmetric.NumberDataPoint) bool { return a.point(name, p.Timestamp(), p.Attributes()) })
	case pmetric.MetricTypeSum:
		m.Sum().DataPoints().RemoveIf(func(p pmetric.NumberDataPoint) bool { return a.point(name, p.Timestamp(), p.Attributes()) })
	case pmetric.MetricTypeHistogram:
		m.Histogram().DataPoints().RemoveIf(func(p pmetric.HistogramDataPoint) bool {
			return a.point(name, p.Timestamp(), p.Attributes()) ||
				a.buckets(name, max(p.ExplicitBounds().Len()+1, p.BucketCounts().Len()))
		})
	case pmetric.MetricTypeExponentialHistogram:
		m.ExponentialHistogram().DataPoints().RemoveIf(func(p pmetric.ExponentialHistogramDataPoint) bool {
			return a.point(name, p.Timestamp(), p.Attributes()) ||
				a.buckets(name, p.Positive().BucketCounts().Len()+p.Negative().BucketCounts().Len())
		})
	case pmetric.MetricTypeSummary:
		m.Summary().DataPoints().RemoveIf(func(p pmetric.SummaryDataPoint) bool { return a.point(name, p.Timestamp(), p.Attributes()) })
	}
	return pointCount(m) == 0
}

// point reports whether a point must be refused, and records why.
func (a *admission) point(metric string, ts pcommon.Timestamp, attrs pcommon.Map) bool {
	if v, bad := a.check(ts); bad {
		v.Metric = metric
		a.refused.Add(v, 1)
		return true
	}
	if n := attrs.Len(); a.c.LabelLimit > 0 && n > a.c.LabelLimit {
		a.refused.Add(Violation{Reason: LabelLimit, Metric: metric, Where: "attribute", Got: n, Limit: a.c.LabelLimit}, 1)
		return true
	}
	return false
}

// buckets reports whether a histogram point of n buckets must be refused,
// and records why.
func (a *admission) buckets(metric string, n int) bool {
	if a.c.BucketLimit > 0 && n > a.c.BucketLimit {
		a.refused.Add(Violation{Reason: BucketLimit, Metric: metric, Got: n, Limit: a.c.BucketLimit}, 1)
		return true
	}
	return false
}

// attrs checks the attributes of a resource or scope: lengths are
// compared as they come, and UTF-8 is checked precisely only when some
// byte of the names and string values is not ASCII.
func (a *admission) attrs(m pcommon.Map, where string) Violation {
	c := &a.c
	if c.LabelLimit > 0 && m.Len() > c.LabelLimit {
		return Violation{Reason: LabelLimit, Where: where, Got: m.Len(), Limit: c.LabelLimit}
	}
	var high uint64
	for k, v := range m.All() {
		if c.LabelNameLengthLimit > 0 && len(k) > c.LabelNameLengthLimit {
			return Violation{Reason: LabelNameLength, Where: where, Name: k, Got: len(k), Limit: c.LabelNameLengthLimit}
		}
		high |= orBytes(k)
		var s string
		switch v.Type() {
		case pcommon.ValueTypeStr:
			s = v.Str()
			high |= orBytes(s)
		case pcommon.ValueTypeBytes, pcommon.ValueTypeMap, pcommon.ValueTypeSlice:
			// Their labels are their string form (base64, JSON).
			if c.LabelValueLengthLimit > 0 {
				s = v.AsString()
			}
		default:
			continue
		}
		if c.LabelValueLengthLimit > 0 && len(s) > c.LabelValueLengthLimit {
			return Violation{Reason: LabelValueLength, Where: where, Name: k, Got: len(s), Limit: c.LabelValueLengthLimit}
		}
	}
	if high&asciiMask == 0 {
		return Violation{}
	}
	for k, v := range m.All() {
		if !utf8.ValidString(k) {
			return Violation{Reason: InvalidUTF8, Where: where + " name", Name: k}
		}
		if v.Type() == pcommon.ValueTypeStr && !utf8.ValidString(v.Str()) {
			return Violation{Reason: InvalidUTF8, Where: "value of " + where, Name: k}
		}
	}
	return Violation{}
}

// asciiMask has the high bit of every byte of a word.
const asciiMask = 0x8080808080808080

// orBytes ORs the bytes of s into a word, eight at a time: no bit of
// asciiMask set means all of s is ASCII.
func orBytes(s string) uint64 {
	var w uint64
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	for len(b) >= 8 {
		w |= binary.LittleEndian.Uint64(b)
		b = b[8:]
	}
	for _, c := range b {
		w |= uint64(c)
	}
	return w
}

func pointCount(m pmetric.Metric) int {
	switch m.Type() {
	case pmetric.MetricTypeGauge:
		return m.Gauge().DataPoints().Len()
	case pmetric.MetricTypeSum:
		return m.Sum().DataPoints().Len()
	case pmetric.MetricTypeHistogram:
		return m.Histogram().DataPoints().Len()
	case pmetric.MetricTypeExponentialHistogram:
		return m.ExponentialHistogram().DataPoints().Len()
	case pmetric.MetricTypeSummary:
		return m.Summary().DataPoints().Len()
	}
	return 0
}

// oldest is the earliest timestamp MaxAge admits at now. OTLP timestamps
// are unsigned nanoseconds since 1970: a max_age reaching before then
// admits every timestamp (pcommon would wrap the negative time around
// to the largest ones, and refuse everything).
func oldest(now time.Time, maxAge time.Duration) pcommon.Timestamp {
	t := now.Add(-maxAge)
	if t.Before(time.Unix(0, 0)) {
		return 0
	}
	return pcommon.NewTimestampFromTime(t)
}

// ahead is how far ts lies after now, for a message. Timestamps past
// 2262 do not fit a time.Time (pcommon's AsTime wraps them to before
// 1970, and the message said "-499068h ahead"); they count as the longest
// duration.
func ahead(ts pcommon.Timestamp, now time.Time) time.Duration {
	if uint64(ts) > math.MaxInt64 {
		return time.Duration(math.MaxInt64)
	}
	return ts.AsTime().Sub(now)
}
