package kafkaexporter

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/pmetric"
)

func TestHalveMetricsKeepsEveryPointOnce(t *testing.T) {
	md := pmetric.NewMetrics()
	for r := range 2 {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutInt("r", int64(r))
		sm := rm.ScopeMetrics().AppendEmpty()
		sm.Scope().SetName("scope")
		g := sm.Metrics().AppendEmpty()
		g.SetName("g")
		gdps := g.SetEmptyGauge().DataPoints()
		for i := range 5 {
			gdps.AppendEmpty().SetIntValue(int64(100*r + i))
		}
		h := sm.Metrics().AppendEmpty()
		h.SetName("h")
		hh := h.SetEmptyHistogram()
		hh.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		for i := range 3 {
			hh.DataPoints().AppendEmpty().SetCount(uint64(100*r + 10 + i))
		}
	}
	total := md.DataPointCount()
	a, b := halveMetrics(md)
	if a.DataPointCount()+b.DataPointCount() != total || a.DataPointCount() != total/2 {
		t.Fatalf("halves have %d and %d points of %d", a.DataPointCount(), b.DataPointCount(), total)
	}
	// Order and identity: the values, read in order across both halves,
	// are the original sequence.
	var got []int64
	for _, part := range []pmetric.Metrics{a, b} {
		rms := part.ResourceMetrics()
		for i := range rms.Len() {
			if _, ok := rms.At(i).Resource().Attributes().Get("r"); !ok {
				t.Errorf("resource attributes lost")
			}
			sms := rms.At(i).ScopeMetrics()
			for j := range sms.Len() {
				if sms.At(j).Scope().Name() != "scope" {
					t.Errorf("scope lost")
				}
				ms := sms.At(j).Metrics()
				for k := range ms.Len() {
					m := ms.At(k)
					switch m.Type() {
					case pmetric.MetricTypeGauge:
						for x := range m.Gauge().DataPoints().Len() {
							got = append(got, m.Gauge().DataPoints().At(x).IntValue())
						}
					case pmetric.MetricTypeHistogram:
						if m.Histogram().AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
							t.Errorf("temporality lost")
						}
						for x := range m.Histogram().DataPoints().Len() {
							got = append(got, int64(m.Histogram().DataPoints().At(x).Count()))
						}
					}
				}
			}
		}
	}
	want := []int64{0, 1, 2, 3, 4, 10, 11, 12, 100, 101, 102, 103, 104, 110, 111, 112}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

// TestGroupLeavesInputIntact: exporterhelper retries a failed push with
// the same payload, so grouping must not empty it.
func TestGroupLeavesInputIntact(t *testing.T) {
	md := pmetric.NewMetrics()
	for _, inst := range []string{"a", "b", "a"} {
		rm := md.ResourceMetrics().AppendEmpty()
		rm.Resource().Attributes().PutStr("service.name", "svc")
		rm.Resource().Attributes().PutStr("service.instance.id", inst)
		rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty().SetEmptyGauge().DataPoints().AppendEmpty().SetIntValue(1)
	}
	before := md.DataPointCount()
	for range 2 {
		groups := groupMetrics(md)
		if len(groups) != 2 || groups["/svc/a"].DataPointCount() != 2 || groups["/svc/b"].DataPointCount() != 1 {
			t.Fatalf("groups: %v", groups)
		}
		if md.DataPointCount() != before {
			t.Fatalf("grouping changed the input: %d points, was %d", md.DataPointCount(), before)
		}
	}
}
