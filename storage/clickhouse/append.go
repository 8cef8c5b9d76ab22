package clickhouse

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/storage"
)

// Sample kinds, as bits of metric_series.kinds.
const (
	kindFloat     uint8 = 1
	kindHistogram uint8 = 2
	// kindFloatST marks a row whose series has float samples with a start
	// timestamp that day. Readers skip the start_timestamp column (zero
	// otherwise) when no selected series has it: gauges and data from
	// Prometheus never do, and the column is a quarter of a float row.
	kindFloatST uint8 = 4
)

var (
	errEmptyLabels     = errors.New("empty label set")
	errDuplicateLabels = errors.New("duplicate label names")
)

// seriesKey identifies one metric_series row.
type seriesKey struct {
	fp   uint64
	day  int32
	kind uint8
}

// seriesCache remembers which metric_series rows this process has written,
// so that a series costs one row per day, not one per sample. It is
// per-process: another process (or this one after a restart) writes the
// row again, which ReplacingMergeTree and DISTINCT reads make harmless.
type seriesCache struct {
	mu     sync.Mutex
	m      map[seriesKey]struct{}
	maxDay int32
}

func newSeriesCache() *seriesCache { return &seriesCache{m: map[seriesKey]struct{}{}} }

func (c *seriesCache) has(k seriesKey) bool {
	c.mu.Lock()
	_, ok := c.m[k]
	c.mu.Unlock()
	return ok
}

// add records written rows. When a new day starts, rows older than the day
// before are forgotten: samples for them are rare (late data) and only
// cost a repeated series row.
func (c *seriesCache) add(keys []seriesKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	prune := false
	for _, k := range keys {
		c.m[k] = struct{}{}
		if k.day > c.maxDay {
			prune = c.maxDay != 0
			c.maxDay = k.day
		}
	}
	if prune {
		for k := range c.m {
			if k.day < c.maxDay-1 {
				delete(c.m, k)
			}
		}
	}
}

// batch is what one appender collects until Commit: columns ready for
// ClickHouse's columnar insert, plus the series rows this process has not
// written yet.
type batch struct {
	// float samples
	fps  []uint64
	ts   []int64
	vals []float64
	sts  []int64
	// native histogram samples
	hfps  []uint64
	hts   []int64
	hsts  []int64
	hdata []string

	// newSeries holds the labels of series rows to write; seen maps every
	// series row of the batch to its index there, or -1 when the cache
	// says it is written already.
	seen      map[seriesKey]int
	newSeries []pendingSeries
	lastKey   seriesKey
	lastFP    uint64
	lastLS    labels.Labels

	meta metadataRecorder
	// metaTime is when the metadata changes were noted (Unix ns), for a
	// batch read back from the write-ahead log; 0 means now.
	metaTime int64
	enc      []byte
}

type pendingSeries struct {
	key seriesKey
	ls  labels.Labels
}

func (s *Store) newBatch() batch {
	return batch{seen: map[seriesKey]int{}, meta: metadataRecorder{cache: s.meta}}
}

