package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/internal/testutil"
)

// issuer is an identity provider's JWKS endpoint whose answer a test
// changes.
type issuer struct {
	t       *testing.T
	srv     *httptest.Server
	fetches atomic.Int64

	mu     sync.Mutex
	keys   []map[string]string
	status int
}

func newIssuer(t *testing.T, keys ...map[string]string) *issuer {
	is := &issuer{t: t, keys: keys, status: http.StatusOK}
	is.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		is.fetches.Add(1)
		is.mu.Lock()
		defer is.mu.Unlock()
		if is.status != http.StatusOK {
			w.WriteHeader(is.status)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"keys": is.keys})
	}))
	t.Cleanup(is.srv.Close)
	return is
}

func (is *issuer) serve(status int, keys ...map[string]string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.status, is.keys = status, keys
}

// verifier returns a verifier of is's tokens whose clock stands at
// testutil.Epoch.
func (is *issuer) verifier(refresh time.Duration) *JWTVerifier {
	is.t.Helper()
	cfg := JWTConfig{Issuer: "https://idp.example", Audience: "aiops", JWKSURL: is.srv.URL, RefreshInterval: model.Duration(refresh)}
	ctx, cancel := context.WithCancel(context.Background())
	is.t.Cleanup(cancel)
	v, err := NewJWTVerifier(ctx, cfg, is.srv.Client(), testutil.Discard())
	if err != nil {
		is.t.Fatal(err)
	}
	v.now = testutil.NewClock(testutil.Epoch).Now
	return v
}

func (is *issuer) token(method jwt.SigningMethod, kid string, key crypto.PrivateKey) string {
	is.t.Helper()
	tok := jwt.NewWithClaims(method, jwt.MapClaims{
		"iss": "https://idp.example", "aud": "aiops", "sub": "alice", "scope": "read",
		"exp": testutil.Epoch.Add(time.Hour).Unix(),
	})
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		is.t.Fatal(err)
	}
	return s
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid, use string, k *rsa.PrivateKey) map[string]string {
	m := map[string]string{"kty": "RSA", "kid": kid, "n": b64url(k.N.Bytes()), "e": b64url(big.NewInt(int64(k.E)).Bytes())}
	if use != "" {
		m["use"] = use
	}
	return m
}

func ecJWK(kid string, x, y *big.Int) map[string]string {
	return map[string]string{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64url(x.FillBytes(make([]byte, 32))), "y": b64url(y.FillBytes(make([]byte, 32)))}
}

func mustRSA(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestJWTRefusesUnsignedTokens(t *testing.T) {
	k := mustRSA(t)
	is := newIssuer(t, rsaJWK("r1", "sig", k))
	v := is.verifier(0)
	if _, err := v.Authenticate(t.Context(), is.token(jwt.SigningMethodRS256, "r1", k)); err != nil {
		t.Fatalf("signed token: %v", err)
	}
	none := is.token(jwt.SigningMethodNone, "r1", jwt.UnsafeAllowNoneSignatureType)
	if p, err := v.Authenticate(t.Context(), none); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("alg none: %+v, %v; want ErrUnauthenticated", p, err)
	}
	// An HMAC token "signed" with the RSA public key, the classic
	// algorithm confusion.
	hs := is.token(jwt.SigningMethodHS256, "r1", []byte(rsaJWK("r1", "", k)["n"]))
	if p, err := v.Authenticate(t.Context(), hs); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("HS256 with the public key: %+v, %v; want ErrUnauthenticated", p, err)
	}
}

