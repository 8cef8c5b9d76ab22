package jaeger

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"math"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// The JSON shapes of Jaeger's HTTP query API (what its UI and Grafana's
// Jaeger data source read). Spans are turned into them the way Jaeger v2
// turns OTLP spans into its model (the OpenTelemetry Collector's Jaeger
// translator) and then adjusts them for its API: tags and log fields
// sorted, the SDK's attributes moved to the process, integer IP tags
// rendered as addresses, references without a trace dropped with a
// warning, the parent reference first.

type response struct {
	Data   any             `json:"data"`
	Total  int             `json:"total"`
	Limit  int             `json:"limit"`
	Offset int             `json:"offset"`
	Errors []responseError `json:"errors"`
}

type responseError struct {
	Code    int    `json:"code,omitempty"`
	Msg     string `json:"msg"`
	TraceID string `json:"traceID,omitempty"`
}

// Trace is one trace in Jaeger's JSON.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
	Warnings  []string           `json:"warnings"`
}

// Span is one span in Jaeger's JSON.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	StartTime     int64       `json:"startTime"` // µs since the epoch
	Duration      int64       `json:"duration"`  // µs
	Tags          []KeyValue  `json:"tags"`
	Logs          []Log       `json:"logs"`
	ProcessID     string      `json:"processID"`
	Warnings      []string    `json:"warnings"`
}

// Reference is a CHILD_OF or FOLLOWS_FROM reference.
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// Process is the service and resource of spans.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// Log is a span event.
type Log struct {
	Timestamp int64      `json:"timestamp"`
	Fields    []KeyValue `json:"fields"`
}

// KeyValue is a typed tag.
type KeyValue struct {
	Key   string `json:"key"`
	Type  string `json:"type"`
	Value any    `json:"value"`
}

// Dependency is a service call count.
type Dependency struct {
	Parent    string `json:"parent"`
	Child     string `json:"child"`
	CallCount int64  `json:"callCount"`
}

// Operation is a span name and kind.
type Operation struct {
	Name     string `json:"name"`
	SpanKind string `json:"spanKind"`
}

// typeRank orders tag types as Jaeger's model does (its enum order).
var typeRank = map[string]int{"string": 0, "bool": 1, "int64": 2, "float64": 3, "binary": 4}

// ipTags hold IPv4 addresses that some clients send as integers.
var ipTags = map[string]bool{"ip": true, "peer.ipv4": true}

// sdkKeys are resource facts that instrumentation sometimes puts on spans;
// Jaeger moves them to the process.
var sdkKeys = map[string]bool{
	"telemetry.sdk.language": true, "telemetry.sdk.name": true, "telemetry.sdk.version": true,
	"telemetry.distro.name": true, "telemetry.distro.version": true,
}

// jaegerTraceID renders a 32-digit trace id as Jaeger does: 16 digits
// when the high half is zero.
func jaegerTraceID(id string) string {
	if len(id) == 32 && strings.TrimLeft(id[:16], "0") == "" {
		return id[16:]
	}
	return id
}

// parseTraceID reads a trace id as Jaeger does (up to 32 hex digits, short
// ones padded) and returns the 32-digit lower-case form the stores keep.
func parseTraceID(s string) (string, error) {
	if s == "" || len(s) > 32 {
		return "", fmt.Errorf("trace id must be 1 to 32 hex digits, got %q", s)
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return "", fmt.Errorf("trace id must be 1 to 32 hex digits, got %q", s)
		}
	}
	return strings.Repeat("0", 32-len(s)) + strings.ToLower(s), nil
}

func micros(t time.Time) int64 { return t.UnixNano() / 1000 }

// value renders an attribute kept as a string with its OTLP type.
func value(v string, t storage.ValueType) (typ string, val any) {
	switch t {
	case storage.TypeBool:
		if b, err := strconv.ParseBool(v); err == nil {
			return "bool", b
		}
	case storage.TypeInt:
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			// JavaScript loses integers past 2^53; Jaeger sends those as
			// strings of their digits, typed int64.
			if n > 1<<53-1 || n < -(1<<53-1) {
				return "int64", v
			}
			return "int64", n
		}
	case storage.TypeDouble:
		if f, err := strconv.ParseFloat(v, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return "float64", f
		}
		return "float64", v
	case storage.TypeBytes:
		if _, err := base64.StdEncoding.DecodeString(v); err == nil {
			return "binary", v // []byte marshals to the same base64
		}
	}
	return "string", v
}

