// Package storage defines what every aiops backend keeps and how the rest of
// the system reaches it.
//
// Metrics live behind Prometheus's own storage interfaces, so the PromQL
// engine, rule evaluation and the OTLP translator work unchanged on any
// backend. Logs, spans and events, which Prometheus has no interfaces for,
// live behind the small interfaces below.
package storage

import (
	"context"
	"errors"
	"time"

	promstorage "github.com/prometheus/prometheus/storage"
)

// Store is one backend: the embedded store or ClickHouse.
type Store interface {
	// Storage holds metrics: Appendable, AppendableV2, Queryable,
	// ChunkQueryable, StartTime and Close. Close closes the whole Store.
	promstorage.Storage
	LogStore
	SpanStore
	EventStore

	// Ready returns an error while the backend cannot take writes or
	// answer queries, so that /readyz and the ingest path can tell.
	Ready(ctx context.Context) error
}

// LogStore keeps log records.
type LogStore interface {
	// AppendLogs stores records. Appending the same record twice (an
	// at-least-once replay) must not make it appear twice in QueryLogs.
	AppendLogs(ctx context.Context, records []LogRecord) error
	QueryLogs(ctx context.Context, q LogQuery) ([]LogRecord, error)
}

// SpanStore keeps trace spans.
type SpanStore interface {
	// AppendSpans stores spans. A span is identified by its trace and span
	// ids; appending it twice must not make it appear twice in QuerySpans.
	AppendSpans(ctx context.Context, spans []Span) error
	QuerySpans(ctx context.Context, q SpanQuery) ([]Span, error)
	// TraceIDs returns the ids of the traces that have a span matching
	// every field of q, the trace whose latest matching span started last
	// first (ties by trace id). Limit counts traces. It is the search of
	// Jaeger's API: the spans of the traces are read with QuerySpans.
	TraceIDs(ctx context.Context, q SpanQuery) ([]string, error)
	// Services returns the service names of the stored spans, sorted.
	Services(ctx context.Context) ([]string, error)
	// Operations returns the distinct span names and kinds of a service,
	// sorted by name, then kind.
	Operations(ctx context.Context, service string) ([]Operation, error)
	// Dependencies counts the calls between services in spans that
	// started in [start, end]: a span whose parent belongs to a service
	// (the same one included) is one call from the parent's service to
	// the span's. Pairs come sorted by parent, then child.
	Dependencies(ctx context.Context, start, end time.Time) ([]Dependency, error)
}

// EventStore keeps append-only events: anomalies found by the analyzer,
// incident timelines, audit records.
type EventStore interface {
	// AppendEvents stores events. An event is identified by its ID;
	// appending it twice must not make it appear twice in QueryEvents.
	AppendEvents(ctx context.Context, events []Event) error
	// QueryEvents returns matching events ordered by (Time, ID).
	QueryEvents(ctx context.Context, q EventQuery) ([]Event, error)
}

// ErrUnavailable marks errors caused by a backend that cannot be reached
// right now; callers may retry them. Wrap it with errors.Join or %w.
var ErrUnavailable = errors.New("storage unavailable")

// LogRecord is one OTLP log record with its resource and scope context.
type LogRecord struct {
	Timestamp         time.Time
	ObservedTimestamp time.Time
	// TraceID and SpanID are lower-case hex, empty when absent.
	TraceID        string
	SpanID         string
	SeverityText   string
	SeverityNumber int32
	Body           string
	// ServiceName is the resource's service.name, kept apart because
	// almost every query filters on it.
	ServiceName        string
	ScopeName          string
	Attributes         map[string]string
	ResourceAttributes map[string]string
}

// LogQuery selects log records. Zero fields do not filter, except that
// Limit 0 means the backend's default limit.
type LogQuery struct {
	Start, End  time.Time // inclusive bounds on Timestamp
	ServiceName string
	TraceID     string
	// MinSeverity keeps records with SeverityNumber >= MinSeverity.
	MinSeverity int32
	// BodyContains keeps records whose body contains it (case-sensitive).
	BodyContains string
	// BodyRegexp keeps records whose body matches it (RE2 syntax, as Go's
	// regexp and ClickHouse's match() read it; unanchored).
	BodyRegexp string
	// Attributes keeps records that have each of these attributes (record
	// or resource attributes) with exactly this value.
	Attributes map[string]string
	// Before keeps records ordered after this position in the
	// newest-first order (Timestamp descending, then ID ascending), for
	// cursor pagination; zero BeforeTime means no cursor.
	BeforeTime time.Time
	BeforeID   string
	Limit      int
}

