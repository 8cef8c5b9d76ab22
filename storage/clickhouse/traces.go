package clickhouse

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// pairExists is the condition that parallel key and value arrays hold
// key k with value v.
func pairExists(keys, values, k, v string) string {
	return fmt.Sprintf("arrayExists((x, y) -> x = %s AND y = %s, %s, %s)", quote(k), quote(v), keys, values)
}

// spanWhere renders the conditions of a span query other than trace ids,
// which QuerySpans looks up in the trace index.
func spanWhere(q storage.SpanQuery) where {
	var w where
	w.timeRange("start_time", q.Start, q.End)
	w.eq("service_name", q.ServiceName)
	w.eq("name", q.Name)
	w.eq("status_code", q.StatusCode)
	if q.MinDuration > 0 {
		w.add("end_time - start_time >= %d", int64(q.MinDuration))
	}
	if q.MaxDuration > 0 {
		w.add("end_time - start_time <= %d", int64(q.MaxDuration))
	}
	for _, k := range slices.Sorted(maps.Keys(q.Attributes)) {
		v := q.Attributes[k]
		w.add("(%s OR %s OR %s)", pairExists("attr_keys", "attr_values", k, v),
			pairExists("resource_keys", "resource_values", k, v), pairExists("event_keys", "event_values", k, v))
	}
	return w
}

// spanConditions renders a span query: the WHERE conditions and, for
// trace ids, a PREWHERE. It returns nil conditions when the trace index
// knows none of the query's traces (nothing matches).
func (s *Store) spanConditions(ctx context.Context, q storage.SpanQuery) (w where, prewhere string, err error) {
	w = append(spanWhere(q), "1")
	ids := q.TraceIDs
	if q.TraceID != "" {
		ids = append(slices.Clip(ids), q.TraceID)
	}
	if len(ids) == 0 {
		return w, "", nil
	}
	in, cond, err := s.traceRanges(ctx, ids)
	if err != nil || cond == "" {
		return nil, "", err
	}
	return append(w, cond), " PREWHERE " + in, nil
}

// indexSpans writes the trace index rows and the operations of a batch.
func (s *Store) indexSpans(ctx context.Context, spans []storage.Span) error {
	type key struct{ trace, service string }
	type span struct{ lo, hi int64 }
	ranges := map[key]span{}
	type op struct {
		day                 int32
		service, name, kind string
	}
	ops := map[op]bool{}
	for i := range spans {
		sp := &spans[i]
		t := storage.UnixNano(sp.StartTime)
		k := key{sp.TraceID, sp.ServiceName}
		if r, ok := ranges[k]; !ok {
			ranges[k] = span{t, t}
		} else {
			ranges[k] = span{min(r.lo, t), max(r.hi, t)}
		}
		if sp.ServiceName != "" {
			ops[op{dayOfNs(t), sp.ServiceName, sp.Name, sp.Kind}] = true
		}
	}
	var (
		ids, services []string
		los, his      []int64
	)
	for k, r := range ranges {
		ids, services = append(ids, k.trace), append(services, k.service)
		los, his = append(los, r.lo), append(his, r.hi)
	}
	if err := s.insert(ctx, s.t.traceIndex, "trace_id, service_name, start_min, start_max", []any{ids, services, los, his}); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	var (
		days               []int32
		svcs, names, kinds []string
	)
	for o := range ops {
		days, svcs, names, kinds = append(days, o.day), append(svcs, o.service), append(names, o.name), append(kinds, o.kind)
	}
	return s.insert(ctx, s.t.operations, "day, service_name, name, kind", []any{days, svcs, names, kinds})
}

// dayOfNs is the day number of a time in nanoseconds, as intDiv computes
// it in the partition keys.
func dayOfNs(ns int64) int32 { return int32(ns / nsPerDay) }

// maxRangeTerms bounds the terms a look-up by trace id ORs in its WHERE
// clause; beyond it, they are merged into one.
const maxRangeTerms = 256

// mergeWindow is how close in time the traces' spans must lie for
// their look-up to read them in one time range.
const mergeWindow = time.Hour

