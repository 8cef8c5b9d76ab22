package slacknotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/slack-go/slack"
)

// Sleeper waits for d or until ctx is done (returning ctx's error). Tests
// inject one that does not wait.
type Sleeper func(ctx context.Context, d time.Duration) error

func realSleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ErrUndeliverable wraps the error of a Slack call given up on: Slack
// refused it for good, or it failed Delivery.MaxAttempts times.
var ErrUndeliverable = errors.New("slack: undeliverable")

// do runs call until it succeeds, Slack refuses it for good, or it has
// failed transiently MaxAttempts times. A 429 waits for Retry-After and
// is not an attempt: Slack says when it will take the call, and the call
// is not lost for being late. It returns ctx's error, not
// ErrUndeliverable, when ctx ends first, so that the caller leaves the
// work for the next run.
func (n *Notifier) do(ctx context.Context, op string, call func(ctx context.Context) error) error {
	d := n.cfg.Delivery
	backoff := time.Duration(d.MinBackoff)
	for attempt := 1; ; {
		if err := n.termOver(); err != nil {
			// A holder paused past its term (SIGSTOP, a long GC) and
			// resumed before its election loop noticed: the next holder
			// may already have posted this, from the same journal.
			return fmt.Errorf("slack: %s not made: this replica's lease term is over: %w", op, err)
		}
		cctx, cancel := context.WithTimeout(ctx, time.Duration(d.Timeout))
		err := call(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var wait time.Duration
		if rl, ok := errors.AsType[*slack.RateLimitedError](err); ok {
			n.m.rateLimited.WithLabelValues(op).Inc()
			wait = max(rl.RetryAfter, time.Second)
			n.logger.Warn("Slack rate limit; waiting as asked", "op", op, "retry_after", rl.RetryAfter)
		} else {
			if !transient(err) || attempt >= d.MaxAttempts {
				return fmt.Errorf("%w: %s after %d attempt(s): %w", ErrUndeliverable, op, attempt, err)
			}
			attempt++
			n.m.retries.WithLabelValues(op).Inc()
			wait = backoff
			backoff = min(2*backoff, time.Duration(d.MaxBackoff))
			n.logger.Warn("Slack call failed; retrying", "op", op, "in", wait, "err", err)
		}
		if err := n.sleep(ctx, wait); err != nil {
			return err
		}
	}
}

// transient reports whether a failed Slack call may succeed if tried
// again.
func transient(err error) bool {
	var sc slack.StatusCodeError
	if errors.As(err, &sc) {
		return sc.Code >= 500 || sc.Code == http.StatusTooManyRequests || sc.Code == http.StatusRequestTimeout
	}
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		switch se.Err {
		case "ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org":
			return true
		}
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	// Anything else (a connection refused, a body that is not JSON from a
	// proxy in between) is a transport failure rather than Slack's
	// considered answer.
	return true
}

// termOver is the error of the lease's term the notifier runs in, nil
// while it lasts or without a lease.
func (n *Notifier) termOver() error {
	if t := n.term.Load(); t != nil {
		return (*t).Err()
	}
	return nil
}
