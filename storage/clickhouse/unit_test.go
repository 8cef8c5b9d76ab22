package clickhouse

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/model/value"
	"go.yaml.in/yaml/v3"

	"github.com/aiops-dev/aiops/internal/testutil"
)

func TestConfigValidateNamesKeys(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*Config)
		key    string
	}{
		{func(c *Config) { c.Addresses = nil }, "clickhouse.addresses"},
		{func(c *Config) { c.Addresses = []string{"localhost"} }, "clickhouse.addresses[0]"},
		{func(c *Config) { c.Database = "a-b" }, "clickhouse.database"},
		{func(c *Config) { c.Database = "" }, "clickhouse.database"},
		{func(c *Config) { c.DialTimeout = 0 }, "clickhouse.dial_timeout"},
		{func(c *Config) { c.ReadTimeout = -1 }, "clickhouse.read_timeout"},
		{func(c *Config) { c.MaxOpenConns = 0 }, "clickhouse.max_open_conns"},
		{func(c *Config) { c.Retention = -1 }, "clickhouse.retention"},
		{func(c *Config) { c.EventRetention = -1 }, "clickhouse.event_retention"},
		{func(c *Config) { c.BatchSize = -1 }, "clickhouse.batch_size: must be > 0, got -1"},
		{func(c *Config) { c.MaxSeries = -1 }, "clickhouse.max_series"},
		{func(c *Config) { c.MaxSamples = -1 }, "clickhouse.max_samples"},
		{func(c *Config) { c.Compression = "gzip" }, "clickhouse.compression: must be auto, none, lz4 or zstd"},
		{func(c *Config) { c.SeriesIndexRefresh = -1 }, "clickhouse.series_index_refresh"},
		{func(c *Config) { c.SampleCacheMiB = -1 }, "clickhouse.sample_cache_mib"},
	} {
		cfg := DefaultConfig()
		tc.mutate(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("want an error naming %s, got %v", tc.key, err)
		}
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

func TestPasswordNeverShows(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Password = "hunter2"
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	logger.Info("config", "cfg", cfg, "password", cfg.Password)
	y, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]string{
		"%v":   fmt.Sprintf("%v", cfg),
		"%+v":  fmt.Sprintf("%+v", cfg),
		"%#v":  fmt.Sprintf("%#v", cfg),
		"slog": buf.String(),
		"yaml": string(y),
		"json": string(j),
	} {
		if strings.Contains(s, "hunter2") {
			t.Errorf("%s output shows the password: %s", name, s)
		}
	}
	var back Config
	if err := yaml.Unmarshal([]byte("password: hunter2\n"), &back); err != nil || back.Password != "hunter2" {
		t.Fatalf("password does not load from YAML: %q, %v", back.Password, err)
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]serverVersion{
		"18.16.1":      {18, 16, 1},
		"23.8.2.7":     {23, 8, 2},
		"24.3":         {24, 3, 0},
		" 25.10.1.1\n": {25, 10, 1},
	} {
		got, err := parseVersion(in)
		if err != nil || got != want {
			t.Errorf("parseVersion(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x.y", "18"} {
		if _, err := parseVersion(bad); err == nil {
			t.Errorf("parseVersion(%q) succeeded", bad)
		}
	}
}

// The DDL for newer servers cannot be run here (only 18.16 is available),
// so its generation is checked instead.
func TestDDLByServerVersion(t *testing.T) {
	ddl := func(v string) string {
		ver, err := parseVersion(v)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Join(baseSchema(newTables("db"), featuresFor(ver)), ";\n")
	}
	old := ddl("18.16.1")
	for _, feature := range []string{"CODEC", "LowCardinality", "TTL", "Map(", "DateTime64"} {
		if strings.Contains(old, feature) {
			t.Errorf("18.16 DDL uses %s:\n%s", feature, old)
		}
	}
	if ddl("19.16.3") != old {
		t.Error("19.x gets the newer DDL; it is reserved for 20.3 and later")
	}
	modern := ddl("23.8.2.7")
	for _, want := range []string{
		"timestamp Int64 CODEC(DoubleDelta, ZSTD(1))",
		"value Float64 CODEC(Gorilla, ZSTD(1))",
		"metric_name LowCardinality(String)",
		"label_names Array(LowCardinality(String))",
		"service_name LowCardinality(String)",
	} {
		if !strings.Contains(modern, want) {
			t.Errorf("23.8 DDL lacks %q:\n%s", want, modern)
		}
	}
	if strings.Contains(modern, "TTL") {
		t.Error("DDL uses TTL; retention drops partitions instead")
	}
	// Sort keys and partitioning do not depend on the version, so a
	// server upgrade never changes what queries expect.
	for _, key := range []string{
		"ORDER BY (fingerprint, timestamp)",
		"PARTITION BY intDiv(timestamp, 86400000)",
		"ORDER BY (metric_name, fingerprint, kinds)",
	} {
		if !strings.Contains(old, key) || !strings.Contains(modern, key) {
			t.Errorf("%q missing from one of the DDL variants", key)
		}
	}
}

func TestQuote(t *testing.T) {
	for in, want := range map[string]string{
		"plain":      `'plain'`,
		`it's`:       `'it\'s'`,
		`back\slash`: `'back\\slash'`,
		"nul\x00":    `'nul\0'`,
		"a\nb":       `'a\nb'`,
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
	}
	if got := likePrefix("a_b%c"); got != `'a\\_b\\%c%'` {
		t.Errorf("likePrefix = %s", got)
	}
}

func TestMatcherSQL(t *testing.T) {
	for _, tc := range []struct {
		m    *labels.Matcher
		want string
	}{
		{labels.MustNewMatcher(labels.MatchEqual, "job", "a"), `label_values[indexOf(label_names, 'job')] = 'a'`},
		{labels.MustNewMatcher(labels.MatchNotEqual, "__name__", "up"), `metric_name != 'up'`},
		{labels.MustNewMatcher(labels.MatchRegexp, "job", "a|b"), `label_values[indexOf(label_names, 'job')] IN ('a', 'b')`},
		{labels.MustNewMatcher(labels.MatchNotRegexp, "job", "a|b"), `label_values[indexOf(label_names, 'job')] NOT IN ('a', 'b')`},
		{labels.MustNewMatcher(labels.MatchRegexp, "job", "a.*"), `match(label_values[indexOf(label_names, 'job')], '^(?s:a.*)$')`},
		{labels.MustNewMatcher(labels.MatchRegexp, "__name__", `http_.*\.x`), `metric_name LIKE 'http\\_%' AND match(metric_name, '^(?s:http_.*\\.x)$')`},
		{labels.MustNewMatcher(labels.MatchNotRegexp, "job", ".+"), `NOT match(label_values[indexOf(label_names, 'job')], '^(?s:.+)$')`},
	} {
		got, ok := matcherSQL(tc.m, true)
		if !ok || got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.m, got, tc.want)
		}
	}
	if _, ok := matcherSQL(labels.MustNewMatcher(labels.MatchRegexp, "job", "a.*"), false); ok {
		t.Error("regex rendered although regexes are to be matched in Go")
	}
}

