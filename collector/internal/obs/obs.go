// Package obs holds the collector's self-metrics, shared by the components
// of one collector instance so that received, stored and refused counts
// line up across receivers, processors and exporters.
package obs

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Signal label values.
const (
	SignalMetrics = "metrics"
	SignalLogs    = "logs"
	SignalSpans   = "spans"
)

// Reasons for refused items. Each is a value of the reason label of
// aiops_collector_refused_items_total.
const (
	// ReasonInvalid: the data breaks the OTLP data model; the client got
	// InvalidArgument / 400 and must not retry.
	ReasonInvalid = "invalid"
	// ReasonQueueFull: the persistent queue was full; the client got
	// Unavailable / 503 with Retry-After and should retry.
	ReasonQueueFull = "queue_full"
	// ReasonMemoryLimit: the memory limiter refused the data; retryable.
	ReasonMemoryLimit = "memory_limit"
	// ReasonUnavailable: the next stage failed for another transient
	// reason (Kafka or the store unreachable without a queue); retryable.
	ReasonUnavailable = "unavailable"
	// ReasonTranslation: the OTLP→Prometheus translator rejected the
	// metric (counted in data points of the rejected metrics).
	ReasonTranslation = "translation"
	// ReasonMalformed: a Kafka message that does not decode as OTLP.
	ReasonMalformed = "malformed"
	// ReasonUnauthenticated, ReasonForbidden: the OTLP client's
	// credential is missing or unknown, or lacks the ingest scope
	// (values of aiops_collector_auth_failures_total's reason).
	ReasonUnauthenticated = "unauthenticated"
	ReasonForbidden       = "forbidden"
)

// Refusals by the collector's limits (collector/limits) and by the store
// (too_old, out_of_order, out_of_bounds, duplicate_timestamp, ...) use
// the limit's or the store's reason as the reason label.

