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
		resTypes := attributeTypes(rs.Resource().Attributes())
		service := resAttrs[serviceNameKey]
		sss := rs.ScopeSpans()
		for j := range sss.Len() {
			ss := sss.At(j)
			scope := ss.Scope()
			spans := ss.Spans()
			for k := range spans.Len() {
				s := spans.At(k)
				out = append(out, storage.Span{
					TraceID:                traceID(s.TraceID()),
					SpanID:                 spanID(s.SpanID()),
					ParentSpanID:           spanID(s.ParentSpanID()),
					Name:                   s.Name(),
					Kind:                   s.Kind().String(),
					ServiceName:            service,
					ScopeName:              scope.Name(),
					ScopeVersion:           scope.Version(),
					StartTime:              timeOf(s.StartTimestamp()),
					EndTime:                timeOf(s.EndTimestamp()),
					StatusCode:             s.Status().Code().String(),
					StatusMessage:          s.Status().Message(),
					TraceState:             s.TraceState().AsRaw(),
					Attributes:             attributes(s.Attributes()),
					AttributeTypes:         attributeTypes(s.Attributes()),
					ResourceAttributes:     resAttrs,
					ResourceAttributeTypes: resTypes,
					Events:                 events(s.Events()),
					Links:                  links(s.Links()),
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

// attributeTypes names the type of each attribute whose value is not a
// string, nil when all are strings.
func attributeTypes(m pcommon.Map) map[string]storage.ValueType {
	var out map[string]storage.ValueType
	m.Range(func(k string, v pcommon.Value) bool {
		var t storage.ValueType
		switch v.Type() {
		case pcommon.ValueTypeBool:
			t = storage.TypeBool
		case pcommon.ValueTypeInt:
			t = storage.TypeInt
		case pcommon.ValueTypeDouble:
			t = storage.TypeDouble
		case pcommon.ValueTypeBytes:
			t = storage.TypeBytes
		case pcommon.ValueTypeMap:
			t = storage.TypeMap
		case pcommon.ValueTypeSlice:
			t = storage.TypeSlice
		default:
			return true
		}
		if out == nil {
			out = map[string]storage.ValueType{}
		}
		out[k] = t
		return true
	})
	return out
}

func events(es ptrace.SpanEventSlice) []storage.SpanEvent {
	if es.Len() == 0 {
		return nil
	}
	out := make([]storage.SpanEvent, es.Len())
	for i := range es.Len() {
		e := es.At(i)
		out[i] = storage.SpanEvent{
			Time:           timeOf(e.Timestamp()),
			Name:           e.Name(),
			Attributes:     attributes(e.Attributes()),
			AttributeTypes: attributeTypes(e.Attributes()),
		}
	}
	return out
}

func links(ls ptrace.SpanLinkSlice) []storage.SpanLink {
	if ls.Len() == 0 {
		return nil
	}
	out := make([]storage.SpanLink, ls.Len())
	for i := range ls.Len() {
		l := ls.At(i)
		out[i] = storage.SpanLink{
			TraceID:        traceID(l.TraceID()),
			SpanID:         spanID(l.SpanID()),
			TraceState:     l.TraceState().AsRaw(),
			Attributes:     attributes(l.Attributes()),
			AttributeTypes: attributeTypes(l.Attributes()),
		}
	}
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