// traceRanges looks the traces up in the trace index and renders the
// condition that reads their spans by primary key: the services the
// index names, in the time range it gives. It returns the trace id
// condition apart, for PREWHERE: ClickHouse reads the trace_id column of
// the ranges first and the other columns of the matching rows only. It
// returns "" when the index knows none of the traces.
//
// Index rows within mergeWindow of each other become one term, `service_name
// IN (…) AND start_time BETWEEN …`, which reads every named service over
// the term's time range; terms further apart are ORed. One term is much
// faster than an OR of narrow ranges even where it reads more rows:
// ClickHouse 18.16 spends long on an OR of ranges (aiops-bench traces'
// 1 M spans: a trace's spans in 22 ms server time as an OR of six
// (service, time) ranges reading 6,144 rows, in 6 ms as one term reading
// 15,934; a search's 20 traces in 96 ms as an OR reading 15,360 rows, in
// 23 ms as one term reading 35,390).
func (s *Store) traceRanges(ctx context.Context, ids []string) (in, cond string, err error) {
	// Sorted apart: ids may be the caller's SpanQuery.TraceIDs, whose
	// order the Jaeger API keeps (a search's traces, newest first).
	ids = slices.Clone(ids)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	quoted := make([]string, len(ids))
	for i, id := range ids {
		quoted[i] = quote(id)
	}
	in = "trace_id IN (" + strings.Join(quoted, ", ") + ")"
	rows, err := s.conn.Query(ctx, fmt.Sprintf(`SELECT service_name, min(start_min) AS lo, max(start_max) FROM %s
WHERE %s GROUP BY trace_id, service_name ORDER BY lo`, s.t.traceIndex, in))
	if err != nil {
		return "", "", s.wrap("look up traces", err)
	}
	defer rows.Close()
	type term struct {
		services map[string]bool
		lo, hi   int64
	}
	var terms []*term
	for rows.Next() {
		var (
			service string
			lo, hi  int64
		)
		if err := rows.Scan(&service, &lo, &hi); err != nil {
			return "", "", s.wrap("look up traces", err)
		}
		// Rows come by their start: a row joins the last term while the
		// term stays within mergeWindow (a row longer than that is a term
		// of its own).
		if n := len(terms); n > 0 && max(terms[n-1].hi, hi)-terms[n-1].lo <= int64(mergeWindow) {
			t := terms[n-1]
			t.services[service] = true
			t.hi = max(t.hi, hi)
			continue
		}
		terms = append(terms, &term{services: map[string]bool{service: true}, lo: lo, hi: hi})
	}
	if err := rows.Err(); err != nil {
		return "", "", s.wrap("look up traces", err)
	}
	if len(terms) == 0 {
		return "", "", nil
	}
	if len(terms) > maxRangeTerms {
		// Traces strewn over days: one wide term rather than a query
		// ClickHouse takes long to parse and analyse.
		all := terms[0]
		for _, t := range terms[1:] {
			maps.Copy(all.services, t.services)
			all.lo, all.hi = min(all.lo, t.lo), max(all.hi, t.hi)
		}
		terms = terms[:1]
	}
	parts := make([]string, len(terms))
	for i, t := range terms {
		names := slices.Sorted(maps.Keys(t.services))
		for j, n := range names {
			names[j] = quote(n)
		}
		parts[i] = fmt.Sprintf("(service_name IN (%s) AND start_time >= %d AND start_time <= %d)", strings.Join(names, ", "), t.lo, t.hi)
	}
	return in, "(" + strings.Join(parts, " OR ") + ")", nil
}

// TraceIDs returns the traces with a matching span, the one whose latest
// matching span started last first (ties by trace id).
func (s *Store) TraceIDs(ctx context.Context, q storage.SpanQuery) ([]string, error) {
	if err := s.whenConnected(); err != nil {
		return nil, err
	}
	if out, ok := s.traceIDsFromHead(ctx, q); ok {
		return out, nil
	}
	w, pre, err := s.spanConditions(ctx, q)
	if err != nil || w == nil {
		return nil, err
	}
	rows, err := s.conn.Query(ctx, fmt.Sprintf(`SELECT trace_id, max(start_time) AS last FROM %s%s%s
GROUP BY trace_id ORDER BY last DESC, trace_id LIMIT %d`, s.t.spans, pre, w.sql(), storage.QueryLimit(q.Limit)))
	if err != nil {
		return nil, s.wrap("find traces", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var (
			id   string
			last int64
		)
		if err := rows.Scan(&id, &last); err != nil {
			return nil, s.wrap("find traces", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("find traces", err)
	}
	return out, nil
}

// Services returns the services of the stored spans, sorted.
func (s *Store) Services(ctx context.Context) ([]string, error) {
	if err := s.whenConnected(); err != nil {
		return nil, err
	}
	return s.queryStrings(ctx, s.conn, "list services",
		fmt.Sprintf(`SELECT DISTINCT service_name FROM %s ORDER BY service_name`, s.t.operations))
}

// Operations returns the span names and kinds of a service.
func (s *Store) Operations(ctx context.Context, service string) ([]storage.Operation, error) {
	if err := s.whenConnected(); err != nil {
		return nil, err
	}
	rows, err := s.conn.Query(ctx, fmt.Sprintf(`SELECT DISTINCT name, kind FROM %s WHERE service_name = %s ORDER BY name, kind`,
		s.t.operations, quote(service)))
	if err != nil {
		return nil, s.wrap("list operations", err)
	}
	defer rows.Close()
	out := []storage.Operation{}
	for rows.Next() {
		var op storage.Operation
		if err := rows.Scan(&op.Name, &op.Kind); err != nil {
			return nil, s.wrap("list operations", err)
		}
		out = append(out, op)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("list operations", err)
	}
	return out, nil
}

// Dependencies counts parent → child service pairs of spans that started
// in [start, end] whose parent also started in it. Each span counts once,
// merged or not.
func (s *Store) Dependencies(ctx context.Context, start, end time.Time) ([]storage.Dependency, error) {
	if err := s.whenConnected(); err != nil {
		return nil, err
	}
	a, b := storage.UnixNano(start), storage.UnixNano(end)
	sql := fmt.Sprintf(`SELECT parent_service, service, count() FROM
(SELECT trace_id, span_id, parent_span_id AS pid, service_name AS service FROM %[1]s
 WHERE start_time >= %[2]d AND start_time <= %[3]d AND parent_span_id != '' LIMIT 1 BY trace_id, span_id)
ANY INNER JOIN
(SELECT trace_id, span_id AS pid, service_name AS parent_service FROM %[1]s
 WHERE start_time >= %[2]d AND start_time <= %[3]d)
USING (trace_id, pid)
GROUP BY parent_service, service ORDER BY parent_service, service`, s.t.spans, a, b)
	rows, err := s.conn.Query(ctx, sql)
	if err != nil {
		return nil, s.wrap("dependencies", err)
	}
	defer rows.Close()
	out := []storage.Dependency{}
	for rows.Next() {
		var (
			d     storage.Dependency
			calls uint64
		)
		if err := rows.Scan(&d.Parent, &d.Child, &calls); err != nil {
			return nil, s.wrap("dependencies", err)
		}
		d.Calls = int64(calls)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("dependencies", err)
	}
	return out, nil
}