// add buffers one sample; h or fh set make it a histogram sample.
func (s *Store) add(b *batch, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram) (promstorage.SeriesRef, error) {
	// Hashing is the main per-sample cost; appends of one series often come
	// in runs (a scrape, a histogram's buckets come in families), so the
	// last label set is remembered. labels.Equal on the same backing data
	// is cheap.
	var fp uint64
	if b.lastLS.Len() > 0 && labels.Equal(ls, b.lastLS) {
		fp = b.lastFP
	} else {
		if ls.IsEmpty() {
			return 0, fmt.Errorf("append: %w", errEmptyLabels)
		}
		fp = ls.Hash()
		b.lastFP, b.lastLS = fp, ls
	}
	kind := kindFloat
	switch {
	case h != nil || fh != nil:
		kind = kindHistogram
	case st != 0:
		kind |= kindFloatST
	}
	key := seriesKey{fp: fp, day: dayOf(t), kind: kind}
	if key != b.lastKey {
		if _, ok := b.seen[key]; !ok {
			if err := s.noteSeries(b, key, ls); err != nil {
				return 0, err
			}
		}
		b.lastKey = key
	}
	switch {
	case fh != nil:
		b.enc = encodeFloatHistogram(b.enc[:0], fh)
		b.hfps, b.hts, b.hsts = append(b.hfps, fp), append(b.hts, t), append(b.hsts, st)
		b.hdata = append(b.hdata, string(b.enc))
	case h != nil:
		b.enc = encodeHistogram(b.enc[:0], h)
		b.hfps, b.hts, b.hsts = append(b.hfps, fp), append(b.hts, t), append(b.hsts, st)
		b.hdata = append(b.hdata, string(b.enc))
	default:
		b.fps, b.ts, b.vals, b.sts = append(b.fps, fp), append(b.ts, t), append(b.vals, v), append(b.sts, st)
	}
	return promstorage.SeriesRef(fp), nil
}

// noteSeries is the slow path of add: the first sample of a series row in
// this batch.
func (s *Store) noteSeries(b *batch, key seriesKey, ls labels.Labels) error {
	if s.series.has(key) {
		b.seen[key] = -1
		return nil
	}
	if name, dup := ls.HasDuplicateLabelNames(); dup {
		return fmt.Errorf("append %s: label %q: %w", ls, name, errDuplicateLabels)
	}
	b.seen[key] = len(b.newSeries)
	b.newSeries = append(b.newSeries, pendingSeries{key: key, ls: ls})
	return nil
}

func (b *batch) empty() bool {
	return len(b.fps) == 0 && len(b.hfps) == 0 && len(b.newSeries) == 0 && len(b.meta.pending) == 0
}

// commit makes the batch durable: into the write-ahead log when there is
// one, into ClickHouse otherwise.
func (s *Store) commit(ctx context.Context, b *batch) error {
	if s.wal != nil {
		return s.logBatch(b)
	}
	return s.insertBatch(ctx, b)
}

// insertBatch writes the batch: series rows first (so that a sample is
// never visible without its series), then samples, then metadata. On
// error nothing counts as written; a retry writes everything again, and
// the duplicates are merged away and never double-counted by reads.
func (s *Store) insertBatch(ctx context.Context, b *batch) error {
	if len(b.newSeries) > 0 {
		if err := s.insertSeries(ctx, b.newSeries); err != nil {
			return err
		}
		keys := make([]seriesKey, len(b.newSeries))
		for i, p := range b.newSeries {
			keys[i] = p.key
		}
		s.series.add(keys)
		if s.index != nil {
			s.index.written(b.newSeries)
		}
	}
	if len(b.fps) > 0 {
		b.sortFloats()
		err := s.insertSorted(ctx, s.t.samples, "fingerprint, timestamp, value, start_timestamp", b.ts,
			func(lo, hi int) []any { return []any{b.fps[lo:hi], b.ts[lo:hi], b.vals[lo:hi], b.sts[lo:hi]} })
		if err != nil {
			return err
		}
		if s.cache != nil {
			// Other processes' samples are found by the cache's sync;
			// this process's late ones drop their hours at once, and its
			// new ones reach the head at once, whatever
			// series_index_refresh says.
			lo, hi := slices.Min(b.ts), slices.Max(b.ts)
			s.cache.invalidateRange(lo, hi)
			if s.cache.gate.refresh > 0 {
				s.head.written(b.fps, b.ts, b.sts, b.vals)
			}
		}
	}
	if len(b.hfps) > 0 {
		b.sortHistograms()
		err := s.insertSorted(ctx, s.t.histograms, "fingerprint, timestamp, start_timestamp, histogram", b.hts,
			func(lo, hi int) []any { return []any{b.hfps[lo:hi], b.hts[lo:hi], b.hsts[lo:hi], b.hdata[lo:hi]} })
		if err != nil {
			return err
		}
	}
	metaTime := b.metaTime
	if metaTime == 0 {
		metaTime = time.Now().UnixNano()
	}
	return s.saveMetadata(ctx, b.meta.pending, metaTime)
}

