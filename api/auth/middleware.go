package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Policy tells which scope a request needs. public requests (health
// probes) need no credential at all.
type Policy func(r *http.Request) (need Scope, public bool)

// ErrorWriter writes an authentication or authorization error in the
// format of the API the request was for.
type ErrorWriter func(w http.ResponseWriter, r *http.Request, status int, msg string)

// Middleware authenticates requests, enforces the policy's scope and
// audits every request that needs write or admin scope, and every refused
// one.
type Middleware struct {
	Auth       Authenticator
	Policy     Policy
	Audit      Auditor // may be nil
	WriteError ErrorWriter
	Logger     *slog.Logger
	// Failures counts refused requests by reason (NewFailureCounter); may
	// be nil.
	Failures *prometheus.CounterVec

	// Refusals are logged and audited at most once per failureInterval
	// per client address, with the number left out since.
	limitOnce sync.Once
	limit     *sourceLimiter
}

// failureInterval is how often one client's refused requests are logged
// and audited at most; failureSources is how many clients are told apart.
const (
	failureInterval = time.Minute
	failureSources  = 10_000
)

// Wrap returns next guarded by the middleware.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	m.limitOnce.Do(func() { m.limit = newSourceLimiter(failureInterval, failureSources) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need, public := m.Policy(r)
		if public {
			next.ServeHTTP(w, r)
			return
		}
		p, err := m.Auth.Authenticate(r.Context(), Credential(r))
		if err != nil {
			if !errors.Is(err, ErrUnauthenticated) {
				// The reason (e.g. the JWKS URL that does not answer) is
				// for the operator, not for whoever knocks.
				m.refused(r, ReasonUnavailable, "", http.StatusServiceUnavailable, err)
				m.WriteError(w, r, http.StatusServiceUnavailable, "authentication is unavailable; try again later")
				return
			}
			m.refused(r, ReasonOf(err), "", http.StatusUnauthorized, err)
			w.Header().Set("WWW-Authenticate", `Bearer realm="aiops"`)
			m.WriteError(w, r, http.StatusUnauthorized, err.Error())
			return
		}
		if !p.Has(need) {
			msg := "credential " + p.ID + " lacks the " + string(need) + " scope"
			m.refused(r, ReasonForbidden, p.ID, http.StatusForbidden, errors.New(msg))
			m.WriteError(w, r, http.StatusForbidden, msg)
			return
		}
		r = r.WithContext(WithPrincipal(r.Context(), p))
		if m.Audit == nil || need == ScopeRead {
			next.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		next.ServeHTTP(rec, r)
		m.Audit.Audit(r.Context(), AuditRecord{
			Time:      start.UTC(),
			Principal: p.ID,
			Name:      p.Name,
			Method:    r.Method,
			Path:      r.URL.Path,
			Status:    rec.status,
			Remote:    r.RemoteAddr,
		})
	})
}

// refused counts a refused request and, unless its client was logged
// less than failureInterval ago, logs and audits it.
func (m *Middleware) refused(r *http.Request, reason, principal string, status int, err error) {
	if m.Failures != nil {
		m.Failures.WithLabelValues(reason).Inc()
	}
	source := sourceOf(r.RemoteAddr)
	ok, suppressed := m.limit.allow(source)
	if !ok {
		return
	}
	level := slog.LevelWarn
	if reason == ReasonUnavailable {
		level = slog.LevelError
	}
	m.Logger.Log(r.Context(), level, "Request refused", "reason", reason, "status", status,
		"remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "principal", principal,
		"refused_before_unlogged", suppressed, "err", err)
	if m.Audit != nil {
		m.Audit.Audit(r.Context(), AuditRecord{
			Time:       time.Now().UTC(),
			Principal:  principal,
			Method:     r.Method,
			Path:       r.URL.Path,
			Status:     status,
			Remote:     r.RemoteAddr,
			Reason:     reason,
			Unrecorded: suppressed,
		})
	}
}

// Credential extracts the credential from a request: a bearer token, or
// the password of basic auth (the user name is ignored), which is what
// Grafana data sources and Prometheus clients can send.
func Credential(r *http.Request) string {
	h := r.Header.Get("Authorization")
	scheme, value, ok := strings.Cut(h, " ")
	if !ok {
		return ""
	}
	switch strings.ToLower(scheme) {
	case "bearer":
		return strings.TrimSpace(value)
	case "basic":
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(value))
		if err != nil {
			return ""
		}
		user, pass, _ := strings.Cut(string(b), ":")
		if pass == "" {
			return user
		}
		return pass
	}
	return ""
}

type statusRecorder struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// JSONError writes {"status":"error","errorType":…,"error":…}, the error
// shape of Prometheus's HTTP API, which Prometheus clients understand.
func JSONError(w http.ResponseWriter, _ *http.Request, status int, msg string) {
	errType := "unauthorized"
	switch status {
	case http.StatusForbidden:
		errType = "forbidden"
	case http.StatusServiceUnavailable:
		errType = "unavailable"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"status": "error", "errorType": errType, "error": msg})
}
