package clickhouse

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/value"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
)

// withWAL turns the write-ahead log on in dir.
func withWAL(dir string) func(*Config) {
	return func(c *Config) {
		c.WAL.Mode, c.WAL.Dir = WALOn, dir
		c.WAL.FlushInterval = model.Duration(50 * time.Millisecond)
	}
}

// workload commits a mix of everything a batch can hold, in many small
// commits: new series, float samples with and without start timestamps,
// special float values, integer and float histograms, metadata.
func workload(t *testing.T, s *Store, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	ih := &histogram.Histogram{
		Schema: 1, ZeroThreshold: 0.001, ZeroCount: 2, Count: 12, Sum: 18.5,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 3}}, PositiveBuckets: []int64{2, 3, -1},
	}
	fh := &histogram.FloatHistogram{
		Schema: histogram.CustomBucketsSchema, Count: 4.5, Sum: 10,
		PositiveSpans: []histogram.Span{{Length: 2}}, PositiveBuckets: []float64{1.5, 3}, CustomValues: []float64{1, 5},
	}
	specials := []float64{math.Inf(1), math.Inf(-1), math.NaN(), math.Float64frombits(value.StaleNaN), math.Copysign(0, -1)}
	for c := range 60 {
		app := s.AppenderV2(ctx)
		for i := range 50 {
			series := rng.IntN(40)
			ls := labels.FromStrings("__name__", fmt.Sprintf("wal_metric_%d", series%4), "series", fmt.Sprint(series), "pod", "p-ü")
			ts := int64(c*1000 + i)
			var opts promstorage.AOptions
			if series%4 == 0 {
				opts.Metadata = metadata.Metadata{Type: model.MetricTypeCounter, Unit: "seconds", Help: fmt.Sprintf("help %d", c/20)}
				opts.MetricFamilyName = "wal_metric_0"
			}
			var err error
			switch {
			case series == 39:
				_, err = app.Append(0, ls, 0, ts, 0, ih, nil, opts)
			case series == 38:
				_, err = app.Append(0, ls, 0, ts, 0, nil, fh, opts)
			case series%7 == 1:
				_, err = app.Append(0, ls, 500, ts, float64(ts), nil, nil, opts)
			case series == 5:
				_, err = app.Append(0, ls, 0, ts, specials[i%len(specials)], nil, nil, opts)
			default:
				_, err = app.Append(0, ls, 0, ts, rng.NormFloat64(), nil, nil, opts)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		commit(t, app)
	}
}

// TestWALMatchesDirectInserts: what goes through the write-ahead log
// reads back exactly as what is inserted directly: every series, sample
// (bit for bit), histogram and metadata; and many small commits become
// few inserts.
func TestWALMatchesDirectInserts(t *testing.T) {
	direct := openStore(t)
	reg := prometheus.NewRegistry()
	cfg := testConfig(t)
	withWAL(t.TempDir())(&cfg)
	cfg.WAL.FlushInterval = model.Duration(time.Hour)
	logged, err := Open(ctx, cfg, nil, WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logged.Close() })
	workload(t, direct, 1)
	workload(t, logged, 1)
	if err := logged.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	metrics := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		m := mf.GetMetric()[0]
		metrics[mf.GetName()] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
	}
	if metrics["aiops_clickhouse_wal_records_appended_total"] != 60 || metrics["aiops_clickhouse_wal_records_inserted_total"] != 60 ||
		metrics["aiops_clickhouse_wal_pending_bytes"] != 0 || metrics["aiops_clickhouse_wal_records_dropped_total"] != 0 {
		t.Fatalf("metrics after 60 commits and a flush: %v", metrics)
	}
	// The flush interval is an hour: everything went in the round that
	// the first commit started, or one that batch_size filled.
	if rounds := logged.walRounds.Load(); rounds > 2 {
		t.Errorf("%d drain rounds for 60 commits within one flush interval", rounds)
	}
	want, wantOrder := readAll(t, newQuerier(t, direct, 0, 100_000), nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", "wal_.*"))
	got, gotOrder := readAll(t, newQuerier(t, logged, 0, 100_000), nil, labels.MustNewMatcher(labels.MatchRegexp, "__name__", "wal_.*"))
	if len(wantOrder) != 40 || !reflect.DeepEqual(wantOrder, gotOrder) {
		t.Fatalf("series: logged %v, direct %v", gotOrder, wantOrder)
	}
	for k, ws := range want {
		gs := got[k]
		if len(gs) != len(ws) {
			t.Fatalf("%s: %d samples through the log, %d direct", k, len(gs), len(ws))
		}
		for i := range ws {
			w, g := ws[i], gs[i]
			if g.t != w.t || g.st != w.st || math.Float64bits(g.f) != math.Float64bits(w.f) ||
				(w.h == nil) != (g.h == nil) || w.h != nil && !w.h.Equals(g.h) ||
				(w.fh == nil) != (g.fh == nil) || w.fh != nil && !w.fh.Equals(g.fh) {
				t.Fatalf("%s[%d]: through the log %+v, direct %+v", k, i, g, w)
			}
		}
	}
	wm, err := direct.MetricMetadata(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	gm, err := logged.MetricMetadata(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gm, wm) || gm["wal_metric_0"][0].Help != "help 2" {
		t.Fatalf("metadata through the log %v, direct %v", gm, wm)
	}
}

// TestWALAbsorbsOutage: while ClickHouse is down, commits still succeed
// (they are in the log) up to clickhouse.wal.max_size_mib, past which
// they fail as retryable; a store closed during the outage keeps the
// log, and the next one drains it once ClickHouse is back: every
// acknowledged sample is stored once.
func TestWALAbsorbsOutage(t *testing.T) {
	srv := chtest.Start(t)
	cfg := testConfig(t)
	cfg.Addresses = []string{srv.NativeAddr()}
	cfg.Database = srv.NewDatabase(t)
	cfg.DialTimeout = model.Duration(time.Second)
	cfg.ReadTimeout = model.Duration(5 * time.Second)
	dir := t.TempDir()
	s, err := Open(ctx, func() Config { c := cfg; withWAL(dir)(&c); c.WAL.MaxSizeMiB = 1; return c }(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ls := labels.FromStrings("__name__", "outage", "job", "x")
	acked := map[int64]bool{}
	cur := s
	write := func(from int64, n int) error {
		app := cur.AppenderV2(ctx)
		for i := range int64(n) {
			if _, err := app.Append(0, ls, 0, from+i, float64(from+i), nil, nil, promstorage.AOptions{}); err != nil {
				return err
			}
		}
		if err := app.Commit(); err != nil {
			return err
		}
		for i := range int64(n) {
			acked[from+i] = true
		}
		return nil
	}
	if err := write(0, 100); err != nil {
		t.Fatal(err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	// 1 MiB of log holds about 40,000 samples: commits succeed, then
	// are pushed back.
	var full error
	for from := int64(100); full == nil && from < 1_000_000; from += 1000 {
		full = write(from, 1000)
	}
	if !errors.Is(full, storage.ErrUnavailable) || len(acked) < 20_000 {
		t.Fatalf("after %d samples acknowledged with ClickHouse down: %v; want some 40,000 and then ErrUnavailable", len(acked), full)
	}
	if err := s.Ready(ctx); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Ready with the write-ahead log full: %v, want ErrUnavailable", err)
	}
	// Closing while ClickHouse is down keeps the log.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	srv.Restart(t)
	s2 := openWith(t, cfg, withWAL(dir))
	if err := s2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the log drained", 30*time.Second, func() bool { return s2.WALPending() == 0 })
	got, _ := readAll(t, newQuerier(t, s2, 0, 2_000_000), nil, eq("job", "x"))
	samples := got[ls.String()]
	if len(samples) != len(acked) {
		t.Fatalf("%d samples stored, %d acknowledged", len(samples), len(acked))
	}
	for _, smp := range samples {
		if !acked[smp.t] || smp.f != float64(smp.t) {
			t.Fatalf("stored a sample that was not acknowledged: %+v", smp)
		}
	}
	cur = s2
	if err := write(5_000_000, 10); err != nil {
		t.Fatalf("commit after the outage: %v", err)
	}
}

// TestWALSkipsUndecodableRecords: a record that does not decode (written
// by a newer aiops, or damaged) is dropped, logged and counted, without
// holding back the records after it.
func TestWALSkipsUndecodableRecords(t *testing.T) {
	s := openStore(t, withWAL(t.TempDir()))
	good := labels.FromStrings("__name__", "good")
	if _, err := s.wal.Append([]byte{99, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	app := s.AppenderV2(ctx)
	if _, err := app.Append(0, good, 0, 1000, 1, nil, nil, promstorage.AOptions{}); err != nil {
		t.Fatal(err)
	}
	commit(t, app)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, newQuerier(t, s, 0, 5000), nil, eq("__name__", "good"))
	if len(got[good.String()]) != 1 {
		t.Fatalf("the record after an undecodable one: %v", got)
	}
	if n := s.walDropped.Load(); n != 1 {
		t.Fatalf("%d records dropped, want 1", n)
	}
}

// TestWALRecordCodec: a batch survives encoding, and a damaged record is
// an error, never a panic or an unbounded allocation.
func TestWALRecordCodec(t *testing.T) {
	b := batch{
		newSeries: []pendingSeries{{key: seriesKey{fp: 42, day: -3, kind: kindFloat | kindFloatST}, ls: labels.FromStrings("__name__", "m", "a", "ü")}},
		fps:       []uint64{42, 42}, ts: []int64{-5, 7}, vals: []float64{math.NaN(), 1.5}, sts: []int64{0, 3},
		hfps: []uint64{9}, hts: []int64{11}, hsts: []int64{0}, hdata: []string{"\x00\x01hist"},
		meta: metadataRecorder{pending: map[string]metadata.Metadata{"m": {Type: model.MetricTypeGauge, Unit: "u", Help: "h"}}},
	}
	rec := encodeBatch(nil, &b, 1234)
	var got batch
	if err := decodeBatch(rec, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.newSeries[0].key, b.newSeries[0].key) || !labels.Equal(got.newSeries[0].ls, b.newSeries[0].ls) ||
		!reflect.DeepEqual(got.fps, b.fps) || !reflect.DeepEqual(got.ts, b.ts) || math.Float64bits(got.vals[0]) != math.Float64bits(b.vals[0]) ||
		!reflect.DeepEqual(got.sts, b.sts) || !reflect.DeepEqual(got.hdata, b.hdata) || !reflect.DeepEqual(got.hts, b.hts) ||
		!reflect.DeepEqual(got.meta.pending, b.meta.pending) || got.metaTime != 1234 {
		t.Fatalf("decoded %+v\nfrom %+v", got, b)
	}
	// Two records decode into one batch, one after the other.
	if err := decodeBatch(rec, &got); err != nil || len(got.fps) != 4 || len(got.newSeries) != 2 {
		t.Fatalf("second record: %v, %d samples", err, len(got.fps))
	}
	for i := range len(rec) {
		var x batch
		if err := decodeBatch(rec[:i], &x); err == nil {
			t.Fatalf("a record cut to %d of %d bytes decoded", i, len(rec))
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 2000 {
		damaged := append([]byte(nil), rec...)
		damaged[rng.IntN(len(damaged))] ^= byte(1 + rng.IntN(255))
		var x batch
		_ = decodeBatch(damaged, &x) // must not panic
	}
}

// TestOpensWhileClickHouseIsDown: with the write-ahead log and
// WithDeferredConnect, a store opens while ClickHouse is down (on a
// database whose tables do not exist yet): it is ready (commits go to the
// log), degraded, and fails queries, logs and events retryably; once
// ClickHouse is up it creates the schema and drains the log, and every
// acknowledged sample and metadata change is stored.
func TestOpensWhileClickHouseIsDown(t *testing.T) {
	srv := chtest.Start(t)
	cfg := testConfig(t)
	cfg.Addresses = []string{srv.NativeAddr()}
	cfg.Database = srv.NewDatabase(t)
	cfg.DialTimeout = model.Duration(time.Second)
	cfg.ReadTimeout = model.Duration(5 * time.Second)
	withWAL(t.TempDir())(&cfg)
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, cfg, slog.New(slog.DiscardHandler)); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Open without WithDeferredConnect while ClickHouse is down: %v, want ErrUnavailable", err)
	}
	s, err := Open(ctx, cfg, testutil.Logger(t), WithDeferredConnect())
	if err != nil {
		t.Fatalf("Open with WithDeferredConnect while ClickHouse is down: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Ready(ctx); err != nil {
		t.Errorf("Ready while ClickHouse is down: %v, want nil (the log takes writes)", err)
	}
	if err := s.Degraded(ctx); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Degraded while ClickHouse is down: %v, want ErrUnavailable", err)
	}
	if _, err := s.Querier(0, 1); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Querier while ClickHouse is down: %v, want ErrUnavailable", err)
	}
	if _, err := s.QueryEvents(ctx, storage.EventQuery{}); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("QueryEvents while ClickHouse is down: %v, want ErrUnavailable", err)
	}
	if err := s.AppendLogs(ctx, []storage.LogRecord{{Body: "x"}}); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("AppendLogs while ClickHouse is down: %v, want ErrUnavailable", err)
	}

	ls := labels.FromStrings("__name__", "early_total", "job", "x")
	md := metadata.Metadata{Type: model.MetricTypeCounter, Help: "Counted before ClickHouse came up."}
	for c := range 10 {
		app := s.AppenderV2(ctx)
		for i := range 100 {
			ts := int64(c*100 + i)
			if _, err := app.Append(0, ls, 0, ts, float64(ts), nil, nil, promstorage.AOptions{MetricFamilyName: "early_total", Metadata: md}); err != nil {
				t.Fatal(err)
			}
		}
		commit(t, app)
	}

	srv.Restart(t)
	testutil.WaitFor(t, "the store to connect", time.Minute, func() bool { return s.Degraded(ctx) == nil })
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, newQuerier(t, s, 0, 10_000), nil, eq("job", "x"))
	if n := len(got[ls.String()]); n != 1000 {
		t.Errorf("%d samples stored, 1000 acknowledged before ClickHouse came up", n)
	}
	mds, err := s.MetricMetadata(ctx, "early_total", 0)
	if err != nil || len(mds["early_total"]) != 1 || mds["early_total"][0] != md {
		t.Errorf("metadata: %v, %v; want %+v", mds, err, md)
	}
	if err := s.AppendEvents(ctx, []storage.Event{{ID: "e", Time: testutil.Epoch, Kind: "k"}}); err != nil {
		t.Errorf("AppendEvents once connected: %v", err)
	}
}
