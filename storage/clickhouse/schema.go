package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// The schema.
//
// metric_series: one row per series per UTC day it received samples (and
// per kind of sample: bit 1 float, bit 2 native histogram, bit 4 float
// with a start timestamp). The metric
// name is a column of its own, first in the sort key, so that the usual
// selector {__name__="x", ...} reads a narrow range; the other labels are
// parallel arrays, sorted by name, so that any matcher can be evaluated in
// SQL: label_values[indexOf(label_names, 'job')] is '' for a series
// without a job label, which is exactly Prometheus's "missing equals
// empty". Daily rows let LabelNames, LabelValues and Select consider only
// series active in the queried range, and let retention drop them.
//
// metric_samples: (fingerprint, timestamp, value, start_timestamp), sorted
// by (fingerprint, timestamp) so that one series' range is one contiguous
// read, and partitioned by day for retention. metric_histograms holds
// native histogram samples the same way, encoded by histogram.go; keeping
// them apart keeps the float rows narrow.
//
// Every table is a ReplacingMergeTree keyed by the identity of what it
// holds, so replays after a failure are merged away eventually; until then
// readers de-duplicate (merges are asynchronous).
//
// logs, spans, events: one row per record with attributes as parallel
// key/value arrays (no Map type before 21.x). Times are Int64 nanoseconds
// (no DateTime64 before 20.1).

// serverVersion is what SELECT version() reported.
type serverVersion struct {
	major, minor, patch int
}

func parseVersion(s string) (serverVersion, error) {
	var v serverVersion
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) < 2 {
		return v, fmt.Errorf("cannot parse server version %q", s)
	}
	nums := make([]int, 3)
	for i := 0; i < len(parts) && i < 3; i++ {
		n, err := strconv.Atoi(parts[i])
		if err != nil {
			return v, fmt.Errorf("cannot parse server version %q", s)
		}
		nums[i] = n
	}
	return serverVersion{nums[0], nums[1], nums[2]}, nil
}

func (v serverVersion) String() string { return fmt.Sprintf("%d.%d.%d", v.major, v.minor, v.patch) }

func (v serverVersion) atLeast(major, minor int) bool {
	return v.major > major || (v.major == major && v.minor >= minor)
}

// features are the newer ClickHouse features the DDL may use.
//
// Only 18.16 can be run where this store is developed and tested, so the
// newer DDL is kept small and covered by a unit test of the generated
// statements (schema_test.go), not by a run against a newer server. The
// threshold is 20.3, the first LTS release that has every codec used here
// (Delta, DoubleDelta, Gorilla, ZSTD) and LowCardinality without an
// experimental setting; all of them arrived during the 19.x series.
//
// TTL is deliberately not used even where available: retention is a
// setting that may change between runs, and dropping whole daily
// partitions (which works on every version) is cheaper than TTL merges.
type features struct {
	codecs         bool
	lowCardinality bool
}

func featuresFor(v serverVersion) features {
	modern := v.atLeast(20, 3)
	return features{codecs: modern, lowCardinality: modern}
}

// seriesTable is the name of metric_series, which the series index
// follows through system.parts.
const seriesTable = "metric_series"

// samplesTable is the name of metric_samples, which the sample cache
// follows through system.parts.
const samplesTable = "metric_samples"

// tables holds the fully qualified table names of one database.
type tables struct {
	db, migrations, series, samples, histograms, metadata, logs, spans, events string
	traceIndex, operations                                                     string
	// leases holds the lease candidates' heartbeats (package lease); not a
	// data table: in cluster mode only the first shard's server's is used.
	leases string
	// dbName is the unquoted database name, for system tables.
	dbName string
}

func newTables(db string) tables {
	q := func(name string) string { return quoteIdent(db) + "." + quoteIdent(name) }
	return tables{
		db:         quoteIdent(db),
		migrations: q("schema_migrations"),
		series:     q(seriesTable),
		samples:    q(samplesTable),
		histograms: q("metric_histograms"),
		metadata:   q("metric_metadata"),
		logs:       q("logs"),
		spans:      q("spans"),
		events:     q("events"),
		traceIndex: q("trace_index"),
		operations: q("span_operations"),
		leases:     q("leases"),
		dbName:     db,
	}
}

