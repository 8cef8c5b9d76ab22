package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/wal"
)

// Why a write-ahead log: ClickHouse wants few large inserts (each makes a
// part that the server merges), and an insert takes tens of
// milliseconds whatever its size. A client that sends one request at a
// time would otherwise wait for an insert, or for the next group of
// inserts, per request. With the log, a commit costs an append to a
// local file, and the drain below turns what waits into one insert per
// table per round.

// closeDrainTimeout bounds the drain Close does; what it cannot drain
// stays in the log for the next Open.
const closeDrainTimeout = 10 * time.Second

// walBytesPerRow estimates the log bytes of one float sample (fingerprint,
// timestamp and value, 8 bytes each, and a share of the rest), to start
// a round early once a full insert's worth waits.
const walBytesPerRow = 26

// openWAL opens the log in cfg.WAL.Dir and starts draining it.
func (s *Store) openWAL() error {
	l, err := wal.Open(wal.Options{Dir: s.cfg.WAL.Dir, Sync: s.cfg.WAL.FSync, Logger: s.logger})
	if err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	s.wal = l
	if st := l.State(); st.Pending > 0 {
		s.logger.Info("Draining what the write-ahead log kept from before", "bytes", st.Pending)
	}
	s.wg.Add(1)
	go s.drainLoop()
	return nil
}

// logBatch appends the batch to the write-ahead log. The series and
// metadata it adds count as written from here on: the log's drain writes
// them before any later record's samples.
func (s *Store) logBatch(b *batch) error {
	if max := int64(s.cfg.WAL.MaxSizeMiB) << 20; s.wal.State().Pending >= max {
		return fmt.Errorf("clickhouse: write-ahead log holds %d MiB not yet in ClickHouse (clickhouse.wal.max_size_mib): %w",
			max>>20, storage.ErrUnavailable)
	}
	b.enc = encodeBatch(b.enc[:0], b, time.Now().UnixNano())
	if _, err := s.wal.Append(b.enc); err != nil {
		if errors.Is(err, wal.ErrClosed) {
			return fmt.Errorf("clickhouse store is closed: %w", storage.ErrUnavailable)
		}
		s.walFailed.Store(&err)
		return fmt.Errorf("clickhouse: write-ahead log: %w: %w", storage.ErrUnavailable, err)
	}
	if s.walFailed.Load() != nil {
		s.walFailed.Store(nil)
	}
	s.walAppends.Add(1)
	if len(b.newSeries) > 0 {
		keys := make([]seriesKey, len(b.newSeries))
		for i, p := range b.newSeries {
			keys[i] = p.key
		}
		s.series.add(keys)
	}
	if len(b.meta.pending) > 0 {
		s.meta.mu.Lock()
		for f, md := range b.meta.pending {
			s.meta.m[f] = md
		}
		s.meta.mu.Unlock()
	}
	return nil
}

// drainLoop inserts what the log holds into ClickHouse: a round starts
// when batch_size rows wait, or FlushInterval after the previous round
// started, so that each table gets at most about one insert per
// interval while the log keeps up. On Close it drains what it can
// within closeDrainTimeout.
func (s *Store) drainLoop() {
	defer s.wg.Done()
	// Nothing can be inserted before the schema is known to be there.
	select {
	case <-s.connected:
	case <-s.stop:
		return
	}
	defer s.drainOnClose()
	interval := time.Duration(s.cfg.WAL.FlushInterval)
	full := int64(s.cfg.BatchSize) * walBytesPerRow
	var last time.Time
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		st := s.wal.State()
		urgent := s.flushes.Load() > 0
		if st.Pending > 0 && (urgent || st.Pending >= full || time.Since(last) >= interval) {
			last = time.Now()
			if err := s.drainRound(s.stopCtx); err != nil {
				return // stopping
			}
			continue
		}
		wait := time.Hour
		if st.Pending > 0 {
			wait = interval - time.Since(last)
		}
		timer.Reset(wait)
		select {
		case <-s.stop:
			return
		case <-st.Changed:
		case <-s.flushNow:
		case <-timer.C:
		}
	}
}

