package clickhouse

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/aiops-dev/aiops/storage"
)

// spansTable is the name of the spans table, whose parts the span head
// follows.
const spansTable = "spans"

// spanColumns are the columns the span head reads, in spanRow's order.
const spanColumns = "trace_id, span_id, parent_span_id, name, kind, service_name, scope_name, start_time, end_time, status_code, status_message, attr_keys, attr_values, resource_keys, resource_values, details, event_keys, event_values"

// headIDs are the trace ids of a query, sorted without repeats; nil when
// it names none.
func headIDs(q storage.SpanQuery) []string {
	ids := slices.Clone(q.TraceIDs)
	if q.TraceID != "" {
		ids = append(ids, q.TraceID)
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// spansFromHead answers QuerySpans from the span head when it holds
// every span the query can match; ok is false when ClickHouse must be
// asked.
func (s *Store) spansFromHead(ctx context.Context, q storage.SpanQuery) (_ []storage.Span, ok bool, err error) {
	if !s.readySpanHead(ctx) {
		return nil, false, nil
	}
	ids := headIDs(q)
	for range 2 {
		out, a, err := s.spanHead.querySpans(q, ids)
		switch {
		case err != nil:
			return nil, false, fmt.Errorf("query spans: %w", err)
		case a == headYes:
			s.spanHead.answered.Add(1)
			return out, true, nil
		case a == headNeedOld && s.loadOldTraces(ctx):
			continue
		}
		return nil, false, nil
	}
	return nil, false, nil
}

// traceIDsFromHead is spansFromHead for TraceIDs.
func (s *Store) traceIDsFromHead(ctx context.Context, q storage.SpanQuery) (_ []string, ok bool) {
	if !s.readySpanHead(ctx) {
		return nil, false
	}
	ids := headIDs(q)
	for range 2 {
		out, a := s.spanHead.traceIDs(q, ids)
		switch {
		case a == headYes:
			s.spanHead.answered.Add(1)
			return out, true
		case a == headNeedOld && s.loadOldTraces(ctx):
			continue
		}
		return nil, false
	}
	return nil, false
}

// readySpanHead syncs the span head unless a sync within
// clickhouse.span_head_refresh did; false when it is off, not loaded yet
// or the sync failed (the read then asks ClickHouse). The first read
// starts the load in the background: it reads every span of the head's
// window (seconds for a million), longer than a read should wait, and a
// read's timeout must not cut it short.
func (s *Store) readySpanHead(ctx context.Context) bool {
	h := s.spanHead
	if h == nil {
		return false
	}
	loaded, start := h.beginLoad()
	if start {
		go s.loadSpanHead()
	}
	if !loaded {
		return false
	}
	if err := h.gate.run(func() error { return s.readSpanChanges(ctx) }); err != nil {
		s.logger.Debug("span head not synced; reading ClickHouse", "err", err)
		return false
	}
	return true
}

// loadSpanHead loads the span head: its first sync, until the store
// closes.
func (s *Store) loadSpanHead() {
	h := s.spanHead
	t0 := time.Now()
	err := h.gate.run(func() error { return s.readSpanChanges(s.stopCtx) })
	h.endLoad(err == nil)
	if err != nil {
		s.logger.Warn("span head not loaded; trace reads ask ClickHouse until a later read loads it", "err", err)
		return
	}
	n, bytes, start := h.stats()
	from := "every span"
	if start != math.MinInt64 {
		from = storage.FromUnixNano(start).Format(time.RFC3339)
	}
	s.logger.Info("span head loaded", "spans", n, "mib", bytes>>20, "from", from, "took", time.Since(t0).Round(time.Millisecond))
	if start > s.now().UnixNano() {
		s.logger.Warn("the span head cannot hold the current hour's spans within clickhouse.span_head_mib: trace reads ask ClickHouse; raise it or set 0",
			"span_head_mib", s.cfg.SpanHeadMiB)
	}
}

// WaitSpanHead waits until the span head is loaded (starting the load if
// no read has), or ctx is done; at once when the head is off. Benchmarks
// use it to measure the loaded head.
func (s *Store) WaitSpanHead(ctx context.Context) error {
	if s.spanHead == nil {
		return nil
	}
	s.readySpanHead(ctx)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !s.spanHead.loaded() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			s.readySpanHead(ctx) // starts the load again after a failure
		}
	}
	return nil
}

