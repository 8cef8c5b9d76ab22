package limits

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/aiops-dev/aiops/internal/testutil"
)

// request builds a request of one resource with the given gauge points:
// name → attributes of each point (one point per entry), stamped at ts.
type pt struct {
	metric string
	ts     time.Time
	attrs  map[string]string
}

func request(resAttrs map[string]string, pts ...pt) pmetric.Metrics {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "svc")
	for k, v := range resAttrs {
		rm.Resource().Attributes().PutStr(k, v)
	}
	ms := rm.ScopeMetrics().AppendEmpty().Metrics()
	for _, p := range pts {
		m := ms.AppendEmpty()
		m.SetName(p.metric)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.NewTimestampFromTime(p.ts))
		dp.SetDoubleValue(1)
		raw := make(map[string]any, len(p.attrs))
		for k, v := range p.attrs {
			raw[k] = v
		}
		// FromRaw, not PutStr: PutStr looks for the key first, which is
		// quadratic for the 80,000 attributes of one test.
		if err := dp.Attributes().FromRaw(raw); err != nil {
			panic(err)
		}
	}
	return md
}

func names(md pmetric.Metrics) []string {
	var out []string
	for _, rm := range md.ResourceMetrics().All() {
		for _, sm := range rm.ScopeMetrics().All() {
			for _, m := range sm.Metrics().All() {
				out = append(out, m.Name())
			}
		}
	}
	return out
}

func TestAdmit(t *testing.T) {
	for _, now := range testutil.Instants() {
		t.Run(now.Format(time.RFC3339), func(t *testing.T) { testAdmit(t, now) })
	}
}

