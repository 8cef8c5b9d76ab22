package clickhouse

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// Logs, spans and events are written as they come (the collector batches
// them) and identified as storage.go says: logs by a digest of their
// content (LogRecord.ID), spans by trace and span id, events by id. The
// tables are ReplacingMergeTrees sorted by a key that includes that
// identity, and reads add LIMIT 1 BY identity, so a replayed record is
// never returned twice, merged or not.

// splitMap turns a map into sorted parallel key and value arrays.
func splitMap(m map[string]string) (keys, values []string) {
	keys = slices.Sorted(maps.Keys(m))
	values = make([]string, len(keys))
	for i, k := range keys {
		values[i] = m[k]
	}
	if keys == nil {
		keys = []string{}
	}
	return keys, values
}

func joinMap(keys, values []string) map[string]string {
	if len(keys) == 0 {
		return nil
	}
	m := make(map[string]string, len(keys))
	for i, k := range keys {
		if i < len(values) {
			m[k] = values[i]
		}
	}
	return m
}

// where collects the conditions of a query.
type where []string

func (w *where) add(format string, args ...any) { *w = append(*w, fmt.Sprintf(format, args...)) }

func (w *where) timeRange(col string, start, end time.Time) {
	if !start.IsZero() {
		w.add("%s >= %d", col, start.UnixNano())
	}
	if !end.IsZero() {
		w.add("%s <= %d", col, end.UnixNano())
	}
}

func (w *where) eq(col, v string) {
	if v != "" {
		w.add("%s = %s", col, quote(v))
	}
}

func (w where) sql() string {
	if len(w) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w, " AND ")
}

// AppendLogs stores log records. A record stored before (same content) is
// not returned twice.
func (s *Store) AppendLogs(ctx context.Context, records []storage.LogRecord) error {
	if err := s.whenConnected(); err != nil {
		return err
	}
	if len(records) == 0 {
		return nil
	}
	n := len(records)
	var (
		ts, observed                         = make([]int64, n), make([]int64, n)
		ids, traceIDs, spanIDs, sevTexts     = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		sevNums                              = make([]int32, n)
		bodies, services, scopes             = make([]string, n), make([]string, n), make([]string, n)
		attrKeys, attrVals, resKeys, resVals = make([][]string, n), make([][]string, n), make([][]string, n), make([][]string, n)
	)
	for i := range records {
		r := &records[i]
		ts[i], observed[i] = storage.UnixNano(r.Timestamp), storage.UnixNano(r.ObservedTimestamp)
		ids[i], traceIDs[i], spanIDs[i], sevTexts[i] = r.ID(), r.TraceID, r.SpanID, r.SeverityText
		sevNums[i] = r.SeverityNumber
		bodies[i], services[i], scopes[i] = r.Body, r.ServiceName, r.ScopeName
		attrKeys[i], attrVals[i] = splitMap(r.Attributes)
		resKeys[i], resVals[i] = splitMap(r.ResourceAttributes)
	}
	err := s.insertChunks(ctx, s.t.logs, "timestamp, observed_timestamp, id, trace_id, span_id, severity_text, severity_number, body, service_name, scope_name, attr_keys, attr_values, resource_keys, resource_values", n,
		func(lo, hi int) []any {
			return []any{ts[lo:hi], observed[lo:hi], ids[lo:hi], traceIDs[lo:hi], spanIDs[lo:hi], sevTexts[lo:hi], sevNums[lo:hi],
				bodies[lo:hi], services[lo:hi], scopes[lo:hi], attrKeys[lo:hi], attrVals[lo:hi], resKeys[lo:hi], resVals[lo:hi]}
		})
	if err != nil {
		return fmt.Errorf("append %d log records: %w", n, err)
	}
	return nil
}

