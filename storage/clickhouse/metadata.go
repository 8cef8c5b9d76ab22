package clickhouse

import (
	"context"
	"fmt"
	"maps"
	"sync"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
)

// metadataCache holds the type, unit and help of every metric family, as
// last written, mirroring metric_metadata. Writers only insert a row when
// a family's metadata changes, so the table stays tiny.
type metadataCache struct {
	mu sync.RWMutex
	m  map[string]metadata.Metadata
}

func (s *Store) loadMetadata(ctx context.Context) (*metadataCache, error) {
	m, err := s.metricMetadata(ctx, "", 0)
	if err != nil {
		return nil, err
	}
	c := &metadataCache{m: make(map[string]metadata.Metadata, len(m))}
	for family, mds := range m {
		c.m[family] = mds[0]
	}
	return c, nil
}

func (c *metadataCache) changed(family string, md metadata.Metadata) bool {
	c.mu.RLock()
	old, ok := c.m[family]
	c.mu.RUnlock()
	return !ok || !old.Equals(md)
}

// metadataRecorder collects the metadata changes of one batch.
type metadataRecorder struct {
	cache      *metadataCache
	pending    map[string]metadata.Metadata
	lastFamily string
	lastMeta   metadata.Metadata
}

func (r *metadataRecorder) note(family string, ls labels.Labels, md metadata.Metadata) {
	if family == "" {
		family = ls.Get(model.MetricNameLabel)
	}
	// Samples arrive in runs of one family; this skips the map lookups.
	if family == r.lastFamily && md.Equals(r.lastMeta) {
		return
	}
	r.lastFamily, r.lastMeta = family, md
	if r.cache == nil || !r.cache.changed(family, md) {
		return
	}
	if r.pending == nil {
		r.pending = map[string]metadata.Metadata{}
	}
	r.pending[family] = md
}

// saveMetadata writes metadata changes noted at now (Unix nanoseconds).
func (s *Store) saveMetadata(ctx context.Context, pending map[string]metadata.Metadata, now int64) error {
	if len(pending) == 0 {
		return nil
	}
	var families, types, units, helps []string
	var updated []int64
	for f, md := range pending {
		families = append(families, f)
		types = append(types, string(md.Type))
		units = append(units, md.Unit)
		helps = append(helps, md.Help)
		updated = append(updated, now)
	}
	if err := s.insert(ctx, s.t.metadata, "metric_family, type, unit, help, updated_at",
		[]any{families, types, units, helps, updated}); err != nil {
		return err
	}
	s.meta.mu.Lock()
	maps.Copy(s.meta.m, pending)
	s.meta.mu.Unlock()
	return nil
}

// MetricMetadata returns the metadata of each metric family: only
// metric's when it is not empty, at most limit families when limit > 0, in
// name order. It serves /api/v1/metadata. It reads the table rather than
// this process's cache, because in a scaled deployment the ingesters write
// metadata and another process answers the API.
func (s *Store) MetricMetadata(ctx context.Context, metric string, limit int) (map[string][]metadata.Metadata, error) {
	if err := s.whenConnected(); err != nil {
		return nil, err
	}
	return s.metricMetadata(ctx, metric, limit)
}

func (s *Store) metricMetadata(ctx context.Context, metric string, limit int) (map[string][]metadata.Metadata, error) {
	q := fmt.Sprintf("SELECT metric_family, argMax(type, updated_at), argMax(unit, updated_at), argMax(help, updated_at) FROM %s", s.t.metadata)
	if metric != "" {
		q += " WHERE metric_family = " + quote(metric)
	}
	q += " GROUP BY metric_family ORDER BY metric_family"
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return nil, s.wrap("query metric metadata", err)
	}
	defer rows.Close()
	out := map[string][]metadata.Metadata{}
	for rows.Next() {
		var family, typ, unit, help string
		if err := rows.Scan(&family, &typ, &unit, &help); err != nil {
			return nil, s.wrap("query metric metadata", err)
		}
		out[family] = []metadata.Metadata{{Type: model.MetricType(typ), Unit: unit, Help: help}}
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("query metric metadata", err)
	}
	return out, nil
}
