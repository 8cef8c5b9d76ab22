// Package tokenauth is the collector extension "aiops_auth": it
// authenticates OTLP clients by the bearer token of their requests, with
// the process's credentials (API tokens, the bootstrap admin token, JWTs;
// see api/auth), for the receivers that name it in their auth section
// (configauth). A credential must carry the ingest scope, or admin.
//
// Failures are answered in the OTLP way: no or an unknown credential is
// Unauthenticated (HTTP 401), a credential without the ingest scope is
// PermissionDenied (HTTP 403), a credential store that cannot be read is
// Unavailable (HTTP 503). The principal and its tenant go into the
// request's client.Info, where the receiver reads the tenant (TenantFrom).
package tokenauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/client"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"
	"go.opentelemetry.io/collector/extension/extensionauth"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/aiops-dev/aiops/collector/internal/obs"
)

// Type is the extension's type name.
const Type = "aiops_auth"

// Principal is who holds a credential, as far as ingest cares.
type Principal struct {
	// ID identifies the credential (a token id); it is safe to log.
	ID string
	// MayIngest is set when the credential has the ingest or admin scope.
	MayIngest bool
	// Tenant, when set, is stamped on everything the client sends.
	Tenant string
}

// Authenticator checks a credential. Errors wrapping ErrUnauthenticated
// mean it is missing, unknown, expired or revoked; other errors mean it
// could not be checked.
type Authenticator interface {
	AuthenticateIngest(ctx context.Context, credential string) (Principal, error)
}

// ErrUnauthenticated is wrapped by Authenticator errors about the
// credential itself.
var ErrUnauthenticated = errors.New("unauthenticated")

// Config is the extension's configuration; it has no settings: the
// credentials are the process's.
type Config struct{}

// Deps are what the extension takes from the process.
type Deps struct {
	// Auth checks credentials; nil refuses every request.
	Auth    Authenticator
	Metrics *obs.Metrics
	Logger  *slog.Logger
	Now     func() time.Time
}

// NewFactory returns the factory of the aiops_auth extension.
func NewFactory(d Deps) extension.Factory {
	if d.Metrics == nil {
		d.Metrics = obs.NewUnregistered()
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	return extension.NewFactory(component.MustNewType(Type),
		func() component.Config { return &Config{} },
		func(context.Context, extension.Settings, component.Config) (extension.Extension, error) {
			return &authenticator{deps: d}, nil
		},
		component.StabilityLevelBeta)
}

type authenticator struct {
	component.StartFunc
	component.ShutdownFunc
	deps Deps

	// Failures are logged at most once a minute, with a count.
	mu       sync.Mutex
	failures int
	lastLog  time.Time
}

var _ extensionauth.Server = (*authenticator)(nil)

// Authenticate implements extensionauth.Server.
func (a *authenticator) Authenticate(ctx context.Context, sources map[string][]string) (context.Context, error) {
	cred, err := bearer(sources)
	if err != nil {
		return ctx, a.fail(ctx, obs.ReasonUnauthenticated, status.Error(codes.Unauthenticated, err.Error()))
	}
	if a.deps.Auth == nil {
		return ctx, a.fail(ctx, obs.ReasonUnauthenticated, status.Error(codes.Unauthenticated, "no credentials are configured"))
	}
	p, err := a.deps.Auth.AuthenticateIngest(ctx, cred)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return ctx, a.fail(ctx, obs.ReasonUnauthenticated, status.Error(codes.Unauthenticated, err.Error()))
	case err != nil:
		a.deps.Logger.Error("OTLP authentication could not be checked", "err", err)
		return ctx, status.Error(codes.Unavailable, "authentication unavailable: "+err.Error())
	case !p.MayIngest:
		return ctx, a.fail(ctx, obs.ReasonForbidden, status.Error(codes.PermissionDenied, fmt.Sprintf("credential %s lacks the ingest scope", p.ID)))
	}
	info := client.FromContext(ctx)
	info.Auth = authData{p}
	return client.NewContext(ctx, info), nil
}

// bearer returns the token of the Authorization header (gRPC metadata
// keys are lower case, HTTP headers canonical).
func bearer(sources map[string][]string) (string, error) {
	vals := sources["authorization"]
	if len(vals) == 0 {
		vals = sources["Authorization"]
	}
	if len(vals) == 0 {
		return "", errors.New("missing credential: send Authorization: Bearer <token> (a token with the ingest scope)")
	}
	scheme, tok, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "bearer") || strings.TrimSpace(tok) == "" {
		return "", errors.New("malformed Authorization header: want Bearer <token>")
	}
	return strings.TrimSpace(tok), nil
}

func (a *authenticator) fail(ctx context.Context, reason string, err error) error {
	a.deps.Metrics.AuthFailures.WithLabelValues(reason).Inc()
	now := a.deps.Now()
	a.mu.Lock()
	a.failures++
	if !a.lastLog.IsZero() && now.Sub(a.lastLog) < time.Minute {
		a.mu.Unlock()
		return err
	}
	n := a.failures
	a.failures, a.lastLog = 0, now
	a.mu.Unlock()
	remote := ""
	if addr := client.FromContext(ctx).Addr; addr != nil {
		remote = addr.String()
	}
	a.deps.Logger.Warn("OTLP requests refused for their credential", "failures", n, "last_reason", reason, "last_remote", remote, "last_err", status.Convert(err).Message())
	return err
}

// authData is the principal as the collector's client.Info carries it.
type authData struct{ p Principal }

func (d authData) GetAttribute(name string) any {
	switch name {
	case "subject":
		return d.p.ID
	case "tenant":
		return d.p.Tenant
	}
	return nil
}

func (authData) GetAttributeNames() []string { return []string{"subject", "tenant"} }

// TenantFrom returns the tenant of the request's credential, "" when it
// has none or the request was not authenticated by this extension.
func TenantFrom(ctx context.Context) string {
	if d, ok := client.FromContext(ctx).Auth.(authData); ok {
		return d.p.Tenant
	}
	return ""
}

// Unauthenticated marks err, a refusal of a credential, as one: the
// result wraps both ErrUnauthenticated and err and reads as err.
func Unauthenticated(err error) error { return unauthenticatedError{err} }

type unauthenticatedError struct{ err error }

func (e unauthenticatedError) Error() string   { return e.err.Error() }
func (e unauthenticatedError) Unwrap() []error { return []error{ErrUnauthenticated, e.err} }
