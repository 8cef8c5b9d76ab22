package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
)

func newEvents(t *testing.T) storage.EventStore {
	t.Helper()
	return storetest.Embedded(t)
}

func TestParseScopes(t *testing.T) {
	got, err := ParseScopes("read, write,read")
	if err != nil || len(got) != 2 || got[0] != ScopeRead || got[1] != ScopeWrite {
		t.Errorf("ParseScopes = %v, %v", got, err)
	}
	if _, err := ParseScopes("read,root"); err == nil || !strings.Contains(err.Error(), `"root"`) {
		t.Errorf("ParseScopes(read,root) error = %v, want it to name root", err)
	}
	if _, err := ParseScopes(""); err == nil {
		t.Error("ParseScopes(\"\") = nil error")
	}
}

func TestScopesImplyLowerOnes(t *testing.T) {
	admin := Principal{Scopes: []Scope{ScopeAdmin}}
	read := Principal{Scopes: []Scope{ScopeRead}}
	if !admin.Has(ScopeRead) || !admin.Has(ScopeWrite) || !admin.Has(ScopeAdmin) {
		t.Error("admin does not imply read and write")
	}
	if !read.Has(ScopeRead) || read.Has(ScopeWrite) || read.Has(ScopeAdmin) {
		t.Error("read grants more than read")
	}
	if (Principal{}).Has(ScopeRead) {
		t.Error("no scopes grants read")
	}
}

// TestIngestScope checks that ingest stands apart from the API scopes:
// only admin implies it, and it implies nothing.
func TestIngestScope(t *testing.T) {
	ingest := Principal{Scopes: []Scope{ScopeIngest}}
	if !ingest.Has(ScopeIngest) || ingest.Has(ScopeRead) || ingest.Has(ScopeWrite) || ingest.Has(ScopeAdmin) {
		t.Error("ingest grants an API scope")
	}
	for _, s := range []Scope{ScopeRead, ScopeWrite} {
		if (Principal{Scopes: []Scope{s}}).Has(ScopeIngest) {
			t.Errorf("%s grants ingest", s)
		}
	}
	if !(Principal{Scopes: []Scope{ScopeAdmin}}).Has(ScopeIngest) {
		t.Error("admin does not grant ingest")
	}
	if got, err := ParseScopes("ingest,read"); err != nil || len(got) != 2 {
		t.Errorf("ParseScopes(ingest,read) = %v, %v", got, err)
	}

	ctx := context.Background()
	s := NewTokenStore(newEvents(t), nil)
	secret, tok, err := s.CreateToken(ctx, Token{Name: "checkout", Scopes: []Scope{ScopeIngest}, Tenant: "team-a"}, 0, "test")
	if err != nil || tok.Tenant != "team-a" {
		t.Fatalf("CreateToken = %+v, %v", tok, err)
	}
	other := NewTokenStore(s.events, nil) // the tenant is stored, not cached
	if p, err := other.Authenticate(ctx, secret); err != nil || p.Tenant != "team-a" || !p.Has(ScopeIngest) || p.Has(ScopeRead) {
		t.Errorf("Authenticate = %+v, %v", p, err)
	}
	for _, bad := range []string{"a b", "team/a", strings.Repeat("x", 65), "tenant\xff"} {
		if _, _, err := s.CreateToken(ctx, Token{Name: "x", Scopes: []Scope{ScopeIngest}, Tenant: bad}, 0, "test"); err == nil {
			t.Errorf("tenant %q accepted", bad)
		}
	}
}

