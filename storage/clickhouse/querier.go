package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// codeCannotCompileRegexp is the exception ClickHouse raises when its RE2
// rejects a regular expression.
const codeCannotCompileRegexp = 427

// Querier returns a querier over [mint, maxt] (milliseconds, inclusive).
// It is safe for concurrent use.
func (s *Store) Querier(mint, maxt int64) (promstorage.Querier, error) {
	if err := s.whenConnected(); err != nil {
		return nil, err
	}
	return &querier{s: s, mint: mint, maxt: maxt}, nil
}

// ChunkQuerier returns a querier that encodes the samples of each series
// into chunks, for remote read.
func (s *Store) ChunkQuerier(mint, maxt int64) (promstorage.ChunkQuerier, error) {
	if err := s.whenConnected(); err != nil {
		return nil, err
	}
	return &chunkQuerier{querier{s: s, mint: mint, maxt: maxt}}, nil
}

type querier struct {
	s          *Store
	mint, maxt int64
}

type chunkQuerier struct{ querier }

func (q *chunkQuerier) Select(ctx context.Context, sortSeries bool, hints *promstorage.SelectHints, matchers ...*labels.Matcher) promstorage.ChunkSeriesSet {
	return promstorage.NewSeriesSetToChunkSet(q.querier.Select(ctx, sortSeries, hints, matchers...))
}

func (q *querier) Close() error { return nil }

// Select returns the series matching every matcher, sorted by labels
// (whether or not sortSeries asks for it), with their samples in the hinted
// range. The work starts at once in the background, so the PromQL engine,
// which selects every vector selector of a query before it evaluates any,
// gets them loaded in parallel.
func (q *querier) Select(ctx context.Context, _ bool, hints *promstorage.SelectHints, matchers ...*labels.Matcher) promstorage.SeriesSet {
	start, end := q.mint, q.maxt
	withSamples := true
	if hints != nil {
		start, end = hints.Start, hints.End
		// The series API only wants label sets.
		withSamples = hints.Func != "series"
	}
	set := &seriesSet{done: make(chan struct{})}
	if start > end {
		close(set.done)
		return set
	}
	limit := 0
	if hints != nil {
		limit = hints.Limit
	}
	go func() {
		defer close(set.done)
		set.series, set.err = q.s.selectSeries(ctx, start, end, withSamples, matchers, limit)
	}()
	return set
}

// seriesSet hands out the result of one Select once it is complete.
type seriesSet struct {
	done   chan struct{}
	series []*series
	err    error
	i      int
}

func (s *seriesSet) Next() bool {
	<-s.done
	if s.err != nil || s.i >= len(s.series) {
		return false
	}
	s.i++
	return true
}

func (s *seriesSet) At() promstorage.Series            { return s.series[s.i-1] }
func (s *seriesSet) Err() error                        { <-s.done; return s.err }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// seriesInfo is one series as metric_series knows it.
type seriesInfo struct {
	fp    uint64
	kinds uint8
	ls    labels.Labels
}

// seriesWhere returns the conditions on metric_series for matchers over
// the days of [start, end].
func (s *Store) seriesWhere(start, end int64, matchers []*labels.Matcher, withRegex bool) string {
	return seriesConditions(dayOf(start), dayOf(end), matchers, withRegex)
}

// selectSeries does the work of Select: the series first, then their
// samples, floats and histograms by concurrent queries.
// A limit > 0 (SelectHints.Limit) returns only the first series.
func (s *Store) selectSeries(ctx context.Context, start, end int64, withSamples bool, matchers []*labels.Matcher, limit int) ([]*series, error) {
	out, err := s.selectSeriesOnce(ctx, start, end, withSamples, matchers, true, limit)
	if err != nil && isException(err, codeCannotCompileRegexp) {
		// The server's RE2 refused an expression Go's accepted; match
		// those in Go only.
		return s.selectSeriesOnce(ctx, start, end, withSamples, matchers, false, limit)
	}
	return out, err
}

// maxInlineFingerprints bounds the fingerprint lists written into sample
// queries (about 22 bytes each; ClickHouse caps a statement at 256 KiB by
// default). Larger selections find their fingerprints with the series
// conditions in a subquery instead.
const maxInlineFingerprints = 4000

