package action

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"
)

// BreakerConfig tunes the circuit breakers.
type BreakerConfig struct {
	// Failures is how many consecutive failures open a breaker. Default 5.
	Failures int
	// OpenFor is how long an open breaker refuses calls before letting
	// one through to test the driver again. Default 5m.
	OpenFor time.Duration
	Logger  *slog.Logger
}

// ErrBreakerOpen is a call refused because its driver kept failing on
// that target.
var ErrBreakerOpen = errors.New("circuit breaker open")

// Breakers protects a driver with one circuit breaker (sony/gobreaker)
// per driver and target: a driver that keeps failing on a target stops
// being called for a while, so a broken API is not hammered by every run
// and every retry. Refusals (ErrPermanent: the system answered "no")
// count as answers, not failures.
type Breakers struct {
	next Driver
	cfg  BreakerConfig

	mu sync.Mutex
	cb map[string]*gobreaker.CircuitBreaker[Result]
}

// NewBreakers wraps next.
func NewBreakers(next Driver, c BreakerConfig) *Breakers {
	if c.Failures <= 0 {
		c.Failures = 5
	}
	if c.OpenFor <= 0 {
		c.OpenFor = 5 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return &Breakers{next: next, cfg: c, cb: map[string]*gobreaker.CircuitBreaker[Result]{}}
}

func breakerKey(c Call) string {
	keys := make([]string, 0, len(c.Target))
	for k := range c.Target {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + c.Target[k]
	}
	return DriverOf(c.Action) + "{" + strings.Join(parts, ",") + "}"
}

func (b *Breakers) breaker(key string) *gobreaker.CircuitBreaker[Result] {
	b.mu.Lock()
	defer b.mu.Unlock()
	cb := b.cb[key]
	if cb == nil {
		failures := uint32(b.cfg.Failures)
		cb = gobreaker.NewCircuitBreaker[Result](gobreaker.Settings{
			Name:        key,
			MaxRequests: 1,
			Timeout:     b.cfg.OpenFor,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
			IsSuccessful: func(err error) bool {
				// A refusal or a cancelled call says nothing about the
				// driver's health.
				return err == nil || errors.Is(err, ErrPermanent) || errors.Is(err, context.Canceled)
			},
			OnStateChange: func(name string, from, to gobreaker.State) {
				b.cfg.Logger.Warn("Remediation circuit breaker changed state", "breaker", name, "from", from.String(), "to", to.String())
			},
		})
		b.cb[key] = cb
	}
	return cb
}

// Do implements Driver.
func (b *Breakers) Do(ctx context.Context, c Call) (Result, error) {
	key := breakerKey(c)
	res, err := b.breaker(key).Execute(func() (Result, error) { return b.next.Do(ctx, c) })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return Result{}, fmt.Errorf("%w: %s failed %d times in a row; calls resume after %s", ErrBreakerOpen, key, b.cfg.Failures, b.cfg.OpenFor)
	}
	return res, err
}

// Open lists the breakers that are open now.
func (b *Breakers) Open() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for k, cb := range b.cb {
		if cb.State() == gobreaker.StateOpen {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}
