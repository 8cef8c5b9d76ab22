package auth

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
)

// countingEvents counts reads of the token events and can hold them until
// released, to stand for a slow event store.
type countingEvents struct {
	storage.EventStore
	reads atomic.Int64

	mu      sync.Mutex
	hold    chan struct{} // when set, reads wait for it to close
	entered chan struct{} // gets a value as each read begins
}

func (e *countingEvents) QueryEvents(ctx context.Context, q storage.EventQuery) ([]storage.Event, error) {
	e.reads.Add(1)
	e.mu.Lock()
	hold, entered := e.hold, e.entered
	e.mu.Unlock()
	if entered != nil {
		entered <- struct{}{}
	}
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return e.EventStore.QueryEvents(ctx, q)
}

func (e *countingEvents) holdReads() (entered chan struct{}, release func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hold, e.entered = make(chan struct{}), make(chan struct{}, 100)
	hold := e.hold
	return e.entered, func() {
		e.mu.Lock()
		e.hold, e.entered = nil, nil
		e.mu.Unlock()
		close(hold)
	}
}

func TestUnknownTokenIDsDoNotEachReadTheStore(t *testing.T) {
	ctx := context.Background()
	events := &countingEvents{EventStore: newEvents(t)}
	clock := testutil.NewClock(testutil.Epoch)
	s := NewTokenStore(events, nil)
	s.now = clock.Now
	good, _, err := s.Create(ctx, "grafana", []Scope{ScopeRead}, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, good); err != nil {
		t.Fatal(err)
	}
	before := events.reads.Load()
	for i := range 200 {
		_, err := s.Authenticate(ctx, fmt.Sprintf("aiops_guess%03d_secret", i))
		if !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("unknown id: %v", err)
		}
	}
	if n := events.reads.Load() - before; n > 1 {
		t.Errorf("200 unknown token ids within one retry interval read the event store %d times, want at most 1", n)
	}

	// A token another replica made is found once the retry interval has
	// passed, before the periodic refresh.
	other := NewTokenStore(events.EventStore, nil)
	other.now = clock.Now
	made, _, err := other.Create(ctx, "made elsewhere", []Scope{ScopeRead}, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	clock.Add(s.minRetry)
	if _, err := s.Authenticate(ctx, made); err != nil {
		t.Errorf("token made by another replica, after the retry interval: %v", err)
	}
}

// TestSlowTokenReadsHoldUpNoGoodToken: while a read of the event store is
// under way (forced by an unknown id, or the periodic refresh), requests
// with a known token are answered from memory.
func TestSlowTokenReadsHoldUpNoGoodToken(t *testing.T) {
	ctx := context.Background()
	events := &countingEvents{EventStore: newEvents(t)}
	clock := testutil.NewClock(testutil.Epoch)
	s := NewTokenStore(events, nil)
	s.now = clock.Now
	good, _, err := s.Create(ctx, "grafana", []Scope{ScopeRead}, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, good); err != nil {
		t.Fatal(err)
	}

	for _, stale := range []bool{false, true} {
		clock.Add(s.refresh / 2)
		if stale {
			clock.Add(s.refresh)
		}
		entered, release := events.holdReads()
		attacker := make(chan error, 1)
		go func() {
			_, err := s.Authenticate(ctx, "aiops_nosuch_secret")
			attacker <- err
		}()
		<-entered // the attacker's read is under way and held
		if _, err := s.Authenticate(ctx, good); err != nil {
			t.Errorf("stale=%v: good token while a read is held: %v", stale, err)
		}
		release()
		if err := <-attacker; !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("stale=%v: unknown id: %v", stale, err)
		}
	}
}