// TestSideScopes: execute and approve are separate from the ranked
// scopes and from each other; each implies read, admin implies both.
func TestSideScopes(t *testing.T) {
	for _, c := range []struct {
		have []Scope
		need Scope
		want bool
	}{
		{[]Scope{ScopeExecute}, ScopeExecute, true},
		{[]Scope{ScopeExecute}, ScopeRead, true},
		{[]Scope{ScopeExecute}, ScopeWrite, false},
		{[]Scope{ScopeExecute}, ScopeApprove, false},
		{[]Scope{ScopeApprove}, ScopeApprove, true},
		{[]Scope{ScopeApprove}, ScopeExecute, false},
		{[]Scope{ScopeApprove}, ScopeAdmin, false},
		{[]Scope{ScopeWrite}, ScopeExecute, false},
		{[]Scope{ScopeWrite}, ScopeApprove, false},
		{[]Scope{ScopeRead}, ScopeExecute, false},
		{[]Scope{ScopeAdmin}, ScopeExecute, true},
		{[]Scope{ScopeAdmin}, ScopeApprove, true},
		{[]Scope{ScopeRead, ScopeApprove}, ScopeApprove, true},
		{[]Scope{ScopeAdmin}, Scope("root"), false},
		{[]Scope{Scope("root")}, ScopeRead, false},
	} {
		if got := (Principal{Scopes: c.have}).Has(c.need); got != c.want {
			t.Errorf("%v has %s = %v, want %v", c.have, c.need, got, c.want)
		}
	}
	got, err := ParseScopes("read,execute,approve")
	if err != nil || len(got) != 3 {
		t.Errorf("ParseScopes(read,execute,approve) = %v, %v", got, err)
	}
	if got := scopesFromClaim("read approve bogus"); len(got) != 2 || got[1] != ScopeApprove {
		t.Errorf("scopes from a JWT claim: %v", got)
	}
}

func TestTokenLifecycle(t *testing.T) {
	ctx := context.Background()
	events := newEvents(t)
	s := NewTokenStore(events, nil)
	now := testutil.Epoch
	s.now = func() time.Time { return now }

	secret, tok, err := s.Create(ctx, "grafana", []Scope{ScopeRead}, time.Hour, "bootstrap-admin")
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Authenticate(ctx, secret)
	if err != nil || p.ID != tok.ID || p.Name != "grafana" || !p.Has(ScopeRead) || p.Has(ScopeWrite) {
		t.Fatalf("Authenticate(new token) = %+v, %v", p, err)
	}

	// The secret is stored only as a hash.
	evs, err := events.QueryEvents(ctx, storage.EventQuery{KindPrefix: "token."})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if strings.Contains(string(e.Payload), secret[strings.LastIndex(secret, "_")+1:]) {
			t.Fatalf("event %s holds the token secret", e.ID)
		}
	}

	// A second store over the same events (another replica) knows it too.
	other := NewTokenStore(events, nil)
	other.now = s.now
	if _, err := other.Authenticate(ctx, secret); err != nil {
		t.Fatalf("other replica: %v", err)
	}

	if _, err := s.Authenticate(ctx, secret+"x"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("wrong secret: %v, want ErrUnauthenticated", err)
	}
	if err != nil && strings.Contains(err.Error(), secret) {
		t.Error("error message leaks the credential")
	}

	now = now.Add(2 * time.Hour)
	if _, err := s.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}
	now = now.Add(-2 * time.Hour)

	if err := s.Revoke(ctx, tok.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("revoked token: %v", err)
	}
	other.now = func() time.Time { return now.Add(time.Minute) } // past its refresh interval
	if _, err := other.Authenticate(ctx, secret); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("revoked token on the other replica: %v", err)
	}
	if err := s.Revoke(ctx, "nosuch", "test"); !errors.Is(err, ErrTokenNotFound) {
		t.Errorf("Revoke(unknown) = %v", err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].RevokedAt.IsZero() {
		t.Errorf("List = %+v, %v", list, err)
	}
}

func TestBootstrapToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "admin.token")
	tok, created, err := EnsureBootstrapToken(path)
	if err != nil || !created {
		t.Fatalf("EnsureBootstrapToken = %v, %v", created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode = %v, %v; want 0600", fi.Mode(), err)
	}
	b, _ := os.ReadFile(path)
	p, err := tok.Authenticate(context.Background(), strings.TrimSpace(string(b)))
	if err != nil || !p.Has(ScopeAdmin) {
		t.Fatalf("bootstrap token = %+v, %v", p, err)
	}
	again, created, err := EnsureBootstrapToken(path)
	if err != nil || created {
		t.Fatalf("second EnsureBootstrapToken created=%v err=%v, want the existing file reused", created, err)
	}
	if _, err := again.Authenticate(context.Background(), strings.TrimSpace(string(b))); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(path, []byte("short\n"), 0o600)
	if _, err := LoadBootstrapToken(path); err == nil || !strings.Contains(err.Error(), "at least 16") {
		t.Errorf("short token file: %v", err)
	}
	os.WriteFile(path, b, 0o600)
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadBootstrapToken(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("token file of mode %04o: %v, want a refusal saying how to fix it", mode, err)
		}
		if _, _, err := EnsureBootstrapToken(path); err == nil {
			t.Errorf("EnsureBootstrapToken accepted a token file of mode %04o", mode)
		}
	}
	os.Chmod(path, 0o400)
	if _, err := LoadBootstrapToken(path); err != nil {
		t.Errorf("token file of mode 0400: %v", err)
	}
}

func TestCredentialForms(t *testing.T) {
	for _, tc := range []struct{ header, want string }{
		{"Bearer abc", "abc"},
		{"bearer  abc ", "abc"},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("grafana:tok")), "tok"},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("tok")), "tok"},
		{"Basic !!!", ""},
		{"Token abc", ""},
		{"", ""},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", tc.header)
		if got := Credential(r); got != tc.want {
			t.Errorf("Credential(%q) = %q, want %q", tc.header, got, tc.want)
		}
	}
}

type memAuditor struct {
	mu   sync.Mutex
	recs []AuditRecord
}

func (a *memAuditor) Audit(_ context.Context, r AuditRecord) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, r)
}