// maxDaysPerInsert bounds the days (partitions) one INSERT touches.
// Servers from 19.x on refuse blocks spanning more than
// max_partitions_per_insert_block (100) partitions with TOO_MANY_PARTS,
// which reads as retryable and would be retried forever; a backfill
// spanning months is split instead.
const maxDaysPerInsert = 90

func dayGroup(ms int64) int32 { return dayOf(ms) / maxDaysPerInsert }

// rowOrder returns the permutation that sorts rows by (day group,
// fingerprint, timestamp), or nil when they are sorted already.
// ClickHouse sorts every inserted block by the table's key; 18.16 does
// that slowly enough that sorting here makes inserts several times faster
// (1M rows: 4.5 s unsorted, 1.2 s sorted, on the development machine).
func rowOrder(fps []uint64, ts []int64) []int32 {
	sorted := true
	for i := 1; i < len(fps); i++ {
		gp, g := dayGroup(ts[i-1]), dayGroup(ts[i])
		if g < gp || (g == gp && (fps[i] < fps[i-1] || (fps[i] == fps[i-1] && ts[i] < ts[i-1]))) {
			sorted = false
			break
		}
	}
	if sorted {
		return nil
	}
	type key struct {
		group int32
		i     int32
		fp    uint64
		ts    int64
	}
	keys := make([]key, len(fps))
	for i := range fps {
		keys[i] = key{dayGroup(ts[i]), int32(i), fps[i], ts[i]}
	}
	slices.SortFunc(keys, func(a, b key) int {
		switch {
		case a.group != b.group:
			return cmp.Compare(a.group, b.group)
		case a.fp != b.fp:
			return cmp.Compare(a.fp, b.fp)
		case a.ts != b.ts:
			return cmp.Compare(a.ts, b.ts)
		}
		return cmp.Compare(a.i, b.i)
	})
	order := make([]int32, len(keys))
	for i, k := range keys {
		order[i] = k.i
	}
	return order
}

// insertSorted inserts rows sorted by rowOrder: one INSERT (or more, of
// at most BatchSize rows) per day group.
func (s *Store) insertSorted(ctx context.Context, table, columns string, ts []int64, cols func(lo, hi int) []any) error {
	for lo := 0; lo < len(ts); {
		hi := lo + 1
		for g := dayGroup(ts[lo]); hi < len(ts) && dayGroup(ts[hi]) == g; hi++ {
		}
		base := lo
		if err := s.insertChunks(ctx, table, columns, hi-lo, func(a, b int) []any { return cols(base+a, base+b) }); err != nil {
			return err
		}
		lo = hi
	}
	return nil
}

func permute[T any](s []T, order []int32) []T {
	out := make([]T, len(s))
	for i, j := range order {
		out[i] = s[j]
	}
	return out
}

func (b *batch) sortFloats() {
	if order := rowOrder(b.fps, b.ts); order != nil {
		b.fps, b.ts, b.vals, b.sts = permute(b.fps, order), permute(b.ts, order), permute(b.vals, order), permute(b.sts, order)
	}
}

func (b *batch) sortHistograms() {
	if order := rowOrder(b.hfps, b.hts); order != nil {
		b.hfps, b.hts, b.hsts, b.hdata = permute(b.hfps, order), permute(b.hts, order), permute(b.hsts, order), permute(b.hdata, order)
	}
}

