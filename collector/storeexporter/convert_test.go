package storeexporter

import (
	"reflect"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
)

// TestSpansKeepDetails checks that what the trace APIs return beyond the
// base columns survives conversion: scope version, trace state, events,
// links and the types of attributes that are not strings.
func TestSpansKeepDetails(t *testing.T) {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "api")
	rs.Resource().Attributes().PutInt("k8s.pod.ordinal", 2)
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("fastapi")
	ss.Scope().SetVersion("0.1.0")
	s := ss.Spans().AppendEmpty()
	s.SetTraceID(pcommon.TraceID{1, 2, 3})
	s.SetSpanID(pcommon.SpanID{4})
	s.SetName("GET /")
	s.SetKind(ptrace.SpanKindServer)
	start := testutil.Epoch
	s.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	s.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Second)))
	s.TraceState().FromRaw("vendor=a1")
	s.Attributes().PutBool("sampled", true)
	s.Attributes().PutDouble("ratio", 0.25)
	s.Attributes().PutStr("route", "/")
	s.Attributes().PutEmptyBytes("raw").FromRaw([]byte{0xff, 0})
	e := s.Events().AppendEmpty()
	e.SetName("exception")
	e.SetTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Millisecond)))
	e.Attributes().PutInt("attempt", 2)
	l := s.Links().AppendEmpty()
	l.SetTraceID(pcommon.TraceID{9})
	l.SetSpanID(pcommon.SpanID{8})
	l.Attributes().PutStr("link.kind", "batch")

	got := Spans(td)
	if len(got) != 1 {
		t.Fatalf("got %d spans, want 1", len(got))
	}
	sp := got[0]
	want := storage.Span{
		TraceID: "01020300000000000000000000000000", SpanID: "0400000000000000", Name: "GET /", Kind: "Server",
		ServiceName: "api", ScopeName: "fastapi", ScopeVersion: "0.1.0", TraceState: "vendor=a1",
		StartTime: start, EndTime: start.Add(time.Second), StatusCode: "Unset",
		Attributes:             map[string]string{"sampled": "true", "ratio": "0.25", "route": "/", "raw": "/wA="},
		AttributeTypes:         map[string]storage.ValueType{"sampled": storage.TypeBool, "ratio": storage.TypeDouble, "raw": storage.TypeBytes},
		ResourceAttributes:     map[string]string{"service.name": "api", "k8s.pod.ordinal": "2"},
		ResourceAttributeTypes: map[string]storage.ValueType{"k8s.pod.ordinal": storage.TypeInt},
		Events: []storage.SpanEvent{{Time: start.Add(time.Millisecond), Name: "exception",
			Attributes: map[string]string{"attempt": "2"}, AttributeTypes: map[string]storage.ValueType{"attempt": storage.TypeInt}}},
		Links: []storage.SpanLink{{TraceID: "09000000000000000000000000000000", SpanID: "0800000000000000",
			Attributes: map[string]string{"link.kind": "batch"}}},
	}
	sp.StartTime, sp.EndTime, sp.Events[0].Time = sp.StartTime.UTC(), sp.EndTime.UTC(), sp.Events[0].Time.UTC()
	if !reflect.DeepEqual(sp, want) {
		t.Errorf("got  %+v\nwant %+v", sp, want)
	}
	// The details survive their encoding as the stores keep them.
	var back storage.Span
	if err := storage.DecodeSpanDetails(storage.EncodeSpanDetails(&sp), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Events, sp.Events) || !reflect.DeepEqual(back.Links, sp.Links) ||
		!reflect.DeepEqual(back.AttributeTypes, sp.AttributeTypes) || back.TraceState != sp.TraceState || back.ScopeVersion != sp.ScopeVersion {
		t.Errorf("details after encoding: %+v", back)
	}
}
