package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/common/model"
	"golang.org/x/time/rate"
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

// jwksTimeout bounds one fetch of the key set.
const jwksTimeout = 10 * time.Second

// JWTVerifier authenticates JWT bearer tokens. Fetching, caching and
// parsing the issuer's key set is keyfunc's and jwkset's work: keys are
// validated as they are parsed (an EC point must lie on its curve), a
// key set that fails to fetch or parse leaves the keys held before in
// place, and a set with one invalid key is refused as a whole.
type JWTVerifier struct {
	cfg  JWTConfig
	keys keyfunc.Keyfunc
	now  func() time.Time
}

// NewJWTVerifier returns a verifier. It fetches the key set before it
// returns (a failure is logged, not returned: the issuer may come up
// later), again every refresh_interval until ctx ends, and when a token
// names a key it does not hold, at most once a minute so that forged key
// ids cannot make it hammer the issuer.
func NewJWTVerifier(ctx context.Context, cfg JWTConfig, client *http.Client, logger *slog.Logger) (*JWTVerifier, error) {
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
		client = &http.Client{Timeout: jwksTimeout}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	fetched, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:          client,
		HTTPTimeout:     jwksTimeout,
		RefreshInterval: time.Duration(cfg.RefreshInterval),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(_ context.Context, err error) {
				logger.Warn("Fetching JWKS failed; keeping the keys held before", "url", u, "err", err)
			}
		},
		RefreshUnknownKID: rate.NewLimiter(rate.Every(time.Minute), 1),
		// Bounds both the wait for the limiter above and the fetch it
		// allows; a token arriving while the limiter is empty waits no
		// longer than this for it, and usually fails at once.
		RateLimitWaitMax: jwksTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("jwks_url: %w", err)
	}
	// Keys published for encryption ("use": "enc") never verify tokens;
	// keys without "use" may.
	keys, err := keyfunc.New(keyfunc.Options{Ctx: ctx, Storage: fetched.Storage(), UseWhitelist: []jwkset.USE{jwkset.UseSig, ""}})
	if err != nil {
		return nil, err
	}
	return &JWTVerifier{cfg: cfg, keys: keys, now: time.Now}, nil
}

// Authenticate implements Authenticator.
func (v *JWTVerifier) Authenticate(ctx context.Context, credential string) (Principal, error) {
	if strings.Count(credential, ".") != 2 {
		return Principal{}, refuse(reasonNotMine, "not a JWT")
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
	tok, err := jwt.Parse(credential, v.keys.KeyfuncCtx(ctx), opts...)
	if err != nil {
		// Without any key (the issuer has not answered since start) no
		// token can be checked: that is an outage, not a bad credential.
		if held, rerr := v.keys.Storage().KeyReadAll(ctx); rerr == nil && len(held) == 0 {
			return Principal{}, fmt.Errorf("no signing keys from %s: JWKS unavailable", v.cfg.JWKSURL)
		}
		if errors.Is(err, jwt.ErrTokenExpired) {
			return Principal{}, refuse(ReasonExpired, "invalid JWT: %v", err)
		}
		return Principal{}, refuse(ReasonInvalid, "invalid JWT: %v", err)
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
		if known(Scope(s)) {
			out = append(out, Scope(s))
		}
	}
	return out
}