// startSpanHead chooses head_start for the first load: the start of the
// oldest hour such that the spans from it on fit clickhouse.span_head_mib
// at spanHeadEstimate bytes each; -∞ when every span does.
func (s *Store) startSpanHead(ctx context.Context) error {
	h := s.spanHead
	// The parts' row counts per day (duplicates not yet merged away
	// included) bound the days worth counting by hour: the ones after
	// the day before the newest that would not fit.
	parts, err := s.listParts(ctx, spansTable)
	if err != nil {
		return err
	}
	perDay := map[int32]uint64{}
	for _, p := range parts {
		perDay[p.day] += p.rows
	}
	days := slices.Sorted(maps.Keys(perDay))
	from, start := "", int64(math.MinInt64)
	var sum int64
	for i := len(days) - 1; i >= 0; i-- {
		sum += int64(perDay[days[i]]) * spanHeadEstimate
		if sum > h.maxBytes {
			// The head starts there at the earliest.
			start = int64(days[i]-1) * nsPerDay
			from = fmt.Sprintf(" WHERE start_time >= %d", start)
			break
		}
	}
	rows, err := s.conn.Query(ctx, fmt.Sprintf(
		"SELECT toInt64(intDiv(start_time, %d)) AS hour, count() FROM %s%s GROUP BY hour ORDER BY hour DESC", nsPerHour, s.t.spans, from))
	if err != nil {
		return s.wrap("count spans per hour", err)
	}
	defer rows.Close()
	var total int64
	for rows.Next() {
		var (
			hour int64
			n    uint64
		)
		if err := rows.Scan(&hour, &n); err != nil {
			return s.wrap("count spans per hour", err)
		}
		total += int64(n) * spanHeadEstimate
		if total > h.maxBytes {
			start = (hour + 1) * nsPerHour
			break
		}
	}
	if err := rows.Err(); err != nil {
		return s.wrap("count spans per hour", err)
	}
	// From here on this process's commits enter the head; the ones before
	// are in the parts the sync lists next.
	h.activate(start)
	return nil
}

// readSpanChanges brings the span head up to date with the spans table:
// reads the new parts, forgets dropped days, and records whether it read
// everything.
func (s *Store) readSpanChanges(ctx context.Context) error {
	h := s.spanHead
	if !h.isActive() {
		if err := s.startSpanHead(ctx); err != nil {
			return err
		}
	}
	parts, err := s.listParts(ctx, spansTable)
	if err != nil {
		return err
	}
	days := map[int32]bool{}
	var unread []tablePart
	for _, p := range parts {
		days[p.day] = true
		if h.read.covers(p.shard, p) {
			continue
		}
		unread = append(unread, p)
	}
	// A day the last listing had and this one has not was dropped (by
	// retention, here or elsewhere): head_start moves past it.
	dropped := int32(math.MinInt32)
	for d := range h.seenDays {
		if !days[d] {
			dropped = max(dropped, d)
		}
	}
	if dropped != math.MinInt32 {
		h.evictBefore(int64(dropped+1) * nsPerDay)
	}
	h.seenDays = days
	complete := true
	if len(unread) > 0 {
		if err := s.followSpanParts(ctx, unread); err != nil {
			h.setComplete(false)
			return err
		}
		if h.afterRead != nil {
			h.afterRead()
		}
		// Only parts still active now were certainly read whole; one
		// merged away meanwhile is read again in its successor.
		after, err := s.listParts(ctx, spansTable)
		if err != nil {
			h.setComplete(false)
			return err
		}
		active := partKeys(after)
		for _, p := range unread {
			if !active[p.key()] {
				complete = false
				continue
			}
			h.read.add(p.shard, p)
		}
	}
	h.setComplete(complete)
	return nil
}