// migration is one step of the schema. Its statements must be idempotent
// (CREATE ... IF NOT EXISTS, or ALTERs guarded by a look at
// system.columns), because two processes may open the same database at
// once and both run it.
type migration struct {
	version uint32
	name    string
	// columns are added first, each only where system.columns lacks it
	// (18.16 has no ADD COLUMN IF NOT EXISTS).
	columns    func(t tables, f features) []addColumn
	statements func(t tables, f features) []string
}

// addColumn is a column a migration adds to a table.
type addColumn struct {
	table, name, definition string
}

var migrations = []migration{
	{1, "base schema", nil, baseSchema},
	{2, "mark series with float start timestamps", nil, markStartTimestamps},
	{3, "span details, trace index and operations", spanDetailColumns, traceTables},
	{4, "lease heartbeats", nil, leaseTable},
}

// col renders a column definition, adding the codec only where the server
// has codecs.
func col(f features, name, typ, codec string) string {
	if f.codecs && codec != "" {
		return fmt.Sprintf("%s %s CODEC(%s)", name, typ, codec)
	}
	return name + " " + typ
}

// str is String, or LowCardinality(String) for low-cardinality columns
// where the server supports it without settings.
func str(f features) string {
	if f.lowCardinality {
		return "LowCardinality(String)"
	}
	return "String"
}

func baseSchema(t tables, f features) []string {
	lc := str(f)
	create := func(table string, columns []string, engine string) string {
		return fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s (\n\t%s\n) ENGINE = %s", table, strings.Join(columns, ",\n\t"), engine)
	}
	// A series has a few thousand samples a day; granules of 2048 rows
	// (instead of 8192) make a selective query read a quarter of the
	// rows for a primary index that is still small (about 8 bytes per
	// 1000 samples). Measured on 18.16: 44 of 10,000 series over 6 h,
	// median 42 ms at 8192, 32 ms at 2048, 29 ms at 1024. The series
	// table gets 1024: selecting a metric's series then reads 3,072
	// rows rather than 8,192 (median 31 ms to 24 ms on the same data).
	const granularity = " SETTINGS index_granularity = 2048"
	const (
		dayMs    = "86400000"
		dayNs    = "86400000000000"
		thirtyNs = "2592000000000000"
	)
	return []string{
		create(t.series, []string{
			"day Int32",
			"fingerprint UInt64",
			"kinds UInt8",
			"metric_name " + lc,
			"label_names Array(" + lc + ")",
			col(f, "label_values", "Array(String)", "ZSTD(1)"),
		}, "ReplacingMergeTree() PARTITION BY day ORDER BY (metric_name, fingerprint, kinds) SETTINGS index_granularity = 1024"),

		create(t.samples, []string{
			col(f, "fingerprint", "UInt64", "DoubleDelta, ZSTD(1)"),
			col(f, "timestamp", "Int64", "DoubleDelta, ZSTD(1)"),
			col(f, "value", "Float64", "Gorilla, ZSTD(1)"),
			col(f, "start_timestamp", "Int64", "DoubleDelta, ZSTD(1)"),
		}, "ReplacingMergeTree() PARTITION BY intDiv(timestamp, "+dayMs+") ORDER BY (fingerprint, timestamp)"+granularity),

		create(t.histograms, []string{
			col(f, "fingerprint", "UInt64", "DoubleDelta, ZSTD(1)"),
			col(f, "timestamp", "Int64", "DoubleDelta, ZSTD(1)"),
			col(f, "start_timestamp", "Int64", "DoubleDelta, ZSTD(1)"),
			col(f, "histogram", "String", "ZSTD(1)"),
		}, "ReplacingMergeTree() PARTITION BY intDiv(timestamp, "+dayMs+") ORDER BY (fingerprint, timestamp)"+granularity),

		create(t.metadata, []string{
			"metric_family String",
			"type " + lc,
			"unit " + lc,
			"help String",
			"updated_at Int64",
		}, "ReplacingMergeTree(updated_at) ORDER BY metric_family"),

		create(t.logs, []string{
			col(f, "timestamp", "Int64", "Delta, ZSTD(1)"),
			col(f, "observed_timestamp", "Int64", "Delta, ZSTD(1)"),
			"id String",
			"trace_id String",
			"span_id String",
			"severity_text " + lc,
			"severity_number Int32",
			col(f, "body", "String", "ZSTD(1)"),
			"service_name " + lc,
			"scope_name " + lc,
			"attr_keys Array(" + lc + ")",
			col(f, "attr_values", "Array(String)", "ZSTD(1)"),
			"resource_keys Array(" + lc + ")",
			col(f, "resource_values", "Array(String)", "ZSTD(1)"),
		}, "ReplacingMergeTree() PARTITION BY intDiv(timestamp, "+dayNs+") ORDER BY (service_name, timestamp, id)"),

		// A trace's spans lie in a few rows of each of its services; a
		// read takes whole granules of every column of them. Granules of
		// 1024 rows (instead of 8192) make a trace by id read 6,144 rows
		// rather than 49,152 (aiops-bench traces, 1 M spans, 18.16:
		// median 25.6 to 19.3 ms by id, 72 to 50 ms per search, the two
		// tables read in turn). Tables made before keep their granules;
		// ClickHouse cannot change them in place.
		create(t.spans, []string{
			"trace_id String",
			"span_id String",
			"parent_span_id String",
			"name " + lc,
			"kind " + lc,
			"service_name " + lc,
			"scope_name " + lc,
			col(f, "start_time", "Int64", "Delta, ZSTD(1)"),
			col(f, "end_time", "Int64", "Delta, ZSTD(1)"),
			"status_code " + lc,
			"status_message String",
			"attr_keys Array(" + lc + ")",
			col(f, "attr_values", "Array(String)", "ZSTD(1)"),
			"resource_keys Array(" + lc + ")",
			col(f, "resource_values", "Array(String)", "ZSTD(1)"),
		}, "ReplacingMergeTree() PARTITION BY intDiv(start_time, "+dayNs+") ORDER BY (service_name, start_time, trace_id, span_id) SETTINGS index_granularity = 1024"),

		create(t.events, []string{
			"id String",
			"time Int64",
			"kind " + lc,
			"subject String",
			"label_keys Array(" + lc + ")",
			"label_values Array(String)",
			col(f, "payload", "String", "ZSTD(1)"),
		}, "ReplacingMergeTree() PARTITION BY intDiv(time, "+thirtyNs+") ORDER BY (time, id)"),
	}
}

