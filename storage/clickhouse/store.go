// Package clickhouse is the aiops backend for deployments that outgrow one
// process: metrics, logs, spans and events in ClickHouse, reached through
// clickhouse-go's native protocol.
//
// The schema runs on ClickHouse 18.16 (the oldest server we support, and the
// one Debian ships) and uses newer features only where the server has them;
// see schema.go. Metrics keep Prometheus semantics: the PromQL engine runs
// unchanged on top of the Querier, and Prometheus's own PromQL acceptance
// tests pass against it (promql_test.go, docs/PROMQL.md).
package clickhouse

import (
	"context"
	sqldriver "database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/metadata"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/internal/diskspace"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/wal"
)

// Store is the ClickHouse backend. It implements storage.Store and is safe
// for concurrent use.
type Store struct {
	cfg     Config
	logger  *slog.Logger
	conn    driver.Conn
	version serverVersion
	// cluster holds a connection to each server of clickhouse.cluster;
	// nil on a single server.
	cluster *clusterState
	t       tables
	// now is the clock: which hour is open, what retention drops.
	now func() time.Time

	series *seriesCache
	meta   *metadataCache
	// index answers series selections; nil when clickhouse.series_index
	// is off.
	index *seriesIndex
	// cache holds float samples of closed hours, head those of the open
	// one; nil when clickhouse.sample_cache_mib is 0.
	cache *sampleCache
	head  *head
	// spanHead holds recent spans for trace reads; nil when
	// clickhouse.span_head_mib is 0.
	spanHead *spanHead
	// maxInlineFPs is maxInlineFingerprints; tests lower it.
	maxInlineFPs int
	// maxScanRows is maxRangeScanRows; tests lower it.
	maxScanRows uint64

	// reg takes the self-metrics; nil registers none.
	reg prometheus.Registerer
	// deferConnect lets Open succeed while the server is unreachable
	// (WithDeferredConnect); connected is closed once the server has
	// answered and the schema is up to date (init), connectErr says why
	// not yet.
	deferConnect bool
	connected    chan struct{}
	connectErr   atomic.Pointer[error]
	// walFailed is the error of the last append to the write-ahead log,
	// when no append has succeeded since.
	walFailed atomic.Pointer[error]
	// wal is the write-ahead log; nil when clickhouse.wal.dir is empty.
	wal                                            *wal.Log
	walAppends, walInserted, walDropped, walRounds atomic.Int64
	// flushes counts Flush calls waiting; flushNow wakes the drain for
	// them.
	flushes  atomic.Int32
	flushNow chan struct{}

	stop chan struct{}
	// stopCtx is cancelled when stop is closed.
	stopCtx   context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var (
	_ storage.Store              = (*Store)(nil)
	_ promstorage.Storage        = (*Store)(nil)
	_ promstorage.AppendableV2   = (*Store)(nil)
	_ promstorage.ChunkQueryable = (*Store)(nil)
)

// retentionInterval is how often old partitions are looked for. Partitions
// are days, so checking more often than hourly buys nothing.
const retentionInterval = time.Hour

// Option changes how Open sets the store up.
type Option func(*Store)

// WithClock makes the store take the time from now instead of time.Now:
// which hour is still written (the head's and the sample cache's
// boundary) and what retention drops. Tests use it to keep their data at
// fixed dates and to run at any hour.
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// WithDeferredConnect makes Open succeed while ClickHouse is unreachable,
// when the store has a write-ahead log: commits go to the log from the
// start, and the store connects in the background, bringing the schema up
// to date and then draining the log. Until then, what needs the server
// (queries, logs, spans, events) fails with storage.ErrUnavailable, and
// Degraded says why.
func WithDeferredConnect() Option {
	return func(s *Store) { s.deferConnect = true }
}

// Open connects to ClickHouse, creates the database and tables (or brings
// an existing schema up to date) and starts the retention loop. logger may
// be nil. An unreachable server yields an error wrapping
// storage.ErrUnavailable, unless WithDeferredConnect is given and the
// store has a write-ahead log.
func Open(ctx context.Context, cfg Config, logger *slog.Logger, options ...Option) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PasswordFile != "" {
		b, err := os.ReadFile(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("clickhouse.password_file: %w", err)
		}
		cfg.Password = Secret(strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"))
	}
	conn, err := ch.Open(connOptions(cfg))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	s := &Store{
		cfg:    cfg,
		logger: logger,
		conn:   conn,
		t:      newTables(cfg.Database),
		now:    time.Now,
		series: newSeriesCache(),
		meta:   &metadataCache{m: map[string]metadata.Metadata{}},
		stop:   make(chan struct{}),

		connected: make(chan struct{}),

		flushNow: make(chan struct{}, 1),

		maxInlineFPs: maxInlineFingerprints,
		maxScanRows:  maxRangeScanRows,
	}
	for _, o := range options {
		o(s)
	}
	if cfg.Cluster != "" {
		s.cluster = &clusterState{}
	}
	if cfg.SeriesIndex {
		s.index = newSeriesIndex(time.Duration(cfg.SeriesIndexRefresh))
	}
	if cfg.SampleCacheMiB > 0 {
		s.cache = newSampleCache(int64(cfg.SampleCacheMiB)<<20, time.Duration(cfg.SeriesIndexRefresh))
		s.head = newHead(cfg.SampleCacheMiB << 20 / 16)
	}
	if cfg.SpanHeadMiB > 0 {
		s.spanHead = newSpanHead(int64(cfg.SpanHeadMiB)<<20, time.Duration(cfg.SpanHeadRefresh), s.now)
	}
	s.stopCtx, s.cancel = context.WithCancel(context.Background())
	walOn := cfg.WAL.Dir != "" && cfg.WAL.Mode != WALOff
	deferred := false
	if err := s.init(ctx); err != nil {
		if !s.deferConnect || !walOn || !errors.Is(err, storage.ErrUnavailable) {
			conn.Close()
			return nil, err
		}
		logger.Warn("ClickHouse unreachable; taking writes into the write-ahead log and connecting in the background", "err", err)
		s.connectErr.Store(&err)
		deferred = true
	} else {
		close(s.connected)
	}
	if walOn {
		if err := s.openWAL(); err != nil {
			conn.Close()
			return nil, err
		}
	}
	if err := s.registerMetrics(); err != nil {
		s.Close()
		return nil, err
	}
	s.wg.Add(1)
	go s.retentionLoop()
	if deferred {
		s.wg.Add(1)
		go s.connectLoop()
		return s, nil
	}
	logger.Info("clickhouse store open", "addresses", cfg.Addresses, "database", cfg.Database, "server_version", s.version.String())
	return s, nil
}

// connectLoop runs init until the server answers and the schema is up
// to date, then lets the log drain and the queries through.
func (s *Store) connectLoop() {
	defer s.wg.Done()
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = time.Second, 30*time.Second
	_, err := backoff.Retry(s.stopCtx, func() (struct{}, error) {
		err := s.init(s.stopCtx)
		if err != nil {
			s.connectErr.Store(&err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, next time.Duration) {
		s.logger.Warn("ClickHouse not connected yet; retrying", "in", next, "err", err)
	}))
	if err != nil {
		return // stopping
	}
	close(s.connected)
	s.logger.Info("clickhouse store connected", "addresses", s.cfg.Addresses, "database", s.cfg.Database, "server_version", s.version.String())
}

// whenConnected returns nil once the store has connected, and otherwise
// a retryable error saying why not.
func (s *Store) whenConnected() error {
	select {
	case <-s.connected:
		return nil
	default:
	}
	why := errors.New("not yet")
	if p := s.connectErr.Load(); p != nil {
		why = *p
	}
	return fmt.Errorf("clickhouse: not connected since aiops started: %w: %w", storage.ErrUnavailable, why)
}

func connOptions(cfg Config) *ch.Options {
	opts := &ch.Options{
		// Only the native protocol: clickhouse-go's HTTP protocol does not
		// work with the 18.x servers we support.
		Protocol: ch.Native,
		Addr:     cfg.Addresses,
		Auth: ch.Auth{
			// No database here: it may not exist yet, and every
			// statement names its tables fully anyway.
			Username: cfg.Username,
			Password: string(cfg.Password),
		},
		DialTimeout:     time.Duration(cfg.DialTimeout),
		ReadTimeout:     time.Duration(cfg.ReadTimeout),
		MaxOpenConns:    cfg.MaxOpenConns,
		MaxIdleConns:    cfg.MaxOpenConns,
		ConnMaxLifetime: time.Hour,
		ClientInfo: ch.ClientInfo{Products: []struct{ Name, Version string }{
			{Name: "aiops", Version: "1"},
		}},
	}
	if cfg.Cluster != "" {
		opts.Settings = distributedSettings
	}
	switch cfg.wireCompression() {
	case "lz4":
		opts.Compression = &ch.Compression{Method: ch.CompressionLZ4}
	case "zstd":
		opts.Compression = &ch.Compression{Method: ch.CompressionZSTD}
	}
	return opts
}

func (s *Store) init(ctx context.Context) error {
	var v string
	if err := s.conn.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return s.wrap("connect", err)
	}
	ver, err := parseVersion(v)
	if err != nil {
		return fmt.Errorf("clickhouse: %w", err)
	}
	s.version = ver
	if s.cluster != nil {
		if err := s.connectShards(ctx); err != nil {
			return err
		}
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	meta, err := s.loadMetadata(ctx)
	if err != nil {
		return err
	}
	// What this process noted before it connected (into the
	// write-ahead log) is newer than the table.
	s.meta.mu.Lock()
	for family, md := range meta.m {
		if _, ok := s.meta.m[family]; !ok {
			s.meta.m[family] = md
		}
	}
	s.meta.mu.Unlock()
	return nil
}

// ServerVersion is the version the server reported at Open.
func (s *Store) ServerVersion() string { return s.version.String() }

// walRoomBytes is the free space on the write-ahead log's disk after
// which a failed append no longer makes the store unready.
const walRoomBytes = 64 << 20

// Ready returns nil while the store takes writes and keeps them: with a
// write-ahead log, while the log takes them, whether or not ClickHouse
// answers (Degraded says when it does not); without one, while the
// server answers.
func (s *Store) Ready(ctx context.Context) error {
	select {
	case <-s.stop:
		return fmt.Errorf("clickhouse store is closed: %w", storage.ErrUnavailable)
	default:
	}
	if s.wal == nil {
		if err := s.whenConnected(); err != nil {
			return err
		}
		return s.ping(ctx)
	}
	if max := int64(s.cfg.WAL.MaxSizeMiB) << 20; s.wal.State().Pending >= max {
		return fmt.Errorf("clickhouse: write-ahead log full: %d MiB not yet in ClickHouse (clickhouse.wal.max_size_mib): %w",
			max>>20, storage.ErrUnavailable)
	}
	if p := s.walFailed.Load(); p != nil {
		// Appends resume by themselves once there is room; say ready
		// again then, so that writes come to find out.
		if free, err := diskspace.Free(s.cfg.WAL.Dir); err != nil || free < walRoomBytes {
			return fmt.Errorf("clickhouse: the write-ahead log takes no writes: %w: %w", storage.ErrUnavailable, *p)
		}
	}
	return nil
}

// Degraded returns why the store, while ready, does not do everything:
// ClickHouse does not answer, so commits wait in the write-ahead log and
// queries fail. It returns nil when nothing is amiss.
func (s *Store) Degraded(ctx context.Context) error {
	if s.wal == nil {
		return nil
	}
	if err := s.whenConnected(); err != nil {
		return err
	}
	if err := s.ping(ctx); err != nil {
		return fmt.Errorf("%w; commits wait in the write-ahead log (%d bytes)", err, s.wal.State().Pending)
	}
	return nil
}

// ping asks the server, and in cluster mode every shard's server: an
// insert needs them all.
func (s *Store) ping(ctx context.Context) error {
	if err := s.conn.Ping(ctx); err != nil {
		return s.wrap("ping", err)
	}
	if s.cluster == nil {
		return nil
	}
	for _, sh := range s.shardsOf() {
		if err := sh.conn.Ping(ctx); err != nil {
			return s.wrap("ping "+sh.addr+" of cluster "+s.cfg.Cluster, err)
		}
	}
	return nil
}

// Close stops the retention loop, drains the write-ahead log into
// ClickHouse as far as it can within closeDrainTimeout (the rest waits in
// the log for the next Open) and closes the connections. It is safe to
// call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.cancel()
		s.wg.Wait()
		var errs []error
		if s.wal != nil {
			errs = append(errs, s.wal.Close())
		}
		s.closeErr = errors.Join(append(errs, s.cluster.close(), s.conn.Close())...)
	})
	return s.closeErr
}