func TestMiddleware(t *testing.T) {
	ctx := context.Background()
	ts := NewTokenStore(newEvents(t), nil)
	reader, _, _ := ts.Create(ctx, "reader", []Scope{ScopeRead}, 0, "")
	writer, writerTok, _ := ts.Create(ctx, "writer", []Scope{ScopeWrite}, 0, "")
	audit := &memAuditor{}
	m := &Middleware{
		Auth: Chain{ts},
		Policy: func(r *http.Request) (Scope, bool) {
			if r.URL.Path == "/healthz" {
				return "", true
			}
			if r.Method == http.MethodGet {
				return ScopeRead, false
			}
			return ScopeWrite, false
		},
		Audit:      audit,
		WriteError: JSONError,
		Logger:     slog.New(slog.DiscardHandler),
	}
	h := m.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := PrincipalFrom(r.Context())
		w.WriteHeader(http.StatusAccepted)
		w.Write([]byte(p.Name))
	}))
	do := func(method, path, token string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := do("GET", "/healthz", ""); w.Code != http.StatusAccepted {
		t.Errorf("health probe without token: %d", w.Code)
	}
	w := do("GET", "/api/v1/query", "")
	if w.Code != http.StatusUnauthorized || w.Header().Get("WWW-Authenticate") == "" {
		t.Errorf("no token: %d %v", w.Code, w.Header())
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["errorType"] != "unauthorized" {
		t.Errorf("no token body = %s", w.Body)
	}
	if w := do("GET", "/api/v1/query", "aiops_bad_token"); w.Code != http.StatusUnauthorized {
		t.Errorf("bad token: %d", w.Code)
	}
	if w := do("GET", "/api/v1/query", reader); w.Code != http.StatusAccepted || w.Body.String() != "reader" {
		t.Errorf("reader GET: %d %s", w.Code, w.Body)
	}
	if w := do("POST", "/api/v1/incidents/1/ack", reader); w.Code != http.StatusForbidden {
		t.Errorf("reader POST: %d, want 403", w.Code)
	}
	if w := do("POST", "/api/v1/incidents/1/ack", writer); w.Code != http.StatusAccepted {
		t.Errorf("writer POST: %d", w.Code)
	}
	var granted []AuditRecord
	for _, rec := range audit.recs {
		if rec.Reason == "" {
			granted = append(granted, rec)
		}
	}
	if len(granted) != 1 || granted[0].Principal != writerTok.ID || granted[0].Status != http.StatusAccepted || granted[0].Path != "/api/v1/incidents/1/ack" {
		t.Errorf("audit = %+v, want one record of a granted request, the writer's POST", audit.recs)
	}
}

func TestEventAuditorStoresRecords(t *testing.T) {
	events := newEvents(t)
	a := &EventAuditor{Events: events, Logger: slog.New(slog.DiscardHandler)}
	a.Audit(context.Background(), AuditRecord{Time: time.Now(), Principal: "abc", Method: "POST", Path: "/x", Status: 200})
	got, err := events.QueryEvents(context.Background(), storage.EventQuery{KindPrefix: "audit", Subject: "abc"})
	if err != nil || len(got) != 1 || got[0].Labels["path"] != "/x" {
		t.Fatalf("audit events = %+v, %v", got, err)
	}
}

func TestJWTVerifier(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	jwks := map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "r1", "use": "sig", "n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(ecKey.X.Bytes()), "y": b64(ecKey.Y.Bytes())},
	}}
	fetches := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches++
		json.NewEncoder(w).Encode(jwks)
	}))
	defer srv.Close()
	cfg := JWTConfig{Issuer: "https://idp.example", Audience: "aiops", JWKSURL: srv.URL}
	if err := cfg.Validate("server.auth.jwt"); err != nil {
		t.Fatal(err)
	}
	v, err := NewJWTVerifier(t.Context(), cfg, srv.Client(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}

	sign := func(method jwt.SigningMethod, kid string, key any, claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(method, claims)
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	good := jwt.MapClaims{"iss": "https://idp.example", "aud": "aiops", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix(), "scope": "openid read write"}
	p, err := v.Authenticate(context.Background(), sign(jwt.SigningMethodRS256, "r1", rsaKey, good))
	if err != nil || p.ID != "jwt:alice" || !p.Has(ScopeWrite) || p.Has(ScopeAdmin) {
		t.Fatalf("RS256 token: %+v, %v", p, err)
	}
	if _, err := v.Authenticate(context.Background(), sign(jwt.SigningMethodES256, "e1", ecKey, good)); err != nil {
		t.Fatalf("ES256 token: %v", err)
	}
	for name, claims := range map[string]jwt.MapClaims{
		"wrong issuer":   {"iss": "https://evil", "aud": "aiops", "sub": "a", "exp": time.Now().Add(time.Hour).Unix()},
		"wrong audience": {"iss": "https://idp.example", "aud": "other", "sub": "a", "exp": time.Now().Add(time.Hour).Unix()},
		"expired":        {"iss": "https://idp.example", "aud": "aiops", "sub": "a", "exp": time.Now().Add(-time.Hour).Unix()},
		"no expiry":      {"iss": "https://idp.example", "aud": "aiops", "sub": "a"},
	} {
		if _, err := v.Authenticate(context.Background(), sign(jwt.SigningMethodRS256, "r1", rsaKey, claims)); !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%s: %v, want ErrUnauthenticated", name, err)
		}
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, err := v.Authenticate(context.Background(), sign(jwt.SigningMethodRS256, "r1", other, good)); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("forged signature: %v", err)
	}
	before := fetches
	for range 5 {
		v.Authenticate(context.Background(), sign(jwt.SigningMethodRS256, "forged-kid", other, good))
	}
	if fetches-before > 1 {
		t.Errorf("unknown kids caused %d JWKS fetches, want at most 1", fetches-before)
	}
	if _, err := v.Authenticate(context.Background(), "aiops_abc_def"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("API token given to the JWT verifier: %v", err)
	}
	if err := (JWTConfig{JWKSURL: "ftp://x"}).Validate("server.auth.jwt"); err == nil || !strings.HasPrefix(err.Error(), "server.auth.jwt.jwks_url") {
		t.Errorf("bad jwks_url: %v", err)
	}
}