func (s *Store) insertSeries(ctx context.Context, series []pendingSeries) error {
	n := len(series)
	days := make([]int32, n)
	fps := make([]uint64, n)
	kinds := make([]uint8, n)
	names := make([]string, n)
	labelNames := make([][]string, n)
	labelValues := make([][]string, n)
	for i, p := range series {
		days[i], fps[i], kinds[i] = p.key.day, p.key.fp, p.key.kind
		ln := make([]string, 0, p.ls.Len())
		lv := make([]string, 0, p.ls.Len())
		// labels.Labels iterate sorted by name, so the arrays are too.
		p.ls.Range(func(l labels.Label) {
			if l.Name == model.MetricNameLabel {
				names[i] = l.Value
				return
			}
			ln = append(ln, l.Name)
			lv = append(lv, l.Value)
		})
		labelNames[i], labelValues[i] = ln, lv
	}
	return s.insertChunks(ctx, s.t.series, "day, fingerprint, kinds, metric_name, label_names, label_values", n,
		func(lo, hi int) []any {
			return []any{days[lo:hi], fps[lo:hi], kinds[lo:hi], names[lo:hi], labelNames[lo:hi], labelValues[lo:hi]}
		})
}

// insertChunks inserts n rows in INSERTs of at most BatchSize rows; cols
// returns the column slices of rows [lo, hi). Columns are always named:
// clickhouse-go needs that to work with 18.x servers.
func (s *Store) insertChunks(ctx context.Context, table, columns string, n int, cols func(lo, hi int) []any) error {
	for lo := 0; lo < n; lo += s.cfg.BatchSize {
		hi := min(lo+s.cfg.BatchSize, n)
		if err := s.insert(ctx, table, columns, cols(lo, hi)); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) insert(ctx context.Context, table, columns string, data []any) error {
	if err := insertInto(ctx, s.conn, table, columns, data); err != nil {
		var ce columnError
		if errors.As(err, &ce) {
			return fmt.Errorf("clickhouse: insert into %s, %w", table, err)
		}
		return s.wrapWrite("insert into "+table, err)
	}
	return nil
}

// columnError is a value that does not fit its column.
type columnError struct {
	column int
	err    error
}

func (e columnError) Error() string { return fmt.Sprintf("column %d: %v", e.column, e.err) }
func (e columnError) Unwrap() error { return e.err }

// insertInto sends one batch of columns to table over conn.
func insertInto(ctx context.Context, conn driver.Conn, table, columns string, data []any) error {
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+table+" ("+columns+")")
	if err != nil {
		return err
	}
	for i, d := range data {
		if err := batch.Column(i).Append(d); err != nil {
			_ = batch.Abort()
			return columnError{i, err}
		}
	}
	return batch.Send()
}

// wrapWrite is wrap for writes: anything but an exception from the
// server means the batch may not have arrived, so it reads as "unavailable,
// retry". Retrying is safe because duplicates are never double-counted.
func (s *Store) wrapWrite(op string, err error) error {
	var exc *ch.Exception
	if errors.As(err, &exc) || errors.Is(err, context.Canceled) {
		return s.wrap(op, err)
	}
	return fmt.Errorf("clickhouse: %s: %w: %w", op, storage.ErrUnavailable, err)
}

// appenderV2 implements storage.AppenderV2.
type appenderV2 struct {
	s    *Store
	ctx  context.Context
	b    batch
	done bool
}

// AppenderV2 returns an appender that buffers samples until Commit.
// Exemplars are not stored; AppendV2Options.RejectOutOfOrder is not
// enforced (ClickHouse accepts samples in any order and reads sort them).
func (s *Store) AppenderV2(ctx context.Context) promstorage.AppenderV2 {
	return &appenderV2{s: s, ctx: ctx, b: s.newBatch()}
}

func (a *appenderV2) Append(_ promstorage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts promstorage.AppendV2Options) (promstorage.SeriesRef, error) {
	if a.done {
		return 0, errAppenderDone
	}
	// The ref argument is not trusted: behind a fanout it may be another
	// storage's reference. Hashing the labels is cheap enough.
	ref, err := a.s.add(&a.b, ls, st, t, v, h, fh)
	if err != nil {
		return 0, err
	}
	if !opts.Metadata.IsEmpty() {
		a.b.meta.note(opts.MetricFamilyName, ls, opts.Metadata)
	}
	return ref, nil
}