// TestJWTRefusesPointOffTheCurve: a key set holding an EC key whose point
// is not on its curve is refused as a whole, so no key in it verifies a
// token.
func TestJWTRefusesPointOffTheCurve(t *testing.T) {
	rk := mustRSA(t)
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	offCurve := new(big.Int).Add(ek.Y, big.NewInt(1))
	if elliptic.P256().IsOnCurve(ek.X, offCurve) {
		t.Fatal("the altered point is on the curve")
	}
	is := newIssuer(t, rsaJWK("r1", "sig", rk), ecJWK("e1", ek.X, offCurve))
	v := is.verifier(0)
	if p, err := v.Authenticate(t.Context(), is.token(jwt.SigningMethodRS256, "r1", rk)); err == nil {
		t.Fatalf("token verified with a key from a set holding a point off the curve: %+v", p)
	}
	if p, err := v.Authenticate(t.Context(), is.token(jwt.SigningMethodES256, "e1", ek)); err == nil {
		t.Fatalf("token verified with a point off the curve: %+v", p)
	}

	// Served later, the same set does not replace the keys held.
	is.serve(http.StatusOK, rsaJWK("r1", "sig", rk))
	v = is.verifier(0)
	rk2 := mustRSA(t)
	is.serve(http.StatusOK, rsaJWK("r1", "sig", rk), rsaJWK("r2", "sig", rk2), ecJWK("e1", ek.X, offCurve))
	if _, err := v.Authenticate(t.Context(), is.token(jwt.SigningMethodRS256, "r2", rk2)); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("key r2 from a set with a point off the curve: %v, want ErrUnauthenticated", err)
	}
	if _, err := v.Authenticate(t.Context(), is.token(jwt.SigningMethodRS256, "r1", rk)); err != nil {
		t.Fatalf("key r1, held before: %v", err)
	}
}

// TestJWTKeySetRefresh: keys come from periodic refreshes, a new key id
// fetches the set at once (the issuer rotated its keys), and a failed
// refresh keeps the keys held.
func TestJWTKeySetRefresh(t *testing.T) {
	k1, k2 := mustRSA(t), mustRSA(t)
	is := newIssuer(t, rsaJWK("r1", "sig", k1))
	v := is.verifier(20 * time.Millisecond)
	if _, err := v.Authenticate(t.Context(), is.token(jwt.SigningMethodRS256, "r1", k1)); err != nil {
		t.Fatalf("r1: %v", err)
	}

	is.serve(http.StatusInternalServerError)
	before := is.fetches.Load()
	testutil.WaitFor(t, "two failed refreshes", 10*time.Second, func() bool { return is.fetches.Load() >= before+2 })
	if _, err := v.Authenticate(t.Context(), is.token(jwt.SigningMethodRS256, "r1", k1)); err != nil {
		t.Fatalf("r1 after failed refreshes: %v", err)
	}

	// Rotation: r1 retired, r2 new. The token naming r2 fetches the set.
	is.serve(http.StatusOK, rsaJWK("r2", "sig", k2))
	if _, err := v.Authenticate(t.Context(), is.token(jwt.SigningMethodRS256, "r2", k2)); err != nil {
		t.Fatalf("r2 after rotation: %v", err)
	}
	if _, err := v.Authenticate(t.Context(), is.token(jwt.SigningMethodRS256, "r1", k1)); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("r1 after it left the set: %v, want ErrUnauthenticated", err)
	}
}

// TestJWTEncryptionKeysDoNotVerify: a key published for encryption is not
// a signing key.
func TestJWTEncryptionKeysDoNotVerify(t *testing.T) {
	k := mustRSA(t)
	is := newIssuer(t, rsaJWK("r1", "enc", k), rsaJWK("r2", "", mustRSA(t)))
	v := is.verifier(0)
	if p, err := v.Authenticate(t.Context(), is.token(jwt.SigningMethodRS256, "r1", k)); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("token signed with an encryption key: %+v, %v; want ErrUnauthenticated", p, err)
	}
}

// TestJWTIssuerDown: without any key the verifier cannot tell a good
// token from a bad one, and says so rather than calling it invalid.
func TestJWTIssuerDown(t *testing.T) {
	k := mustRSA(t)
	is := newIssuer(t)
	is.serve(http.StatusServiceUnavailable)
	v := is.verifier(20 * time.Millisecond)
	tok := is.token(jwt.SigningMethodRS256, "r1", k)
	_, err := v.Authenticate(t.Context(), tok)
	if err == nil || errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("issuer down: %v, want an error other than ErrUnauthenticated", err)
	}
	// Once it answers, the next refresh brings the keys.
	is.serve(http.StatusOK, rsaJWK("r1", "sig", k))
	testutil.WaitFor(t, "the token verifies once the issuer answers", 10*time.Second, func() bool {
		_, err := v.Authenticate(t.Context(), tok)
		return err == nil
	})
}
