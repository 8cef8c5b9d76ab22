// Package kafkaotlp holds what the Kafka exporter and receiver agree on:
// topic names, the message format and the partition key.
//
// A message is one OTLP export request (ExportMetricsServiceRequest,
// ExportLogsServiceRequest or ExportTraceServiceRequest) in protobuf
// encoding, the signal given by the topic. Its key is the resource's
// identity, so every series of one job/instance lands on one partition.
package kafkaotlp

import (
	"errors"
	"strings"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

// Default topic names.
const (
	DefaultMetricsTopic = "otlp_metrics"
	DefaultLogsTopic    = "otlp_logs"
	DefaultSpansTopic   = "otlp_spans"
)

// Topics names one topic per signal.
type Topics struct {
	Metrics string `mapstructure:"metrics" yaml:"metrics"`
	Logs    string `mapstructure:"logs" yaml:"logs"`
	Spans   string `mapstructure:"spans" yaml:"spans"`
}

// DefaultTopics returns the default topic names.
func DefaultTopics() Topics {
	return Topics{Metrics: DefaultMetricsTopic, Logs: DefaultLogsTopic, Spans: DefaultSpansTopic}
}

// Validate checks the topic names; errors name the key relative to the
// topics section.
func (t Topics) Validate() error {
	for _, c := range []struct{ key, v string }{{"metrics", t.Metrics}, {"logs", t.Logs}, {"spans", t.Spans}} {
		if c.v == "" {
			return errors.New(c.key + ": must be set")
		}
		if strings.ContainsAny(c.v, " /\\,:\"'") {
			return errors.New(c.key + ": invalid Kafka topic name " + c.v)
		}
	}
	if t.Metrics == t.Logs || t.Metrics == t.Spans || t.Logs == t.Spans {
		return errors.New("metrics: each signal needs its own topic")
	}
	return nil
}

// Header names set on every message.
const (
	HeaderContentType = "content-type"
	ContentType       = "application/x-protobuf"
)

// ResourceKey is the partition key of a resource: the attributes that
// Prometheus's translator turns into job and instance
// (service.namespace/service.name and service.instance.id). Every series
// carries job and instance, so equal keys keep a series on one partition,
// and stateful consumers (delta-to-cumulative conversion, the analyzer's
// detectors) see all of its points in order.
func ResourceKey(attrs pcommon.Map) string {
	var b strings.Builder
	for i, k := range []string{"service.namespace", "service.name", "service.instance.id"} {
		if i > 0 {
			b.WriteByte('/')
		}
		if v, ok := attrs.Get(k); ok {
			b.WriteString(v.AsString())
		}
	}
	return b.String()
}
