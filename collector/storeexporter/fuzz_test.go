package storeexporter

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/aiops-dev/aiops/collector/internal/obs"
	"github.com/aiops-dev/aiops/collector/limits"
	"github.com/aiops-dev/aiops/internal/testutil"
)

// recording is an AppendableV2 whose appenders keep what they get.
type recording struct{ app refRecorder }

func (r *recording) AppenderV2(context.Context) promstorage.AppenderV2 { return &r.app }

// FuzzWriteMetrics feeds OTLP/protobuf bodies through what the collector
// does with a metrics request from a client: the limits' admission, then
// Prometheus's translator (with the translation cache) under the limits,
// into a recorder. Whatever the body, nothing may panic, and what reaches
// the store must keep the limits: labels within the label limits and
// valid UTF-8, no sample beyond the future window. `go test` runs the
// seeds; `make fuzz` searches for longer.
func FuzzWriteMetrics(f *testing.F) {
	for _, md := range fuzzSeeds() {
		b, err := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	now := testutil.Epoch
	lim := limits.Config{MaxFuture: time.Minute, MaxAge: 6 * time.Hour, LabelLimit: 8, LabelNameLengthLimit: 24, LabelValueLengthLimit: 32, MetricNameLengthLimit: 40, MaxSeries: 50, SeriesIdle: time.Hour}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := pmetricotlp.NewExportRequest()
		if err := req.UnmarshalProto(body); err != nil {
			return
		}
		md := req.Metrics()
		r := lim.Admit(md, now)
		if r.Points < 0 || r.Points > req.Metrics().DataPointCount()+r.Points {
			t.Fatalf("refused %d points", r.Points)
		}
		for _, cache := range []int{0, -1} {
			dst := &recording{}
			w := NewMetricsWriter(dst, TranslationConfig{CacheSeries: cache}, obs.NewUnregistered(), slog.New(slog.DiscardHandler), "fuzz",
				WithLimits(lim, func() time.Time { return now }))
			// Twice: the second time through the cache's hits.
			for range 2 {
				if err := w.WriteMetrics(context.Background(), md); err != nil {
					t.Fatalf("WriteMetrics: %v", err)
				}
			}
			for _, a := range dst.app.appends {
				if a.t > now.Add(lim.MaxFuture).UnixMilli() {
					t.Fatalf("sample at %d beyond the future window", a.t)
				}
				if v := lim.CheckLabels(a.ls); v.Reason != "" {
					t.Fatalf("%s stored: %s", a.ls, v)
				}
				a.ls.Range(func(l labels.Label) {
					if !utf8.ValidString(l.Name) || !utf8.ValidString(l.Value) {
						t.Fatalf("%q stored: not UTF-8", a.ls.String())
					}
				})
			}
		}
	})
}

// fuzzSeeds are requests of every kind the generator of
// TestMemoMatchesTranslator makes, and the hostile ones of issue 12.
func fuzzSeeds() []pmetric.Metrics {
	g := &gen{rnd: rand.New(rand.NewPCG(7, 7))}
	var out []pmetric.Metrics
	for range 8 {
		out = append(out, g.request())
	}
	now := testutil.Epoch
	hostile := func(name string, ts time.Time, attrs map[string]any) pmetric.Metrics {
		md := pmetric.NewMetrics()
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "fuzz")
		m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
		m.SetName(name)
		dp := m.SetEmptyGauge().DataPoints().AppendEmpty()
		dp.SetTimestamp(pcommon.NewTimestampFromTime(ts))
		_ = dp.Attributes().FromRaw(attrs)
		return md
	}
	many := map[string]any{}
	for i := range 200 {
		many[strings.Repeat("k", i%30+1)+string(rune('a'+i%26))] = i
	}
	out = append(out,
		hostile("future", now.Add(2*time.Hour+5*time.Minute), nil),
		hostile("past", time.Unix(0, 0), map[string]any{"host.name": "h"}),
		hostile("many", now, many),
		hostile("bad\xffname", now, map[string]any{"k": "v"}),
		hostile("badvalue", now, map[string]any{"k\xc3": "v\xed\xa0\x80"}),
		hostile(strings.Repeat("n", 100), now, map[string]any{"long": strings.Repeat("v", 100)}),
		hostile("fine", now, map[string]any{"a.b": "1", "a_b": "2"}),
	)
	return out
}
