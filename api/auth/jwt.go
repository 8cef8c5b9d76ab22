package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/common/model"
)

// JWTConfig enables OIDC/JWT bearer tokens, verified against the issuer's
// JSON Web Key Set. YAML keys live under `server.auth.jwt`.
type JWTConfig struct {
	// Issuer must equal the token's iss claim.
	Issuer string `yaml:"issuer"`
	// Audience, when set, must be among the token's aud claim.
	Audience string `yaml:"audience"`
	// JWKSURL is where the issuer publishes its signing keys.
	JWKSURL string `yaml:"jwks_url"`
	// ScopesClaim names the claim holding scopes, as a space-separated
	// string or an array; values other than read, write, admin are ignored.
	ScopesClaim string `yaml:"scopes_claim"`
	// NameClaim names the claim used as the principal's name in audit records.
	NameClaim string `yaml:"name_claim"`
	// RefreshInterval is how often the key set is fetched again.
	RefreshInterval model.Duration `yaml:"refresh_interval"`
}

// Enabled reports whether JWT verification is configured.
func (c JWTConfig) Enabled() bool { return c.JWKSURL != "" }

// Validate reports the first invalid key; prefix is the config path.
func (c JWTConfig) Validate(prefix string) error {
	if !c.Enabled() {
		return nil
	}
	u, err := url.Parse(c.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%s.jwks_url: must be an http(s) URL, got %q", prefix, c.JWKSURL)
	}
	if c.Issuer == "" {
		return fmt.Errorf("%s.issuer: must be set when jwks_url is", prefix)
	}
	if c.RefreshInterval < 0 {
		return fmt.Errorf("%s.refresh_interval: must be >= 0", prefix)
	}
	return nil
}

// JWTVerifier authenticates JWT bearer tokens.
type JWTVerifier struct {
	cfg    JWTConfig
	client *http.Client
	logger *slog.Logger
	now    func() time.Time

	mu        sync.Mutex
	keys      map[string]crypto.PublicKey
	fetchedAt time.Time
}

// NewJWTVerifier returns a verifier; keys are fetched on first use.
func NewJWTVerifier(cfg JWTConfig, client *http.Client, logger *slog.Logger) *JWTVerifier {
	if cfg.ScopesClaim == "" {
		cfg.ScopesClaim = "scope"
	}
	if cfg.NameClaim == "" {
		cfg.NameClaim = "sub"
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = model.Duration(time.Hour)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &JWTVerifier{cfg: cfg, client: client, logger: logger, now: time.Now}
}

// Authenticate implements Authenticator.
func (v *JWTVerifier) Authenticate(ctx context.Context, credential string) (Principal, error) {
	if strings.Count(credential, ".") != 2 {
		return Principal{}, fmt.Errorf("%w: not a JWT", ErrUnauthenticated)
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(v.now),
		jwt.WithLeeway(30 * time.Second),
	}
	if v.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(v.cfg.Audience))
	}
	var keyErr error
	tok, err := jwt.Parse(credential, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, err := v.key(ctx, kid)
		keyErr = err
		return k, err
	}, opts...)
	if err != nil {
		if keyErr != nil && !errors.Is(keyErr, errUnknownKey) {
			return Principal{}, keyErr
		}
		return Principal{}, fmt.Errorf("%w: invalid JWT: %v", ErrUnauthenticated, err)
	}
	claims, _ := tok.Claims.(jwt.MapClaims)
	sub, _ := claims["sub"].(string)
	name, _ := claims[v.cfg.NameClaim].(string)
	if name == "" {
		name = sub
	}
	return Principal{ID: "jwt:" + sub, Name: name, Method: "jwt", Scopes: scopesFromClaim(claims[v.cfg.ScopesClaim])}, nil
}

func scopesFromClaim(c any) []Scope {
	var raw []string
	switch c := c.(type) {
	case string:
		raw = strings.Fields(c)
	case []any:
		for _, v := range c {
			if s, ok := v.(string); ok {
				raw = append(raw, s)
			}
		}
	}
	var out []Scope
	for _, s := range raw {
		if _, ok := scopeRank[Scope(s)]; ok {
			out = append(out, Scope(s))
		}
	}
	return out
}

var errUnknownKey = errors.New("unknown signing key")

// key returns the key with the given id, fetching the key set when it is
// stale or lacks the id (the issuer rotated keys). Fetches for unknown ids
// are limited to one a minute so forged kids cannot make us hammer the issuer.
func (v *JWTVerifier) key(ctx context.Context, kid string) (crypto.PublicKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	age := v.now().Sub(v.fetchedAt)
	k, ok := v.lookup(kid)
	if age >= time.Duration(v.cfg.RefreshInterval) || (!ok && age >= time.Minute) {
		keys, err := v.fetch(ctx)
		switch {
		case err == nil:
			v.keys, v.fetchedAt = keys, v.now()
			k, ok = v.lookup(kid)
		case ok:
			v.logger.Warn("Refreshing JWKS failed; keeping the old keys", "url", v.cfg.JWKSURL, "err", err)
		default:
			return nil, fmt.Errorf("fetch JWKS: %w", err)
		}
	}
	if !ok {
		return nil, errUnknownKey
	}
	return k, nil
}

// lookup finds a key by id; a token without a kid matches a lone key.
func (v *JWTVerifier) lookup(kid string) (crypto.PublicKey, bool) {
	if k, ok := v.keys[kid]; ok {
		return k, true
	}
	if kid == "" && len(v.keys) == 1 {
		for _, k := range v.keys {
			return k, true
		}
	}
	return nil, false
}

func (v *JWTVerifier) fetch(ctx context.Context) (map[string]crypto.PublicKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.cfg.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", v.cfg.JWKSURL, resp.Status)
	}
	return ParseJWKS(io.LimitReader(resp.Body, 1<<20))
}

// ParseJWKS reads RSA and EC public keys from a JSON Web Key Set (RFC 7517).
// Keys of other types, or not meant for signatures, are skipped.
func ParseJWKS(r io.Reader) (map[string]crypto.PublicKey, error) {
	var set struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
			Use string `json:"use"`
			N   string `json:"n"`
			E   string `json:"e"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			Y   string `json:"y"`
		} `json:"keys"`
	}
	if err := json.NewDecoder(r).Decode(&set); err != nil {
		return nil, fmt.Errorf("decode JWKS: %w", err)
	}
	keys := map[string]crypto.PublicKey{}
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		switch k.Kty {
		case "RSA":
			n, err1 := b64int(k.N)
			e, err2 := b64int(k.E)
			if err := errors.Join(err1, err2); err != nil || !e.IsInt64() {
				return nil, fmt.Errorf("JWKS key %d (%q): bad RSA modulus or exponent", i, k.Kid)
			}
			keys[k.Kid] = &rsa.PublicKey{N: n, E: int(e.Int64())}
		case "EC":
			var curve elliptic.Curve
			switch k.Crv {
			case "P-256":
				curve = elliptic.P256()
			case "P-384":
				curve = elliptic.P384()
			case "P-521":
				curve = elliptic.P521()
			default:
				continue
			}
			x, err1 := b64int(k.X)
			y, err2 := b64int(k.Y)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("JWKS key %d (%q): bad EC point", i, k.Kid)
			}
			keys[k.Kid] = &ecdsa.PublicKey{Curve: curve, X: x, Y: y}
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS holds no RSA or EC signing key")
	}
	return keys, nil
}

func b64int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, err
	}
	if len(b) == 0 {
		return nil, errors.New("empty")
	}
	return new(big.Int).SetBytes(b), nil
}
