package engine_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/api/promapi"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/remediation/engine"
)

// TestStandbyTakesOver: a standby engine beside the acting one refuses
// to approve; when the acting one is gone and the standby leads, it has
// the pending approval (its deadline too) from the store, runs it once
// approved, and does not run the trigger again.
func TestStandbyTakesOver(t *testing.T) {
	h := newHarness(t, approval)
	h.fire("g1", errorAlert("api-1"), t0)
	x := h.waitState(h.waitExecutions(1)[0].ID, engine.StatePendingApproval, 0)

	standby := h.standby()
	alice := engine.Principal{ID: "alice"}
	if _, err := standby.Approve(context.Background(), x.ID, alice, ""); !errors.Is(err, engine.ErrNotLeader) {
		t.Fatalf("a standby approved: %v", err)
	}

	h.stop() // the acting replica is gone
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); standby.Lead(ctx) }()
	defer func() { cancel(); <-done }()
	testutil.WaitFor(t, "the standby leads", 10*time.Second, standby.Leading)
	h.eng = standby
	y := h.waitState(x.ID, engine.StatePendingApproval, 0)
	if !y.Approval.Deadline.Equal(x.Approval.Deadline) {
		t.Fatalf("deadline %s, was %s", y.Approval.Deadline, x.Approval.Deadline)
	}
	if _, err := standby.Approve(context.Background(), x.ID, alice, ""); err != nil {
		t.Fatal(err)
	}
	h.waitState(x.ID, engine.StateSucceeded, 0)
	if n := h.drv.count(); n != 1 {
		t.Fatalf("%d actions, want the approved one", n)
	}
	if xs := standby.List(engine.Filter{}); len(xs) != 1 {
		t.Fatalf("%d executions: the trigger ran again on taking over", len(xs))
	}

	// The term ends: writes stop at once.
	cancel()
	<-done
	if _, err := standby.Engage(context.Background(), alice, "stop"); !errors.Is(err, engine.ErrNotLeader) {
		t.Errorf("engaged the kill switch after the term: %v", err)
	}
}

// TestStandbyRefusesAsFollower: a follower that started before an
// execution existed refuses a decision on it as a follower, not as
// "not found". Found from outside: Approve pressed in Slack against the
// follower of an HA pair answered "not found: execution ex-…", which
// reads as if the run did not exist.
func TestStandbyRefusesAsFollower(t *testing.T) {
	h := newHarness(t, approval)
	standby := h.standby()
	h.fire("g1", errorAlert("api-1"), t0)
	x := h.waitState(h.waitExecutions(1)[0].ID, engine.StatePendingApproval, 0)
	ctx, alice := context.Background(), engine.Principal{ID: "alice"}
	if _, err := standby.Approve(ctx, x.ID, alice, ""); !errors.Is(err, engine.ErrNotLeader) {
		t.Errorf("approve on the follower: %v, want ErrNotLeader", err)
	}
	if _, err := standby.Deny(ctx, x.ID, alice, "no"); !errors.Is(err, engine.ErrNotLeader) {
		t.Errorf("deny on the follower: %v, want ErrNotLeader", err)
	}
	if _, err := standby.Cancel(ctx, x.ID, alice, "stop"); !errors.Is(err, engine.ErrNotLeader) {
		t.Errorf("cancel on the follower: %v, want ErrNotLeader", err)
	}
}

// expiring is a term's context whose Err reports the end of the term
// before Done is closed, as the lease's does when its deadline passed
// while the process was paused.
type expiring struct {
	context.Context
	over atomic.Bool
}

func (c *expiring) Err() error {
	if c.over.Load() {
		return context.DeadlineExceeded
	}
	return c.Context.Err()
}

// TestLeaderStopsWritingAtTheTermsDeadline: once the term's context
// reports the term over, the engine writes nothing, even before the
// context is cancelled. Found from outside: a leader paused with SIGSTOP
// and resumed after the other replica took over recorded a Slack
// approval in the store.
func TestLeaderStopsWritingAtTheTermsDeadline(t *testing.T) {
	h := newHarness(t, approval)
	h.fire("g1", errorAlert("api-1"), t0)
	x := h.waitState(h.waitExecutions(1)[0].ID, engine.StatePendingApproval, 0)
	standby := h.standby()
	h.stop()
	base, cancel := context.WithCancel(context.Background())
	term := &expiring{Context: base}
	done := make(chan struct{})
	go func() { defer close(done); standby.Lead(term) }()
	defer func() { cancel(); <-done }()
	testutil.WaitFor(t, "the standby leads", 10*time.Second, standby.Leading)
	term.over.Store(true)
	if _, err := standby.Approve(context.Background(), x.ID, engine.Principal{ID: "alice"}, ""); !errors.Is(err, engine.ErrNotLeader) {
		t.Fatalf("approved after the term's deadline: %v", err)
	}
	if n := h.drv.count(); n != 0 {
		t.Fatalf("%d actions after the term's deadline", n)
	}
}

// standby starts a second engine on the harness's store, in standby, as
// the other replica of an HA pair.
func (h *harness) standby() *engine.Engine {
	h.t.Helper()
	pe, err := promapi.NewEngine(promapi.DefaultConfig(), nil, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { pe.Close() })
	cfg := h.cfg
	cfg.Standby = true
	standby, err := engine.New(context.Background(), cfg, engine.Deps{
		Events: h.events, Query: engine.PromQuerier{Engine: pe, Queryable: h.store}, Actions: h.drv,
		Incidents: h.inc, Feed: h.inc.Feed(incident.FeedOptions{PollInterval: 20 * time.Millisecond}), FeedHead: h.inc.FeedHead,
		Clock: h.clock, Logger: testutil.Logger(h.t),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return standby
}