// drainOnClose drains what it can in closeDrainTimeout.
func (s *Store) drainOnClose() {
	ctx, cancel := context.WithTimeout(context.Background(), closeDrainTimeout)
	defer cancel()
	for s.wal.State().Pending > 0 {
		before := s.wal.State().Applied
		err := s.drainRound(ctx)
		if err == nil && s.wal.State().Applied == before {
			err = errors.New("no progress")
		}
		if err != nil {
			s.logger.Warn("The write-ahead log keeps what ClickHouse did not take before shutdown; it is written on the next start",
				"bytes", s.wal.State().Pending, "err", err)
			return
		}
	}
}

var (
	// errRoundFull stops reading records into a round.
	errRoundFull = errors.New("round full")
	// errUndecodable marks a record that does not decode.
	errUndecodable = errors.New("record does not decode")
)

// drainRound inserts up to batch_size rows' worth of records, retrying
// while ClickHouse is unavailable, and marks them applied. It returns an
// error only when ctx ends first.
func (s *Store) drainRound(ctx context.Context) error {
	start := s.wal.State().Applied
	var b batch
	records := 0
	end, err := s.wal.Read(start, math.MaxInt64, func(rec []byte) error {
		if records > 0 && len(b.fps)+len(b.hfps) >= s.cfg.BatchSize {
			return errRoundFull
		}
		records++
		if err := decodeBatch(rec, &b); err != nil {
			return fmt.Errorf("%w: %w", errUndecodable, err)
		}
		return nil
	})
	switch {
	case err == nil, errors.Is(err, errRoundFull):
	case errors.Is(err, errUndecodable):
		// Written by a broken or a newer aiops: the round's records go
		// one by one, which skips that one.
		s.logger.Error("Write-ahead log record does not decode", "at", end, "err", err)
		return s.drainOneByOne(ctx, start, records)
	default:
		// The disk did not give the log back; the next round tries
		// again.
		s.logger.Error("Reading the write-ahead log failed", "at", end, "err", err)
		return nil
	}
	if records == 0 {
		return nil
	}
	s.walRounds.Add(1)
	err = s.insertRetrying(ctx, &b)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		// Refused for good: that may be one record's fault.
		s.logger.Warn("ClickHouse refused a drain round; inserting its records one by one", "records", records, "err", err)
		return s.drainOneByOne(ctx, start, records)
	}
	s.walInserted.Add(int64(records))
	s.markApplied(end)
	return nil
}

// drainOneByOne inserts n records from start separately, dropping those
// that do not decode or that ClickHouse refuses for good: they were
// acknowledged, so each is logged and counted, but no retry can change
// the answer and the records after them must not wait forever.
func (s *Store) drainOneByOne(ctx context.Context, start wal.Position, n int) error {
	pos := start
	for range n {
		var b batch
		var decodeErr error
		next, err := s.wal.Read(pos, 1, func(rec []byte) error {
			decodeErr = decodeBatch(rec, &b)
			return nil
		})
		if err != nil {
			s.logger.Error("Reading the write-ahead log failed", "at", pos, "err", err)
			return nil
		}
		if next == pos {
			return nil // the end
		}
		switch {
		case decodeErr != nil:
			s.walDropped.Add(1)
			s.logger.Error("Dropping a write-ahead log record that does not decode", "at", pos, "err", decodeErr)
		default:
			if err := s.insertRetrying(ctx, &b); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s.walDropped.Add(1)
				s.logger.Error("ClickHouse refused acknowledged samples for good; dropping them",
					"at", pos, "samples", len(b.fps), "histograms", len(b.hfps), "series", len(b.newSeries), "err", err)
			} else {
				s.walInserted.Add(1)
			}
		}
		s.markApplied(next)
		pos = next
	}
	return nil
}