// QueryLogs returns matching records, newest first (ties by id), as the
// embedded store does.
func (s *Store) QueryLogs(ctx context.Context, q storage.LogQuery) ([]storage.LogRecord, error) {
	if err := s.whenConnected(); err != nil {
		return nil, err
	}
	var w where
	w.timeRange("timestamp", q.Start, q.End)
	w.eq("service_name", q.ServiceName)
	w.eq("trace_id", q.TraceID)
	if q.MinSeverity > 0 {
		w.add("severity_number >= %d", q.MinSeverity)
	}
	if q.BodyContains != "" {
		w.add("position(body, %s) > 0", quote(q.BodyContains))
	}
	if q.BodyRegexp != "" {
		if _, err := regexp.Compile(q.BodyRegexp); err != nil {
			return nil, fmt.Errorf("query logs: body regexp: %w", err)
		}
		w.add("match(body, %s)", quote(q.BodyRegexp))
	}
	for _, k := range slices.Sorted(maps.Keys(q.Attributes)) {
		w.add("(%s OR %s)", pairExists("attr_keys", "attr_values", k, q.Attributes[k]),
			pairExists("resource_keys", "resource_values", k, q.Attributes[k]))
	}
	if !q.BeforeTime.IsZero() {
		t := storage.UnixNano(q.BeforeTime)
		w.add("(timestamp < %d OR (timestamp = %d AND id > %s))", t, t, quote(q.BeforeID))
	}
	sql := fmt.Sprintf(`SELECT timestamp, observed_timestamp, trace_id, span_id, severity_text, severity_number, body,
service_name, scope_name, attr_keys, attr_values, resource_keys, resource_values FROM %s%s
ORDER BY timestamp DESC, id LIMIT 1 BY id LIMIT %d`, s.t.logs, w.sql(), storage.QueryLimit(q.Limit))
	rows, err := s.conn.Query(ctx, sql)
	if err != nil {
		return nil, s.wrap("query logs", err)
	}
	defer rows.Close()
	var out []storage.LogRecord
	for rows.Next() {
		var (
			r                                    storage.LogRecord
			t, observed                          int64
			attrKeys, attrVals, resKeys, resVals []string
		)
		if err := rows.Scan(&t, &observed, &r.TraceID, &r.SpanID, &r.SeverityText, &r.SeverityNumber, &r.Body,
			&r.ServiceName, &r.ScopeName, &attrKeys, &attrVals, &resKeys, &resVals); err != nil {
			return nil, s.wrap("query logs", err)
		}
		r.Timestamp, r.ObservedTimestamp = storage.FromUnixNano(t), storage.FromUnixNano(observed)
		r.Attributes, r.ResourceAttributes = joinMap(attrKeys, attrVals), joinMap(resKeys, resVals)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("query logs", err)
	}
	return out, nil
}

// AppendSpans stores spans. A span stored before (same trace and span id)
// is not returned twice. The trace index and the operations are written
// first: an index row whose spans failed to arrive finds nothing, while
// spans without their index row could not be found by trace id.
func (s *Store) AppendSpans(ctx context.Context, spans []storage.Span) error {
	if err := s.whenConnected(); err != nil {
		return err
	}
	if len(spans) == 0 {
		return nil
	}
	n := len(spans)
	var (
		traceIDs, spanIDs, parents, names    = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		kinds, services, scopes              = make([]string, n), make([]string, n), make([]string, n)
		starts, ends                         = make([]int64, n), make([]int64, n)
		codes, messages                      = make([]string, n), make([]string, n)
		attrKeys, attrVals, resKeys, resVals = make([][]string, n), make([][]string, n), make([][]string, n), make([][]string, n)
		details                              = make([]string, n)
		eventKeys, eventVals                 = make([][]string, n), make([][]string, n)
	)
	for i := range spans {
		sp := &spans[i]
		if sp.TraceID == "" || sp.SpanID == "" {
			return fmt.Errorf("append spans: span %d (%q) has no trace or span id", i, sp.Name)
		}
		traceIDs[i], spanIDs[i], parents[i], names[i] = sp.TraceID, sp.SpanID, sp.ParentSpanID, sp.Name
		kinds[i], services[i], scopes[i] = sp.Kind, sp.ServiceName, sp.ScopeName
		starts[i], ends[i] = storage.UnixNano(sp.StartTime), storage.UnixNano(sp.EndTime)
		codes[i], messages[i] = sp.StatusCode, sp.StatusMessage
		attrKeys[i], attrVals[i] = splitMap(sp.Attributes)
		resKeys[i], resVals[i] = splitMap(sp.ResourceAttributes)
		details[i] = storage.EncodeSpanDetails(sp)
		eventKeys[i], eventVals[i] = sp.EventAttributes()
	}
	if err := s.indexSpans(ctx, spans); err != nil {
		return fmt.Errorf("append %d spans: %w", n, err)
	}
	err := s.insertChunks(ctx, s.t.spans, "trace_id, span_id, parent_span_id, name, kind, service_name, scope_name, start_time, end_time, status_code, status_message, attr_keys, attr_values, resource_keys, resource_values, details, event_keys, event_values", n,
		func(lo, hi int) []any {
			return []any{traceIDs[lo:hi], spanIDs[lo:hi], parents[lo:hi], names[lo:hi], kinds[lo:hi], services[lo:hi], scopes[lo:hi],
				starts[lo:hi], ends[lo:hi], codes[lo:hi], messages[lo:hi], attrKeys[lo:hi], attrVals[lo:hi], resKeys[lo:hi], resVals[lo:hi],
				details[lo:hi], eventKeys[lo:hi], eventVals[lo:hi]}
		})
	if err != nil {
		return fmt.Errorf("append %d spans: %w", n, err)
	}
	if s.spanHead != nil {
		rows := make([]spanRow, n)
		for i := range rows {
			rows[i] = spanRow{traceID: traceIDs[i], spanID: spanIDs[i], parent: parents[i], name: names[i], kind: kinds[i],
				service: services[i], scope: scopes[i], start: starts[i], end: ends[i], status: codes[i], statusMsg: messages[i],
				attrKeys: attrKeys[i], attrVals: attrVals[i], resKeys: resKeys[i], resVals: resVals[i], details: details[i],
				eventKeys: eventKeys[i], eventVals: eventVals[i]}
		}
		s.spanHead.written(rows)
	}
	return nil
}

