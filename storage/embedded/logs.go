package embedded

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"

	"github.com/aiops-dev/aiops/storage"
)

// QueryLogs returns matching records, newest first (ties by id).
//
// A body regexp is applied here rather than in SQL: SQLite has no regexp
// function of its own and registering one is global to the driver. Rows
// stream from SQLite in order, so reading stops at the limit either way.
func (s *Records) QueryLogs(ctx context.Context, q storage.LogQuery) ([]storage.LogRecord, error) {
	var re *regexp.Regexp
	if q.BodyRegexp != "" {
		var err error
		if re, err = regexp.Compile(q.BodyRegexp); err != nil {
			return nil, fmt.Errorf("query logs: body regexp: %w", err)
		}
	}
	var w where
	w.timeRange("ts", q.Start, q.End)
	w.eq("service_name", q.ServiceName)
	w.eq("trace_id", q.TraceID)
	if q.MinSeverity > 0 {
		w.add("severity_number >= ?", q.MinSeverity)
	}
	if q.BodyContains != "" {
		w.add("instr(body, ?) > 0", q.BodyContains)
	}
	for _, k := range slices.Sorted(maps.Keys(q.Attributes)) {
		v := q.Attributes[k]
		w.add(`(EXISTS (SELECT 1 FROM json_each(logs.attributes) WHERE key = ? AND value = ?)
			OR EXISTS (SELECT 1 FROM json_each(logs.resource_attributes) WHERE key = ? AND value = ?))`, k, v, k, v)
	}
	if !q.BeforeTime.IsZero() {
		t := storage.UnixNano(q.BeforeTime)
		w.add("(ts < ? OR (ts = ? AND id > ?))", t, t, q.BeforeID)
	}
	limit := storage.QueryLimit(q.Limit)
	query := `SELECT ts, observed_ts, trace_id, span_id, severity_text, severity_number, body,
		service_name, scope_name, attributes, resource_attributes FROM logs` + w.sql() + ` ORDER BY ts DESC, id`
	args := w.args
	if re == nil {
		query += " LIMIT ?"
		args = append(args, limit)
	}
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("query logs: %w", err)
	}
	defer rows.Close()
	var out []storage.LogRecord
	for len(out) < limit && rows.Next() {
		var (
			r              storage.LogRecord
			ts, observed   int64
			attrs, resAttr string
		)
		if err := rows.Scan(&ts, &observed, &r.TraceID, &r.SpanID, &r.SeverityText, &r.SeverityNumber, &r.Body,
			&r.ServiceName, &r.ScopeName, &attrs, &resAttr); err != nil {
			return nil, fmt.Errorf("query logs: %w", err)
		}
		if re != nil && !re.MatchString(r.Body) {
			continue
		}
		r.Timestamp, r.ObservedTimestamp = storage.FromUnixNano(ts), storage.FromUnixNano(observed)
		if r.Attributes, err = decodeMap(attrs); err != nil {
			return nil, fmt.Errorf("query logs: attributes: %w", err)
		}
		if r.ResourceAttributes, err = decodeMap(resAttr); err != nil {
			return nil, fmt.Errorf("query logs: resource attributes: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query logs: %w", err)
	}
	return out, nil
}
