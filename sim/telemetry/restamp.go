package telemetry

import (
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// restamp puts simulated time on collected metrics: the SDK stamps them
// with the wall clock, but the model's time is what they describe. start
// is when the process (and so its cumulative series) began.
func restamp(rm *metricdata.ResourceMetrics, now, start time.Time) int {
	points := 0
	for si := range rm.ScopeMetrics {
		for mi := range rm.ScopeMetrics[si].Metrics {
			switch d := rm.ScopeMetrics[si].Metrics[mi].Data.(type) {
			case metricdata.Gauge[float64]:
				for k := range d.DataPoints {
					d.DataPoints[k].Time, d.DataPoints[k].StartTime = now, time.Time{}
				}
				points += len(d.DataPoints)
			case metricdata.Gauge[int64]:
				for k := range d.DataPoints {
					d.DataPoints[k].Time, d.DataPoints[k].StartTime = now, time.Time{}
				}
				points += len(d.DataPoints)
			case metricdata.Sum[float64]:
				for k := range d.DataPoints {
					d.DataPoints[k].Time, d.DataPoints[k].StartTime = now, start
				}
				points += len(d.DataPoints)
			case metricdata.Sum[int64]:
				for k := range d.DataPoints {
					d.DataPoints[k].Time, d.DataPoints[k].StartTime = now, start
				}
				points += len(d.DataPoints)
			case metricdata.Histogram[float64]:
				for k := range d.DataPoints {
					d.DataPoints[k].Time, d.DataPoints[k].StartTime = now, start
				}
				points += len(d.DataPoints)
			case metricdata.Histogram[int64]:
				for k := range d.DataPoints {
					d.DataPoints[k].Time, d.DataPoints[k].StartTime = now, start
				}
				points += len(d.DataPoints)
			}
		}
	}
	return points
}
