package auth

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	aiopstest "github.com/aiops-dev/aiops/internal/testutil"
)

func TestRefusalsAreCountedLoggedAndAudited(t *testing.T) {
	ctx := context.Background()
	ts := NewTokenStore(newEvents(t), nil)
	reader, readerTok, _ := ts.Create(ctx, "reader", []Scope{ScopeRead}, 0, "")
	revoked, revokedTok, _ := ts.Create(ctx, "old", []Scope{ScopeRead}, 0, "")
	if err := ts.Revoke(ctx, revokedTok.ID, "test"); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	logs := &aiopstest.SyncBuffer{}
	audit := &memAuditor{}
	m := &Middleware{
		Auth: Chain{ts},
		Policy: func(r *http.Request) (Scope, bool) {
			return map[bool]Scope{true: ScopeRead, false: ScopeWrite}[r.Method == http.MethodGet], false
		},
		Audit:      audit,
		WriteError: JSONError,
		Logger:     slog.New(slog.NewTextHandler(logs, nil)),
		Failures:   NewFailureCounter(reg),
	}
	h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	clock := aiopstest.NewClock(aiopstest.Epoch)
	m.limit.now = clock.Now
	do := func(method, remote, token string) int {
		r := httptest.NewRequest(method, "/api/v1/x", nil)
		r.RemoteAddr = remote
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}

	// A client guessing tokens: every guess counted, one line and one
	// audit record per minute.
	for range 50 {
		if code := do("GET", "203.0.113.7:40000", "aiops_guess_secret"); code != http.StatusUnauthorized {
			t.Fatalf("guess: %d", code)
		}
	}
	do("GET", "203.0.113.7:40001", "")                         // no credential
	do("GET", "203.0.113.7:40002", revoked)                    // revoked
	do("POST", "198.51.100.1:5000", reader)                    // lacks write scope
	do("GET", "198.51.100.1:5000", reader+"x")                 // wrong secret of a known id
	if code := do("GET", "192.0.2.9:1", reader); code != 200 { // granted, not counted
		t.Fatalf("reader: %d", code)
	}
	for reason, want := range map[string]float64{ReasonUnknown: 51, ReasonMissing: 1, ReasonRevoked: 1, ReasonForbidden: 1} {
		if got := testutil.ToFloat64(m.Failures.WithLabelValues(reason)); got != want {
			t.Errorf("aiops_auth_failures_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	if n := strings.Count(logs.String(), "Request refused"); n != 2 {
		t.Errorf("%d log lines for refusals from two clients within a minute, want 2:\n%s", n, logs)
	}
	if len(audit.recs) != 2 || audit.recs[0].Reason != ReasonUnknown || audit.recs[1].Reason != ReasonForbidden || audit.recs[1].Principal != readerTok.ID {
		t.Errorf("audit = %+v, want the first refusal of each client", audit.recs)
	}

	// A minute later the next refusal is logged with the number left out.
	clock.Add(time.Minute)
	do("GET", "203.0.113.7:40003", "aiops_guess2_secret")
	if n := strings.Count(logs.String(), "Request refused"); n != 3 || !strings.Contains(logs.String(), "refused_before_unlogged=51") {
		t.Errorf("after a minute: %d lines, want 3, the last counting 51 left out:\n%s", n, logs)
	}
	if last := audit.recs[len(audit.recs)-1]; last.Unrecorded != 51 {
		t.Errorf("audit record after a minute: %+v, want Unrecorded 51", last)
	}
	if strings.Contains(logs.String(), "guess_secret") || strings.Contains(logs.String(), reader) {
		t.Error("a log line holds a credential")
	}
}

func TestSourceLimiterIsBounded(t *testing.T) {
	l := newSourceLimiter(time.Minute, 3)
	clock := aiopstest.NewClock(aiopstest.Epoch)
	l.now = clock.Now
	for _, src := range []string{"a", "b", "c"} {
		if ok, _ := l.allow(src); !ok {
			t.Fatalf("first event of %s suppressed", src)
		}
	}
	// Sources beyond the limit share one slot.
	if ok, _ := l.allow("d"); !ok {
		t.Error("first source beyond the limit suppressed")
	}
	if ok, _ := l.allow("e"); ok {
		t.Error("second source beyond the limit let through within the interval")
	}
	if len(l.seen) > 4 {
		t.Errorf("limiter remembers %d sources, want at most 3 and the shared slot", len(l.seen))
	}
	clock.Add(time.Minute)
	if ok, _ := l.allow("f"); !ok {
		t.Error("a new source after the quiet ones expired was suppressed")
	}
}

// TestUnavailableAuthDoesNotTellInternals: with the JWKS endpoint down,
// callers get a 503 that does not name it; the log does.
func TestUnavailableAuthDoesNotTellInternals(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	jwksURL := down.URL + "/internal/jwks"
	down.Close()
	logs := &aiopstest.SyncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	v, err := NewJWTVerifier(t.Context(), JWTConfig{Issuer: "https://idp", JWKSURL: jwksURL}, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	m := &Middleware{
		Auth:       Chain{v},
		Policy:     func(*http.Request) (Scope, bool) { return ScopeRead, false },
		WriteError: JSONError,
		Logger:     logger,
		Failures:   NewFailureCounter(nil),
	}
	h := m.Wrap(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r := httptest.NewRequest("GET", "/api/v1/query", nil)
	r.Header.Set("Authorization", "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhIn0.c2ln")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d %s, want 503", w.Code, w.Body)
	}
	host := strings.TrimPrefix(down.URL, "http://")
	if strings.Contains(w.Body.String(), host) || strings.Contains(w.Body.String(), "jwks") {
		t.Errorf("the caller is told %s", w.Body)
	}
	if !strings.Contains(logs.String(), "Request refused") || !strings.Contains(logs.String(), host) {
		t.Errorf("the log does not say what is unavailable:\n%s", logs)
	}
	if got := testutil.ToFloat64(m.Failures.WithLabelValues(ReasonUnavailable)); got != 1 {
		t.Errorf("unavailable counted %v times, want 1", got)
	}
}