// migrate creates the database and applies the migrations it has not
// seen, on the one server or on each server of the cluster.
func (s *Store) migrate(ctx context.Context) error {
	if s.cluster == nil {
		return s.migrateServer(ctx, s.conn, s.t, nil)
	}
	for _, sh := range s.shardsOf() {
		if err := s.migrateServer(ctx, sh.conn, sh.t, distributedSchema(s.t, sh.t, s.cfg.Cluster)); err != nil {
			return fmt.Errorf("server %s of cluster %s: %w", sh.addr, s.cfg.Cluster, err)
		}
	}
	return nil
}

// migrateServer migrates the tables t of one server; the statements of
// after[v] run at the end of migration v, once the tables they refer to
// exist.
func (s *Store) migrateServer(ctx context.Context, conn driver.Conn, t tables, after map[uint32][]string) error {
	f := featuresFor(s.version)
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+t.db); err != nil {
		return s.wrap("create database", err)
	}
	if err := conn.Exec(ctx, fmt.Sprintf(
		"CREATE TABLE IF NOT EXISTS %s (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version",
		t.migrations)); err != nil {
		return s.wrap("create schema_migrations", err)
	}
	applied, err := s.appliedMigrations(ctx, conn, t)
	if err != nil {
		return err
	}
	for _, m := range migrations {
		if slices.Contains(applied, m.version) {
			continue
		}
		// In cluster mode a column goes to the shard's table and to the
		// Distributed table over it, which has its own column list.
		if m.columns != nil {
			targets := []tables{t}
			if s.cluster != nil {
				targets = append(targets, s.t)
			}
			for _, tt := range targets {
				for _, c := range m.columns(tt, f) {
					if err := s.addColumn(ctx, conn, c); err != nil {
						return s.wrap(fmt.Sprintf("migration %d (%s)", m.version, m.name), err)
					}
				}
			}
		}
		stmts := append(m.statements(t, f), after[m.version]...)
		for _, stmt := range stmts {
			if err := conn.Exec(ctx, stmt); err != nil {
				return s.wrap(fmt.Sprintf("migration %d (%s)", m.version, m.name), fmt.Errorf("%w\n%s", err, stmt))
			}
		}
		// A batch, not Exec with VALUES: 18.16 answers an INSERT by
		// waiting for data blocks, which Exec never sends.
		if err := insertInto(ctx, conn, t.migrations, "version, name, applied_at",
			[]any{[]uint32{m.version}, []string{m.name}, []time.Time{time.Now()}}); err != nil {
			return fmt.Errorf("record migration %d: %w", m.version, s.wrap("insert", err))
		}
		s.logger.Info("clickhouse schema migrated", "version", m.version, "name", m.name, "features", fmt.Sprintf("%+v", f))
	}
	return nil
}

