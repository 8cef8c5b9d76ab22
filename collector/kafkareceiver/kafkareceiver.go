// Package kafkareceiver reads OTLP data that the collector role wrote to
// Kafka and hands it to the ingester's pipeline, with segmentio/kafka-go
// consumer groups.
//
// Delivery is at least once and nothing is skipped: a batch of messages is
// committed only after the pipeline (the ClickHouse exporter) has written
// it; while the write fails it is retried with backoff and nothing after
// it is committed, so Kafka is the buffer. After a crash or a rebalance the
// uncommitted messages are delivered again; stores deduplicate the replay.
// A message that is not valid OTLP can never be written: it is counted,
// logged with its topic/partition/offset, and committed past so that one
// bad message does not stop its partition forever.
package kafkareceiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver"

	"github.com/aiops-dev/aiops/collector/internal/kafkaotlp"
	"github.com/aiops-dev/aiops/collector/internal/obs"
)

// Type is the component type name.
const Type = "kafka"

// shutdownGrace is how long shutdown waits for a write in flight.
const shutdownGrace = 10 * time.Second

// Config configures the receiver.
type Config struct {
	Brokers []string         `mapstructure:"brokers"`
	Topics  kafkaotlp.Topics `mapstructure:"topics"`
	// GroupID is the consumer group; ingesters sharing it share the
	// partitions.
	GroupID string `mapstructure:"group_id"`
	// MaxBatchItems bounds the data points (log records, spans) handed to
	// the pipeline at once; messages are merged up to it.
	MaxBatchItems int `mapstructure:"max_batch_items"`
	// MaxBatchWait is how long a batch waits for more messages once it has
	// one.
	MaxBatchWait time.Duration `mapstructure:"max_batch_wait"`
	// MaxFetchBytes bounds one fetch; it must exceed the largest message.
	MaxFetchBytes int `mapstructure:"max_fetch_bytes"`
	// RetryInitial and RetryMax bound the backoff between failed writes.
	RetryInitial time.Duration `mapstructure:"retry_initial"`
	RetryMax     time.Duration `mapstructure:"retry_max"`
	// SessionTimeout is how long the group waits for a silent member
	// before giving its partitions to others.
	SessionTimeout time.Duration `mapstructure:"session_timeout"`
}

// DefaultConfig returns the receiver's defaults.
func DefaultConfig() *Config {
	return &Config{
		Topics:         kafkaotlp.DefaultTopics(),
		GroupID:        "aiops-ingester",
		MaxBatchItems:  20_000,
		MaxBatchWait:   200 * time.Millisecond,
		MaxFetchBytes:  16 << 20,
		RetryInitial:   100 * time.Millisecond,
		RetryMax:       10 * time.Second,
		SessionTimeout: 30 * time.Second,
	}
}

// Validate is called by the collector when it loads the configuration.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("brokers: at least one broker is required")
	}
	for i, b := range c.Brokers {
		if !strings.Contains(b, ":") {
			return fmt.Errorf("brokers[%d]: want host:port, got %q", i, b)
		}
	}
	if err := c.Topics.Validate(); err != nil {
		return fmt.Errorf("topics::%w", err)
	}
	switch {
	case c.GroupID == "":
		return errors.New("group_id: must be set")
	case c.MaxBatchItems <= 0:
		return fmt.Errorf("max_batch_items: must be > 0, got %d", c.MaxBatchItems)
	case c.MaxBatchWait <= 0:
		return fmt.Errorf("max_batch_wait: must be > 0, got %s", c.MaxBatchWait)
	case c.MaxFetchBytes < 1024:
		return fmt.Errorf("max_fetch_bytes: must be >= 1024, got %d", c.MaxFetchBytes)
	case c.RetryInitial <= 0:
		return fmt.Errorf("retry_initial: must be > 0, got %s", c.RetryInitial)
	case c.RetryMax < c.RetryInitial:
		return fmt.Errorf("retry_max: must be >= retry_initial, got %s", c.RetryMax)
	case c.SessionTimeout < time.Second:
		return fmt.Errorf("session_timeout: must be >= 1s, got %s", c.SessionTimeout)
	}
	return nil
}

