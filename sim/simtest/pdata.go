// Package simtest holds what the simulator's tests share: the shipped
// alert rules evaluated over the simulator's own metrics, translated to
// Prometheus series by Prometheus's OTLP translator as aiops does.
// Only tests import it.
package simtest

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// ToPdata converts what the OTel SDK collected into the collector's data
// model, field for field, as the OTLP exporter and receiver between them
// would.
func ToPdata(rms []*metricdata.ResourceMetrics) pmetric.Metrics {
	md := pmetric.NewMetrics()
	for _, rm := range rms {
		out := md.ResourceMetrics().AppendEmpty()
		out.SetSchemaUrl(rm.Resource.SchemaURL())
		putAttrs(out.Resource().Attributes(), *rm.Resource.Set())
		for _, sm := range rm.ScopeMetrics {
			osm := out.ScopeMetrics().AppendEmpty()
			osm.Scope().SetName(sm.Scope.Name)
			osm.Scope().SetVersion(sm.Scope.Version)
			for _, m := range sm.Metrics {
				om := osm.Metrics().AppendEmpty()
				om.SetName(m.Name)
				om.SetUnit(m.Unit)
				om.SetDescription(m.Description)
				switch d := m.Data.(type) {
				case metricdata.Gauge[float64]:
					g := om.SetEmptyGauge()
					for _, p := range d.DataPoints {
						dp := g.DataPoints().AppendEmpty()
						point(dp, p.Attributes, p.StartTime, p.Time)
						dp.SetDoubleValue(p.Value)
					}
				case metricdata.Gauge[int64]:
					g := om.SetEmptyGauge()
					for _, p := range d.DataPoints {
						dp := g.DataPoints().AppendEmpty()
						point(dp, p.Attributes, p.StartTime, p.Time)
						dp.SetIntValue(p.Value)
					}
				case metricdata.Sum[float64]:
					s := om.SetEmptySum()
					s.SetIsMonotonic(d.IsMonotonic)
					s.SetAggregationTemporality(temporality(d.Temporality))
					for _, p := range d.DataPoints {
						dp := s.DataPoints().AppendEmpty()
						point(dp, p.Attributes, p.StartTime, p.Time)
						dp.SetDoubleValue(p.Value)
					}
				case metricdata.Sum[int64]:
					s := om.SetEmptySum()
					s.SetIsMonotonic(d.IsMonotonic)
					s.SetAggregationTemporality(temporality(d.Temporality))
					for _, p := range d.DataPoints {
						dp := s.DataPoints().AppendEmpty()
						point(dp, p.Attributes, p.StartTime, p.Time)
						dp.SetIntValue(p.Value)
					}
				case metricdata.Histogram[float64]:
					h := om.SetEmptyHistogram()
					h.SetAggregationTemporality(temporality(d.Temporality))
					for _, p := range d.DataPoints {
						dp := h.DataPoints().AppendEmpty()
						point(dp, p.Attributes, p.StartTime, p.Time)
						dp.SetCount(p.Count)
						dp.SetSum(p.Sum)
						dp.ExplicitBounds().FromRaw(p.Bounds)
						dp.BucketCounts().FromRaw(p.BucketCounts)
						if v, ok := p.Min.Value(); ok {
							dp.SetMin(v)
						}
						if v, ok := p.Max.Value(); ok {
							dp.SetMax(v)
						}
					}
				}
			}
		}
	}
	return md
}

type numberPoint interface {
	Attributes() pcommon.Map
	SetStartTimestamp(pcommon.Timestamp)
	SetTimestamp(pcommon.Timestamp)
}

func point(dp numberPoint, attrs attribute.Set, start, t time.Time) {
	putAttrs(dp.Attributes(), attrs)
	if !start.IsZero() {
		dp.SetStartTimestamp(pcommon.Timestamp(start.UnixNano()))
	}
	dp.SetTimestamp(pcommon.Timestamp(t.UnixNano()))
}

func temporality(t metricdata.Temporality) pmetric.AggregationTemporality {
	if t == metricdata.DeltaTemporality {
		return pmetric.AggregationTemporalityDelta
	}
	return pmetric.AggregationTemporalityCumulative
}

func putAttrs(m pcommon.Map, set attribute.Set) {
	it := set.Iter()
	for it.Next() {
		kv := it.Attribute()
		k := string(kv.Key)
		switch kv.Value.Type() {
		case attribute.STRING:
			m.PutStr(k, kv.Value.AsString())
		case attribute.INT64:
			m.PutInt(k, kv.Value.AsInt64())
		case attribute.FLOAT64:
			m.PutDouble(k, kv.Value.AsFloat64())
		case attribute.BOOL:
			m.PutBool(k, kv.Value.AsBool())
		default:
			m.PutStr(k, kv.Value.Emit())
		}
	}
}