// addColumn adds a column unless the table has it. Another process may
// add it between the look and the ALTER; then the ALTER fails and a
// second look finds the column.
func (s *Store) addColumn(ctx context.Context, conn driver.Conn, c addColumn) error {
	has := func() (bool, error) {
		var n uint64
		row := conn.QueryRow(ctx, fmt.Sprintf("SELECT count() FROM system.columns WHERE database = %s AND table = %s AND name = %s",
			quote(s.t.dbName), quote(unquoteIdent(strings.TrimPrefix(c.table, s.t.db+"."))), quote(c.name)))
		if err := row.Scan(&n); err != nil {
			return false, fmt.Errorf("look for column %s of %s: %w", c.name, c.table, err)
		}
		return n > 0, nil
	}
	if ok, err := has(); err != nil || ok {
		return err
	}
	stmt := fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s", c.table, c.definition)
	if err := conn.Exec(ctx, stmt); err != nil {
		if ok, herr := has(); herr == nil && ok {
			return nil
		}
		return fmt.Errorf("%w\n%s", err, stmt)
	}
	return nil
}

func (s *Store) appliedMigrations(ctx context.Context, conn driver.Conn, t tables) ([]uint32, error) {
	rows, err := conn.Query(ctx, "SELECT DISTINCT version FROM "+t.migrations)
	if err != nil {
		return nil, s.wrap("read schema_migrations", err)
	}
	defer rows.Close()
	var out []uint32
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			return nil, s.wrap("read schema_migrations", err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap("read schema_migrations", err)
	}
	return out, nil
}

// SchemaVersion returns the highest migration applied to the database.
func (s *Store) SchemaVersion(ctx context.Context) (uint32, error) {
	if err := s.whenConnected(); err != nil {
		return 0, err
	}
	// Every server of a cluster is migrated before the store connects;
	// the first one answers for all.
	sh := s.shardsOf()[0]
	applied, err := s.appliedMigrations(ctx, sh.conn, sh.t)
	if err != nil || len(applied) == 0 {
		return 0, err
	}
	return slices.Max(applied), nil
}

// partitioned describes how a table is partitioned for retention:
// partition p holds [p*unit, (p+1)*unit) of its time column.
type partitioned struct {
	table  string
	unit   int64
	events bool
}

func (s *Store) retentionTables() []partitioned {
	return []partitioned{
		{table: s.t.series, unit: 1}, // partitioned by day number itself
		{table: s.t.samples, unit: msPerDay},
		{table: s.t.histograms, unit: msPerDay},
		{table: s.t.logs, unit: nsPerDay},
		{table: s.t.spans, unit: nsPerDay},
		{table: s.t.traceIndex, unit: nsPerDay},
		{table: s.t.operations, unit: 1}, // partitioned by day number
		{table: s.t.events, unit: eventsPartition, events: true},
	}
}

// ApplyRetention drops every partition that lies entirely before now minus
// the configured retention (and event retention for events). It returns
// how many partitions were dropped. Open runs it hourly.
func (s *Store) ApplyRetention(ctx context.Context, now time.Time) (int, error) {
	if err := s.whenConnected(); err != nil {
		return 0, err
	}
	dropped := 0
	for _, p := range s.retentionTables() {
		retention := time.Duration(s.cfg.Retention)
		if p.events {
			retention = time.Duration(s.cfg.EventRetention)
		}
		if retention <= 0 {
			continue
		}
		cutoff := now.Add(-retention)
		var limit int64 // partitions p with (p+1)*unit <= limit are dropped
		switch p.unit {
		case 1:
			limit = int64(dayOf(cutoff.UnixMilli()))
		case msPerDay:
			limit = cutoff.UnixMilli()
		default:
			limit = cutoff.UnixNano()
		}
		parts, err := s.partitions(ctx, p.table)
		if err != nil {
			return dropped, err
		}
		for _, part := range parts {
			// Partition 0 of intDiv also holds the day before the epoch;
			// it is never old enough to matter.
			if (part+1)*p.unit > limit {
				break
			}
			for _, sh := range s.shardsOf() {
				// A shard without the partition drops nothing.
				table := s.localOf(p.table, sh.t)
				if err := sh.conn.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DROP PARTITION %d", table, part)); err != nil {
					return dropped, s.wrap("drop partition "+strconv.FormatInt(part, 10)+" of "+table+" on "+sh.addr, err)
				}
			}
			dropped++
		}
	}
	if dropped > 0 {
		if s.cache != nil {
			s.cache.gate.expire()
		}
		if s.spanHead != nil {
			// The head's next sync finds the days gone and leaves them.
			s.spanHead.gate.expire()
		}
		s.logger.Info("clickhouse retention dropped partitions", "partitions", dropped)
	}
	return dropped, nil
}