func testAdmit(t *testing.T, now time.Time) {
	c := DefaultConfig()
	c.LabelLimit = 4
	c.LabelNameLengthLimit = 13 // "service.name" fits
	c.LabelValueLengthLimit = 10
	c.MetricNameLengthLimit = 12
	c.MaxFuture = 10 * time.Minute

	ok := func(name string) pt { return pt{metric: name, ts: now, attrs: map[string]string{"a": "b"}} }
	for _, tc := range []struct {
		name   string
		res    map[string]string
		pts    []pt
		keep   []string
		reason Reason
		msg    string
	}{
		{"all good", nil, []pt{ok("a"), {metric: "b", ts: now.Add(10 * time.Minute)}, {metric: "c", ts: now.Add(-24 * time.Hour)}}, []string{"a", "b", "c"}, "", ""},
		{"past", nil, []pt{ok("a"), {metric: "epoch", ts: time.Unix(0, 0)}}, []string{"a"}, TooFarInPast, `metric "epoch": timestamp`},
		{"one nanosecond too old", nil, []pt{{metric: "x", ts: now.Add(-24*time.Hour - 1)}}, nil, TooFarInPast, "behind the collector's clock, limit max_age 24h0m0s"},
		{"future", nil, []pt{ok("a"), {metric: "late", ts: now.Add(2*time.Hour + 5*time.Minute)}, ok("c")}, []string{"a", "c"}, TooFarInFuture, `metric "late": timestamp 2h5m0s ahead`},
		{"one nanosecond too far", nil, []pt{{metric: "x", ts: now.Add(10*time.Minute + 1)}}, nil, TooFarInFuture, "ahead"},
		{"attribute count", nil, []pt{{metric: "x", ts: now, attrs: map[string]string{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}}, ok("y")}, []string{"y"}, LabelLimit, "5 attributes, limit label_limit 4"},
		// A point's own attribute names and values are checked on the
		// translator's labels, once per series (CheckLabels).
		{"point attribute lengths and UTF-8", nil, []pt{{metric: "x", ts: now, attrs: map[string]string{"very_long_name": "12345678901", "k\xc3": "\xff"}}}, []string{"x"}, "", ""},
		{"resource attribute name length", map[string]string{"very_long_name": "1"}, []pt{ok("x")}, nil, LabelNameLength, `"very_long_name" has 14 bytes`},
		{"resource attribute value length", map[string]string{"k": "12345678901"}, []pt{ok("x")}, nil, LabelValueLength, "has 11 bytes, limit label_value_length_limit 10"},
		{"metric name length", nil, []pt{{metric: "a_very_long_name", ts: now}, ok("b")}, []string{"b"}, MetricNameLength, "name has 16 bytes"},
		{"invalid utf-8 metric name", nil, []pt{{metric: "bad\xff", ts: now}, ok("b")}, []string{"b"}, InvalidUTF8, `metric "bad\xff": metric name is not valid UTF-8`},
		{"invalid utf-8 resource attribute name", map[string]string{"k\xc3": "v"}, []pt{ok("x")}, nil, InvalidUTF8, `resource attribute name "k\xc3"`},
		{"invalid utf-8 resource attribute value", map[string]string{"k": "v\xed\xa0\x80"}, []pt{ok("x")}, nil, InvalidUTF8, `value of resource attribute "k"`},
		{"resource attribute count", map[string]string{"a": "1", "b": "2", "c": "3", "d": "4"}, []pt{ok("x"), ok("y")}, nil, LabelLimit, "5 resource attributes"},
		{"resource attribute utf-8", map[string]string{"host": "\xff"}, []pt{ok("x"), ok("y")}, nil, InvalidUTF8, "resource attribute"},
	} {
		md := request(tc.res, tc.pts...)
		before := md.DataPointCount()
		r := c.Admit(md, now)
		if got := names(md); strings.Join(got, ",") != strings.Join(tc.keep, ",") {
			t.Errorf("%s: kept %v, want %v", tc.name, got, tc.keep)
		}
		if r.Points != before-md.DataPointCount() {
			t.Errorf("%s: %d refused, but %d points removed", tc.name, r.Points, before-md.DataPointCount())
		}
		if tc.reason == "" {
			if r.Points != 0 {
				t.Errorf("%s: refused %s", tc.name, r)
			}
			continue
		}
		if r.ByReason()[tc.reason] != r.Points || r.Points == 0 {
			t.Errorf("%s: refused %v, want all for %s", tc.name, r.ByReason(), tc.reason)
		}
		if msg := r.String(); !strings.Contains(msg, tc.msg) || !strings.HasPrefix(msg, string(tc.reason)+":") {
			t.Errorf("%s: message %q, want it to start with %s and contain %q", tc.name, msg, tc.reason, tc.msg)
		}
		if md.ResourceMetrics().Len() != 0 && len(tc.keep) == 0 {
			t.Errorf("%s: emptied resource kept", tc.name)
		}
	}
}

// TestAdmitManyAttributes is the attack of issue 12: 80,000 attributes
// on one point cost the translator minutes; Admit refuses them after
// counting, and a request with both kinds keeps its good points.
func TestAdmitManyAttributes(t *testing.T) {
	now := testutil.Epoch
	attrs := map[string]string{}
	for i := range 80_000 {
		attrs[fmt.Sprintf("label_%d", i)] = "v"
	}
	md := request(nil, pt{metric: "huge", ts: now, attrs: attrs}, pt{metric: "fine", ts: now})
	r := DefaultConfig().Admit(md, now)
	if r.ByReason()[LabelLimit] != 1 || md.DataPointCount() != 1 {
		t.Fatalf("refused %s, %d points left; want the huge point refused for label_limit", r, md.DataPointCount())
	}
	if want := "80000 attributes, limit label_limit 128"; !strings.Contains(r.String(), want) {
		t.Errorf("message %q lacks %q", r.String(), want)
	}
}

