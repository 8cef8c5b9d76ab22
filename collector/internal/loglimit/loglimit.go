// Package loglimit keeps repeated log lines to one a minute per key,
// counting those left out: the collector framework logs one line per
// refused request or queue item, and on a full disk thousands a minute.
package loglimit

import (
	"sync"
	"time"
)

// Every is how often one key's line is logged at most.
const Every = time.Minute

// maxKeys bounds the keys a Limiter remembers.
const maxKeys = 4096

// Limiter counts, per key, the lines left out since the last one logged.
type Limiter struct {
	now func() time.Time

	mu   sync.Mutex
	last map[string]*line
}

type line struct {
	at       time.Time
	unlogged int
}

// New returns a Limiter on the clock now.
func New(now func() time.Time) *Limiter {
	return &Limiter{now: now, last: map[string]*line{}}
}

// Allow reports whether the line keyed key is logged now, and how many
// were left out before it.
func (l *Limiter) Allow(key string) (unlogged int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if ln := l.last[key]; ln != nil && now.Sub(ln.at) < Every {
		ln.unlogged++
		return 0, false
	}
	if ln := l.last[key]; ln != nil {
		unlogged = ln.unlogged
	}
	// Keys are components times the messages the framework writes, a
	// fixed set; should a message carry data after all, forgetting the
	// lines keeps the map small.
	if len(l.last) >= maxKeys {
		clear(l.last)
	}
	l.last[key] = &line{at: now}
	return unlogged, true
}