func TestHistogramEncodingRoundTrip(t *testing.T) {
	ints := []*histogram.Histogram{
		{},
		{
			CounterResetHint: histogram.GaugeType, Schema: 3, ZeroThreshold: 0.001, ZeroCount: 5, Count: 1234, Sum: -17.25,
			PositiveSpans: []histogram.Span{{Offset: -3, Length: 2}, {Offset: 4, Length: 1}}, PositiveBuckets: []int64{10, -3, 1000},
			NegativeSpans: []histogram.Span{{Offset: 0, Length: 1}}, NegativeBuckets: []int64{7},
		},
		{Schema: histogram.CustomBucketsSchema, Count: 3, Sum: 3, PositiveSpans: []histogram.Span{{Length: 2}}, PositiveBuckets: []int64{1, 1}, CustomValues: []float64{0.5, 1, math.Inf(1)}},
		{Sum: math.Float64frombits(value.StaleNaN)},
	}
	for i, h := range ints {
		b := encodeHistogram(nil, h)
		var got histogram.Histogram
		if err := decodeHistogram(b, &got); err != nil {
			t.Fatalf("int %d: %v", i, err)
		}
		if !got.Equals(h) || got.CounterResetHint != h.CounterResetHint {
			t.Errorf("int %d: got %v, want %v", i, &got, h)
		}
		if value.IsStaleNaN(h.Sum) && !value.IsStaleNaN(got.Sum) {
			t.Errorf("int %d: stale marker lost", i)
		}
		var fh histogram.FloatHistogram
		if err := decodeFloatHistogram(b, &fh); err != nil || !fh.Equals(h.ToFloat(nil)) {
			t.Errorf("int %d as float: %v, %v", i, &fh, err)
		}
		for cut := 0; cut < len(b); cut++ {
			if err := decodeHistogram(b[:cut], &got); err == nil {
				t.Errorf("int %d truncated to %d bytes decoded without error", i, cut)
			}
		}
	}
	floats := []*histogram.FloatHistogram{
		{Schema: -2, ZeroThreshold: 1e-9, ZeroCount: 0.5, Count: 10.25, Sum: math.Inf(-1), CounterResetHint: histogram.CounterReset,
			PositiveSpans: []histogram.Span{{Offset: 1, Length: 2}}, PositiveBuckets: []float64{1.5, 8.25},
			NegativeSpans: []histogram.Span{{Offset: 2, Length: 1}}, NegativeBuckets: []float64{0.5}},
		{Schema: histogram.CustomBucketsSchema, Count: 1, Sum: 2, PositiveSpans: []histogram.Span{{Length: 1}}, PositiveBuckets: []float64{1}, CustomValues: []float64{10}},
	}
	for i, h := range floats {
		b := encodeFloatHistogram(nil, h)
		var got histogram.FloatHistogram
		if err := decodeFloatHistogram(b, &got); err != nil {
			t.Fatalf("float %d: %v", i, err)
		}
		if !got.Equals(h) || got.CounterResetHint != h.CounterResetHint {
			t.Errorf("float %d: got %v, want %v", i, &got, h)
		}
		if err := decodeHistogram(b, &histogram.Histogram{}); err == nil {
			t.Errorf("float %d decoded as an integer histogram", i)
		}
	}
	if err := decodeFloatHistogram([]byte{9, 0}, &histogram.FloatHistogram{}); err == nil {
		t.Error("unknown format decoded")
	}
}