// TestAdmitBucketLimit: a histogram point with more buckets than
// bucket_limit is refused, naming the key; its neighbours and a point at
// the limit are kept. Found from outside: one explicit histogram point of
// a million buckets (an 8 MB request) made a million series, the whole
// max_series budget, and 2.8 GB of heap.
func TestAdmitBucketLimit(t *testing.T) {
	now := testutil.Epoch
	md := pmetric.NewMetrics()
	ms := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics()
	explicit := func(name string, bounds int) {
		m := ms.AppendEmpty()
		m.SetName(name)
		dp := m.SetEmptyHistogram().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.NewTimestampFromTime(now))
		for i := range bounds {
			dp.ExplicitBounds().Append(float64(i))
		}
		dp.BucketCounts().FromRaw(make([]uint64, bounds+1))
	}
	exponential := func(name string, pos, neg int) {
		m := ms.AppendEmpty()
		m.SetName(name)
		dp := m.SetEmptyExponentialHistogram().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.NewTimestampFromTime(now))
		dp.Positive().BucketCounts().FromRaw(make([]uint64, pos))
		dp.Negative().BucketCounts().FromRaw(make([]uint64, neg))
	}
	c := DefaultConfig()
	explicit("at_limit", c.BucketLimit-1)
	explicit("huge", 1_000_000)
	exponential("exp_at_limit", c.BucketLimit/2, c.BucketLimit/2)
	exponential("exp_over", c.BucketLimit/2+1, c.BucketLimit/2)
	r := c.Admit(md, now)
	if got, want := names(md), []string{"at_limit", "exp_at_limit"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	if r.ByReason()[BucketLimit] != 2 {
		t.Errorf("refused %s; want 2 points for bucket_limit", r)
	}
	if want := `metric "huge": histogram point has 1000001 buckets, limit bucket_limit 1024`; !strings.Contains(r.String(), want) {
		t.Errorf("message %q lacks %q", r.String(), want)
	}

	c.BucketLimit = -1
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "bucket_limit") {
		t.Errorf("Validate with bucket_limit -1: %v, want an error naming bucket_limit", err)
	}
}

func BenchmarkAdmit(b *testing.B) {
	now := testutil.Epoch
	md := pmetric.NewMetrics()
	for r := range 50 {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "bench")
		rm.Resource().Attributes().PutStr("service.instance.id", fmt.Sprintf("i-%d", r))
		dps := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetEmptyGauge().DataPoints()
		for s := range 100 {
			dp := dps.AppendEmpty()
			dp.Attributes().PutStr("series", fmt.Sprintf("s%06d", s))
			dp.Attributes().PutStr("region", "eu-west-1")
			dp.SetTimestamp(pcommon.NewTimestampFromTime(now))
		}
	}
	c := DefaultConfig()
	b.ResetTimer()
	for range b.N {
		if r := c.Admit(md, now); r.Points != 0 {
			b.Fatal(r)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*md.DataPointCount()), "ns/point")
}

func TestCheckLabels(t *testing.T) {
	c := Config{LabelLimit: 4, LabelNameLengthLimit: 8, LabelValueLengthLimit: 6, MetricNameLengthLimit: 8}
	for _, tc := range []struct {
		ls     labels.Labels
		reason Reason
	}{
		{labels.FromStrings("__name__", "up", "job", "a", "instance", "b", "x", "123456"), ""},
		{labels.FromStrings("__name__", "up", "job", "a", "instance", "b", "x", "1", "y", "2"), LabelLimit},
		{labels.FromStrings("__name__", "up", "a_longer", "1"), ""},
		{labels.FromStrings("__name__", "up", "the_longer", "1"), LabelNameLength},
		{labels.FromStrings("__name__", "up", "x", "1234567"), LabelValueLength},
		{labels.FromStrings("__name__", "up_total_x", "x", "1"), MetricNameLength},
		{labels.FromStrings("__name__", "up_total", "x", "1"), ""},
		{labels.FromStrings("__name__", "up", "x", "caf\xe9"), InvalidUTF8},
		{labels.FromStrings("__name__", "up", "\xffx", "1"), InvalidUTF8},
	} {
		v := c.CheckLabels(tc.ls)
		if v.Reason != tc.reason {
			t.Errorf("%s: %q (%s), want %q", tc.ls, v.Reason, v, tc.reason)
		}
		if v.Reason != "" && !strings.Contains(v.String(), `metric "up`) {
			t.Errorf("%s: message %q does not name the metric", tc.ls, v)
		}
	}
	if v := (Config{}).CheckLabels(labels.FromStrings("__name__", strings.Repeat("x", 1<<20))); v.Reason != "" {
		t.Errorf("no limits configured, got %s", v)
	}
}