func (s *Store) markApplied(pos wal.Position) {
	if err := s.wal.MarkApplied(pos); err != nil {
		// The records are in ClickHouse; if the mark is lost, they are
		// inserted again after a restart, which reads never double-count.
		s.logger.Warn("Write-ahead log mark not saved", "err", err)
	}
}

// insertRetrying inserts b, retrying with backoff while ClickHouse is
// unavailable, until ctx ends. A refusal that no retry can change is
// returned.
func (s *Store) insertRetrying(ctx context.Context, b *batch) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = 10 * time.Second
	failures := 0
	defer func() {
		if failures > 0 && ctx.Err() == nil {
			s.logger.Info("ClickHouse takes the write-ahead log's data again", "failed_attempts", failures)
		}
	}()
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		err := s.insertBatch(ctx, b)
		if err != nil && !errors.Is(err, storage.ErrUnavailable) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, next time.Duration) {
		failures++
		s.logger.Warn("ClickHouse did not take the write-ahead log's data; retrying", "in", next, "err", err)
	}))
	return err
}

// Flush waits until everything committed before it was called is in
// ClickHouse, or ctx ends. Without a write-ahead log it returns at once:
// every commit is in ClickHouse when it returns.
func (s *Store) Flush(ctx context.Context) error {
	if s.wal == nil {
		return nil
	}
	target := s.wal.State().End
	// Drain now rather than at the next interval.
	s.flushes.Add(1)
	defer s.flushes.Add(-1)
	select {
	case s.flushNow <- struct{}{}:
	default:
	}
	for {
		st := s.wal.State()
		if !st.Applied.Before(target) {
			return nil
		}
		select {
		case <-st.Changed:
		case <-s.stop:
			return fmt.Errorf("clickhouse store is closed: %w", storage.ErrUnavailable)
		case <-ctx.Done():
			return fmt.Errorf("clickhouse: flush the write-ahead log: %w", ctx.Err())
		}
	}
}

// WantsLargeCommits reports whether every commit becomes an insert of its
// own, so that writers should gather many small writes into one commit
// (group commit): true without a write-ahead log, whose drain gathers
// them otherwise.
func (s *Store) WantsLargeCommits() bool { return s.wal == nil }

// WALPending is how many bytes of the write-ahead log wait for
// ClickHouse; 0 without a log.
func (s *Store) WALPending() int64 {
	if s.wal == nil {
		return 0
	}
	return s.wal.State().Pending
}

// WithRegisterer registers the store's self-metrics on reg when Open
// succeeds.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(s *Store) { s.reg = reg }
}

// registerMetrics registers the write-ahead log's metrics on s.reg.
func (s *Store) registerMetrics() error {
	if s.reg == nil || s.wal == nil {
		return nil
	}
	counter := func(name, help string, v *atomic.Int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "aiops_clickhouse_wal_pending_bytes",
			Help: "Bytes of the ClickHouse store's write-ahead log not yet inserted into ClickHouse.",
		}, func() float64 { return float64(s.WALPending()) }),
		counter("aiops_clickhouse_wal_records_appended_total", "Commits appended to the write-ahead log.", &s.walAppends),
		counter("aiops_clickhouse_wal_records_inserted_total", "Write-ahead log records inserted into ClickHouse.", &s.walInserted),
		counter("aiops_clickhouse_wal_records_dropped_total", "Write-ahead log records dropped: they did not decode, or ClickHouse refused them for good.", &s.walDropped),
		counter("aiops_clickhouse_wal_drain_rounds_total", "Drain rounds of the write-ahead log (one insert per table each, more past batch_size rows).", &s.walRounds),
	} {
		if err := s.reg.Register(c); err != nil {
			return fmt.Errorf("clickhouse: register metrics: %w", err)
		}
	}
	return nil
}