func (s *Store) retentionLoop() {
	defer s.wg.Done()
	select {
	case <-s.connected:
	case <-s.stop:
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	t := time.NewTicker(retentionInterval)
	defer t.Stop()
	for {
		if _, err := s.ApplyRetention(ctx, s.now()); err != nil && ctx.Err() == nil {
			s.logger.Warn("clickhouse retention failed", "err", err)
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// markStartTimestamps sets kindFloatST on the series rows of the days on
// which a series has float samples with a start timestamp, for data
// written before readers relied on the bit. It adds rows (kinds are
// OR-ed by readers), so running it twice does no harm.
func markStartTimestamps(t tables, _ features) []string {
	return []string{fmt.Sprintf(`INSERT INTO %[1]s (day, fingerprint, kinds, metric_name, label_names, label_values)
SELECT day, fingerprint, %[3]d, any(metric_name), any(label_names), any(label_values) FROM %[1]s
WHERE bitAnd(kinds, %[4]d) != 0 AND (day, fingerprint) IN (
	SELECT toInt32(intDiv(timestamp, %[5]d)) AS d, fingerprint FROM %[2]s WHERE start_timestamp != 0 GROUP BY d, fingerprint)
GROUP BY day, fingerprint`, t.series, t.samples, kindFloat|kindFloatST, kindFloat, msPerDay)}
}

// spanDetailColumns adds to spans what the trace APIs return beyond the
// base columns (storage.EncodeSpanDetails: scope version, trace state,
// events, links, attribute types) and the attributes of the span's events
// flattened into parallel arrays, which tag searches look into.
func spanDetailColumns(t tables, f features) []addColumn {
	return []addColumn{
		{t.spans, "details", col(f, "details", "String", "ZSTD(1)")},
		{t.spans, "event_keys", col(f, "event_keys", "Array(String)", "ZSTD(1)")},
		{t.spans, "event_values", col(f, "event_values", "Array(String)", "ZSTD(1)")},
	}
}

// traceTables creates the trace index and the operations table and fills
// them from the spans already stored.
//
// spans is sorted by (service_name, start_time, ...), which serves the
// search by service and time but not a look-up by trace id. trace_index
// holds one row per trace, service and insert (the first and last start
// of the trace's spans of that service in the insert), sorted by trace
// id: a look-up reads a granule or so per daily partition, and then the
// spans of each service in the time range found, by primary key. Rows of
// several inserts of one trace are combined by the reader (min, max).
//
// span_operations holds the distinct (service, name, kind) of each day,
// so that listing services and operations reads a few rows.
func traceTables(t tables, f features) []string {
	lc := str(f)
	const dayNs = "86400000000000"
	return []string{
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	trace_id String,
	service_name %s,
	start_min Int64,
	start_max Int64
) ENGINE = ReplacingMergeTree() PARTITION BY intDiv(start_min, %s) ORDER BY (trace_id, service_name, start_min, start_max) SETTINGS index_granularity = 1024`,
			t.traceIndex, lc, dayNs),
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	day Int32,
	service_name %s,
	name String,
	kind %s
) ENGINE = ReplacingMergeTree() PARTITION BY day ORDER BY (service_name, name, kind)`, t.operations, lc, lc),
		fmt.Sprintf(`INSERT INTO %s (trace_id, service_name, start_min, start_max)
SELECT trace_id, service_name, min(start_time), max(start_time) FROM %s GROUP BY trace_id, service_name`, t.traceIndex, t.spans),
		fmt.Sprintf(`INSERT INTO %s (day, service_name, name, kind)
SELECT toInt32(intDiv(start_time, %s)) AS d, service_name, name, kind FROM %s WHERE service_name != '' GROUP BY d, service_name, name, kind`,
			t.operations, dayNs, t.spans),
	}
}