// QuerySpans returns matching spans ordered by start time, then trace and
// span id, as the embedded store does. A query for trace ids looks them up
// in the trace index first and reads only the services and time ranges
// it names.
func (s *Store) QuerySpans(ctx context.Context, q storage.SpanQuery) ([]storage.Span, error) {
	if err := s.whenConnected(); err != nil {
		return nil, err
	}
	if out, ok, err := s.spansFromHead(ctx, q); ok || err != nil {
		return out, err
	}
	w, pre, err := s.spanConditions(ctx, q)
	if err != nil || w == nil {
		return nil, err
	}
	sql := fmt.Sprintf(`SELECT trace_id, span_id, parent_span_id, name, kind, service_name, scope_name, start_time, end_time,
status_code, status_message, attr_keys, attr_values, resource_keys, resource_values, details FROM %s%s%s
ORDER BY start_time, trace_id, span_id LIMIT 1 BY trace_id, span_id LIMIT %d`, s.t.spans, pre, w.sql(), storage.QueryLimit(q.Limit))
	rows, err := s.conn.Query(ctx, sql)
	if err != nil {
		return nil, s.wrap("query spans", err)
	}
	defer rows.Close()
	var out []storage.Span
	for rows.Next() {
		var (
			sp                                   storage.Span
			start, end                           int64
			attrKeys, attrVals, resKeys, resVals []string
			details                              string
		)
		if err := rows.Scan(&sp.TraceID, &sp.SpanID, &sp.ParentSpanID, &sp.Name, &sp.Kind, &sp.ServiceName, &sp.ScopeName,
			&start, &end, &sp.StatusCode, &sp.StatusMessage, &attrKeys, &attrVals, &resKeys, &resVals, &details); err != nil {
			return nil, s.wrap("query spans", err)
		}
		sp.StartTime, sp.EndTime = storage.FromUnixNano(start), storage.FromUnixNano(end)
		sp.Attributes, sp.ResourceAttributes = joinMap(attrKeys, attrVals), joinMap(resKeys, resVals)
		if err := storage.DecodeSpanDetails(details, &sp); err != nil {
			return nil, fmt.Errorf("query spans: %w", err)
		}
		out = append(out, sp)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("query spans", err)
	}
	return out, nil
}

// AppendEvents stores events. An event stored before (same ID) is not
// returned twice.
func (s *Store) AppendEvents(ctx context.Context, events []storage.Event) error {
	if err := s.whenConnected(); err != nil {
		return err
	}
	if len(events) == 0 {
		return nil
	}
	n := len(events)
	var (
		ids, kinds, subjects, payloads = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		times                          = make([]int64, n)
		keys, values                   = make([][]string, n), make([][]string, n)
	)
	for i := range events {
		e := &events[i]
		if e.ID == "" {
			return fmt.Errorf("append events: event %d (kind %q) has no id", i, e.Kind)
		}
		ids[i], kinds[i], subjects[i], payloads[i] = e.ID, e.Kind, e.Subject, string(e.Payload)
		times[i] = storage.UnixNano(e.Time)
		keys[i], values[i] = splitMap(e.Labels)
	}
	err := s.insertChunks(ctx, s.t.events, "id, time, kind, subject, label_keys, label_values, payload", n,
		func(lo, hi int) []any {
			return []any{ids[lo:hi], times[lo:hi], kinds[lo:hi], subjects[lo:hi], keys[lo:hi], values[lo:hi], payloads[lo:hi]}
		})
	if err != nil {
		return fmt.Errorf("append %d events: %w", n, err)
	}
	return nil
}

// QueryEvents returns matching events ordered by (Time, ID).
func (s *Store) QueryEvents(ctx context.Context, q storage.EventQuery) ([]storage.Event, error) {
	if err := s.whenConnected(); err != nil {
		return nil, err
	}
	var w where
	w.timeRange("time", q.Start, q.End)
	if q.KindPrefix != "" {
		w.add("startsWith(kind, %s)", quote(q.KindPrefix))
	}
	w.eq("subject", q.Subject)
	if !q.AfterTime.IsZero() {
		t := q.AfterTime.UnixNano()
		w.add("(time > %d OR (time = %d AND id > %s))", t, t, quote(q.AfterID))
	}
	sql := fmt.Sprintf(`SELECT id, time, kind, subject, label_keys, label_values, payload FROM %s%s
ORDER BY time, id LIMIT 1 BY id LIMIT %d`, s.t.events, w.sql(), storage.QueryLimit(q.Limit))
	rows, err := s.conn.Query(ctx, sql)
	if err != nil {
		return nil, s.wrap("query events", err)
	}
	defer rows.Close()
	var out []storage.Event
	for rows.Next() {
		var (
			e            storage.Event
			t            int64
			keys, values []string
			payload      string
		)
		if err := rows.Scan(&e.ID, &t, &e.Kind, &e.Subject, &keys, &values, &payload); err != nil {
			return nil, s.wrap("query events", err)
		}
		e.Time = storage.FromUnixNano(t)
		e.Labels = joinMap(keys, values)
		if payload != "" {
			e.Payload = []byte(payload)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("query events", err)
	}
	return out, nil
}
