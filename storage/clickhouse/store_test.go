package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	"github.com/prometheus/prometheus/model/value"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"

	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
)

var ctx = context.Background()

// sample is one read-back sample of any kind.
type sample struct {
	t, st int64
	f     float64
	h     *histogram.Histogram
	fh    *histogram.FloatHistogram
}

// readAll selects and expands every matching series.
func readAll(t testing.TB, q promstorage.Querier, hints *promstorage.SelectHints, ms ...*labels.Matcher) (map[string][]sample, []labels.Labels) {
	t.Helper()
	set := q.Select(ctx, true, hints, ms...)
	out := map[string][]sample{}
	var order []labels.Labels
	for set.Next() {
		sr := set.At()
		order = append(order, sr.Labels())
		it := sr.Iterator(nil)
		var got []sample
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			s := sample{t: it.AtT(), st: it.AtST()}
			switch vt {
			case chunkenc.ValFloat:
				_, s.f = it.At()
			case chunkenc.ValHistogram:
				_, s.h = it.AtHistogram(nil)
			case chunkenc.ValFloatHistogram:
				_, s.fh = it.AtFloatHistogram(nil)
			}
			got = append(got, s)
		}
		if it.Err() != nil {
			t.Fatalf("iterate %s: %v", sr.Labels(), it.Err())
		}
		out[sr.Labels().String()] = got
	}
	if err := set.Err(); err != nil {
		t.Fatalf("select %v: %v", ms, err)
	}
	return out, order
}