func TestDayOf(t *testing.T) {
	for ms, want := range map[int64]int32{0: 0, 86399999: 0, 86400000: 1, -1: -1, -86400000: -1, -86400001: -2,
		math.MaxInt64: math.MaxInt32, math.MinInt64: math.MinInt32} {
		if got := dayOf(ms); got != want {
			t.Errorf("dayOf(%d) = %d, want %d", ms, got, want)
		}
	}
}

func TestCounterResetHints(t *testing.T) {
	h := func(count float64, hint histogram.CounterResetHint) []byte {
		return encodeFloatHistogram(nil, &histogram.FloatHistogram{Count: count, Sum: count, CounterResetHint: hint,
			PositiveSpans: []histogram.Span{{Length: 1}}, PositiveBuckets: []float64{count}})
	}
	sr := &series{
		ls:  labels.FromStrings("__name__", "h"),
		hts: []int64{10, 20, 30, 40, 50, 60, 70, 80},
		hdata: [][]byte{
			h(1, histogram.UnknownCounterReset), // continues the sample before the range
			h(2, histogram.UnknownCounterReset),
			h(1, histogram.UnknownCounterReset), // reset
			h(3, histogram.CounterReset),        // explicit reset starts a chunk
			h(4, histogram.NotCounterReset),
			h(5, histogram.UnknownCounterReset), // a float at 55 came before
			h(6, histogram.GaugeType),
			h(7, histogram.UnknownCounterReset), // after a gauge
		},
		segs: []floatSeg{{ts: []int64{55}, vals: []float64{1}, sts: []int64{0}}},
	}
	if err := computeHints(sr, &prevSample{hasHist: true, histTS: 0, hist: h(0.5, histogram.UnknownCounterReset)}); err != nil {
		t.Fatal(err)
	}
	want := []histogram.CounterResetHint{
		histogram.NotCounterReset, histogram.NotCounterReset, histogram.UnknownCounterReset, histogram.UnknownCounterReset,
		histogram.NotCounterReset, histogram.UnknownCounterReset, histogram.GaugeType, histogram.UnknownCounterReset,
	}
	for i := range want {
		if sr.hints[i] != want[i] {
			t.Errorf("sample %d: hint %v, want %v", i, sr.hints[i], want[i])
		}
	}
}