// fingerprintCond returns the condition on metric_samples or
// metric_histograms that selects the given series of one kind, or "" when
// there are none.
func (s *Store) fingerprintCond(infos []seriesInfo, kind uint8, where string) string {
	var fps []uint64
	for _, info := range infos {
		if info.kinds&kind != 0 {
			fps = append(fps, info.fp)
		}
	}
	switch {
	case len(fps) == 0:
		return ""
	case len(fps) > s.maxInlineFPs:
		return fmt.Sprintf("fingerprint IN (SELECT fingerprint FROM %s WHERE %s AND bitAnd(kinds, %d) != 0)", s.t.series, where, kind)
	}
	return fingerprintList(fps)
}

func (s *Store) selectSeriesOnce(ctx context.Context, start, end int64, withSamples bool, matchers []*labels.Matcher, withRegex bool, limit int) ([]*series, error) {
	where := s.seriesWhere(start, end, matchers, withRegex)
	now := s.now().UnixMilli()
	useCache := s.cache != nil && withSamples
	if s.index == nil {
		if err := s.syncCache(ctx, useCache); err != nil {
			return nil, err
		}
		infos, err := s.querySeries(ctx, where, matchers)
		if err != nil {
			return nil, err
		}
		return s.loadSeries(ctx, infos, start, end, now, withSamples, matchers, where, limit)
	}

	// The sync before the selection mostly finds nothing new, so the
	// samples of what the index holds now start loading meanwhile, with
	// what the sample cache and the head hold now, and are only loaded
	// again if the index changed the selection, the cache lost hours the
	// load used or the head changed.
	minDay, maxDay := dayOf(start), dayOf(end)
	var seq, headSeq uint64
	if useCache {
		seq, headSeq = s.cache.sequence(), s.head.sequence()
	}
	infos, gen, matchErr := s.index.match(minDay, maxDay, matchers, s.cfg.MaxSeries)
	type loaded struct {
		out []*series
		err error
	}
	early := make(chan loaded, 1)
	earlyCtx, cancelEarly := context.WithCancel(ctx)
	defer cancelEarly()
	if matchErr == nil {
		go func() {
			out, err := s.loadSeries(earlyCtx, infos, start, end, now, withSamples, matchers, where, limit)
			early <- loaded{out, err}
		}()
	}
	if err := s.sync(ctx, useCache); err != nil {
		return nil, err
	}
	cacheChanged := false
	if useCache {
		from, to := closedWindows(start, end, now)
		cacheChanged = s.cache.changedSince(seq, from, to) || s.head.sequence() != headSeq
	}
	if matchErr == nil && !cacheChanged && s.index.generation() == gen {
		r := <-early
		return r.out, r.err
	}
	current, _, err := s.index.match(minDay, maxDay, matchers, s.cfg.MaxSeries)
	if err != nil {
		return nil, err
	}
	if matchErr == nil && !cacheChanged && sameSeries(infos, current) {
		r := <-early
		return r.out, r.err
	}
	cancelEarly()
	return s.loadSeries(ctx, current, start, end, now, withSamples, matchers, where, limit)
}

// sync brings the series index and, with useCache, the sample cache up to
// date, concurrently.
func (s *Store) sync(ctx context.Context, useCache bool) error {
	if !useCache {
		return s.syncIndex(ctx)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.syncCache(ctx, true) }()
	err := s.syncIndex(ctx)
	if cerr := <-errc; err == nil {
		err = cerr
	}
	return err
}

func sameSeries(a, b []seriesInfo) bool {
	return slices.EqualFunc(a, b, func(x, y seriesInfo) bool { return x.fp == y.fp && x.kinds == y.kinds })
}