// StartTime returns the oldest sample timestamp stored, or math.MaxInt64
// when there is none, as Prometheus's TSDB does.
func (s *Store) StartTime() (int64, error) {
	if err := s.whenConnected(); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(s.cfg.ReadTimeout))
	defer cancel()
	oldest := int64(math.MaxInt64)
	for _, tbl := range []string{s.t.samples, s.t.histograms} {
		// The oldest partition bounds the search, so only one day of
		// timestamps is read.
		parts, err := s.partitions(ctx, tbl)
		if err != nil {
			return 0, err
		}
		if len(parts) == 0 {
			continue
		}
		day := parts[0]
		var minTS int64
		var n uint64
		q := fmt.Sprintf("SELECT min(timestamp), count() FROM %s WHERE timestamp >= %d AND timestamp < %d",
			tbl, day*msPerDay, (day+1)*msPerDay)
		if day == 0 {
			// intDiv truncates towards zero, so partition 0 also holds
			// the last day before the epoch.
			q = fmt.Sprintf("SELECT min(timestamp), count() FROM %s WHERE timestamp > %d AND timestamp < %d", tbl, -msPerDay, msPerDay)
		}
		if err := s.conn.QueryRow(ctx, q).Scan(&minTS, &n); err != nil {
			return 0, s.wrap("start time", err)
		}
		if n > 0 && minTS < oldest {
			oldest = minTS
		}
	}
	return oldest, nil
}

