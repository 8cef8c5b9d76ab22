// Package testutil holds the helpers every package's tests share: waiting
// on a condition, a logger, a clock the test moves, the instants a
// time-dependent test is run at, and a buffer a process writes while the
// test reads it.
//
// It imports testing, so only _test.go files and test harnesses may
// import it; the shipped binary must not (cmd/aiops checks that).
package testutil

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// WaitFor polls cond every 20 ms until it holds, and fails the test when
// it has not within d. Tests wait on conditions, never on fixed sleeps.
func WaitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	Eventually(t, d, what, func() (bool, string) { return cond(), "" })
}

// Eventually is WaitFor for conditions that can say where they are: the
// last state cond reported is in the failure message.
func Eventually(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if state != "" {
				t.Fatalf("%s: not reached within %s; last state: %s", what, d, state)
			}
			t.Fatalf("%s: not reached within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Logger returns a logger for the code under test: warnings and errors
// to stderr, everything from debug up when AIOPS_TEST_LOG is set.
func Logger(t testing.TB) *slog.Logger {
	t.Helper()
	level := slog.LevelWarn
	if os.Getenv("AIOPS_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Discard returns a logger that drops everything.
func Discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Clock is a clock the test sets and moves; its Now can be handed to
// every component that takes a clock, and its After to those that wait
// on one. It is safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []clockWaiter
}

type clockWaiter struct {
	at time.Time
	ch chan time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Set moves the clock to t, backwards too.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	c.fire()
}

// Add moves the clock by d and returns the new time.
func (c *Clock) Add(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fire()
	return c.now
}

// After is time.After on this clock: the channel receives the clock's
// time once the clock has been moved d past now. d <= 0 fires at once.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, clockWaiter{at: c.now.Add(d), ch: ch})
	return ch
}

// Waiters is how many After channels have not fired yet.
func (c *Clock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

// fire delivers to the waiters that are due. Callers hold mu.
func (c *Clock) fire() {
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
			continue
		}
		kept = append(kept, w)
	}
	c.waiters = kept
}

// Epoch is the fixed instant tests lay their fixtures out from when the
// time does not matter to them: a Tuesday, 10:00 UTC, away from every
// day, month and year boundary.
var Epoch = time.Date(2026, time.March, 10, 10, 0, 0, 0, time.UTC)

// Instants are the times a time-dependent test runs at, to prove that it
// holds at any hour and on any date: every hour of one day (on the hour
// and a little after), the ends of a month, a year and a leap February,
// and both daylight-saving changes of Europe and the United States.
func Instants() []time.Time {
	var out []time.Time
	day := time.Date(2026, time.June, 17, 0, 0, 0, 0, time.UTC)
	for h := range 24 {
		out = append(out, day.Add(time.Duration(h)*time.Hour))
		out = append(out, day.Add(time.Duration(h)*time.Hour+37*time.Minute+13*time.Second))
	}
	out = append(out,
		time.Date(2026, time.April, 30, 23, 59, 30, 0, time.UTC),   // month end
		time.Date(2026, time.December, 31, 23, 50, 0, 0, time.UTC), // year end
		time.Date(2027, time.January, 1, 0, 0, 0, 0, time.UTC),     // year start
		time.Date(2028, time.February, 29, 23, 30, 0, 0, time.UTC), // leap day
	)
	return append(out, DSTChanges()...)
}

// DSTChanges are the instants of Instants at which the clocks of Europe
// and the United States change, for tests run in such a local zone
// (InLocalZone).
func DSTChanges() []time.Time {
	return []time.Time{
		time.Date(2026, time.March, 29, 1, 0, 0, 0, time.UTC),   // EU clocks go forward
		time.Date(2026, time.October, 25, 1, 0, 0, 0, time.UTC), // EU clocks go back
		time.Date(2026, time.March, 8, 7, 0, 0, 0, time.UTC),    // US clocks go forward
		time.Date(2026, time.November, 1, 6, 0, 0, 0, time.UTC), // US clocks go back
	}
}

// InLocalZone runs f with time.Local set to a zone that has daylight
// saving time, so code that wrongly uses local time shows it at the
// changes. It must not be used in parallel tests.
func InLocalZone(t testing.TB, name string, f func()) {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("load zone %s: %v", name, err)
	}
	old := time.Local
	time.Local = loc
	defer func() { time.Local = old }()
	f()
}

// SyncBuffer collects what a server or logger writes while the test
// reads it: a bytes.Buffer behind a lock.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
