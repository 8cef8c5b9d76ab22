package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	promstorage "github.com/prometheus/prometheus/storage"
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
func (s *Store) AppenderV2(ctx context.Context) promstorage.AppenderV2 {
	return &appenderV2{AppenderV2: s.DB.AppenderV2(ctx), ctx: ctx, meta: metadataRecorder{cache: s.meta}}
}

type appenderV2 struct {
	promstorage.AppenderV2
	ctx  context.Context
	meta metadataRecorder
}

func (a *appenderV2) Append(ref promstorage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts promstorage.AppendV2Options) (promstorage.SeriesRef, error) {
	a.meta.note(opts.MetricFamilyName, ls, opts.Metadata)
	return a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
}

func (a *appenderV2) Commit() error {
	if err := a.AppenderV2.Commit(); err != nil {
		return err
	}
	return a.meta.cache.save(a.ctx, a.meta.pending)
}

// Appender returns a TSDB appender that also records metric metadata.
func (s *Store) Appender(ctx context.Context) promstorage.Appender {
	return &appenderV1{Appender: s.DB.Appender(ctx), ctx: ctx, meta: metadataRecorder{cache: s.meta}}
}

type appenderV1 struct {
	promstorage.Appender
	ctx  context.Context
	meta metadataRecorder
}

func (a *appenderV1) UpdateMetadata(ref promstorage.SeriesRef, ls labels.Labels, md metadata.Metadata) (promstorage.SeriesRef, error) {
	a.meta.note("", ls, md)
	return a.Appender.UpdateMetadata(ref, ls, md)
}

func (a *appenderV1) Commit() error {
	if err := a.Appender.Commit(); err != nil {
		return err
	}
	return a.meta.cache.save(a.ctx, a.meta.pending)
}