// wrap adds context to err and marks it storage.ErrUnavailable when it
// comes from a server that cannot be reached or cannot take the work right
// now, as opposed to one that rejected the request.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if retryable(err) {
		return fmt.Errorf("clickhouse: %s: %w: %w", op, storage.ErrUnavailable, err)
	}
	return fmt.Errorf("clickhouse: %s: %w", op, err)
}

// retryableCodes are server exceptions that say "not now" rather than "not
// this": the same request may succeed later.
var retryableCodes = map[int32]bool{
	159: true, // TIMEOUT_EXCEEDED
	164: true, // READONLY
	202: true, // TOO_MANY_SIMULTANEOUS_QUERIES
	203: true, // NO_FREE_CONNECTION
	209: true, // SOCKET_TIMEOUT
	210: true, // NETWORK_ERROR
	241: true, // MEMORY_LIMIT_EXCEEDED
	242: true, // TABLE_IS_READ_ONLY
	252: true, // TOO_MANY_PARTS
	279: true, // ALL_CONNECTION_TRIES_FAILED
	285: true, // TOO_FEW_LIVE_REPLICAS
	319: true, // UNKNOWN_STATUS_OF_INSERT
	425: true, // SYSTEM_ERROR
	999: true, // KEEPER_EXCEPTION
}