func keyValues(attrs map[string]string, types map[string]storage.ValueType) []KeyValue {
	out := make([]KeyValue, 0, len(attrs))
	for k, v := range attrs {
		typ, val := value(v, types[k])
		out = append(out, KeyValue{Key: k, Type: typ, Value: val})
	}
	return out
}

func sortKeyValues(kvs []KeyValue) {
	slices.SortStableFunc(kvs, func(a, b KeyValue) int {
		if c := cmp.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		if c := cmp.Compare(typeRank[a.Type], typeRank[b.Type]); c != 0 {
			return c
		}
		return cmp.Compare(fmt.Sprint(a.Value), fmt.Sprint(b.Value))
	})
}

// ipAddress turns an integer IP tag into a dotted address, as Jaeger's
// IP tag adjuster does.
func ipAddress(kv KeyValue) KeyValue {
	if !ipTags[kv.Key] {
		return kv
	}
	var n uint32
	switch v := kv.Value.(type) {
	case int64:
		n = uint32(v)
	case float64:
		n = uint32(v)
	default:
		return kv
	}
	ip := net.IPv4(byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	return KeyValue{Key: kv.Key, Type: "string", Value: ip.String()}
}

// spanTags are the span's tags: attributes plus what Jaeger derives from
// the scope, kind, status and trace state.
func spanTags(sp *storage.Span) []KeyValue {
	tags := keyValues(sp.Attributes, sp.AttributeTypes)
	str := func(k, v string) { tags = append(tags, KeyValue{Key: k, Type: "string", Value: v}) }
	if sp.ScopeName != "" {
		str("otel.scope.name", sp.ScopeName)
	}
	if sp.ScopeVersion != "" {
		str("otel.scope.version", sp.ScopeVersion)
	}
	if k := strings.ToLower(sp.Kind); k != "" && k != "unspecified" {
		str("span.kind", k)
	}
	switch sp.StatusCode {
	case "Error":
		str("otel.status_code", "ERROR")
		tags = append(tags, KeyValue{Key: "error", Type: "bool", Value: true})
	case "Ok":
		str("otel.status_code", "OK")
	}
	if sp.StatusMessage != "" {
		str("otel.status_description", sp.StatusMessage)
	}
	if sp.TraceState != "" {
		str("w3c.tracestate", sp.TraceState)
	}
	return tags
}

func spanLogs(events []storage.SpanEvent) []Log {
	out := make([]Log, 0, len(events))
	for _, e := range events {
		fields := keyValues(e.Attributes, e.AttributeTypes)
		sortKeyValues(fields)
		if _, ok := e.Attributes["event"]; e.Name != "" && !ok {
			fields = append([]KeyValue{{Key: "event", Type: "string", Value: e.Name}}, fields...)
		} else if i := slices.IndexFunc(fields, func(kv KeyValue) bool { return kv.Key == "event" && kv.Type == "string" }); i > 0 {
			// An "event" field of its own goes first, the rest stay sorted.
			ev := fields[i]
			fields = append(fields[:i], fields[i+1:]...)
			fields = append([]KeyValue{ev}, fields...)
		}
		out = append(out, Log{Timestamp: micros(e.Time), Fields: fields})
	}
	return out
}

// references are the parent (CHILD_OF) and the links (FOLLOWS_FROM, or
// CHILD_OF when the link says opentracing.ref_type=child_of).
func references(sp *storage.Span) (refs []Reference, warnings []string) {
	refs = []Reference{}
	trace := jaegerTraceID(sp.TraceID)
	if sp.ParentSpanID != "" {
		refs = append(refs, Reference{RefType: "CHILD_OF", TraceID: trace, SpanID: sp.ParentSpanID})
	}
	for _, l := range sp.Links {
		typ := "FOLLOWS_FROM"
		if l.Attributes["opentracing.ref_type"] == "child_of" {
			typ = "CHILD_OF"
		}
		if sp.ParentSpanID != "" && l.TraceID == sp.TraceID && l.SpanID == sp.ParentSpanID {
			refs[0].RefType = typ
			continue
		}
		if strings.Trim(l.TraceID, "0") == "" {
			warnings = append(warnings, fmt.Sprintf("Invalid span reference removed {TraceID:%s SpanID:%s RefType:%s}",
				jaegerTraceID(orZeros(l.TraceID)), orZeros16(l.SpanID), typ))
			continue
		}
		refs = append(refs, Reference{RefType: typ, TraceID: jaegerTraceID(l.TraceID), SpanID: orZeros16(l.SpanID)})
	}
	// The parent, or else the first reference within the trace, goes first.
	first := slices.IndexFunc(refs, func(r Reference) bool { return r.TraceID == trace && r.RefType == "CHILD_OF" })
	if first < 0 {
		first = slices.IndexFunc(refs, func(r Reference) bool { return r.TraceID == trace })
	}
	if first > 0 {
		refs[0], refs[first] = refs[first], refs[0]
	}
	return refs, warnings
}

func orZeros(id string) string {
	if id == "" {
		return strings.Repeat("0", 32)
	}
	return id
}

func orZeros16(id string) string {
	if id == "" {
		return strings.Repeat("0", 16)
	}
	return id
}

// process is the service and resource attributes of a span, with the
// SDK's attributes that sat on the span.
func process(sp *storage.Span, moved []KeyValue) Process {
	attrs := make(map[string]string, len(sp.ResourceAttributes))
	for k, v := range sp.ResourceAttributes {
		if k != "service.name" {
			attrs[k] = v
		}
	}
	tags := append(keyValues(attrs, sp.ResourceAttributeTypes), moved...)
	for i := range tags {
		tags[i] = ipAddress(tags[i])
	}
	sortKeyValues(tags)
	name := sp.ServiceName
	if len(sp.ResourceAttributes) == 0 {
		name = "OTLPResourceNoServiceName"
	}
	return Process{ServiceName: name, Tags: tags}
}

// processKey identifies a process for sharing one process id.
func processKey(p Process) string {
	var b strings.Builder
	b.WriteString(p.ServiceName)
	for _, t := range p.Tags {
		fmt.Fprintf(&b, "\x00%s\x00%s\x00%v", t.Key, t.Type, t.Value)
	}
	return b.String()
}

// toTraces groups spans (ordered by start) into Jaeger traces, in the
// order of ids. truncated says the spans were cut at the span limit.
func toTraces(ids []string, spans []storage.Span, truncated string) []Trace {
	byTrace := map[string][]*storage.Span{}
	for i := range spans {
		byTrace[spans[i].TraceID] = append(byTrace[spans[i].TraceID], &spans[i])
	}
	out := []Trace{}
	for _, id := range ids {
		group := byTrace[id]
		if len(group) == 0 {
			continue
		}
		out = append(out, toTrace(group, truncated))
	}
	return out
}

func toTrace(spans []*storage.Span, truncated string) Trace {
	t := Trace{TraceID: jaegerTraceID(spans[0].TraceID), Spans: make([]Span, 0, len(spans)), Processes: map[string]Process{}}
	if truncated != "" {
		t.Warnings = []string{truncated}
	}
	ids := map[string]string{}
	present := make(map[string]bool, len(spans))
	for _, sp := range spans {
		present[sp.SpanID] = true
	}
	for _, sp := range spans {
		tags := spanTags(sp)
		var moved []KeyValue
		tags = slices.DeleteFunc(tags, func(kv KeyValue) bool {
			if sdkKeys[kv.Key] {
				moved = append(moved, kv)
				return true
			}
			return false
		})
		for i := range tags {
			tags[i] = ipAddress(tags[i])
		}
		sortKeyValues(tags)
		p := process(sp, moved)
		key := processKey(p)
		pid, ok := ids[key]
		if !ok {
			pid = fmt.Sprintf("p%d", len(ids)+1)
			ids[key] = pid
			t.Processes[pid] = p
		}
		refs, warnings := references(sp)
		if parent := parentOf(refs, t.TraceID); parent != "" && !present[parent] {
			// Jaeger's clock skew adjuster cannot place the span.
			warnings = append([]string{fmt.Sprintf("invalid parent span IDs=%s; skipping clock skew adjustment", parent)}, warnings...)
		}
		t.Spans = append(t.Spans, Span{
			TraceID:       jaegerTraceID(sp.TraceID),
			SpanID:        sp.SpanID,
			OperationName: sp.Name,
			References:    refs,
			StartTime:     micros(sp.StartTime),
			Duration:      sp.EndTime.Sub(sp.StartTime).Microseconds(),
			Tags:          tags,
			Logs:          spanLogs(sp.Events),
			ProcessID:     pid,
			Warnings:      warnings,
		})
	}
	return t
}

// parentOf is the span a span's references make its parent, as Jaeger's
// model reads them: the first CHILD_OF within the trace, else the first
// FOLLOWS_FROM within it.
func parentOf(refs []Reference, trace string) string {
	follows := ""
	for _, r := range refs {
		if r.TraceID != trace {
			continue
		}
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
		if follows == "" {
			follows = r.SpanID
		}
	}
	return follows
}
