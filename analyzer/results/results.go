// Package results is the contract between the analyzer and the readers of
// what it writes: the names of its result series, the anomaly event and
// its codec, the read of capacity forecasts, and (in package correlate)
// root-cause ranking over the stored anomalies.
//
// The analyzer writes through this package and readers (alerting, the
// APIs) read through it, so neither side depends on the other's
// internals, and a process that runs no analyzer reads what another one
// wrote. It imports storage and Prometheus's model packages only.
package results

import (
	"github.com/prometheus/prometheus/model/labels"
)

// Names of the series the analyzer writes.
const (
	// ScoreMetric is the anomaly score of every analysed sample, in [0, 1],
	// at the sample's own timestamp.
	ScoreMetric = "aiops_anomaly_score"
	// ExhaustionMetric is the forecast time until a usage series reaches
	// its capacity, in seconds, at the evaluation time; +Inf when it does
	// not within the forecast's horizon. The _lower and _upper series
	// bound it.
	ExhaustionMetric      = "aiops_capacity_exhaustion_seconds"
	ExhaustionLowerMetric = "aiops_capacity_exhaustion_seconds_lower"
	ExhaustionUpperMetric = "aiops_capacity_exhaustion_seconds_upper"
	// MetricLabel carries the analysed series' own metric name on the
	// result series, whose __name__ is one of the above.
	MetricLabel = "aiops_metric"
)

// SeriesLabels names a result series: the analysed series' labels with
// its metric name moved to MetricLabel and name as the metric name.
func SeriesLabels(name string, analysed labels.Labels) labels.Labels {
	b := labels.NewBuilder(analysed)
	b.Set(MetricLabel, analysed.Get(labels.MetricName))
	b.Set(labels.MetricName, name)
	return b.Labels()
}

// ServiceOf names the service a series belongs to, from the labels OTLP
// translation and Prometheus scraping put on it; "" when none is set.
func ServiceOf(series map[string]string) string {
	for _, k := range []string{"service_name", "service", "job"} {
		if v := series[k]; v != "" {
			return v
		}
	}
	return ""
}