// Deps are what the receiver needs from the process.
type Deps struct {
	Metrics *obs.Metrics
	Logger  *slog.Logger
}

// NewFactory returns the receiver's factory.
func NewFactory(deps Deps) receiver.Factory {
	if deps.Metrics == nil {
		deps.Metrics = obs.NewUnregistered()
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	return receiver.NewFactory(component.MustNewType(Type),
		func() component.Config { return DefaultConfig() },
		receiver.WithMetrics(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Metrics) (receiver.Metrics, error) {
			c := cfg.(*Config)
			return newReceiver(c, deps, set.ID, c.Topics.Metrics, &metricsCodec{next: next}), nil
		}, component.StabilityLevelBeta),
		receiver.WithLogs(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Logs) (receiver.Logs, error) {
			c := cfg.(*Config)
			return newReceiver(c, deps, set.ID, c.Topics.Logs, &logsCodec{next: next}), nil
		}, component.StabilityLevelBeta),
		receiver.WithTraces(func(_ context.Context, set receiver.Settings, cfg component.Config, next consumer.Traces) (receiver.Traces, error) {
			c := cfg.(*Config)
			return newReceiver(c, deps, set.ID, c.Topics.Spans, &tracesCodec{next: next}), nil
		}, component.StabilityLevelBeta),
	)
}

// codec decodes messages of one signal, merges them into a batch and
// hands the batch to the pipeline.
type codec interface {
	signal() string
	// newBatch returns an empty batch.
	newBatch() batch
}

type batch interface {
	// add decodes one message into the batch.
	add(value []byte) error
	items() int
	consume(ctx context.Context) error
}

type otlpReceiver struct {
	cfg     *Config
	id      component.ID
	topic   string
	codec   codec
	metrics *obs.Metrics
	logger  *slog.Logger

	reader *kafka.Reader
	cancel context.CancelFunc
	// stopping ends at shutdown: no new write attempts start, the one in
	// flight gets shutdownGrace to finish before writeCtx is cancelled.
	stopping     context.Context
	stop         context.CancelFunc
	writeCtx     context.Context
	cancelWrites context.CancelFunc
	wg           sync.WaitGroup
}

func newReceiver(cfg *Config, deps Deps, id component.ID, topic string, c codec) *otlpReceiver {
	return &otlpReceiver{
		cfg: cfg, id: id, topic: topic, codec: c,
		metrics: deps.Metrics,
		logger:  deps.Logger.With("receiver", id.String(), "topic", topic),
	}
}

// Start joins the consumer group and starts consuming.
func (r *otlpReceiver) Start(_ context.Context, _ component.Host) error {
	r.reader = kafka.NewReader(kafka.ReaderConfig{
		Brokers:  r.cfg.Brokers,
		GroupID:  r.cfg.GroupID,
		Topic:    r.topic,
		MinBytes: 1,
		MaxBytes: r.cfg.MaxFetchBytes,
		MaxWait:  250 * time.Millisecond,
		// Commits are synchronous: CommitMessages returns once Kafka has
		// the offsets, so a crash right after it loses nothing.
		CommitInterval: 0,
		// A new group starts at the oldest retained message, so what the
		// collectors wrote before the first ingester started is kept.
		StartOffset:           kafka.FirstOffset,
		HeartbeatInterval:     3 * time.Second,
		SessionTimeout:        r.cfg.SessionTimeout,
		RebalanceTimeout:      r.cfg.SessionTimeout,
		WatchPartitionChanges: true,
		ReadBackoffMin:        50 * time.Millisecond,
		ReadBackoffMax:        time.Second,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			r.logger.Warn("kafka reader: " + fmt.Sprintf(msg, args...))
		}),
	})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.stopping, r.stop = context.WithCancel(context.Background())
	r.writeCtx, r.cancelWrites = context.WithCancel(context.Background())
	batches := make(chan *fetched, 1)
	r.wg.Add(2)
	go func() { defer r.wg.Done(); r.fetchLoop(ctx, batches) }()
	go func() { defer r.wg.Done(); r.writeLoop(batches) }()
	return nil
}