func retryable(err error) bool {
	if errors.Is(err, context.Canceled) {
		// The caller gave up; that says nothing about the server.
		return false
	}
	var exc *ch.Exception
	if errors.As(err, &exc) {
		return retryableCodes[exc.Code]
	}
	var netErr net.Error
	switch {
	case errors.As(err, &netErr),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE),
		errors.Is(err, sqldriver.ErrBadConn),
		errors.Is(err, ch.ErrAcquireConnTimeout),
		errors.Is(err, ch.ErrConnectionClosed):
		return true
	}
	// clickhouse-go does not wrap every transport error; what is left
	// after server exceptions are ruled out is almost always one.
	msg := err.Error()
	for _, s := range []string{"connection refused", "connection reset", "broken pipe", "EOF", "i/o timeout", "closed network connection", "no such host"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// isException reports whether err is a server exception with this code.
func isException(err error, code int32) bool {
	var exc *ch.Exception
	return errors.As(err, &exc) && exc.Code == code
}

const (
	msPerDay        = int64(24 * time.Hour / time.Millisecond)
	nsPerDay        = int64(24 * time.Hour)
	eventsPartition = 30 * nsPerDay
)

// floorDiv is a / b rounded toward minus infinity (b > 0), so that times
// before 1970 fall in the hour or day that holds them.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a < 0 && a%b != 0 {
		q--
	}
	return q
}

// dayOf is the UTC day number of a millisecond timestamp.
func dayOf(ms int64) int32 {
	d := floorDiv(ms, msPerDay)
	// Open-ended queries (Prometheus's MinTime and MaxTime, math.MaxInt64)
	// lie beyond int32 days; clamped, they still bound nothing.
	return int32(max(min(d, math.MaxInt32), math.MinInt32))
}

// partitions lists the partition values of a table's active parts,
// ascending. Every table is partitioned by an integer expression.
func (s *Store) partitions(ctx context.Context, table string) ([]int64, error) {
	var out []int64
	for _, sh := range s.shardsOf() {
		ps, err := s.shardPartitions(ctx, sh.conn, s.localOf(table, sh.t))
		if err != nil {
			return nil, err
		}
		out = append(out, ps...)
	}
	sortInt64s(out)
	return slices.Compact(out), nil
}

// shardPartitions lists the partitions of one server's table.
func (s *Store) shardPartitions(ctx context.Context, conn driver.Conn, table string) ([]int64, error) {
	db, name, _ := strings.Cut(table, ".")
	rows, err := conn.Query(ctx, fmt.Sprintf(
		"SELECT DISTINCT partition FROM system.parts WHERE database = %s AND table = %s AND active",
		quote(unquoteIdent(db)), quote(unquoteIdent(name))))
	if err != nil {
		return nil, s.wrap("list partitions", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, s.wrap("list partitions", err)
		}
		v, err := parsePartition(p, 64)
		if err != nil {
			return nil, fmt.Errorf("clickhouse: table %s: %w", table, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("list partitions", err)
	}
	sortInt64s(out)
	return out, nil
}

// parsePartition reads the value of an integer partition as system.parts
// shows it, in bitSize bits.
func parsePartition(p string, bitSize int) (int64, error) {
	v, err := strconv.ParseInt(strings.Trim(p, "'"), 10, bitSize)
	if err != nil {
		return 0, fmt.Errorf("partition %q is not an integer of %d bits", p, bitSize)
	}
	return v, nil
}