func newQuerier(t testing.TB, s *Store, mint, maxt int64) promstorage.Querier {
	t.Helper()
	q, err := s.Querier(mint, maxt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func eq(name, v string) *labels.Matcher  { return labels.MustNewMatcher(labels.MatchEqual, name, v) }
func neq(name, v string) *labels.Matcher { return labels.MustNewMatcher(labels.MatchNotEqual, name, v) }
func re(name, v string) *labels.Matcher  { return labels.MustNewMatcher(labels.MatchRegexp, name, v) }
func nre(name, v string) *labels.Matcher {
	return labels.MustNewMatcher(labels.MatchNotRegexp, name, v)
}

func commit(t testing.TB, app interface{ Commit() error }) {
	t.Helper()
	if err := app.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func TestOpenMigratesOnceAndDetectsVersion(t *testing.T) {
	cfg := testConfig(t)
	s, err := Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := server.Query(ctx, "SELECT version()")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := s.ServerVersion(), strings.TrimSpace(out); !strings.HasPrefix(want, got) {
		t.Errorf("ServerVersion = %q, server says %q", got, want)
	}
	v, err := s.SchemaVersion(ctx)
	if err != nil || v != migrations[len(migrations)-1].version {
		t.Fatalf("schema version %d, %v", v, err)
	}
	tablesOut, err := server.Query(ctx, "SELECT name FROM system.tables WHERE database = '"+cfg.Database+"' ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	want := "events\nleases\nlogs\nmetric_histograms\nmetric_metadata\nmetric_samples\nmetric_series\nschema_migrations\nspan_operations\nspans\ntrace_index\n"
	if tablesOut != want {
		t.Fatalf("tables:\n%s\nwant:\n%s", tablesOut, want)
	}
	app := s.Appender(ctx)
	if _, err := app.Append(0, labels.FromStrings("__name__", "kept"), 1000, 1); err != nil {
		t.Fatal(err)
	}
	commit(t, app)
	s.Close()

	// Opening again (a restart) applies nothing and keeps the data.
	s2, err := Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	n, err := server.Query(ctx, "SELECT count() FROM "+cfg.Database+".schema_migrations")
	if err != nil || strings.TrimSpace(n) != fmt.Sprint(len(migrations)) {
		t.Fatalf("schema_migrations rows after reopen: %q, %v", n, err)
	}
	got, _ := readAll(t, newQuerier(t, s2, 0, 2000), nil, eq("__name__", "kept"))
	if len(got) != 1 {
		t.Fatalf("data lost across reopen: %v", got)
	}
}

func TestOpenUnreachable(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Addresses = []string{"127.0.0.1:1"} // nothing listens on port 1
	cfg.DialTimeout = model.Duration(2 * time.Second)
	cfg.Password = "hunter2"
	_, err := Open(ctx, cfg, nil)
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("want ErrUnavailable, got %v", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error shows the password: %v", err)
	}
}

func TestFloatsRoundTrip(t *testing.T) {
	s := openStore(t)
	a := labels.FromStrings("__name__", "temp", "room", "kitchen")
	b := labels.FromStrings("__name__", "temp", "room", "hall", "Zone", "upper case sorts before __name__")
	stale := math.Float64frombits(value.StaleNaN)
	want := map[string][]sample{
		a.String(): {{t: 1000, f: 21.5}, {t: 2000, f: math.Inf(1)}, {t: 3000, f: math.NaN()}, {t: 4000, f: stale}, {t: 5000, f: math.Copysign(0, -1)}},
		b.String(): {{t: 1500, st: 100, f: 1}, {t: 2500, st: 100, f: 2}, {t: 3500, st: 3000, f: 0.5}},
	}
	// -0.0 is a constant expression, which Go evaluates to +0; only
	// Copysign makes a negative zero. The comparison below is bitwise.
	if !math.Signbit(want[a.String()][4].f) {
		t.Fatal("the fixture's negative zero has no sign bit")
	}
	app := s.AppenderV2(ctx)
	for _, ls := range []labels.Labels{a, b} {
		for _, smp := range want[ls.String()] {
			ref, err := app.Append(0, ls, smp.st, smp.t, smp.f, nil, nil, promstorage.AOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if ref != promstorage.SeriesRef(ls.Hash()) {
				t.Errorf("ref %d, want the label hash %d", ref, ls.Hash())
			}
		}
	}
	commit(t, app)

	got, order := readAll(t, newQuerier(t, s, 0, 10000), nil, eq("__name__", "temp"))
	if len(order) != 2 || labels.Compare(order[0], order[1]) >= 0 {
		t.Errorf("series not sorted by labels: %v", order)
	}
	for key, ws := range want {
		gs := got[key]
		if len(gs) != len(ws) {
			t.Fatalf("%s: got %d samples, want %d: %v", key, len(gs), len(ws), gs)
		}
		for i := range ws {
			if gs[i].t != ws[i].t || gs[i].st != ws[i].st || math.Float64bits(gs[i].f) != math.Float64bits(ws[i].f) {
				t.Errorf("%s[%d]: got t=%d st=%d v=%x, want t=%d st=%d v=%x", key, i,
					gs[i].t, gs[i].st, math.Float64bits(gs[i].f), ws[i].t, ws[i].st, math.Float64bits(ws[i].f))
			}
		}
	}
	if !value.IsStaleNaN(got[a.String()][3].f) {
		t.Error("stale marker did not survive the round trip")
	}

	// Hints narrow the time range; Seek finds samples.
	got, _ = readAll(t, newQuerier(t, s, 0, 10000), &promstorage.SelectHints{Start: 2000, End: 3000}, eq("room", "kitchen"))
	if ks := got[a.String()]; len(ks) != 2 || ks[0].t != 2000 || ks[1].t != 3000 {
		t.Errorf("hinted range [2000, 3000]: %v", ks)
	}
	set := newQuerier(t, s, 0, 10000).Select(ctx, false, nil, eq("room", "hall"))
	if !set.Next() {
		t.Fatal("no series")
	}
	it := set.At().Iterator(nil)
	if vt := it.Seek(2600); vt != chunkenc.ValFloat || it.AtT() != 3500 {
		t.Errorf("Seek(2600) = %v at %d, want float at 3500", vt, it.AtT())
	}
	if vt := it.Seek(1000); vt != chunkenc.ValFloat || it.AtT() != 3500 {
		t.Errorf("Seek backwards moved the iterator: %v at %d", vt, it.AtT())
	}
	if vt := it.Seek(3501); vt != chunkenc.ValNone {
		t.Errorf("Seek past the end = %v", vt)
	}

	// A limit returns the first series.
	got, order = readAll(t, newQuerier(t, s, 0, 10000), &promstorage.SelectHints{Start: 0, End: 10000, Limit: 1}, eq("__name__", "temp"))
	if len(order) != 1 || !labels.Equal(order[0], b) || len(got[b.String()]) != 3 {
		t.Errorf("limit 1: %v %v", order, got)
	}

	// The series hint returns labels only.
	got, _ = readAll(t, newQuerier(t, s, 0, 10000), &promstorage.SelectHints{Start: 0, End: 10000, Func: "series"}, eq("__name__", "temp"))
	if len(got) != 2 || len(got[a.String()]) != 0 {
		t.Errorf("series-only select: %v", got)
	}

	// The chunk querier carries the same samples.
	cq, err := s.ChunkQuerier(0, 10000)
	if err != nil {
		t.Fatal(err)
	}
	cs := cq.Select(ctx, true, nil, eq("room", "hall"))
	n := 0
	for cs.Next() {
		chks := cs.At().Iterator(nil)
		for chks.Next() {
			n += chks.At().Chunk.NumSamples()
		}
	}
	if cs.Err() != nil || n != 3 {
		t.Errorf("chunk querier: %d samples, %v", n, cs.Err())
	}

	st, err := s.StartTime()
	if err != nil || st != 1000 {
		t.Errorf("StartTime = %d, %v; want 1000", st, err)
	}
}

func TestHistogramsRoundTrip(t *testing.T) {
	for _, inline := range []int{maxInlineFingerprints, 1} {
		t.Run(fmt.Sprintf("inline_fingerprints=%d", inline), func(t *testing.T) {
			testHistogramsRoundTrip(t, inline)
		})
	}
}

func testHistogramsRoundTrip(t *testing.T, inline int) {
	s := openStore(t)
	s.maxInlineFPs = inline
	ls := labels.FromStrings("__name__", "latency", "job", "api")
	ih := &histogram.Histogram{
		Schema: 1, ZeroThreshold: 0.001, ZeroCount: 2, Count: 12, Sum: 18.5,
		PositiveSpans: []histogram.Span{{Offset: 0, Length: 3}}, PositiveBuckets: []int64{2, 3, -1},
		NegativeSpans: []histogram.Span{{Offset: 1, Length: 1}}, NegativeBuckets: []int64{1},
	}
	fh := &histogram.FloatHistogram{
		Schema: histogram.CustomBucketsSchema, Count: 4.5, Sum: 10,
		PositiveSpans: []histogram.Span{{Length: 2}}, PositiveBuckets: []float64{1.5, 3}, CustomValues: []float64{1, 5},
	}
	staleH := &histogram.Histogram{Sum: math.Float64frombits(value.StaleNaN)}
	app := s.AppenderV2(ctx)
	for _, a := range []struct {
		t  int64
		h  *histogram.Histogram
		fh *histogram.FloatHistogram
		f  float64
	}{{t: 1000, h: ih}, {t: 2000, fh: fh}, {t: 2500, f: 7}, {t: 3000, h: staleH}} {
		if _, err := app.Append(0, ls, 0, a.t, a.f, a.h, a.fh, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, app)
	got, _ := readAll(t, newQuerier(t, s, 0, 5000), nil, eq("job", "api"))
	gs := got[ls.String()]
	if len(gs) != 4 {
		t.Fatalf("got %d samples: %v", len(gs), gs)
	}
	if gs[0].h == nil || !gs[0].h.Equals(ih) {
		t.Errorf("integer histogram: got %v, want %v", gs[0].h, ih)
	}
	if gs[1].fh == nil || !gs[1].fh.Equals(fh) {
		t.Errorf("float histogram: got %v, want %v", gs[1].fh, fh)
	}
	if gs[2].h != nil || gs[2].fh != nil || gs[2].f != 7 {
		t.Errorf("float sample between histograms: %+v", gs[2])
	}
	if gs[3].h == nil || !value.IsStaleNaN(gs[3].h.Sum) {
		t.Errorf("histogram stale marker lost: %+v", gs[3])
	}
	// The first sample of a series reads as the TSDB reports it: unknown.
	if gs[0].h.CounterResetHint != histogram.UnknownCounterReset {
		t.Errorf("first histogram hint %v", gs[0].h.CounterResetHint)
	}
	// A range starting at 4500 finds the histogram at 4000 as the sample
	// before it, which the one at 5000 continues.
	app = s.AppenderV2(ctx)
	for _, ts := range []int64{4000, 5000} {
		if _, err := app.Append(0, ls, 0, ts, 0, ih, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, app)
	got, _ = readAll(t, newQuerier(t, s, 0, 6000), &promstorage.SelectHints{Start: 4500, End: 6000}, eq("job", "api"))
	if gs := got[ls.String()]; len(gs) != 1 || gs[0].h == nil || gs[0].h.CounterResetHint != histogram.NotCounterReset {
		t.Errorf("histogram continuing the one before the range: %+v", gs)
	}
}

// seriesFixture writes a set of label sets (one sample each at t=1000)
// and returns them.
func seriesFixture(t *testing.T, s *Store) []labels.Labels {
	t.Helper()
	sets := []labels.Labels{
		labels.FromStrings("__name__", "http_requests_total", "job", "api", "instance", "a", "code", "200"),
		labels.FromStrings("__name__", "http_requests_total", "job", "api", "instance", "b", "code", "500"),
		labels.FromStrings("__name__", "http_requests_total", "job", "web", "instance", "a"),
		labels.FromStrings("__name__", "http_request_duration_seconds", "job", "web", "le", "0.5"),
		labels.FromStrings("__name__", "up", "job", "it's \"quoted\"", "path", `C:\dir\*`),
		labels.FromStrings("__name__", "up", "job", "multi\nline"),
		labels.FromStrings("__name__", "up", "job", "Api"),
		labels.FromStrings("job", "nameless"),
	}
	app := s.AppenderV2(ctx)
	for i, ls := range sets {
		if _, err := app.Append(0, ls, 0, 1000, float64(i), nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, app)
	return sets
}

// TestMatchers checks every matcher type against Prometheus's own matcher
// semantics (labels.Matcher.Matches on the written label sets), including
// "a missing label equals the empty string" and anchored regexes.
func TestMatchers(t *testing.T) {
	for _, index := range []bool{true, false} {
		for _, inline := range []int{maxInlineFingerprints, 1} {
			t.Run(fmt.Sprintf("series_index=%t/inline_fingerprints=%d", index, inline), func(t *testing.T) {
				testMatchers(t, index, inline)
			})
		}
	}
}

// testMatchers runs with the series selected by the series index and by
// SQL, and with sample queries that name the fingerprints and with ones
// that find them by subquery (inline = 1).
func testMatchers(t *testing.T, index bool, inline int) {
	s := openStore(t, func(c *Config) { c.SeriesIndex = index })
	s.maxInlineFPs = inline
	sets := seriesFixture(t, s)
	q := newQuerier(t, s, 0, 2000)
	for _, ms := range [][]*labels.Matcher{
		{eq("__name__", "http_requests_total")},
		{eq("__name__", "http_requests_total"), eq("code", "")},
		{eq("__name__", "http_requests_total"), neq("code", "")},
		{eq("__name__", "http_requests_total"), neq("code", "200")},
		{eq("__name__", "http_requests_total"), re("code", "")},
		{eq("__name__", "http_requests_total"), re("code", ".*")},
		{eq("__name__", "http_requests_total"), re("code", ".+")},
		{eq("__name__", "http_requests_total"), nre("code", ".+")},
		{eq("__name__", "http_requests_total"), re("code", "2")}, // anchored: no match for "200"
		{eq("__name__", "http_requests_total"), re("code", "2.*|5..")},
		{eq("__name__", "http_requests_total"), nre("instance", "a|b")},
		{re("__name__", "http_.*")},
		{re("__name__", "http_requests_total|up")},
		{re("__name__", "HTTP_.*")},
		{re("__name__", "(?i)HTTP_.*_total")},
		{nre("__name__", "http.*"), neq("job", "")},
		{eq("__name__", ""), neq("job", "")},
		{re("job", "(?i)api")},
		{re("job", "multi.line")}, // "." matches a newline, as in Prometheus
		{eq("job", "it's \"quoted\"")},
		{eq("path", `C:\dir\*`)},
		{re("path", `C:\\dir\\\*`)},
		{re("job", ".*"), re("le", "0\\.5")},
		{eq("job", "nope")},
	} {
		got, order := readAll(t, q, nil, ms...)
		var want []labels.Labels
		for _, ls := range sets {
			if matchesAll(ls, ms) {
				want = append(want, ls)
			}
		}
		slices.SortFunc(want, labels.Compare)
		if len(order) != len(want) {
			t.Errorf("%v: got %v, want %v", ms, order, want)
			continue
		}
		for i := range want {
			if !labels.Equal(order[i], want[i]) || len(got[want[i].String()]) != 1 {
				t.Errorf("%v: got %v, want %v", ms, order, want)
				break
			}
		}
	}
}

func TestLabelNamesAndValues(t *testing.T) {
	for _, index := range []bool{true, false} {
		t.Run(fmt.Sprintf("series_index=%t", index), func(t *testing.T) {
			testLabelNamesAndValues(t, index)
		})
	}
}

func testLabelNamesAndValues(t *testing.T, index bool) {
	s := openStore(t, func(c *Config) { c.SeriesIndex = index })
	seriesFixture(t, s)
	// A series active on another day is outside the querier's range.
	app := s.AppenderV2(ctx)
	if _, err := app.Append(0, labels.FromStrings("__name__", "later", "zone", "z"), 0, 3*msPerDay, 1, nil, nil, promstorage.AOptions{}); err != nil {
		t.Fatal(err)
	}
	commit(t, app)
	q := newQuerier(t, s, 0, 2000)

	names, _, err := q.LabelNames(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"__name__", "code", "instance", "job", "le", "path"}; !slices.Equal(names, want) {
		t.Errorf("LabelNames = %v, want %v", names, want)
	}
	names, _, err = q.LabelNames(ctx, nil, eq("job", "nameless"))
	if err != nil || !slices.Equal(names, []string{"job"}) {
		t.Errorf("LabelNames{job=nameless} = %v, %v", names, err)
	}
	vals, _, err := q.LabelValues(ctx, "__name__", nil)
	if want := []string{"http_request_duration_seconds", "http_requests_total", "up"}; err != nil || !slices.Equal(vals, want) {
		t.Errorf("LabelValues(__name__) = %v, %v; want %v", vals, err, want)
	}
	vals, _, err = q.LabelValues(ctx, "instance", nil, eq("__name__", "http_requests_total"), eq("code", ""))
	if err != nil || !slices.Equal(vals, []string{"a"}) {
		t.Errorf("LabelValues(instance, code=\"\") = %v, %v", vals, err)
	}
	vals, _, err = q.LabelValues(ctx, "job", &promstorage.LabelHints{Limit: 2})
	if err != nil || !slices.Equal(vals, []string{"Api", "api"}) {
		t.Errorf("LabelValues(job, limit 2) = %v, %v", vals, err)
	}
	vals, _, err = q.LabelValues(ctx, "zone", nil)
	if err != nil || len(vals) != 0 {
		t.Errorf("LabelValues(zone) sees a series from another day: %v, %v", vals, err)
	}
	later := newQuerier(t, s, 3*msPerDay, 3*msPerDay+1000)
	vals, _, err = later.LabelValues(ctx, "zone", nil)
	if err != nil || !slices.Equal(vals, []string{"z"}) {
		t.Errorf("LabelValues(zone) on its day = %v, %v", vals, err)
	}

	// The path taken when the server's RE2 refuses a regex: matching in Go.
	qq := q.(*querier)
	vals, err = qq.labelValues(ctx, "instance", nil, []*labels.Matcher{re("__name__", "http_req.*_total"), re("code", "5.*")}, false)
	if err != nil || !slices.Equal(vals, []string{"b"}) {
		t.Errorf("labelValues in Go = %v, %v", vals, err)
	}
	names, err = qq.labelNames(ctx, nil, []*labels.Matcher{re("job", "web")}, false)
	if err != nil || !slices.Equal(names, []string{"__name__", "instance", "job", "le"}) {
		t.Errorf("labelNames in Go = %v, %v", names, err)
	}
	series, err := s.selectSeriesOnce(ctx, 0, 2000, true, []*labels.Matcher{re("job", "a.i")}, false, 0)
	if err != nil || len(series) != 2 {
		t.Errorf("select with regexes in Go: %d series, %v", len(series), err)
	}
}

func TestLimits(t *testing.T) {
	s := openStore(t, func(c *Config) { c.MaxSeries = 2; c.MaxSamples = 5 })
	app := s.AppenderV2(ctx)
	for i := 0; i < 3; i++ {
		ls := labels.FromStrings("__name__", "m", "i", fmt.Sprint(i))
		for ts := int64(0); ts < 3; ts++ {
			if _, err := app.Append(0, ls, 0, ts*1000, 1, nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	commit(t, app)
	q := newQuerier(t, s, 0, 5000)
	set := q.Select(ctx, false, nil, eq("__name__", "m"))
	for set.Next() {
	}
	if err := set.Err(); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "query exceeds clickhouse.max_series=2") {
		t.Errorf("3 series with max_series=2: %v", err)
	}
	set = q.Select(ctx, false, nil, eq("__name__", "m"), re("i", "0|1"))
	for set.Next() {
	}
	if err := set.Err(); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "query exceeds clickhouse.max_samples=5") {
		t.Errorf("6 samples with max_samples=5: %v", err)
	}
	got, _ := readAll(t, q, &promstorage.SelectHints{Start: 0, End: 1000}, eq("__name__", "m"), re("i", "0|1"))
	if len(got) != 2 {
		t.Errorf("4 samples within limits: %v", got)
	}
}

// TestReplaysNotDoubleCounted commits the same batch twice, as an
// at-least-once queue does after a failure, and checks every signal.
func TestReplaysNotDoubleCounted(t *testing.T) {
	s := openStore(t)
	ls := labels.FromStrings("__name__", "requests_total", "job", "api")
	hl := labels.FromStrings("__name__", "latency", "job", "api")
	h := &histogram.Histogram{Count: 3, Sum: 3, PositiveSpans: []histogram.Span{{Length: 1}}, PositiveBuckets: []int64{3}}
	now := time.Unix(1700000000, 0).UTC()
	logs := []storage.LogRecord{{Timestamp: now, Body: "hello", ServiceName: "api", Attributes: map[string]string{"k": "v"}}}
	spans := []storage.Span{{TraceID: "t1", SpanID: "s1", Name: "GET", ServiceName: "api", StartTime: now, EndTime: now.Add(time.Second)}}
	events := []storage.Event{{ID: "e1", Time: now, Kind: "anomaly", Subject: "x"}}
	for round := 0; round < 2; round++ {
		app := s.AppenderV2(ctx)
		for ts := int64(0); ts < 10; ts++ {
			if _, err := app.Append(0, ls, 0, ts*15000, float64(ts), nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := app.Append(0, hl, 0, ts*15000, 0, h, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		commit(t, app)
		if err := s.AppendLogs(ctx, logs); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendSpans(ctx, spans); err != nil {
			t.Fatal(err)
		}
		if err := s.AppendEvents(ctx, events); err != nil {
			t.Fatal(err)
		}
	}
	check := func(when string) {
		got, _ := readAll(t, newQuerier(t, s, 0, 200000), nil, eq("job", "api"))
		if n := len(got[ls.String()]); n != 10 {
			t.Errorf("%s: %d float samples, want 10", when, n)
		}
		if n := len(got[hl.String()]); n != 10 {
			t.Errorf("%s: %d histogram samples, want 10", when, n)
		}
		if got, err := s.QueryLogs(ctx, storage.LogQuery{}); err != nil || len(got) != 1 {
			t.Errorf("%s: %d logs, %v", when, len(got), err)
		}
		if got, err := s.QuerySpans(ctx, storage.SpanQuery{}); err != nil || len(got) != 1 {
			t.Errorf("%s: %d spans, %v", when, len(got), err)
		}
		if got, err := s.QueryEvents(ctx, storage.EventQuery{}); err != nil || len(got) != 1 {
			t.Errorf("%s: %d events, %v", when, len(got), err)
		}
	}
	check("before merges")
	for _, tbl := range []string{s.t.samples, s.t.histograms, s.t.series, s.t.logs, s.t.spans, s.t.events} {
		if err := server.Exec(ctx, "OPTIMIZE TABLE "+tbl+" FINAL"); err != nil {
			t.Fatal(err)
		}
	}
	check("after merges")
	// The duplicates are really gone after a merge.
	n, err := server.Query(ctx, "SELECT count() FROM "+s.t.samples)
	if err != nil || strings.TrimSpace(n) != "10" {
		t.Errorf("rows after OPTIMIZE FINAL: %q, %v", n, err)
	}
}

func TestRetentionDropsOldPartitions(t *testing.T) {
	retentionAt(t, testutil.Epoch)
}

// TestRetentionAtAnyTime: partitions are days (of ClickHouse's, UTC), so
// what retention drops depends on the hour; at every instant it drops
// what is a day older than the cutoff and keeps what is at it.
func TestRetentionAtAnyTime(t *testing.T) {
	for _, at := range testutil.Instants() {
		t.Run(at.Format(time.RFC3339), func(t *testing.T) {
			t.Parallel()
			retentionAt(t, at)
		})
	}
}

func retentionAt(t *testing.T, now time.Time) {
	// The data is written with retention off, then a store with it on
	// opens and applies it, by its clock, at once.
	cfg := testConfig(t)
	clock := testutil.NewClock(now)
	w := openAt(t, cfg, clock)
	cutoff := now.Add(-10 * 24 * time.Hour)
	// A day before the cutoff is always in a partition that ends before
	// it; the cutoff itself never is.
	old, edge, recent := cutoff.Add(-24*time.Hour), cutoff, now.Add(-time.Hour)
	ancient := now.Add(-200 * 24 * time.Hour)
	appendOld := func(times ...time.Time) {
		t.Helper()
		app := w.AppenderV2(ctx)
		for _, ts := range times {
			if _, err := app.Append(0, labels.FromStrings("__name__", "m"), 0, ts.UnixMilli(), 1, nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := app.Append(0, labels.FromStrings("__name__", "h"), 0, ts.UnixMilli(), 0, &histogram.Histogram{}, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		commit(t, app)
	}
	appendOld(old, edge, recent)
	for _, ts := range []time.Time{old, edge, recent} {
		if err := w.AppendLogs(ctx, []storage.LogRecord{{Timestamp: ts, Body: "b"}}); err != nil {
			t.Fatal(err)
		}
		if err := w.AppendSpans(ctx, []storage.Span{{TraceID: "t", SpanID: fmt.Sprint(ts.Unix()), StartTime: ts}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.AppendEvents(ctx, []storage.Event{{ID: "old", Time: ancient}, {ID: "new", Time: old}}); err != nil {
		t.Fatal(err)
	}

	s := openAt(t, cfg, clock, func(c *Config) {
		c.Retention = model.Duration(10 * 24 * time.Hour)
		c.EventRetention = model.Duration(100 * 24 * time.Hour)
	})
	testutil.Eventually(t, 20*time.Second, "retention as the store opens", func() (bool, string) {
		got, _ := readAll(t, newQuerier(t, s, 0, now.UnixMilli()), nil, re("__name__", "m|h"))
		logs, _ := s.QueryLogs(ctx, storage.LogQuery{})
		spans, _ := s.QuerySpans(ctx, storage.SpanQuery{})
		evs, _ := s.QueryEvents(ctx, storage.EventQuery{})
		ok := len(got) == 2 && len(logs) == 2 && len(spans) == 2 && len(evs) == 1 && evs[0].ID == "new"
		for _, v := range got {
			ok = ok && len(v) == 2 && v[0].t == edge.UnixMilli() && v[1].t == recent.UnixMilli()
		}
		return ok, fmt.Sprintf("series %v, logs %v, spans %v, events %v; want what is at %s and %s", got, logs, spans, evs, edge, recent)
	})
	vals, _, _ := newQuerier(t, s, 0, now.UnixMilli()).LabelValues(ctx, "__name__", nil)
	if !slices.Equal(vals, []string{"h", "m"}) {
		t.Errorf("series after retention: %v", vals)
	}
	// A late sample of the old day comes back; retention finds its
	// partitions (samples, histograms, series) and nothing else.
	appendOld(old)
	if dropped, err := s.ApplyRetention(ctx, now); err != nil || dropped != 3 {
		t.Errorf("second pass dropped %d, %v; want the 3 partitions of the late samples", dropped, err)
	}
	if dropped, err := s.ApplyRetention(ctx, now); err != nil || dropped != 0 {
		t.Errorf("third pass dropped %d, %v", dropped, err)
	}
}

func TestServerDownAndBack(t *testing.T) {
	srv := chtest.Start(t)
	cfg := DefaultConfig()
	cfg.Addresses = []string{srv.NativeAddr()}
	cfg.Database = srv.NewDatabase(t)
	cfg.Retention = 0
	cfg.DialTimeout = model.Duration(2 * time.Second)
	cfg.ReadTimeout = model.Duration(5 * time.Second)
	s, err := Open(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ls := labels.FromStrings("__name__", "m")
	write := func(ts int64) error {
		app := s.AppenderV2(ctx)
		if _, err := app.Append(0, ls, 0, ts, float64(ts), nil, nil, promstorage.AOptions{}); err != nil {
			return err
		}
		return app.Commit()
	}
	if err := write(1000); err != nil {
		t.Fatal(err)
	}
	if err := srv.Kill(); err != nil {
		t.Fatal(err)
	}
	err = write(2000)
	if !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("commit to a dead server: want ErrUnavailable, got %v", err)
	}
	if err := s.Ready(ctx); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("Ready on a dead server: %v", err)
	}
	if err := s.AppendLogs(ctx, []storage.LogRecord{{Body: "x"}}); !errors.Is(err, storage.ErrUnavailable) {
		t.Errorf("AppendLogs on a dead server: %v", err)
	}
	set := newQuerier(t, s, 0, 5000).Select(ctx, false, nil, eq("__name__", "m"))
	if set.Next() || !errors.Is(set.Err(), storage.ErrUnavailable) {
		t.Errorf("Select on a dead server: %v", set.Err())
	}

	srv.Restart(t)
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("Ready after restart: %v", err)
	}
	// The failed commit is retried, as the ingest path does; then a new one.
	if err := write(2000); err != nil {
		t.Fatalf("retry after restart: %v", err)
	}
	if err := write(3000); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, newQuerier(t, s, 0, 5000), nil, eq("__name__", "m"))
	if ts := got[ls.String()]; len(ts) != 3 || ts[0].t != 1000 || ts[2].t != 3000 {
		t.Errorf("after restart: %v", ts)
	}
}

func TestAppendRejectsBadLabels(t *testing.T) {
	s := openStore(t)
	app := s.AppenderV2(ctx)
	if _, err := app.Append(0, labels.EmptyLabels(), 0, 1000, 1, nil, nil, promstorage.AOptions{}); !errors.Is(err, errEmptyLabels) {
		t.Errorf("empty labels: %v", err)
	}
	dup := labels.New(labels.Label{Name: "a", Value: "1"}, labels.Label{Name: "a", Value: "2"})
	if _, err := app.Append(0, dup, 0, 1000, 1, nil, nil, promstorage.AOptions{}); !errors.Is(err, errDuplicateLabels) {
		t.Errorf("duplicate labels: %v", err)
	}
	// What was accepted before the bad sample is still written.
	if _, err := app.Append(0, labels.FromStrings("__name__", "ok"), 0, 1000, 1, nil, nil, promstorage.AOptions{}); err != nil {
		t.Fatal(err)
	}
	commit(t, app)
	if err := app.Commit(); err == nil {
		t.Error("second commit of one appender succeeded")
	}
	got, _ := readAll(t, newQuerier(t, s, 0, 2000), nil, eq("__name__", "ok"))
	if len(got) != 1 {
		t.Errorf("good sample lost: %v", got)
	}
}

func TestAppenderV1(t *testing.T) {
	s := openStore(t)
	ls := labels.FromStrings("__name__", "c_total")
	hl := labels.FromStrings("__name__", "h")
	app := s.Appender(ctx)
	if _, err := app.AppendSTZeroSample(0, ls, 10000, 5000); err != nil {
		t.Fatal(err)
	}
	if _, err := app.AppendSTZeroSample(0, ls, 10000, 10000); !errors.Is(err, promstorage.ErrSTNewerThanSample) {
		t.Errorf("ST equal to T: %v", err)
	}
	if _, err := app.Append(0, ls, 10000, 3); err != nil {
		t.Fatal(err)
	}
	h := &histogram.Histogram{Schema: 0, Count: 1, Sum: 1, PositiveSpans: []histogram.Span{{Length: 1}}, PositiveBuckets: []int64{1}}
	if _, err := app.AppendHistogramSTZeroSample(0, hl, 10000, 5000, h, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := app.AppendHistogram(0, hl, 10000, h, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := app.UpdateMetadata(0, ls, metadata.Metadata{Type: model.MetricTypeCounter, Help: "Calls.", Unit: "calls"}); err != nil {
		t.Fatal(err)
	}
	commit(t, app)
	got, _ := readAll(t, newQuerier(t, s, 0, 20000), nil, re("__name__", "c_total|h"))
	if c := got[ls.String()]; len(c) != 2 || c[0].t != 5000 || c[0].f != 0 || c[1].f != 3 {
		t.Errorf("counter with zero sample: %v", c)
	}
	if hs := got[hl.String()]; len(hs) != 2 || hs[0].h.Count != 0 || hs[1].h.Count != 1 {
		t.Errorf("histogram with zero sample: %v", hs)
	}
	md, err := s.MetricMetadata(ctx, "", 0)
	if err != nil || len(md["c_total"]) != 1 || md["c_total"][0].Help != "Calls." {
		t.Errorf("metadata: %v, %v", md, err)
	}
}

func TestMetricMetadata(t *testing.T) {
	cfg := testConfig(t)
	s := openWith(t, cfg)
	app := s.AppenderV2(ctx)
	for _, a := range []struct {
		family, name string
		md           metadata.Metadata
	}{
		{"http_requests", "http_requests_total", metadata.Metadata{Type: model.MetricTypeCounter, Help: "Requests.", Unit: "requests"}},
		{"", "temperature", metadata.Metadata{Type: model.MetricTypeGauge, Help: "Temp.", Unit: "celsius"}},
		{"", "nometa", metadata.Metadata{}},
	} {
		if _, err := app.Append(0, labels.FromStrings("__name__", a.name), 0, 1000, 1, nil, nil,
			promstorage.AOptions{MetricFamilyName: a.family, Metadata: a.md}); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, app)
	s.Close()
	// Another process (here: a reopened store) sees it.
	s = openWith(t, cfg)
	md, err := s.MetricMetadata(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(md) != 2 || md["http_requests"][0].Type != model.MetricTypeCounter || md["temperature"][0].Unit != "celsius" {
		t.Errorf("metadata: %v", md)
	}
	if md, _ := s.MetricMetadata(ctx, "", 1); len(md) != 1 || md["http_requests"] == nil {
		t.Errorf("limit 1: %v", md)
	}
	if md, _ := s.MetricMetadata(ctx, "temperature", 0); len(md) != 1 {
		t.Errorf("one family: %v", md)
	}
	// Changed metadata wins over the old.
	app = s.AppenderV2(ctx)
	if _, err := app.Append(0, labels.FromStrings("__name__", "temperature"), 0, 2000, 1, nil, nil,
		promstorage.AOptions{Metadata: metadata.Metadata{Type: model.MetricTypeGauge, Help: "Temperature.", Unit: "celsius"}}); err != nil {
		t.Fatal(err)
	}
	commit(t, app)
	if md, _ := s.MetricMetadata(ctx, "temperature", 0); md["temperature"][0].Help != "Temperature." {
		t.Errorf("updated metadata: %v", md)
	}
}

// TestOutOfOrderCommits writes one series in commits that overlap in time
// and repeat samples; reads get one sorted sample per timestamp.
func TestOutOfOrderCommits(t *testing.T) {
	s := openStore(t)
	ls := labels.FromStrings("__name__", "m")
	for _, batch := range [][]int64{{5000, 6000}, {1000, 2000, 3000}, {3000, 4000, 7000}, {2000}} {
		app := s.AppenderV2(ctx)
		for _, ts := range batch {
			if _, err := app.Append(0, ls, 0, ts, float64(ts), nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		commit(t, app)
	}
	got, _ := readAll(t, newQuerier(t, s, 0, 10000), nil, eq("__name__", "m"))
	var ts []int64
	for _, smp := range got[ls.String()] {
		if smp.f != float64(smp.t) {
			t.Errorf("sample at %d has value %v", smp.t, smp.f)
		}
		ts = append(ts, smp.t)
	}
	if want := []int64{1000, 2000, 3000, 4000, 5000, 6000, 7000}; !slices.Equal(ts, want) {
		t.Errorf("got %v, want %v", ts, want)
	}
}

// TestBackfillAcrossMonths commits one batch spanning 200 days, which is
// written as several INSERTs (one per 90 days).
func TestBackfillAcrossMonths(t *testing.T) {
	s := openStore(t, func(c *Config) { c.BatchSize = 7 })
	ls := labels.FromStrings("__name__", "backfill")
	app := s.AppenderV2(ctx)
	for d := int64(0); d < 200; d++ {
		if _, err := app.Append(0, ls, 0, d*msPerDay+1000, float64(d), nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, app)
	got, _ := readAll(t, newQuerier(t, s, 0, 200*msPerDay), nil, eq("__name__", "backfill"))
	smps := got[ls.String()]
	if len(smps) != 200 {
		t.Fatalf("%d samples back, want 200", len(smps))
	}
	for d, smp := range smps {
		if smp.t != int64(d)*msPerDay+1000 || smp.f != float64(d) {
			t.Fatalf("sample %d: %+v", d, smp)
		}
	}
}

// TestStartTimestampsOfOldData checks migration 2: float samples with a
// start timestamp, written before series rows marked them, are read with
// it after the upgrade. Readers skip the column for series not marked.
func TestStartTimestampsOfOldData(t *testing.T) {
	cfg := testConfig(t)
	s := openWith(t, cfg)
	app := s.AppenderV2(ctx)
	for _, ls := range []labels.Labels{labels.FromStrings("__name__", "old"), labels.FromStrings("__name__", "gauge")} {
		if _, err := app.Append(0, ls, 0, 1000, 1, nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	commit(t, app)
	s.Close()
	// What a version without the bit left: a start timestamp in the
	// samples, series rows of kind float only, schema version 1.
	fp := labels.FromStrings("__name__", "old").Hash()
	for _, q := range []string{
		fmt.Sprintf("INSERT INTO %s.metric_samples VALUES (%d, 2000, 2, 1500)", cfg.Database, fp),
		fmt.Sprintf("DROP TABLE %s.schema_migrations", cfg.Database),
		fmt.Sprintf("CREATE TABLE %s.schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version", cfg.Database),
		fmt.Sprintf("INSERT INTO %s.schema_migrations VALUES (1, 'base schema', now())", cfg.Database),
	} {
		if _, err := server.Query(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s = openWith(t, cfg)
	got, _ := readAll(t, newQuerier(t, s, 0, 3000), nil, re("__name__", "old|gauge"))
	want := map[string][]sample{
		`{__name__="old"}`:   {{t: 1000, f: 1}, {t: 2000, st: 1500, f: 2}},
		`{__name__="gauge"}`: {{t: 1000, f: 1}},
	}
	for k, ws := range want {
		gs := got[k]
		if len(gs) != len(ws) {
			t.Errorf("%s: got %+v, want %+v", k, gs, ws)
			continue
		}
		for i := range ws {
			if gs[i].t != ws[i].t || gs[i].st != ws[i].st || gs[i].f != ws[i].f {
				t.Errorf("%s: got %+v, want %+v", k, gs, ws)
			}
		}
	}
}

// TestPasswordFile: the password is read from password_file when the
// store opens. The test server's default user has no password, so an
// empty file (a newline) connects and a wrong password is refused.
func TestPasswordFile(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	wrong := filepath.Join(dir, "wrong")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrong, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.PasswordFile = empty
	s, err := Open(ctx, cfg, nil)
	if err != nil {
		t.Fatalf("open with an empty password file: %v", err)
	}
	s.Close()

	cfg.PasswordFile = wrong
	if s, err := Open(ctx, cfg, nil); err == nil {
		s.Close()
		t.Fatal("opened with the wrong password from password_file")
	} else if strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error shows the password: %v", err)
	}

	cfg.PasswordFile = filepath.Join(dir, "missing")
	if _, err := Open(ctx, cfg, nil); err == nil || !strings.Contains(err.Error(), "clickhouse.password_file") {
		t.Fatalf("missing file: %v, want an error naming clickhouse.password_file", err)
	}
	cfg.PasswordFile, cfg.Password = empty, "x"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "clickhouse.password_file") {
		t.Fatalf("password and password_file: %v", err)
	}
}