// Span is one OTLP span with its resource context.
type Span struct {
	// TraceID, SpanID and ParentSpanID are lower-case hex; ParentSpanID is
	// empty for root spans.
	TraceID            string
	SpanID             string
	ParentSpanID       string
	Name               string
	Kind               string // as pdata names it: "Server", "Client", ...
	ServiceName        string
	ScopeName          string
	StartTime          time.Time
	EndTime            time.Time
	StatusCode         string // "Unset", "Ok" or "Error"
	StatusMessage      string
	Attributes         map[string]string
	ResourceAttributes map[string]string

	// ScopeVersion is the instrumentation scope's version.
	ScopeVersion string
	// TraceState is the W3C trace state the span carried.
	TraceState string
	// Events are the span's events in their order (Jaeger's logs).
	Events []SpanEvent
	// Links point at other spans (Jaeger's references besides the parent).
	Links []SpanLink
	// AttributeTypes and ResourceAttributeTypes name the OTLP type of the
	// attributes whose value is not a string; the value is kept in its
	// OTLP string form. A key absent here is a string.
	AttributeTypes         map[string]ValueType
	ResourceAttributeTypes map[string]ValueType
}

// ValueType is the OTLP type of an attribute kept in its string form.
type ValueType string

// The value types besides strings.
const (
	TypeBool   ValueType = "bool"   // "true" or "false"
	TypeInt    ValueType = "int"    // decimal
	TypeDouble ValueType = "double" // OTLP's form, which strconv.ParseFloat reads
	TypeBytes  ValueType = "bytes"  // base64, standard encoding
	TypeMap    ValueType = "map"    // JSON
	TypeSlice  ValueType = "slice"  // JSON
)

// SpanEvent is a timed event of a span.
type SpanEvent struct {
	Time           time.Time            `json:"t"`
	Name           string               `json:"n,omitempty"`
	Attributes     map[string]string    `json:"a,omitempty"`
	AttributeTypes map[string]ValueType `json:"at,omitempty"`
}

// SpanLink points from a span to another span, in its trace or another.
type SpanLink struct {
	TraceID        string               `json:"tid"`
	SpanID         string               `json:"sid"`
	TraceState     string               `json:"ts,omitempty"`
	Attributes     map[string]string    `json:"a,omitempty"`
	AttributeTypes map[string]ValueType `json:"at,omitempty"`
}

// SpanQuery selects spans. Zero fields do not filter, except that Limit 0
// means the backend's default limit.
type SpanQuery struct {
	Start, End  time.Time // inclusive bounds on StartTime
	ServiceName string
	TraceID     string
	// TraceIDs keeps the spans of any of these traces (and of TraceID,
	// when both are set).
	TraceIDs []string
	// Name is the span (operation) name.
	Name string
	// MinDuration and MaxDuration bound EndTime - StartTime, inclusive.
	MinDuration, MaxDuration time.Duration
	// StatusCode keeps spans with this status ("Unset", "Ok", "Error").
	StatusCode string
	// Attributes keeps spans that have, for each entry, an attribute of
	// that key with that value (string forms) on the span, its resource or
	// one of its events.
	Attributes map[string]string
	Limit      int
}

// Operation is a span name a service uses, with the span's kind.
type Operation struct {
	Name string
	Kind string // as Span.Kind
}

// Dependency is a count of calls from one service to another.
type Dependency struct {
	Parent, Child string
	Calls         int64
}

// Event is one immutable fact recorded by aiops itself.
type Event struct {
	// ID is unique; writers derive it from the event's content when they
	// may write the same event twice.
	ID   string
	Time time.Time
	// Kind names the event type, e.g. "anomaly" or "incident.acknowledged".
	Kind string
	// Subject is what the event is about, e.g. an incident id or a
	// series fingerprint; events are usually read per subject.
	Subject string
	Labels  map[string]string
	// Payload is the kind-specific body, JSON encoded.
	Payload []byte
}

// EventQuery selects events. Zero fields do not filter, except that Limit 0
// means the backend's default limit.
type EventQuery struct {
	// KindPrefix keeps events whose Kind starts with it ("incident." for
	// all incident events).
	KindPrefix string
	Subject    string
	Start, End time.Time // inclusive bounds on Time
	// After keeps events ordered after the event with this (Time, ID)
	// position, for cursor pagination; zero Time means no cursor.
	AfterTime time.Time
	AfterID   string
	Limit     int
}

// DefaultQueryLimit is what a zero Limit means in the queries above.
const DefaultQueryLimit = 1000