// followSpanParts reads into the head the rows from its start on of the
// given new parts, and the traces of their older rows into the old-trace
// filter when it is loaded or loading.
func (s *Store) followSpanParts(ctx context.Context, parts []tablePart) error {
	h := s.spanHead
	h.mu.RLock()
	start, old := h.start, h.oldReady || h.oldLoading
	h.mu.RUnlock()
	return s.byShard(parts, s.t.spans, func(conn driver.Conn, table string, parts []tablePart) error {
		cond := ""
		if start != math.MinInt64 {
			cond = fmt.Sprintf(" AND start_time >= %d", start)
		}
		if err := s.readSpanRows(ctx, conn, fmt.Sprintf("SELECT %s FROM %s WHERE _part IN (%s)%s",
			spanColumns, table, partNames(parts), cond)); err != nil {
			return err
		}
		if !old || start == math.MinInt64 {
			return nil
		}
		// A trace with spans before head_start, found in a new part: its
		// reads by id must ask ClickHouse.
		ids, err := s.queryStrings(ctx, conn, "read old traces of new spans", fmt.Sprintf(
			"SELECT DISTINCT trace_id FROM %s WHERE _part IN (%s) AND start_time < %d", table, partNames(parts), start))
		if err != nil {
			return err
		}
		h.mu.Lock()
		for _, id := range ids {
			h.addOldLocked(id)
		}
		h.mu.Unlock()
		return nil
	})
}

func (s *Store) readSpanRows(ctx context.Context, conn driver.Conn, sql string) error {
	h := s.spanHead
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return s.wrap("read new spans", err)
	}
	defer rows.Close()
	const batch = 4096
	buf := make([]spanRow, 0, batch)
	for rows.Next() {
		var r spanRow
		if err := rows.Scan(&r.traceID, &r.spanID, &r.parent, &r.name, &r.kind, &r.service, &r.scope, &r.start, &r.end,
			&r.status, &r.statusMsg, &r.attrKeys, &r.attrVals, &r.resKeys, &r.resVals, &r.details, &r.eventKeys, &r.eventVals); err != nil {
			return s.wrap("read new spans", err)
		}
		buf = append(buf, r)
		if len(buf) == batch {
			h.add(buf)
			buf = buf[:0]
		}
	}
	if err := rows.Err(); err != nil {
		return s.wrap("read new spans", err)
	}
	h.add(buf)
	return nil
}

// loadOldTraces loads the filter of the traces with spans before
// head_start from trace_index; false when that failed (the read then asks
// ClickHouse).
func (s *Store) loadOldTraces(ctx context.Context) bool {
	h := s.spanHead
	h.loadOld.Lock()
	defer h.loadOld.Unlock()
	start, ok := h.startOldLoad()
	if !ok {
		return true
	}
	ids, err := s.oldTraceIDs(ctx, start)
	if err != nil {
		h.abortOldLoad()
		s.logger.Debug("span head: old traces not loaded; reading ClickHouse", "err", err)
		return false
	}
	h.setOld(ids)
	return true
}

func (s *Store) oldTraceIDs(ctx context.Context, start int64) ([]string, error) {
	return s.queryStrings(ctx, s.conn, "list traces before the span head", fmt.Sprintf(
		"SELECT DISTINCT trace_id FROM %s WHERE start_min < %d", s.t.traceIndex, start))
}

// SpanHeadStats reports what the span head holds: spans, the bytes they
// are counted at against clickhouse.span_head_mib, and head_start (zero
// while the head is off or not loaded yet; the minimum time when it holds
// every span).
func (s *Store) SpanHeadStats() (spans int, bytes int64, start int64) {
	if s.spanHead == nil {
		return 0, 0, 0
	}
	return s.spanHead.stats()
}
