package storeexporter

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/aiops-dev/aiops/storage"
)

const serviceNameKey = "service.name"

// LogRecords converts OTLP logs to storage records. A record without a
// timestamp takes its observed timestamp (the OTLP data model's rule);
// the collector's ingress sets the observed timestamp on receipt, so
// conversion is deterministic and a replayed batch yields the same
// records, which the store deduplicates.
func LogRecords(ld plog.Logs) []storage.LogRecord {
	out := make([]storage.LogRecord, 0, ld.LogRecordCount())
	rls := ld.ResourceLogs()
	for i := range rls.Len() {
		rl := rls.At(i)
		resAttrs := attributes(rl.Resource().Attributes())
		service := resAttrs[serviceNameKey]
		sls := rl.ScopeLogs()
		for j := range sls.Len() {
			sl := sls.At(j)
			scope := sl.Scope().Name()
			lrs := sl.LogRecords()
			for k := range lrs.Len() {
				lr := lrs.At(k)
				ts := lr.Timestamp()
				if ts == 0 {
					ts = lr.ObservedTimestamp()
				}
				out = append(out, storage.LogRecord{
					Timestamp:          timeOf(ts),
					ObservedTimestamp:  timeOf(lr.ObservedTimestamp()),
					TraceID:            traceID(lr.TraceID()),
					SpanID:             spanID(lr.SpanID()),
					SeverityText:       lr.SeverityText(),
					SeverityNumber:     int32(lr.SeverityNumber()),
					Body:               lr.Body().AsString(),
					ServiceName:        service,
					ScopeName:          scope,
					Attributes:         attributes(lr.Attributes()),
					ResourceAttributes: resAttrs,
				})
			}
		}
	}
	return out
}

// Spans converts OTLP traces to storage spans.
func Spans(td ptrace.Traces) []storage.Span {
	out := make([]storage.Span, 0, td.SpanCount())
	rss := td.ResourceSpans()
	for i := range rss.Len() {
		rs := rss.At(i)
		resAttrs := attributes(rs.Resource().Attributes())
		service := resAttrs[serviceNameKey]
		sss := rs.ScopeSpans()
		for j := range sss.Len() {
			ss := sss.At(j)
			scope := ss.Scope().Name()
			spans := ss.Spans()
			for k := range spans.Len() {
				s := spans.At(k)
				out = append(out, storage.Span{
					TraceID:            traceID(s.TraceID()),
					SpanID:             spanID(s.SpanID()),
					ParentSpanID:       spanID(s.ParentSpanID()),
					Name:               s.Name(),
					Kind:               s.Kind().String(),
					ServiceName:        service,
					ScopeName:          scope,
					StartTime:          timeOf(s.StartTimestamp()),
					EndTime:            timeOf(s.EndTimestamp()),
					StatusCode:         s.Status().Code().String(),
					StatusMessage:      s.Status().Message(),
					Attributes:         attributes(s.Attributes()),
					ResourceAttributes: resAttrs,
				})
			}
		}
	}
	return out
}

// attributes flattens an OTLP attribute map; non-string values take their
// OTLP string form (JSON for maps and slices).
func attributes(m pcommon.Map) map[string]string {
	if m.Len() == 0 {
		return nil
	}
	out := make(map[string]string, m.Len())
	m.Range(func(k string, v pcommon.Value) bool {
		out[k] = v.AsString()
		return true
	})
	return out
}

func timeOf(ts pcommon.Timestamp) time.Time {
	if ts == 0 {
		return time.Time{}
	}
	return ts.AsTime()
}

func traceID(id pcommon.TraceID) string {
	if id.IsEmpty() {
		return ""
	}
	return id.String()
}

func spanID(id pcommon.SpanID) string {
	if id.IsEmpty() {
		return ""
	}
	return id.String()
}