func TestSeries(t *testing.T) {
	clock := testutil.NewClock(testutil.Epoch)
	s := Config{MaxSeries: 3, MaxSeriesPerTenant: 2, SeriesIdle: time.Hour}.NewSeries()
	admit := func(h uint64, tenant string) Reason { return s.Admit(h, tenant, s.Epoch(clock.Now())).Reason }

	for h, tenant := range map[uint64]string{1: "a", 2: "a"} {
		if r := admit(h, tenant); r != "" {
			t.Fatalf("series %d: %s", h, r)
		}
	}
	if r := admit(3, "a"); r != SeriesLimit {
		t.Errorf("third series of tenant a: %q, want series_limit", r)
	}
	if r := admit(1, "a"); r != "" {
		t.Errorf("existing series refused: %s", r)
	}
	if r := admit(4, "b"); r != "" {
		t.Errorf("tenant b's first series: %s", r)
	}
	if r := admit(5, "c"); r != SeriesLimit {
		t.Errorf("fourth series overall: %q, want series_limit", r)
	}
	if got := s.Active(); got != 3 {
		t.Errorf("active %d, want 3", got)
	}

	// One generation later series 1 is still written, 2 and 4 are not:
	// after another they are forgotten and make room.
	clock.Add(time.Hour)
	if r := admit(1, "a"); r != "" {
		t.Fatal(r)
	}
	if r := admit(5, "c"); r != SeriesLimit {
		t.Errorf("series 2 and 4 are idle for less than an hour: %q, want series_limit", r)
	}
	clock.Add(time.Hour)
	admit(1, "a")
	if got := s.Active(); got != 1 {
		t.Errorf("active %d after two idle generations, want 1", got)
	}
	for h, tenant := range map[uint64]string{5: "c", 6: "a"} {
		if r := admit(h, tenant); r != "" {
			t.Errorf("series %d after the idle ones were forgotten: %s", h, r)
		}
	}
	if r := admit(7, "a"); r != SeriesLimit {
		t.Errorf("tenant a at its limit again: %q", r)
	}

	// A clock that jumps far ahead forgets everything; one that goes
	// back keeps the generation.
	clock.Add(-30 * time.Minute)
	if r := admit(1, "a"); r != "" {
		t.Error(r)
	}
	clock.Add(10 * time.Hour)
	admit(1, "a")
	if got := s.Active(); got != 1 {
		t.Errorf("active %d after a long pause, want 1", got)
	}

	if (Config{SeriesIdle: time.Hour}).NewSeries() != nil {
		t.Error("no limit configured, but a limiter made")
	}
}

func TestValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.MaxFuture = 0 }, "max_future: must be > 0"},
		{func(c *Config) { c.MaxAge = -time.Hour }, "max_age: must be > 0"},
		{func(c *Config) { c.LabelLimit = -1 }, "label_limit: must be >= 0"},
		{func(c *Config) { c.LabelLimit = 2 }, "label_limit: must be 0 (no limit) or >= 4"},
		{func(c *Config) { c.MaxSeriesPerTenant = -5 }, "max_series_per_tenant"},
		{func(c *Config) { c.SeriesIdle = 0 }, "series_idle"},
	} {
		c := DefaultConfig()
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}
