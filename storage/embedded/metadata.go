package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/exemplar"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// metadataCache holds the type, help and unit of every metric family
// seen, mirrored in SQLite so that it survives a restart. The TSDB keeps
// none of it in a form we can query.
type metadataCache struct {
	db *sql.DB
	mu sync.RWMutex
	m  map[string]metadata.Metadata
}

func loadMetadata(db *sql.DB) (*metadataCache, error) {
	c := &metadataCache{db: db, m: map[string]metadata.Metadata{}}
	rows, err := db.Query(`SELECT metric, type, help, unit FROM metric_metadata`)
	if err != nil {
		return nil, fmt.Errorf("load metric metadata: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, typ string
		var md metadata.Metadata
		if err := rows.Scan(&name, &typ, &md.Help, &md.Unit); err != nil {
			return nil, fmt.Errorf("load metric metadata: %w", err)
		}
		md.Type = model.MetricType(typ)
		c.m[name] = md
	}
	return c, rows.Err()
}

// changed reports whether md is new or different for the family.
func (c *metadataCache) changed(family string, md metadata.Metadata) bool {
	c.mu.RLock()
	old, ok := c.m[family]
	c.mu.RUnlock()
	return !ok || old != md
}

// save persists pending changes, then makes them visible.
func (c *metadataCache) save(ctx context.Context, pending map[string]metadata.Metadata) error {
	if len(pending) == 0 {
		return nil
	}
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save metric metadata: %w", err)
	}
	for name, md := range pending {
		if _, err := tx.ExecContext(ctx, `INSERT INTO metric_metadata (metric, type, help, unit) VALUES (?, ?, ?, ?)
			ON CONFLICT (metric) DO UPDATE SET type = excluded.type, help = excluded.help, unit = excluded.unit`,
			name, string(md.Type), md.Help, md.Unit); err != nil {
			tx.Rollback()
			return fmt.Errorf("save metric metadata for %s: %w", name, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save metric metadata: %w", err)
	}
	c.mu.Lock()
	maps.Copy(c.m, pending)
	c.mu.Unlock()
	return nil
}

// MetricMetadata returns metadata per metric family: only metric's when it
// is not empty, at most limit families when limit > 0, in name order.
func (s *Store) MetricMetadata(_ context.Context, metric string, limit int) (map[string][]metadata.Metadata, error) {
	s.meta.mu.RLock()
	defer s.meta.mu.RUnlock()
	out := map[string][]metadata.Metadata{}
	if metric != "" {
		if md, ok := s.meta.m[metric]; ok {
			out[metric] = []metadata.Metadata{md}
		}
		return out, nil
	}
	for _, name := range slices.Sorted(maps.Keys(s.meta.m)) {
		if limit > 0 && len(out) >= limit {
			break
		}
		out[name] = []metadata.Metadata{s.meta.m[name]}
	}
	return out, nil
}

// metadataRecorder collects metadata changes seen during one append
// transaction, to be saved when it commits.
type metadataRecorder struct {
	cache      *metadataCache
	pending    map[string]metadata.Metadata
	lastFamily string
	lastMeta   metadata.Metadata
}

func (r *metadataRecorder) note(family string, ls labels.Labels, md metadata.Metadata) {
	if md.IsEmpty() {
		return
	}
	if family == "" {
		family = ls.Get(model.MetricNameLabel)
	}
	// Appends come in runs of one family; skip the map lookups for those.
	if family == r.lastFamily && md == r.lastMeta {
		return
	}
	r.lastFamily, r.lastMeta = family, md
	if !r.cache.changed(family, md) {
		return
	}
	if r.pending == nil {
		r.pending = map[string]metadata.Metadata{}
	}
	r.pending[family] = md
}

// AppenderV2 returns a TSDB appender that also records metric metadata.
// While the store takes no writes, its appends fail with
// storage.ErrUnavailable.
func (s *Store) AppenderV2(ctx context.Context) promstorage.AppenderV2 {
	db, release, err := s.lease()
	if err != nil {
		return failedAppenderV2{err}
	}
	return &appenderV2{AppenderV2: db.AppenderV2(ctx), ctx: ctx, meta: metadataRecorder{cache: s.meta}, lease: lease{s: s, release: release}}
}

// lease is an appender's hold on the TSDB (Store.gate), from its creation
// to its commit or rollback.
type lease struct {
	s       *Store
	release func()
	done    bool
}

// commit commits through commit unless the store has stopped taking
// writes, and says whether the commit may be acknowledged.
func (l *lease) commit(commit, rollback func() error) error {
	if l.done {
		return tsdb.ErrAppenderClosed
	}
	defer l.end()
	if err := l.s.writable(); err != nil {
		l.s.afterWrite(rollback())
		return err
	}
	return l.s.afterWrite(commit())
}

func (l *lease) rollback(rollback func() error) error {
	if l.done {
		return tsdb.ErrAppenderClosed
	}
	defer l.end()
	// A rollback writes to the log too (the series it created).
	return l.s.afterWrite(rollback())
}

func (l *lease) end() {
	l.done = true
	l.release()
}

type appenderV2 struct {
	promstorage.AppenderV2
	ctx   context.Context
	meta  metadataRecorder
	lease lease
}

func (a *appenderV2) Append(ref promstorage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts promstorage.AppendV2Options) (promstorage.SeriesRef, error) {
	a.meta.note(opts.MetricFamilyName, ls, opts.Metadata)
	return a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
}

func (a *appenderV2) Commit() error {
	if err := a.lease.commit(a.AppenderV2.Commit, a.AppenderV2.Rollback); err != nil {
		return err
	}
	return a.meta.cache.save(a.ctx, a.meta.pending)
}

func (a *appenderV2) Rollback() error { return a.lease.rollback(a.AppenderV2.Rollback) }

// Appender returns a TSDB appender that also records metric metadata.
// While the store takes no writes, its appends fail with
// storage.ErrUnavailable.
func (s *Store) Appender(ctx context.Context) promstorage.Appender {
	db, release, err := s.lease()
	if err != nil {
		return failedAppender{err}
	}
	return &appenderV1{Appender: db.Appender(ctx), ctx: ctx, meta: metadataRecorder{cache: s.meta}, lease: lease{s: s, release: release}}
}

type appenderV1 struct {
	promstorage.Appender
	ctx   context.Context
	meta  metadataRecorder
	lease lease
}

func (a *appenderV1) UpdateMetadata(ref promstorage.SeriesRef, ls labels.Labels, md metadata.Metadata) (promstorage.SeriesRef, error) {
	a.meta.note("", ls, md)
	return a.Appender.UpdateMetadata(ref, ls, md)
}

func (a *appenderV1) Commit() error {
	if err := a.lease.commit(a.Appender.Commit, a.Appender.Rollback); err != nil {
		return err
	}
	return a.meta.cache.save(a.ctx, a.meta.pending)
}

func (a *appenderV1) Rollback() error { return a.lease.rollback(a.Appender.Rollback) }

// failedAppender is the appender of a store that takes no writes: every
// append fails with why.
type failedAppender struct{ err error }

func (f failedAppender) Append(promstorage.SeriesRef, labels.Labels, int64, float64) (promstorage.SeriesRef, error) {
	return 0, f.err
}

func (f failedAppender) AppendExemplar(promstorage.SeriesRef, labels.Labels, exemplar.Exemplar) (promstorage.SeriesRef, error) {
	return 0, f.err
}

func (f failedAppender) AppendHistogram(promstorage.SeriesRef, labels.Labels, int64, *histogram.Histogram, *histogram.FloatHistogram) (promstorage.SeriesRef, error) {
	return 0, f.err
}

func (f failedAppender) AppendHistogramSTZeroSample(promstorage.SeriesRef, labels.Labels, int64, int64, *histogram.Histogram, *histogram.FloatHistogram) (promstorage.SeriesRef, error) {
	return 0, f.err
}

func (f failedAppender) AppendSTZeroSample(promstorage.SeriesRef, labels.Labels, int64, int64) (promstorage.SeriesRef, error) {
	return 0, f.err
}

func (f failedAppender) UpdateMetadata(promstorage.SeriesRef, labels.Labels, metadata.Metadata) (promstorage.SeriesRef, error) {
	return 0, f.err
}

func (failedAppender) SetOptions(*promstorage.AppendOptions) {}

func (f failedAppender) Commit() error { return f.err }
func (failedAppender) Rollback() error { return nil }

type failedAppenderV2 struct{ err error }

func (f failedAppenderV2) Append(promstorage.SeriesRef, labels.Labels, int64, int64, float64, *histogram.Histogram, *histogram.FloatHistogram, promstorage.AppendV2Options) (promstorage.SeriesRef, error) {
	return 0, f.err
}

func (f failedAppenderV2) Commit() error { return f.err }
func (failedAppenderV2) Rollback() error { return nil }

var (
	_ promstorage.Appender   = failedAppender{}
	_ promstorage.AppenderV2 = failedAppenderV2{}
)
