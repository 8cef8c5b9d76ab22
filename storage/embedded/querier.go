package embedded

import (
	"context"

	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// Querier returns a querier of the TSDB, which holds it open until the
// querier is closed.
func (s *Store) Querier(mint, maxt int64) (promstorage.Querier, error) {
	db, release, err := s.lease()
	if err != nil {
		return nil, err
	}
	q, err := db.Querier(mint, maxt)
	if err != nil {
		release()
		return nil, err
	}
	return &querier{Querier: q, release: release}, nil
}

type querier struct {
	promstorage.Querier
	release func()
}

func (q *querier) Close() error {
	defer q.release()
	return q.Querier.Close()
}

// ChunkQuerier returns a chunk querier of the TSDB, which holds it open
// until the querier is closed.
func (s *Store) ChunkQuerier(mint, maxt int64) (promstorage.ChunkQuerier, error) {
	db, release, err := s.lease()
	if err != nil {
		return nil, err
	}
	q, err := db.ChunkQuerier(mint, maxt)
	if err != nil {
		release()
		return nil, err
	}
	return &chunkQuerier{ChunkQuerier: q, release: release}, nil
}

type chunkQuerier struct {
	promstorage.ChunkQuerier
	release func()
}

func (q *chunkQuerier) Close() error {
	defer q.release()
	return q.ChunkQuerier.Close()
}

// ExemplarQuerier returns a querier of the TSDB's exemplars, which live in
// memory and stay readable after a reopen.
func (s *Store) ExemplarQuerier(ctx context.Context) (promstorage.ExemplarQuerier, error) {
	db, release, err := s.lease()
	if err != nil {
		return nil, err
	}
	defer release()
	return db.ExemplarQuerier(ctx)
}

// StartTime returns the oldest timestamp the TSDB holds.
func (s *Store) StartTime() (int64, error) {
	db, release, err := s.lease()
	if err != nil {
		return 0, err
	}
	defer release()
	return db.StartTime()
}

// Compact compacts the TSDB's head into blocks, as far as it is due.
func (s *Store) Compact(ctx context.Context) error {
	db, release, err := s.lease()
	if err != nil {
		return err
	}
	defer release()
	return db.Compact(ctx)
}

// Head is the TSDB's head, for its status (/api/v1/status/tsdb).
func (s *Store) Head() *tsdb.Head { return s.last.Load().Head() }

// BlockMetas lists the TSDB's blocks, for its status.
func (s *Store) BlockMetas() []tsdb.BlockMeta { return s.last.Load().BlockMetas() }
