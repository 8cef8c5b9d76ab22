package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/lease"
	"github.com/aiops-dev/aiops/remediation"
	"github.com/aiops-dev/aiops/storage"
)

// haNode is this replica's part in an HA pair (ha.lease): the election
// of the replica that writes incidents and runs remediation, and the
// heartbeats that tell which replicas are alive, over which the
// analyzer's series are shared out.
type haNode struct {
	members *lease.StoreElector
	elector lease.Elector
	kafka   bool
	logger  *slog.Logger
	leader  prometheus.Gauge
	term    prometheus.Gauge

	// Set once built; they start as followers (Standby).
	inc *incident.Manager
	rem *remediation.Remediation
	// termed run during each term alone, after incidents and remediation
	// lead: the Slack notifier and the approval requests, which post
	// what the lease holder writes, once.
	termed []component
}

func newHANode(cfg HAConfig, store storage.Store, logger *slog.Logger, reg prometheus.Registerer) (*haNode, error) {
	ls, ok := store.(lease.Store)
	if !ok {
		return nil, errors.New("ha.lease: the store keeps no lease heartbeats (storage.backend must be clickhouse)")
	}
	logger = logger.With("component", "ha")
	id, err := replicaID(cfg.ID)
	if err != nil {
		return nil, err
	}
	se, err := lease.NewStore(cfg.Store, ls, id, logger)
	if err != nil {
		return nil, err
	}
	h := &haNode{members: se, elector: se, logger: logger,
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "aiops_ha_leader", Help: "1 while this replica holds the lease: it writes incidents and runs remediation."}),
		term:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "aiops_ha_term", Help: "The term (epoch) of the lease this replica last held."}),
	}
	if cfg.Lease == lease.BackendKafka {
		ke, err := lease.NewKafka(cfg.Kafka, logger)
		if err != nil {
			return nil, err
		}
		h.elector, h.kafka = ke, true
	}
	for _, c := range []prometheus.Collector{h.leader, h.term} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("ha: register metrics: %w", err)
		}
	}
	logger.Info("Replica of an HA pair", "id", id, "lease", cfg.Lease)
	return h, nil
}

// replicaID is the configured name (default the host name), this
// process's id and a random suffix: a restarted replica is a new
// candidate, whose old heartbeats are not taken for its own.
func replicaID(name string) (string, error) {
	if name == "" {
		var err error
		if name, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("ha.id: not set, and no host name: %w", err)
		}
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s-%d-%s", name, os.Getpid(), hex.EncodeToString(b[:])), nil
}

// owns reports whether this replica analyzes the series.
func (h *haNode) owns(ls labels.Labels) bool { return h.members.Owns(ls.Hash()) }

// Run takes part in the election until ctx is done.
func (h *haNode) Run(ctx context.Context) error {
	if h.kafka {
		go func() {
			if err := h.members.RunMember(ctx); err != nil {
				h.logger.Error("Heartbeats stopped", "err", err)
			}
		}()
	}
	return h.elector.Run(ctx, h.lead)
}

// lead runs for one term: incidents first (read again from the store),
// then, side by side for the term, remediation, which follows them, and
// the Slack notifier and approval requests (termed).
func (h *haNode) lead(ctx context.Context, t lease.Term) {
	h.leader.Set(1)
	h.term.Set(float64(t.Epoch))
	defer h.leader.Set(0)
	h.logger.Info("This replica holds the lease: it writes incidents and runs remediation", "term", t.Epoch)
	if err := h.inc.Lead(ctx); err != nil {
		return
	}
	// What the last holder wrote is read before any of them starts:
	// the approval requests ask the notifier what was posted.
	if !h.reload(ctx) {
		return
	}
	// The next term's run starts only once these are done: the same
	// notifier must not run twice at once.
	var wg sync.WaitGroup
	for _, c := range h.termed {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h.runTermed(ctx, c)
		}()
	}
	if h.rem != nil {
		if err := h.rem.Lead(ctx); err != nil && ctx.Err() == nil {
			h.logger.Error("Remediation stopped", "err", err)
		}
	}
	<-ctx.Done()
	wg.Wait()
	h.logger.Info("The lease is gone: following", "term", t.Epoch)
}

// runTermed runs c for the term; one that fails (the store cannot take
// the notifier's journal) starts again, from its state read anew, after
// a pause.
func (h *haNode) runTermed(ctx context.Context, c component) {
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		err := c.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		h.logger.Error("Stopped during the term; starting again", "component", fmt.Sprintf("%T", c), "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		// Never on a state read halfway: it would post again.
		if !h.reloadOne(ctx, c) {
			return
		}
	}
}

// reloader is a termed component that reads its state again at the
// start of each term (*slacknotify.Notifier).
type reloader interface{ Reload() error }

// reload reloads the termed components, retrying while the store
// fails, until ctx is done (false).
func (h *haNode) reload(ctx context.Context) bool {
	for _, c := range h.termed {
		if !h.reloadOne(ctx, c) {
			return false
		}
	}
	return true
}

func (h *haNode) reloadOne(ctx context.Context, c component) bool {
	r, ok := c.(reloader)
	if !ok {
		return ctx.Err() == nil
	}
	for wait := time.Second; ; wait = min(2*wait, 30*time.Second) {
		err := r.Reload()
		if err == nil {
			return ctx.Err() == nil
		}
		h.logger.Error("Reading the state of the term failed; retrying", "component", fmt.Sprintf("%T", c), "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
	}
}
