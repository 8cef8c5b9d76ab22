package auth

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

// FuzzAuthenticate feeds any Authorization header to the authenticators
// aiops serve chains (bootstrap token, API tokens, JWTs against a JWKS):
// nothing panics, nothing but the real credentials is accepted, and no
// refusal repeats the credential, since refusals are logged.
func FuzzAuthenticate(f *testing.F) {
	ctx := context.Background()
	tokens := NewTokenStore(storetest.Embedded(f), nil)
	good, _, err := tokens.Create(ctx, "grafana", []Scope{ScopeRead}, 0, "")
	if err != nil {
		f.Fatal(err)
	}
	boot, _, err := EnsureBootstrapToken(filepath.Join(f.TempDir(), "admin.token"))
	if err != nil {
		f.Fatal(err)
	}
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	jwks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"keys": []map[string]string{
			{"kty": "RSA", "kid": "k1", "use": "sig", "n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes())},
		}})
	}))
	f.Cleanup(jwks.Close)
	v, err := NewJWTVerifier(f.Context(), JWTConfig{Issuer: "https://idp", JWKSURL: jwks.URL}, jwks.Client(), slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{"iss": "https://idp", "sub": "alice", "exp": time.Now().Add(time.Hour).Unix(), "scope": "read"})
	tok.Header["kid"] = "k1"
	signed, err := tok.SignedString(key)
	if err != nil {
		f.Fatal(err)
	}
	chain := Chain{boot, tokens, v}

	for _, h := range []string{
		"Bearer " + good, "Bearer " + good + "x", "Bearer " + signed, "Bearer " + signed[:len(signed)-2],
		"Basic " + base64.StdEncoding.EncodeToString([]byte("grafana:"+good)), "Basic !!", "bearer  aiops__",
		"Bearer aiops_x_y", "Bearer a.b.c", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.", "Token x", "",
	} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", header)
		cred := Credential(r)
		p, err := chain.Authenticate(ctx, cred)
		if err == nil {
			if cred != good && cred != signed && p.ID != "bootstrap-admin" {
				t.Fatalf("accepted %q as %+v", cred, p)
			}
			return
		}
		if !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("%q: %v, want a refusal (every authenticator is up)", cred, err)
		}
		if len(cred) >= 8 && strings.Contains(err.Error(), cred) {
			t.Fatalf("refusal repeats the credential: %v", err)
		}
	})
}
