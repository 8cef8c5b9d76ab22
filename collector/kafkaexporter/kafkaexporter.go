// Package kafkaexporter writes OTLP data to Kafka topics, one topic per
// signal, for the collector role. Messages are OTLP protobuf export
// requests keyed by resource identity (see kafkaotlp), written with
// segmentio/kafka-go synchronously and acknowledged by all in-sync
// replicas: data leaves the collector's persistent queue only once Kafka
// holds it.
package kafkaexporter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/aiops-dev/aiops/collector/internal/kafkaotlp"
	"github.com/aiops-dev/aiops/collector/internal/obs"
	"github.com/aiops-dev/aiops/collector/internal/queuecount"
)

// Type is the component type name.
const Type = "kafka"

// Config configures the exporter.
type Config struct {
	exporterhelper.TimeoutConfig `mapstructure:",squash"`
	Queue                        configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`
	Retry                        configretry.BackOffConfig                                `mapstructure:"retry_on_failure"`

	Brokers []string         `mapstructure:"brokers"`
	Topics  kafkaotlp.Topics `mapstructure:"topics"`
	// MaxMessageBytes bounds one message; larger payloads are cut into
	// several. Keep it at or below the broker's message.max.bytes.
	MaxMessageBytes int `mapstructure:"max_message_bytes"`
	// Compression is none, gzip, snappy, lz4 or zstd.
	Compression string `mapstructure:"compression"`
	// Linger is how long kafka-go waits to fill a batch per partition
	// before sending it; writes are synchronous, so it adds to latency.
	Linger time.Duration `mapstructure:"linger"`
}

// Validate is called by the collector when it loads the configuration.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("brokers: at least one broker is required")
	}
	for i, b := range c.Brokers {
		if b == "" || !strings.Contains(b, ":") {
			return fmt.Errorf("brokers[%d]: want host:port, got %q", i, b)
		}
	}
	if err := c.Topics.Validate(); err != nil {
		return fmt.Errorf("topics::%w", err)
	}
	if c.MaxMessageBytes < 1024 {
		return fmt.Errorf("max_message_bytes: must be >= 1024, got %d", c.MaxMessageBytes)
	}
	if _, err := compression(c.Compression); err != nil {
		return fmt.Errorf("compression: %w", err)
	}
	if c.Linger < 0 {
		return fmt.Errorf("linger: must be >= 0, got %s", c.Linger)
	}
	return nil
}

func compression(name string) (kafka.Compression, error) {
	switch name {
	case "", "none":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("unknown codec %q, want none, gzip, snappy, lz4 or zstd", name)
}

// DefaultConfig returns the exporter's defaults.
func DefaultConfig() *Config {
	retry := configretry.NewDefaultBackOffConfig()
	retry.MaxElapsedTime = 0 // wait for Kafka rather than drop
	retry.InitialInterval = 500 * time.Millisecond
	retry.MaxInterval = 10 * time.Second
	timeout := exporterhelper.NewDefaultTimeoutConfig()
	timeout.Timeout = 30 * time.Second
	return &Config{
		TimeoutConfig:   timeout,
		Queue:           configoptional.Default(exporterhelper.NewDefaultQueueConfig()),
		Retry:           retry,
		Topics:          kafkaotlp.DefaultTopics(),
		MaxMessageBytes: 1_000_000,
		Compression:     "snappy",
		Linger:          5 * time.Millisecond,
	}
}

// Deps are what the exporter needs from the process.
type Deps struct {
	Metrics *obs.Metrics
	Logger  *slog.Logger
}

// NewFactory returns the exporter's factory.
func NewFactory(deps Deps) exporter.Factory {
	if deps.Metrics == nil {
		deps.Metrics = obs.NewUnregistered()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	create := func(set exporter.Settings, cfg component.Config) (*kafkaExporter, []exporterhelper.Option, error) {
		c := cfg.(*Config)
		codec, err := compression(c.Compression)
		if err != nil {
			return nil, nil, err
		}
		e := &kafkaExporter{cfg: c, codec: codec, metrics: deps.Metrics, logger: deps.Logger, name: set.ID.String()}
		return e, []exporterhelper.Option{
			exporterhelper.WithTimeout(c.TimeoutConfig),
			exporterhelper.WithQueue(c.Queue),
			exporterhelper.WithRetry(c.Retry),
			// Payloads are read, never modified: a failed push is retried
			// with the same payload.
			exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
			exporterhelper.WithStart(func(context.Context, component.Host) error { e.start(); return nil }),
			exporterhelper.WithShutdown(func(context.Context) error { return e.shutdown() }),
		}, nil
	}
	return exporter.NewFactory(component.MustNewType(Type),
		func() component.Config { return DefaultConfig() },
		exporter.WithMetrics(func(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Metrics, error) {
			e, opts, err := create(set, cfg)
			if err != nil {
				return nil, err
			}
			e.topic, e.signal = e.cfg.Topics.Metrics, obs.SignalMetrics
			exp, err := exporterhelper.NewMetrics(ctx, set, cfg, e.pushMetrics, opts...)
			if err != nil || !e.cfg.Queue.HasValue() {
				return exp, err
			}
			return queuecount.Metrics(exp, deps.Metrics), nil
		}, component.StabilityLevelBeta),
		exporter.WithLogs(func(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Logs, error) {
			e, opts, err := create(set, cfg)
			if err != nil {
				return nil, err
			}
			e.topic, e.signal = e.cfg.Topics.Logs, obs.SignalLogs
			exp, err := exporterhelper.NewLogs(ctx, set, cfg, e.pushLogs, opts...)
			if err != nil || !e.cfg.Queue.HasValue() {
				return exp, err
			}
			return queuecount.Logs(exp, deps.Metrics), nil
		}, component.StabilityLevelBeta),
		exporter.WithTraces(func(ctx context.Context, set exporter.Settings, cfg component.Config) (exporter.Traces, error) {
			e, opts, err := create(set, cfg)
			if err != nil {
				return nil, err
			}
			e.topic, e.signal = e.cfg.Topics.Spans, obs.SignalSpans
			exp, err := exporterhelper.NewTraces(ctx, set, cfg, e.pushTraces, opts...)
			if err != nil || !e.cfg.Queue.HasValue() {
				return exp, err
			}
			return queuecount.Traces(exp, deps.Metrics), nil
		}, component.StabilityLevelBeta),
	)
}

type kafkaExporter struct {
	cfg     *Config
	codec   kafka.Compression
	metrics *obs.Metrics
	logger  *slog.Logger
	name    string
	topic   string
	signal  string
	writer  *kafka.Writer
}

func (e *kafkaExporter) start() {
	e.writer = &kafka.Writer{
		Addr:  kafka.TCP(e.cfg.Brokers...),
		Topic: e.topic,
		// kafka.Hash is FNV-1a of the key modulo the partition count, the
		// same function as Sarama's default partitioner.
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		Async:        false,
		BatchTimeout: max(e.cfg.Linger, time.Millisecond),
		BatchSize:    1000,
		// kafka-go's batch limit is also its per-message limit, and our
		// messages are cut to MaxMessageBytes; leave room for headers.
		BatchBytes:      int64(e.cfg.MaxMessageBytes) + 4096,
		Compression:     e.codec,
		WriteTimeout:    e.cfg.Timeout,
		MaxAttempts:     3,
		WriteBackoffMin: 50 * time.Millisecond,
		WriteBackoffMax: time.Second,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			e.logger.Warn("kafka writer: "+fmt.Sprintf(msg, args...), "exporter", e.name)
		}),
	}
}

func (e *kafkaExporter) shutdown() error {
	if e.writer == nil {
		return nil
	}
	return e.writer.Close()
}

var headers = []kafka.Header{{Key: kafkaotlp.HeaderContentType, Value: []byte(kafkaotlp.ContentType)}}

// errTooLarge marks a single item that cannot fit in a message.
var errTooLarge = errors.New("single item exceeds max_message_bytes")

func (e *kafkaExporter) pushMetrics(ctx context.Context, md pmetric.Metrics) error {
	n := md.DataPointCount()
	var msgs []kafka.Message
	var marshaler pmetric.ProtoMarshaler
	var add func(key string, md pmetric.Metrics) error
	add = func(key string, md pmetric.Metrics) error {
		if marshaler.MetricsSize(md) > e.cfg.MaxMessageBytes {
			if md.DataPointCount() <= 1 {
				return errTooLarge
			}
			a, b := halveMetrics(md)
			return errors.Join(add(key, a), add(key, b))
		}
		buf, err := marshaler.MarshalMetrics(md)
		if err != nil {
			return err
		}
		msgs = append(msgs, kafka.Message{Key: []byte(key), Value: buf, Headers: headers})
		return nil
	}
	var errs error
	for key, g := range groupMetrics(md) {
		errs = errors.Join(errs, add(key, g))
	}
	return e.write(ctx, msgs, n, errs)
}

func (e *kafkaExporter) pushLogs(ctx context.Context, ld plog.Logs) error {
	n := ld.LogRecordCount()
	var msgs []kafka.Message
	var marshaler plog.ProtoMarshaler
	var add func(key string, ld plog.Logs) error
	add = func(key string, ld plog.Logs) error {
		if marshaler.LogsSize(ld) > e.cfg.MaxMessageBytes {
			if ld.LogRecordCount() <= 1 {
				return errTooLarge
			}
			a, b := halveLogs(ld)
			return errors.Join(add(key, a), add(key, b))
		}
		buf, err := marshaler.MarshalLogs(ld)
		if err != nil {
			return err
		}
		msgs = append(msgs, kafka.Message{Key: []byte(key), Value: buf, Headers: headers})
		return nil
	}
	var errs error
	for key, g := range groupLogs(ld) {
		errs = errors.Join(errs, add(key, g))
	}
	return e.write(ctx, msgs, n, errs)
}

func (e *kafkaExporter) pushTraces(ctx context.Context, td ptrace.Traces) error {
	n := td.SpanCount()
	var msgs []kafka.Message
	var marshaler ptrace.ProtoMarshaler
	var add func(key string, td ptrace.Traces) error
	add = func(key string, td ptrace.Traces) error {
		if marshaler.TracesSize(td) > e.cfg.MaxMessageBytes {
			if td.SpanCount() <= 1 {
				return errTooLarge
			}
			a, b := halveTraces(td)
			return errors.Join(add(key, a), add(key, b))
		}
		buf, err := marshaler.MarshalTraces(td)
		if err != nil {
			return err
		}
		msgs = append(msgs, kafka.Message{Key: []byte(key), Value: buf, Headers: headers})
		return nil
	}
	var errs error
	for key, g := range groupTraces(td) {
		errs = errors.Join(errs, add(key, g))
	}
	return e.write(ctx, msgs, n, errs)
}

// write sends msgs and waits for all of them to be acknowledged. Messages
// that failed are sent again, alone, until they succeed or ctx ends, so a
// partial failure does not duplicate the messages that made it. Items that
// could not be encoded (encErr) are reported as a permanent error after
// the rest is written.
func (e *kafkaExporter) write(ctx context.Context, msgs []kafka.Message, items int, encErr error) error {
	start := time.Now()
	pending := msgs
	var lastErr error
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		if len(pending) == 0 {
			return struct{}{}, nil
		}
		err := e.writer.WriteMessages(ctx, pending...)
		if err == nil {
			return struct{}{}, nil
		}
		lastErr = err
		e.metrics.ExportFailures.WithLabelValues(e.signal, e.name).Inc()
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) && len(werrs) == len(pending) {
			failed := pending[:0:0]
			for i, werr := range werrs {
				if werr != nil {
					failed = append(failed, pending[i])
				} else {
					e.produced(pending[i])
				}
			}
			pending = failed
		}
		return struct{}{}, err
	},
		// No time limit: brokers come back; ctx (the exporter's timeout
		// or shutdown) ends the attempts.
		backoff.WithBackOff(&backoff.ExponentialBackOff{InitialInterval: 50 * time.Millisecond, Multiplier: 2, MaxInterval: 2 * time.Second}),
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, _ time.Duration) {
			e.logger.Warn("kafka write failed, retrying", "exporter", e.name, "topic", e.topic, "messages", len(pending), "err", err)
		}))
	if err != nil {
		return fmt.Errorf("write %d of %d messages to %s: %w", len(pending), len(msgs), e.topic, lastErr)
	}
	for _, m := range pending {
		e.produced(m)
	}
	if encErr != nil {
		e.logger.Error("dropping items that cannot be sent to Kafka", "exporter", e.name, "topic", e.topic, "err", encErr)
		e.metrics.Refused.WithLabelValues(e.signal, obs.ReasonInvalid).Inc()
		return consumererror.NewPermanent(fmt.Errorf("encode for topic %s: %w", e.topic, encErr))
	}
	e.metrics.Stored.WithLabelValues(e.signal).Add(float64(items))
	e.metrics.ExportDuration.WithLabelValues(e.signal, e.name).Observe(time.Since(start).Seconds())
	return nil
}

func (e *kafkaExporter) produced(m kafka.Message) {
	e.metrics.KafkaProduced.WithLabelValues(e.topic).Inc()
	e.metrics.KafkaProducedBytes.WithLabelValues(e.topic).Add(float64(len(m.Value)))
}
