package auth

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a request is refused: the reason label of
// aiops_auth_failures_total, and the reason of its audit record.
const (
	// ReasonMissing: the request carried no credential.
	ReasonMissing = "missing"
	// ReasonUnknown: no token, key or issuer accepts the credential.
	ReasonUnknown = "unknown"
	// ReasonInvalid: a JWT that fails verification (signature, issuer,
	// audience, algorithm).
	ReasonInvalid = "invalid"
	// ReasonExpired and ReasonRevoked: a token that was good once.
	ReasonExpired = "expired"
	ReasonRevoked = "revoked"
	// ReasonForbidden: a good credential without the scope the request
	// needs.
	ReasonForbidden = "forbidden"
	// ReasonUnavailable: the credential could not be checked (the event
	// store or the JWKS endpoint is unreachable).
	ReasonUnavailable = "unavailable"

	// reasonNotMine: an authenticator does not recognise the credential's
	// form (a JWT given to the API token store); a chain reports another
	// authenticator's reason when it has one.
	reasonNotMine = "not_mine"
)

// refusal is an error wrapping ErrUnauthenticated with its reason.
type refusal struct {
	reason string
	msg    string
}

func (r *refusal) Error() string        { return ErrUnauthenticated.Error() + ": " + r.msg }
func (r *refusal) Is(target error) bool { return target == ErrUnauthenticated }

// refuse returns an error wrapping ErrUnauthenticated, for reason.
func refuse(reason, format string, args ...any) error {
	return &refusal{reason: reason, msg: fmt.Sprintf(format, args...)}
}

// ReasonOf returns why err refused a credential: one of the Reason
// constants, ReasonUnknown for other errors wrapping ErrUnauthenticated,
// and ReasonUnavailable for errors that do not.
func ReasonOf(err error) string {
	var r *refusal
	switch {
	case errors.As(err, &r):
		if r.reason == reasonNotMine {
			return ReasonUnknown
		}
		return r.reason
	case errors.Is(err, ErrUnauthenticated):
		return ReasonUnknown
	}
	return ReasonUnavailable
}

func notMine(err error) bool {
	var r *refusal
	return errors.As(err, &r) && r.reason == reasonNotMine
}

// NewFailureCounter returns aiops_auth_failures_total{reason}, registered
// on reg when it is not nil, for Middleware.Failures.
func NewFailureCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "aiops_auth_failures_total",
		Help: "Requests refused by authentication or authorization, by reason (missing, unknown, invalid, expired, revoked, forbidden, unavailable).",
	}, []string{"reason"})
	for _, r := range []string{ReasonMissing, ReasonUnknown, ReasonInvalid, ReasonExpired, ReasonRevoked, ReasonForbidden, ReasonUnavailable} {
		c.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

// sourceLimiter lets one event per interval through for each source (a
// client address), so that a client guessing tokens leaves one log line
// and one audit record a minute, not one per guess. It remembers at most
// maxSources sources; beyond that, new ones share one slot.
type sourceLimiter struct {
	interval   time.Duration
	maxSources int
	now        func() time.Time

	mu   sync.Mutex
	seen map[string]*sourceState
}

type sourceState struct {
	last       time.Time
	suppressed int
}

const overflowSource = "(other sources)"

func newSourceLimiter(interval time.Duration, maxSources int) *sourceLimiter {
	return &sourceLimiter{interval: interval, maxSources: maxSources, now: time.Now, seen: map[string]*sourceState{}}
}

// allow reports whether an event from source may be logged now and how
// many were suppressed since the last one that was.
func (l *sourceLimiter) allow(source string) (ok bool, suppressed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	st, found := l.seen[source]
	if !found {
		if len(l.seen) >= l.maxSources {
			l.forgetOld(now)
		}
		if len(l.seen) >= l.maxSources {
			source = overflowSource
			st, found = l.seen[source]
		}
		if !found {
			st = &sourceState{}
			l.seen[source] = st
		}
	}
	if !st.last.IsZero() && now.Sub(st.last) < l.interval {
		st.suppressed++
		return false, 0
	}
	suppressed = st.suppressed
	st.last, st.suppressed = now, 0
	return true, suppressed
}

// forgetOld drops sources quiet for an interval; their suppressed counts
// were reported, or were zero.
func (l *sourceLimiter) forgetOld(now time.Time) {
	for k, st := range l.seen {
		if now.Sub(st.last) >= l.interval && st.suppressed == 0 {
			delete(l.seen, k)
		}
	}
}

// sourceOf is the client address of r without its port. Forwarded headers
// are not trusted: a client chooses them.
func sourceOf(remoteAddr string) string {
	if host, _, err := net.SplitHostPort(remoteAddr); err == nil {
		return host
	}
	return remoteAddr
}