// loadSeries reads the samples of the selected series (the first limit of
// them when limit > 0) in [start, end]. where holds the series conditions,
// for selections too large to name their fingerprints.
func (s *Store) loadSeries(ctx context.Context, infos []seriesInfo, start, end, now int64, withSamples bool, matchers []*labels.Matcher, where string, limit int) ([]*series, error) {
	if limit > 0 && len(infos) > limit {
		infos = infos[:limit]
	}
	out := make([]*series, len(infos))
	for i, info := range infos {
		out[i] = &series{ls: info.ls}
	}
	if !withSamples || len(infos) == 0 {
		return out, nil
	}

	// The series are known now, so only the queries that can return
	// something run, and small selections name their fingerprints
	// instead of making the server evaluate the matchers again.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		floats *floatResult
		hists  *histColumns
		prev   map[uint64]*prevSample
		wg     sync.WaitGroup
		mu     sync.Mutex
		first  error
	)
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				mu.Lock()
				// Later errors are mostly the cancellation this one causes.
				if first == nil {
					first = err
				}
				mu.Unlock()
				cancel()
			}
		}()
	}
	run(func() (err error) {
		floats, err = s.loadFloatSeries(ctx, infos, where, start, end, now, matchers)
		return err
	})
	if cond := s.fingerprintCond(infos, kindHistogram, where); cond != "" {
		run(func() (err error) {
			hists, err = s.loadHistograms(ctx, cond, start, end, matchers)
			return err
		})
		floatCond := s.fingerprintCond(infos, kindFloat, where)
		run(func() (err error) {
			prev, err = s.loadPrevious(ctx, cond, floatCond, start)
			return err
		})
	}
	wg.Wait()
	if first != nil {
		return nil, first
	}

	n := 0
	for i, info := range infos {
		sr := out[i]
		if floats != nil {
			sr.segs = floats.forSeries(info.fp)
		}
		if hists != nil {
			sr.hts, sr.hsts, sr.hdata = hists.forSeries(info.fp)
			if err := computeHints(sr, prev[info.fp]); err != nil {
				return nil, fmt.Errorf("clickhouse: %w", err)
			}
		}
		n += sr.numFloats() + len(sr.hts)
	}
	if s.cfg.MaxSamples > 0 && n > s.cfg.MaxSamples {
		return nil, s.tooManySamples(matchers, start, end)
	}
	return out, nil
}

func describeSelect(matchers []*labels.Matcher, start, end int64) string {
	ms := make([]string, len(matchers))
	for i, m := range matchers {
		ms[i] = m.String()
	}
	return fmt.Sprintf("{%s} between %s and %s", strings.Join(ms, ", "),
		model.Time(start).Time().UTC().Format("2006-01-02T15:04:05.000Z"),
		model.Time(end).Time().UTC().Format("2006-01-02T15:04:05.000Z"))
}

// ErrLimit marks errors of queries that would load more than the
// configured limits allow.
var ErrLimit = errors.New("query limit exceeded")

func (s *Store) tooManySamples(matchers []*labels.Matcher, start, end int64) error {
	return fmt.Errorf("query exceeds clickhouse.max_samples=%d: %s selects more samples: %w",
		s.cfg.MaxSamples, describeSelect(matchers, start, end), ErrLimit)
}

// querySeries returns the series matching the conditions and matchers,
// sorted by labels.
func (s *Store) querySeries(ctx context.Context, where string, matchers []*labels.Matcher) ([]seriesInfo, error) {
	q := fmt.Sprintf(`SELECT fingerprint, groupBitOr(kinds), any(metric_name), any(label_names), any(label_values)
FROM %s WHERE %s GROUP BY fingerprint`, s.t.series, where)
	if s.cfg.MaxSeries > 0 {
		q += fmt.Sprintf(" LIMIT %d", s.cfg.MaxSeries+1)
	}
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return nil, s.wrap("select series", err)
	}
	defer rows.Close()
	var (
		out    []seriesInfo
		fp     uint64
		kinds  uint8
		name   string
		names  []string
		values []string
		b      labels.ScratchBuilder
	)
	dest := []any{&fp, &kinds, &name, &names, &values}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, s.wrap("select series", err)
		}
		if s.cfg.MaxSeries > 0 && len(out) >= s.cfg.MaxSeries {
			return nil, fmt.Errorf("query exceeds clickhouse.max_series=%d: more series match: %w", s.cfg.MaxSeries, ErrLimit)
		}
		if len(names) != len(values) {
			return nil, fmt.Errorf("clickhouse: series %d has %d label names and %d values", fp, len(names), len(values))
		}
		b.Reset()
		if name != "" {
			b.Add(model.MetricNameLabel, name)
		}
		for i := range names {
			b.Add(names[i], values[i])
		}
		b.Sort()
		ls := b.Labels()
		if !matchesAll(ls, matchers) {
			continue
		}
		out = append(out, seriesInfo{fp: fp, kinds: kinds, ls: ls})
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("select series", err)
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].ls, out[j].ls) < 0 })
	return out, nil
}