func (a *appenderV2) Commit() error {
	if a.done {
		return errAppenderDone
	}
	a.done = true
	b := a.b
	a.b = batch{}
	if b.empty() {
		return nil
	}
	return a.s.commit(a.ctx, &b)
}

func (a *appenderV2) Rollback() error {
	a.done = true
	a.b = batch{}
	return nil
}

var errAppenderDone = errors.New("clickhouse: appender already committed or rolled back")

// appenderV1 implements storage.Appender on the same batch.
type appenderV1 struct {
	appenderV2
}

// Appender returns an appender that buffers samples until Commit.
// Exemplars are accepted and dropped.
func (s *Store) Appender(ctx context.Context) promstorage.Appender {
	return &appenderV1{appenderV2{s: s, ctx: ctx, b: s.newBatch()}}
}

func (a *appenderV1) Append(_ promstorage.SeriesRef, ls labels.Labels, t int64, v float64) (promstorage.SeriesRef, error) {
	if a.done {
		return 0, errAppenderDone
	}
	return a.s.add(&a.b, ls, 0, t, v, nil, nil)
}

func (a *appenderV1) SetOptions(*promstorage.AppendOptions) {}

func (a *appenderV1) AppendExemplar(ref promstorage.SeriesRef, ls labels.Labels, _ exemplar.Exemplar) (promstorage.SeriesRef, error) {
	if ref == 0 {
		ref = promstorage.SeriesRef(ls.Hash())
	}
	return ref, nil
}

func (a *appenderV1) AppendHistogram(_ promstorage.SeriesRef, ls labels.Labels, t int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (promstorage.SeriesRef, error) {
	if a.done {
		return 0, errAppenderDone
	}
	if h == nil && fh == nil {
		return 0, errors.New("clickhouse: AppendHistogram without a histogram")
	}
	return a.s.add(&a.b, ls, 0, t, 0, h, fh)
}

// AppendHistogramSTZeroSample appends an empty histogram at the start
// timestamp st, as Prometheus's TSDB does, so that rate() sees the
// counter start from zero.
func (a *appenderV1) AppendHistogramSTZeroSample(_ promstorage.SeriesRef, ls labels.Labels, t, st int64, h *histogram.Histogram, fh *histogram.FloatHistogram) (promstorage.SeriesRef, error) {
	if a.done {
		return 0, errAppenderDone
	}
	if st >= t {
		return 0, promstorage.ErrSTNewerThanSample
	}
	switch {
	case fh != nil:
		zero := &histogram.FloatHistogram{Schema: fh.Schema, ZeroThreshold: fh.ZeroThreshold, CustomValues: fh.CustomValues, CounterResetHint: histogram.CounterReset}
		return a.s.add(&a.b, ls, 0, st, 0, nil, zero)
	case h != nil:
		zero := &histogram.Histogram{Schema: h.Schema, ZeroThreshold: h.ZeroThreshold, CustomValues: h.CustomValues, CounterResetHint: histogram.CounterReset}
		return a.s.add(&a.b, ls, 0, st, 0, zero, nil)
	}
	return 0, errors.New("clickhouse: AppendHistogramSTZeroSample without a histogram")
}

func (a *appenderV1) UpdateMetadata(ref promstorage.SeriesRef, ls labels.Labels, md metadata.Metadata) (promstorage.SeriesRef, error) {
	if !md.IsEmpty() {
		a.b.meta.note("", ls, md)
	}
	if ref == 0 {
		ref = promstorage.SeriesRef(ls.Hash())
	}
	return ref, nil
}

// AppendSTZeroSample appends a zero sample at the start timestamp st.
func (a *appenderV1) AppendSTZeroSample(_ promstorage.SeriesRef, ls labels.Labels, t, st int64) (promstorage.SeriesRef, error) {
	if a.done {
		return 0, errAppenderDone
	}
	if st >= t {
		return 0, promstorage.ErrSTNewerThanSample
	}
	return a.s.add(&a.b, ls, 0, st, 0, nil, nil)
}
