package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// AppendSpans stores spans; a span stored before (same trace and span id)
// is skipped. The operations of each service are kept in a table of their
// own, so that listing them reads a few rows rather than every span.
func (s *Records) AppendSpans(ctx context.Context, spans []storage.Span) error {
	type op struct{ service, name, kind string }
	ops := map[op]int64{}
	for i := range spans {
		sp := &spans[i]
		if sp.ServiceName == "" {
			continue
		}
		k := op{sp.ServiceName, sp.Name, sp.Kind}
		if t := storage.UnixNano(sp.StartTime); t > ops[k] {
			ops[k] = t
		}
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO spans
			(trace_id, span_id, parent_span_id, name, kind, service_name, scope_name, start_ts, end_ts, status_code, status_message, attributes, resource_attributes, details)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := range spans {
			sp := &spans[i]
			if _, err := stmt.ExecContext(ctx, sp.TraceID, sp.SpanID, sp.ParentSpanID, sp.Name, sp.Kind, sp.ServiceName, sp.ScopeName,
				storage.UnixNano(sp.StartTime), storage.UnixNano(sp.EndTime), sp.StatusCode, sp.StatusMessage,
				encodeMap(sp.Attributes), encodeMap(sp.ResourceAttributes), storage.EncodeSpanDetails(sp)); err != nil {
				return err
			}
		}
		opStmt, err := tx.PrepareContext(ctx, `INSERT INTO span_operations (service_name, name, kind, last_seen) VALUES (?, ?, ?, ?)
			ON CONFLICT (service_name, name, kind) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen)`)
		if err != nil {
			return err
		}
		defer opStmt.Close()
		for k, t := range ops {
			if _, err := opStmt.ExecContext(ctx, k.service, k.name, k.kind, t); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d spans: %w", len(spans), err)
	}
	return nil
}

// spanWhere turns a span query into conditions on the spans table.
func spanWhere(q storage.SpanQuery) where {
	var w where
	w.timeRange("start_ts", q.Start, q.End)
	w.eq("service_name", q.ServiceName)
	w.eq("name", q.Name)
	w.eq("status_code", q.StatusCode)
	ids := q.TraceIDs
	if q.TraceID != "" {
		ids = append(slices.Clip(ids), q.TraceID)
	}
	if len(ids) > 0 {
		w.add("trace_id IN ("+strings.Repeat("?, ", len(ids)-1)+"?)", anys(ids)...)
	}
	if q.MinDuration > 0 {
		w.add("end_ts - start_ts >= ?", int64(q.MinDuration))
	}
	if q.MaxDuration > 0 {
		w.add("end_ts - start_ts <= ?", int64(q.MaxDuration))
	}
	for _, k := range slices.Sorted(maps.Keys(q.Attributes)) {
		v := q.Attributes[k]
		w.add(`(EXISTS (SELECT 1 FROM json_each(spans.attributes) WHERE key = ? AND value = ?)
			OR EXISTS (SELECT 1 FROM json_each(spans.resource_attributes) WHERE key = ? AND value = ?)
			OR EXISTS (SELECT 1 FROM json_each(spans.details, '$.ev') e, json_each(e.value, '$.a') a WHERE a.key = ? AND a.value = ?))`,
			k, v, k, v, k, v)
	}
	return w
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// QuerySpans returns matching spans ordered by start time, then trace and
// span id.
func (s *Records) QuerySpans(ctx context.Context, q storage.SpanQuery) ([]storage.Span, error) {
	w := spanWhere(q)
	rows, err := s.db.QueryContext(ctx, `SELECT trace_id, span_id, parent_span_id, name, kind, service_name, scope_name,
		start_ts, end_ts, status_code, status_message, attributes, resource_attributes, details FROM spans`+w.sql()+
		` ORDER BY start_ts, trace_id, span_id LIMIT ?`, append(w.args, storage.QueryLimit(q.Limit))...)
	if err != nil {
		return nil, fmt.Errorf("query spans: %w", err)
	}
	defer rows.Close()
	var out []storage.Span
	for rows.Next() {
		var (
			sp                      storage.Span
			start, end              int64
			attrs, resAttr, details string
		)
		if err := rows.Scan(&sp.TraceID, &sp.SpanID, &sp.ParentSpanID, &sp.Name, &sp.Kind, &sp.ServiceName, &sp.ScopeName,
			&start, &end, &sp.StatusCode, &sp.StatusMessage, &attrs, &resAttr, &details); err != nil {
			return nil, fmt.Errorf("query spans: %w", err)
		}
		sp.StartTime, sp.EndTime = storage.FromUnixNano(start), storage.FromUnixNano(end)
		if sp.Attributes, err = decodeMap(attrs); err != nil {
			return nil, fmt.Errorf("query spans: attributes: %w", err)
		}
		if sp.ResourceAttributes, err = decodeMap(resAttr); err != nil {
			return nil, fmt.Errorf("query spans: resource attributes: %w", err)
		}
		if err := storage.DecodeSpanDetails(details, &sp); err != nil {
			return nil, fmt.Errorf("query spans: %w", err)
		}
		out = append(out, sp)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query spans: %w", err)
	}
	return out, nil
}

// TraceIDs returns the traces with a matching span, the one whose latest
// matching span started last first. The spans are read newest first (an
// index walk for a service and time range) and the first Limit distinct
// trace ids are the answer, so reading stops as soon as it has them.
func (s *Records) TraceIDs(ctx context.Context, q storage.SpanQuery) ([]string, error) {
	w := spanWhere(q)
	rows, err := s.db.QueryContext(ctx, `SELECT trace_id FROM spans`+w.sql()+` ORDER BY start_ts DESC, trace_id`, w.args...)
	if err != nil {
		return nil, fmt.Errorf("find traces: %w", err)
	}
	defer rows.Close()
	limit := storage.QueryLimit(q.Limit)
	seen := map[string]bool{}
	var out []string
	for len(out) < limit && rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("find traces: %w", err)
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find traces: %w", err)
	}
	return out, nil
}

// Services returns the services of the stored spans, sorted.
func (s *Records) Services(ctx context.Context) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT DISTINCT service_name FROM span_operations ORDER BY service_name`)
	if err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("list services: %w", err)
		}
		out = append(out, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list services: %w", err)
	}
	return out, nil
}

// Operations returns the span names and kinds of a service.
func (s *Records) Operations(ctx context.Context, service string) ([]storage.Operation, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, kind FROM span_operations WHERE service_name = ? ORDER BY name, kind`, service)
	if err != nil {
		return nil, fmt.Errorf("list operations: %w", err)
	}
	defer rows.Close()
	out := []storage.Operation{}
	for rows.Next() {
		var op storage.Operation
		if err := rows.Scan(&op.Name, &op.Kind); err != nil {
			return nil, fmt.Errorf("list operations: %w", err)
		}
		out = append(out, op)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list operations: %w", err)
	}
	return out, nil
}

// Dependencies counts parent → child service pairs of spans that started
// in [start, end] whose parent also started in it.
func (s *Records) Dependencies(ctx context.Context, start, end time.Time) ([]storage.Dependency, error) {
	a, b := storage.UnixNano(start), storage.UnixNano(end)
	rows, err := s.db.QueryContext(ctx, `SELECT p.service_name, c.service_name, count(*) FROM spans c
		JOIN spans p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id
		WHERE c.start_ts BETWEEN ? AND ? AND c.parent_span_id != '' AND p.start_ts BETWEEN ? AND ?
		GROUP BY p.service_name, c.service_name ORDER BY p.service_name, c.service_name`, a, b, a, b)
	if err != nil {
		return nil, fmt.Errorf("dependencies: %w", err)
	}
	defer rows.Close()
	out := []storage.Dependency{}
	for rows.Next() {
		var d storage.Dependency
		if err := rows.Scan(&d.Parent, &d.Child, &d.Calls); err != nil {
			return nil, fmt.Errorf("dependencies: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("dependencies: %w", err)
	}
	return out, nil
}