// LabelValues returns the values of a label among series matching the
// matchers in the querier's range, sorted.
func (q *querier) LabelValues(ctx context.Context, name string, hints *promstorage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	vals, err := q.labelValues(ctx, name, hints, matchers, true)
	if err != nil && isException(err, codeCannotCompileRegexp) {
		vals, err = q.labelValues(ctx, name, hints, matchers, false)
	}
	return vals, nil, err
}

func (q *querier) labelValues(ctx context.Context, name string, hints *promstorage.LabelHints, matchers []*labels.Matcher, withRegex bool) ([]string, error) {
	if name == "" {
		return []string{}, nil // no series has a label without a name
	}
	if !withRegex || q.s.index != nil {
		return q.labelsInGo(ctx, name, hints, matchers, func(ls labels.Labels, add func(string)) {
			if v := ls.Get(name); v != "" {
				add(v)
			}
		})
	}
	where := q.s.seriesWhere(q.mint, q.maxt, matchers, true)
	e := labelExpr(name)
	if name == model.MetricNameLabel {
		where += " AND metric_name != ''"
	} else {
		where += " AND has(label_names, " + quote(name) + ")"
	}
	sql := fmt.Sprintf("SELECT DISTINCT %s AS v FROM %s WHERE %s ORDER BY v", e, q.s.t.series, where)
	if hints != nil && hints.Limit > 0 {
		sql += fmt.Sprintf(" LIMIT %d", hints.Limit)
	}
	return q.s.queryStrings(ctx, q.s.conn, "label values", sql)
}

// LabelNames returns the names of labels of series matching the matchers
// in the querier's range, sorted.
func (q *querier) LabelNames(ctx context.Context, hints *promstorage.LabelHints, matchers ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	names, err := q.labelNames(ctx, hints, matchers, true)
	if err != nil && isException(err, codeCannotCompileRegexp) {
		names, err = q.labelNames(ctx, hints, matchers, false)
	}
	return names, nil, err
}

func (q *querier) labelNames(ctx context.Context, hints *promstorage.LabelHints, matchers []*labels.Matcher, withRegex bool) ([]string, error) {
	if !withRegex || q.s.index != nil {
		return q.labelsInGo(ctx, "", hints, matchers, func(ls labels.Labels, add func(string)) {
			ls.Range(func(l labels.Label) { add(l.Name) })
		})
	}
	where := q.s.seriesWhere(q.mint, q.maxt, matchers, true)
	sql := fmt.Sprintf("SELECT DISTINCT arrayJoin(if(metric_name = '', label_names, arrayPushFront(label_names, %s))) AS n FROM %s WHERE %s",
		quote(model.MetricNameLabel), q.s.t.series, where)
	names, err := q.s.queryStrings(ctx, q.s.conn, "label names", sql)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	if hints != nil && hints.Limit > 0 && len(names) > hints.Limit {
		names = names[:hints.Limit]
	}
	return names, nil
}

// labelsInGo answers LabelValues of name, or LabelNames when name is "",
// from the series index, or with collect on the matching label sets for
// matchers ClickHouse cannot evaluate.
func (q *querier) labelsInGo(ctx context.Context, name string, hints *promstorage.LabelHints, matchers []*labels.Matcher, collect func(labels.Labels, func(string))) ([]string, error) {
	seen := map[string]struct{}{}
	if q.s.index != nil {
		if err := q.s.syncIndex(ctx); err != nil {
			return nil, err
		}
		q.s.index.labelValues(dayOf(q.mint), dayOf(q.maxt), name, matchers, func(v string) { seen[v] = struct{}{} })
	} else {
		infos, err := q.s.querySeries(ctx, q.s.seriesWhere(q.mint, q.maxt, matchers, false), matchers)
		if err != nil {
			return nil, err
		}
		for _, info := range infos {
			collect(info.ls, func(v string) { seen[v] = struct{}{} })
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	slices.Sort(out)
	if hints != nil && hints.Limit > 0 && len(out) > hints.Limit {
		out = out[:hints.Limit]
	}
	return out, nil
}

// queryStrings runs sql, whose answer is one String column, on conn
// (the store's, or one shard's server).
func (s *Store) queryStrings(ctx context.Context, conn driver.Conn, op, sql string) ([]string, error) {
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return nil, s.wrap(op, err)
	}
	defer rows.Close()
	out := []string{}
	var v string
	for rows.Next() {
		if err := rows.Scan(&v); err != nil {
			return nil, s.wrap(op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(op, err)
	}
	return out, nil
}
