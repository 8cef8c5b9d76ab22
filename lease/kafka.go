package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
)

// KafkaConfig configures a KafkaElector.
type KafkaConfig struct {
	// Brokers are the Kafka bootstrap brokers.
	Brokers []string `yaml:"brokers"`
	// Topic has one partition (more are ignored); create it with one,
	// or let the brokers create it on first use.
	Topic string `yaml:"topic"`
	// Group is the consumer group of the replicas that compete.
	Group string `yaml:"group"`
	// SessionTimeout is how long a silent holder keeps the lease: the
	// upper bound of a dead holder's replacement, less the time to
	// rebalance.
	SessionTimeout time.Duration `yaml:"session_timeout"`
}

// Validate reports the first invalid key, under prefix (e.g.
// "ha.kafka").
func (c KafkaConfig) Validate(prefix string) error {
	switch {
	case len(c.Brokers) == 0:
		return fmt.Errorf("%s.brokers: must name at least one broker", prefix)
	case c.Topic == "":
		return fmt.Errorf("%s.topic: must not be empty", prefix)
	case c.Group == "":
		return fmt.Errorf("%s.group: must not be empty", prefix)
	case c.SessionTimeout < time.Second:
		return fmt.Errorf("%s.session_timeout: must be at least 1s, got %s", prefix, c.SessionTimeout)
	}
	return nil
}

// KafkaElector takes part in the election for one replica through a
// Kafka consumer group on a topic of one partition: the member assigned
// the partition holds the lease, and a term's epoch is the group's
// generation id.
type KafkaElector struct {
	cfg    KafkaConfig
	logger *slog.Logger
}

var _ Elector = (*KafkaElector)(nil)

// NewKafka returns an elector; Run takes part.
func NewKafka(cfg KafkaConfig, logger *slog.Logger) (*KafkaElector, error) {
	if err := cfg.Validate("lease.kafka"); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &KafkaElector{cfg: cfg, logger: logger}, nil
}

// Run implements Elector. A lead that returns early leaves the lease
// held, and unused, until the group next rebalances.
func (e *KafkaElector) Run(ctx context.Context, lead func(ctx context.Context, t Term)) error {
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                e.cfg.Group,
		Brokers:           e.cfg.Brokers,
		Topics:            []string{e.cfg.Topic},
		SessionTimeout:    e.cfg.SessionTimeout,
		RebalanceTimeout:  e.cfg.SessionTimeout,
		HeartbeatInterval: max(e.cfg.SessionTimeout/6, 100*time.Millisecond),
		JoinGroupBackoff:  max(e.cfg.SessionTimeout/6, 100*time.Millisecond),
		// Every replica re-checks the topic's partitions on its own; one
		// partition never changes.
		WatchPartitionChanges: false,
		Logger:                nil,
		ErrorLogger:           kafka.LoggerFunc(func(msg string, args ...any) { e.logger.Debug(fmt.Sprintf(msg, args...)) }),
	})
	if err != nil {
		return fmt.Errorf("lease: join group %s: %w", e.cfg.Group, err)
	}
	defer group.Close()
	// Closing the group ends the current generation, and with it a term
	// in progress, and leaves the group, so that another replica takes
	// the lease at once rather than after the session timeout.
	stop := context.AfterFunc(ctx, func() { group.Close() })
	defer stop()
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, kafka.ErrGroupClosed) {
				return fmt.Errorf("lease: group %s closed", e.cfg.Group)
			}
			e.logger.Warn("Lease election: joining the group failed; retrying", "group", e.cfg.Group, "err", err)
			continue
		}
		if !holds(gen, e.cfg.Topic) {
			continue // a follower: wait for the next generation
		}
		term := Term{Epoch: int64(gen.ID), Holder: gen.MemberID}
		e.logger.Info("Lease acquired", "group", e.cfg.Group, "epoch", term.Epoch)
		done := make(chan struct{})
		gen.Start(func(termCtx context.Context) {
			defer close(done)
			lead(termCtx, term)
		})
		<-done
		e.logger.Info("Lease lost", "group", e.cfg.Group, "epoch", term.Epoch)
	}
}

// holds reports whether the generation assigns this member partition 0.
func holds(gen *kafka.Generation, topic string) bool {
	for _, p := range gen.Assignments[topic] {
		if p.ID == 0 {
			return true
		}
	}
	return false
}