func TestIteratorOverSegments(t *testing.T) {
	seg := func(ts ...int64) floatSeg {
		sg := floatSeg{ts: ts, vals: make([]float64, len(ts)), sts: make([]int64, len(ts))}
		for i, t := range ts {
			sg.vals[i] = float64(t) / 10
		}
		return sg
	}
	hist := encodeHistogram(nil, &histogram.Histogram{Count: 1, Sum: 1})
	sr := &series{
		segs:  []floatSeg{seg(10, 20), seg(30), seg(50, 60)},
		hts:   []int64{25, 40, 60, 70},
		hsts:  []int64{0, 0, 0, 0},
		hdata: [][]byte{hist, hist, hist, hist},
	}
	var got []int64
	it := sr.Iterator(nil)
	for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
		if vt == chunkenc.ValFloat {
			if ts, v := it.At(); v != float64(ts)/10 {
				t.Errorf("float at %d has value %v", ts, v)
			}
		}
		got = append(got, it.AtT())
	}
	// The histogram at 60 loses to the float at 60.
	if want := []int64{10, 20, 25, 30, 40, 50, 60, 70}; !slices.Equal(got, want) {
		t.Errorf("Next order %v, want %v", got, want)
	}
	for _, tc := range []struct {
		seek, at int64
		vt       chunkenc.ValueType
	}{{0, 10, chunkenc.ValFloat}, {21, 25, chunkenc.ValHistogram}, {26, 30, chunkenc.ValFloat}, {31, 40, chunkenc.ValHistogram},
		{45, 50, chunkenc.ValFloat}, {60, 60, chunkenc.ValFloat}, {61, 70, chunkenc.ValHistogram}} {
		it := sr.Iterator(it)
		if vt := it.Seek(tc.seek); vt != tc.vt || it.AtT() != tc.at {
			t.Errorf("Seek(%d) = %v at %d, want %v at %d", tc.seek, vt, it.AtT(), tc.vt, tc.at)
		}
	}
	it = sr.Iterator(it)
	if it.Seek(71) != chunkenc.ValNone || it.Next() != chunkenc.ValNone {
		t.Error("iterator not exhausted after seeking past the end")
	}
	merged := mergeSegs([]floatSeg{seg(10, 30, 50), seg(20, 30, 40)})
	if !slices.Equal(merged.ts, []int64{10, 20, 30, 40, 50}) {
		t.Errorf("mergeSegs = %v", merged.ts)
	}
}

func TestRowOrder(t *testing.T) {
	const day = 86400000
	fps := []uint64{3, 1, 2, 1, 1}
	ts := []int64{10, 30, 10, 20, 200 * day}
	order := rowOrder(fps, ts)
	// Day group first (the row 200 days later goes last), then
	// fingerprint, then timestamp.
	if want := []int32{3, 1, 2, 0, 4}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
	if rowOrder([]uint64{1, 1, 2}, []int64{1, 2, 1}) != nil {
		t.Error("sorted rows reordered")
	}
}