// Shutdown stops fetching, lets the write in flight finish and commit, and
// leaves the group. Batches fetched but not written are not committed and
// are delivered again after a restart.
func (r *otlpReceiver) Shutdown(ctx context.Context) error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	r.stop()
	defer r.cancelWrites()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	grace := time.NewTimer(shutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		// The write in flight is stuck (the store is down and the
		// exporter retries): abandon it uncommitted.
		r.cancelWrites()
		select {
		case <-done:
		case <-ctx.Done():
			return fmt.Errorf("kafka receiver %s: shutdown: %w", r.id, ctx.Err())
		}
	case <-ctx.Done():
		return fmt.Errorf("kafka receiver %s: shutdown: %w", r.id, ctx.Err())
	}
	return r.reader.Close()
}

// fetched is a decoded batch and the messages to commit once it is
// written.
type fetched struct {
	batch     batch
	msgs      []kafka.Message
	malformed int
}

// backOff doubles the wait between attempts from RetryInitial up to
// RetryMax.
func (r *otlpReceiver) backOff() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: r.cfg.RetryInitial, Multiplier: 2, MaxInterval: r.cfg.RetryMax}
}

func (r *otlpReceiver) fetchLoop(ctx context.Context, out chan<- *fetched) {
	defer close(out)
	for ctx.Err() == nil {
		// Fetches are retried until one succeeds or the receiver stops;
		// the wait starts over after every success.
		f, err := backoff.Retry(ctx, func() (*fetched, error) { return r.fetch(ctx) },
			backoff.WithBackOff(r.backOff()),
			backoff.WithMaxElapsedTime(0),
			backoff.WithNotify(func(err error, _ time.Duration) {
				r.logger.Warn("fetch from kafka failed", "err", err)
			}))
		if err != nil {
			return // ctx ended
		}
		select {
		case out <- f:
		case <-ctx.Done():
			return
		}
	}
}

// fetch blocks for one message, then takes more until the batch is full or
// MaxBatchWait has passed.
func (r *otlpReceiver) fetch(ctx context.Context) (*fetched, error) {
	f := &fetched{batch: r.codec.newBatch()}
	msg, err := r.reader.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	r.decode(f, msg)
	wait, cancel := context.WithTimeout(ctx, r.cfg.MaxBatchWait)
	defer cancel()
	for f.batch.items() < r.cfg.MaxBatchItems {
		msg, err := r.reader.FetchMessage(wait)
		if err != nil {
			break // the wait is over (or the reader failed: next fetch reports it)
		}
		r.decode(f, msg)
	}
	r.metrics.KafkaLag.WithLabelValues(r.topic).Set(float64(r.reader.Stats().Lag))
	return f, nil
}

func (r *otlpReceiver) decode(f *fetched, msg kafka.Message) {
	f.msgs = append(f.msgs, msg)
	r.metrics.KafkaConsumed.WithLabelValues(r.topic).Inc()
	if err := f.batch.add(msg.Value); err != nil {
		f.malformed++
		r.metrics.KafkaMalformed.WithLabelValues(r.topic).Inc()
		r.logger.Error("skipping Kafka message that is not valid OTLP",
			"partition", msg.Partition, "offset", msg.Offset, "bytes", len(msg.Value), "err", err)
	}
}

func (r *otlpReceiver) writeLoop(in <-chan *fetched) {
	for f := range in {
		select {
		case <-r.stopping.Done():
			return // not written, not committed: delivered again later
		default:
		}
		if !r.write(f) {
			return
		}
		r.commit(f.msgs)
	}
}

// write hands the batch to the pipeline until it succeeds, retrying with
// backoff. It returns false if shutdown came first.
func (r *otlpReceiver) write(f *fetched) bool {
	n := f.batch.items()
	if n == 0 {
		return true // only malformed messages: commit past them
	}
	signal := r.codec.signal()
	r.metrics.Received.WithLabelValues(signal).Add(float64(n))
	// Retried until it succeeds or shutdown begins: no time limit, the
	// store comes back and Kafka holds the data meanwhile.
	_, err := backoff.Retry(r.stopping, func() (struct{}, error) {
		// The attempt is not cancelled as shutdown begins, so a write in
		// flight completes and gets committed; only one still stuck after
		// shutdownGrace is.
		err := f.batch.consume(r.writeCtx)
		if err != nil && consumererror.IsPermanent(err) {
			r.metrics.Refused.WithLabelValues(signal, obs.ReasonInvalid).Add(float64(n))
			r.logger.Error("pipeline refused a batch for good; committing past it", "items", n, "err", err)
			return struct{}{}, nil
		}
		return struct{}{}, err
	},
		backoff.WithBackOff(r.backOff()),
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, wait time.Duration) {
			r.logger.Warn("writing batch failed; retrying, not committing", "items", n, "backoff", wait, "err", err)
		}))
	return err == nil
}

