// Package lease elects one holder among the replicas of a role, so that
// what must have a single writer (incidents, remediation) has one while
// several replicas run for availability. It uses what a scaled
// deployment already has, Kafka: the replicas join one consumer group on
// a topic of one partition, and the replica that the group assigns that
// partition holds the lease. When the holder dies, the group's session
// timeout passes, the group rebalances, and another replica is assigned
// the partition: the lease moves within about the session timeout.
//
// A holder learns that it lost the lease when its generation of the
// group ends (a rebalance, or heartbeats failing for the session
// timeout). In between, e.g. across a network partition, a deposed holder
// may still act for up to the session timeout; each term carries the
// group's generation id as its epoch, increasing with every change, for
// writers that can fence on it (an event log that refuses a term's
// writes once a later epoch has written).
package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
)

// Config configures an Elector.
type Config struct {
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
// "incidents.lease").
func (c Config) Validate(prefix string) error {
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

// Term is one holding of the lease.
type Term struct {
	// Epoch is the consumer group's generation: larger for every later
	// term, whoever holds it.
	Epoch int64
	// Holder is this replica's member id in the group.
	Holder string
}

// Elector takes part in the election for one replica.
type Elector struct {
	cfg    Config
	logger *slog.Logger
}

// New returns an elector; Run takes part.
func New(cfg Config, logger *slog.Logger) (*Elector, error) {
	if err := cfg.Validate("lease"); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Elector{cfg: cfg, logger: logger}, nil
}

// Run takes part in the election until ctx is done. Whenever this
// replica is given the lease it calls lead with a context that is
// cancelled when the term ends, and waits for lead to return before it
// takes part again. lead must run until its context is done and return
// promptly then: a lead that returns early leaves the lease held, and
// unused, until the group next rebalances. Run returns nil when ctx is
// done.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context, t Term)) error {
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