// TestOpenEndedQuerier: a querier over all time (what the series and label
// APIs use without start and end) finds what is stored.
func TestOpenEndedQuerier(t *testing.T) {
	s := openStore(t)
	app := s.Appender(context.Background())
	ls := labels.FromStrings("__name__", "open_ended", "job", "a")
	if _, err := app.Append(0, ls, testutil.Epoch.UnixMilli(), 1); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, r := range [][2]int64{{math.MinInt64, math.MaxInt64}, {0, math.MaxInt64}, {timestamp.FromTime(time.Unix(math.MinInt64/1000+62135596801, 0)), timestamp.FromTime(time.Unix(math.MaxInt64/1000-62135596801, 999999999))}} {
		q, err := s.Querier(r[0], r[1])
		if err != nil {
			t.Fatal(err)
		}
		set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "open_ended"))
		n := 0
		for set.Next() {
			n++
		}
		if err := set.Err(); err != nil || n != 1 {
			t.Errorf("range %v: %d series, %v; want 1", r, n, err)
		}
		vals, _, err := q.LabelValues(context.Background(), "job", nil)
		if err != nil || len(vals) != 1 || vals[0] != "a" {
			t.Errorf("range %v: label values %v, %v; want [a]", r, vals, err)
		}
		q.Close()
	}
}

// TestMerge: after Merge every partition of the samples table is one part,
// even right after the inserts that made several (OPTIMIZE would otherwise
// do nothing while background merges hold them), and nothing is lost.
func TestMerge(t *testing.T) {
	s := openStore(t)
	now := testutil.Epoch.UnixMilli()
	for i := range 5 {
		app := s.Appender(context.Background())
		if _, err := app.Append(0, labels.FromStrings("__name__", "merged", "i", strconv.Itoa(i)), now, float64(i)); err != nil {
			t.Fatal(err)
		}
		if err := app.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Merge(context.Background()); err != nil {
		t.Fatal(err)
	}
	db, table, _ := strings.Cut(s.t.samples, ".")
	out, err := server.Query(context.Background(), fmt.Sprintf(
		"SELECT count() FROM system.parts WHERE database = %s AND table = %s AND active GROUP BY partition",
		quote(unquoteIdent(db)), quote(unquoteIdent(table))))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "1" {
		t.Errorf("active parts per partition after Merge: %q, want 1", out)
	}
	q, err := s.Querier(now-1, now+1)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", "merged"))
	n := 0
	for set.Next() {
		n++
	}
	if n != 5 {
		t.Errorf("%d series after Merge, want 5", n)
	}
}

func TestWireCompression(t *testing.T) {
	for _, c := range []struct {
		setting string
		addrs   []string
		want    string
	}{
		{"auto", []string{"127.0.0.1:9000"}, "none"},
		{"auto", []string{"localhost:9000", "[::1]:9000", "127.0.0.2:9000"}, "none"},
		{"auto", []string{"127.0.0.1:9000", "clickhouse:9000"}, "lz4"},
		{"auto", []string{"10.0.0.5:9000"}, "lz4"},
		{"LZ4", []string{"127.0.0.1:9000"}, "lz4"},
		{"zstd", []string{"127.0.0.1:9000"}, "zstd"},
		{"none", []string{"clickhouse:9000"}, "none"},
		{"", []string{"clickhouse:9000"}, "none"},
	} {
		cfg := Config{Compression: c.setting, Addresses: c.addrs}
		if got := cfg.wireCompression(); got != c.want {
			t.Errorf("compression %q to %v: %s, want %s", c.setting, c.addrs, got, c.want)
		}
	}
}

func TestFloorDivBeforeEpoch(t *testing.T) {
	for _, c := range []struct{ a, b, want int64 }{
		{0, 10, 0}, {9, 10, 0}, {10, 10, 1}, {-1, 10, -1}, {-10, 10, -1}, {-11, 10, -2},
	} {
		if got := floorDiv(c.a, c.b); got != c.want {
			t.Errorf("floorDiv(%d, %d) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
	if got := dayOf(-1); got != -1 {
		t.Errorf("dayOf(-1 ms) = %d, want day -1", got)
	}
	if got := hourOfNs(-1); got != -nsPerHour {
		t.Errorf("hourOfNs(-1) = %d, want %d", got, -nsPerHour)
	}
	if got := windowOf(-cacheWindow); got != -cacheWindow {
		t.Errorf("windowOf(-cacheWindow) = %d, want %d", got, -cacheWindow)
	}
}