func (r *otlpReceiver) commit(msgs []kafka.Message) {
	// A failed commit is retried a few times; if it still fails, the
	// messages come again after a rebalance or restart, which stores
	// absorb (at-least-once).
	_, err := backoff.Retry(r.stopping, func() (struct{}, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := r.reader.CommitMessages(ctx, msgs...)
		if err != nil {
			r.metrics.KafkaCommitFailures.WithLabelValues(r.topic).Inc()
		}
		return struct{}{}, err
	},
		backoff.WithBackOff(r.backOff()),
		backoff.WithMaxTries(5),
		backoff.WithMaxElapsedTime(0))
	switch {
	case err == nil:
		r.metrics.KafkaCommitted.WithLabelValues(r.topic).Add(float64(len(msgs)))
	case r.stopping.Err() == nil:
		r.logger.Error("commit failed; the messages will be delivered again", "messages", len(msgs), "err", err)
	}
}

type metricsCodec struct{ next consumer.Metrics }

func (*metricsCodec) signal() string    { return obs.SignalMetrics }
func (c *metricsCodec) newBatch() batch { return &metricsBatch{next: c.next, md: pmetric.NewMetrics()} }

type metricsBatch struct {
	next consumer.Metrics
	md   pmetric.Metrics
	n    int
	u    pmetric.ProtoUnmarshaler
}

func (b *metricsBatch) add(v []byte) error {
	md, err := b.u.UnmarshalMetrics(v)
	if err != nil {
		return err
	}
	b.n += md.DataPointCount()
	md.ResourceMetrics().MoveAndAppendTo(b.md.ResourceMetrics())
	return nil
}
func (b *metricsBatch) items() int                        { return b.n }
func (b *metricsBatch) consume(ctx context.Context) error { return b.next.ConsumeMetrics(ctx, b.md) }

type logsCodec struct{ next consumer.Logs }

func (*logsCodec) signal() string    { return obs.SignalLogs }
func (c *logsCodec) newBatch() batch { return &logsBatch{next: c.next, ld: plog.NewLogs()} }

type logsBatch struct {
	next consumer.Logs
	ld   plog.Logs
	n    int
	u    plog.ProtoUnmarshaler
}

func (b *logsBatch) add(v []byte) error {
	ld, err := b.u.UnmarshalLogs(v)
	if err != nil {
		return err
	}
	b.n += ld.LogRecordCount()
	ld.ResourceLogs().MoveAndAppendTo(b.ld.ResourceLogs())
	return nil
}
func (b *logsBatch) items() int                        { return b.n }
func (b *logsBatch) consume(ctx context.Context) error { return b.next.ConsumeLogs(ctx, b.ld) }

type tracesCodec struct{ next consumer.Traces }

func (*tracesCodec) signal() string    { return obs.SignalSpans }
func (c *tracesCodec) newBatch() batch { return &tracesBatch{next: c.next, td: ptrace.NewTraces()} }

type tracesBatch struct {
	next consumer.Traces
	td   ptrace.Traces
	n    int
	u    ptrace.ProtoUnmarshaler
}

func (b *tracesBatch) add(v []byte) error {
	td, err := b.u.UnmarshalTraces(v)
	if err != nil {
		return err
	}
	b.n += td.SpanCount()
	td.ResourceSpans().MoveAndAppendTo(b.td.ResourceSpans())
	return nil
}
func (b *tracesBatch) items() int                        { return b.n }
func (b *tracesBatch) consume(ctx context.Context) error { return b.next.ConsumeTraces(ctx, b.td) }