// Metrics are the self-metrics of one collector instance. All are
// registered on the Registerer given to New.
type Metrics struct {
	// Received counts items (metric data points, log records, spans) that
	// reached the pipeline, before any refusal.
	Received *prometheus.CounterVec
	// Stored counts items written to the final destination: the store,
	// ClickHouse, or Kafka in the collector role.
	Stored *prometheus.CounterVec
	// Refused counts items not accepted, by reason.
	Refused *prometheus.CounterVec
	// ExportFailures counts failed write attempts (each is retried unless
	// the data is invalid).
	ExportFailures *prometheus.CounterVec
	// ExportDuration observes successful writes, by signal.
	ExportDuration *prometheus.HistogramVec
	// Spilled counts items a write-through exporter put into its queue
	// because the store failed or was slow (see docs/COLLECTOR.md).
	Spilled *prometheus.CounterVec

	// StoredSamples counts Prometheus samples appended by the translator
	// (a histogram data point becomes many samples).
	StoredSamples prometheus.Counter
	// RejectedSamples counts samples the store refused for good (out of
	// order, too old, ...), by the storage error.
	RejectedSamples *prometheus.CounterVec
	// TranslationWarnings counts warnings of the OTLP translator.
	TranslationWarnings *prometheus.CounterVec
	// ActiveSeries is the number of active series the series limit
	// counts, by exporter.
	ActiveSeries *prometheus.GaugeVec

	// QueueWriteFailures counts items whose enqueueing failed after the
	// queue counted them (see collector/internal/queuecount).
	QueueWriteFailures *prometheus.CounterVec
	queueWriteFailures [3]atomic.Int64

	// OTLP listeners.
	AuthFailures       *prometheus.CounterVec
	Connections        *prometheus.GaugeVec
	ConnectionsRefused *prometheus.CounterVec

	// Kafka.
	KafkaProduced       *prometheus.CounterVec
	KafkaProducedBytes  *prometheus.CounterVec
	KafkaConsumed       *prometheus.CounterVec
	KafkaMalformed      *prometheus.CounterVec
	KafkaCommitted      *prometheus.CounterVec
	KafkaCommitFailures *prometheus.CounterVec
	KafkaLag            *prometheus.GaugeVec
}

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer) (*Metrics, error) {
	const ns, sub = "aiops", "collector"
	m := &Metrics{
		Received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "received_items_total",
			Help: "Items (metric data points, log records, spans) that reached the collector's pipeline.",
		}, []string{"signal"}),
		Stored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "stored_items_total",
			Help: "Items written to their destination (the store, ClickHouse, or Kafka in the collector role).",
		}, []string{"signal"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "refused_items_total",
			Help: "Items not accepted, by reason; invalid ones are never retried, the others are pushed back to the client.",
		}, []string{"signal", "reason"}),
		ExportFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "export_failures_total",
			Help: "Failed write attempts to the destination; the data stays queued and is retried.",
		}, []string{"signal", "exporter"}),
		ExportDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "export_duration_seconds",
			Help:    "Duration of successful writes of one batch to the destination.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 8),
		}, []string{"signal", "exporter"}),
		Spilled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "spilled_items_total",
			Help: "Items a write-through exporter queued instead of writing at once, because the store failed or was slow.",
		}, []string{"signal", "exporter"}),
		StoredSamples: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "stored_samples_total",
			Help: "Prometheus samples appended by the OTLP translator and committed.",
		}),
		RejectedSamples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "rejected_samples_total",
			Help: "Samples the store refused for good (out of order, out of bounds, ...), by reason.",
		}, []string{"reason"}),
		TranslationWarnings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "translation_warnings_total",
			Help: "Warnings of the OTLP to Prometheus translator, by category.",
		}, []string{"category"}),
		ActiveSeries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "active_series",
			Help: "Series written recently enough to count against collector.limits.max_series.",
		}, []string{"exporter"}),
		QueueWriteFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "queue_write_failures_total",
			Help: "Items the queue failed to store (a full disk, say); exporterhelper's own queue size still counts them, aiops_collector_queue_items does not.",
		}, []string{"signal"}),
		AuthFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "auth_failures_total",
			Help: "OTLP requests refused for their credential: unauthenticated (missing, unknown, expired) or forbidden (no ingest scope).",
		}, []string{"reason"}),
		Connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "otlp_connections",
			Help: "Open connections of the OTLP listeners.",
		}, []string{"transport"}),
		ConnectionsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "otlp_connections_refused_total",
			Help: "Connections the OTLP listeners closed at once because collector.otlp.max_connections were open.",
		}, []string{"transport"}),
		KafkaProduced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "kafka_produced_messages_total",
			Help: "Kafka messages written and acknowledged by all in-sync replicas.",
		}, []string{"topic"}),
		KafkaProducedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "kafka_produced_bytes_total",
			Help: "Payload bytes of acknowledged Kafka messages.",
		}, []string{"topic"}),
		KafkaConsumed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "kafka_consumed_messages_total",
			Help: "Kafka messages fetched by the ingester.",
		}, []string{"topic"}),
		KafkaMalformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "kafka_malformed_messages_total",
			Help: "Kafka messages that do not decode as OTLP; they are logged and committed past.",
		}, []string{"topic"}),
		KafkaCommitted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "kafka_committed_messages_total",
			Help: "Kafka messages whose offsets were committed after their data was written.",
		}, []string{"topic"}),
		KafkaCommitFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "kafka_commit_failures_total",
			Help: "Failed offset commits; the messages are delivered again after a rebalance or restart.",
		}, []string{"topic"}),
		KafkaLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "kafka_consumer_lag_messages",
			Help: "Messages between the ingester's position and the end of its partitions, as last reported by the reader.",
		}, []string{"topic"}),
	}
	for _, c := range []prometheus.Collector{
		m.Received, m.Stored, m.Refused, m.ExportFailures, m.ExportDuration, m.Spilled,
		m.StoredSamples, m.RejectedSamples, m.TranslationWarnings, m.ActiveSeries,
		m.AuthFailures, m.Connections, m.ConnectionsRefused, m.QueueWriteFailures,
		m.KafkaProduced, m.KafkaProducedBytes, m.KafkaConsumed, m.KafkaMalformed,
		m.KafkaCommitted, m.KafkaCommitFailures, m.KafkaLag,
	} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Make every signal's series exist from the start, so rate() and
	// absent() work before the first item arrives.
	for _, s := range []string{SignalMetrics, SignalLogs, SignalSpans} {
		m.Received.WithLabelValues(s)
		m.Stored.WithLabelValues(s)
	}
	return m, nil
}

func signalIndex(signal string) int {
	switch signal {
	case SignalLogs:
		return 1
	case SignalSpans:
		return 2
	}
	return 0
}

// AddQueueWriteFailures adds n to the signal's queue write failures.
func (m *Metrics) AddQueueWriteFailures(signal string, n int64) {
	m.queueWriteFailures[signalIndex(signal)].Add(n)
}

// QueueWriteFailureCount returns the signal's queue write failures so far.
func (m *Metrics) QueueWriteFailureCount(signal string) int64 {
	return m.queueWriteFailures[signalIndex(signal)].Load()
}

// NewUnregistered returns metrics registered nowhere, for components
// created outside a collector (tests, raw factories).
func NewUnregistered() *Metrics {
	m, err := New(prometheus.NewRegistry())
	if err != nil {
		panic(err) // a fresh registry cannot collide
	}
	return m
}
