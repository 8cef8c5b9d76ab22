package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aiops-dev/aiops/api/auth"
	"github.com/aiops-dev/aiops/collector/tokenauth"
	"github.com/aiops-dev/aiops/storage"
)

// newAuthMiddleware builds what guards the HTTP listener: the bootstrap
// admin token, API tokens in the store, and JWTs when configured. The JWT
// verifier refreshes its keys until ctx ends. Refused requests are counted
// on reg, and audited in events when there is a store.
func newAuthMiddleware(ctx context.Context, cfg Config, events storage.EventStore, logger *slog.Logger, reg prometheus.Registerer) (*auth.Middleware, error) {
	var (
		boot    *auth.BootstrapToken
		created bool
		err     error
	)
	if cfg.Server.createAdminToken {
		boot, created, err = auth.EnsureBootstrapToken(cfg.Server.AdminTokenFile)
	} else {
		boot, err = auth.LoadBootstrapToken(cfg.Server.AdminTokenFile)
	}
	if err != nil {
		return nil, fmt.Errorf("server.admin_token_file: %w", err)
	}
	if created {
		logger.Info("Created the bootstrap admin token; read it from the file", "file", cfg.Server.AdminTokenFile)
	}
	chain := auth.Chain{boot}
	if events != nil {
		// Roles without a store (the collector) take the bootstrap token only.
		chain = append(chain, auth.NewTokenStore(events, logger))
	}
	if cfg.Server.Auth.JWT.Enabled() {
		jwtv, err := auth.NewJWTVerifier(ctx, cfg.Server.Auth.JWT, nil, logger)
		if err != nil {
			return nil, fmt.Errorf("server.auth.jwt: %w", err)
		}
		chain = append(chain, jwtv)
	}
	m := &auth.Middleware{
		Auth:       chain,
		Policy:     accessPolicy,
		WriteError: auth.JSONError,
		Logger:     logger,
		Failures:   auth.NewFailureCounter(reg),
	}
	if events != nil {
		m.Audit = &auth.EventAuditor{Events: events, Logger: logger}
	}
	return m, nil
}

// ingestAuth checks the bearer tokens of OTLP clients (collector.otlp.auth:
// token) with the credentials of the HTTP API: a client may send data
// with the ingest or the admin scope.
type ingestAuth struct{ auth auth.Authenticator }

func (a ingestAuth) AuthenticateIngest(ctx context.Context, credential string) (tokenauth.Principal, error) {
	p, err := a.auth.Authenticate(ctx, credential)
	if errors.Is(err, auth.ErrUnauthenticated) {
		return tokenauth.Principal{}, tokenauth.Unauthenticated(err)
	}
	if err != nil {
		return tokenauth.Principal{}, err
	}
	return tokenauth.Principal{ID: p.ID, MayIngest: p.Has(auth.ScopeIngest), Tenant: p.Tenant}, nil
}

// readOnlyPOST are endpoints where POST only carries a query too long for
// a URL, as in Prometheus's API, or, for remote read, a protobuf query.
var readOnlyPOST = map[string]bool{
	"/api/v1/read":            true,
	"/api/v1/query":           true,
	"/api/v1/query_range":     true,
	"/api/v1/query_exemplars": true,
	"/api/v1/series":          true,
	"/api/v1/labels":          true,
	"/api/v1/format_query":    true,
	"/api/v1/parse_query":     true,
}

// accessPolicy maps a request to the scope it needs. Health probes are the
// only public endpoints.
func accessPolicy(r *http.Request) (auth.Scope, bool) {
	p := r.URL.Path
	switch {
	case p == "/healthz" || p == "/readyz":
		return "", true
	case p == "/-/reload":
		return auth.ScopeAdmin, false
	case r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions:
		return auth.ScopeRead, false
	case r.Method == http.MethodPost && readOnlyPOST[p]:
		return auth.ScopeRead, false
	}
	return auth.ScopeWrite, false
}

// withScopes asks each component's scope rule first (the remediation
// API's execute and approve routes), then the general policy.
func withScopes(scopes []func(*http.Request) (auth.Scope, bool), general auth.Policy) auth.Policy {
	if len(scopes) == 0 {
		return general
	}
	return func(r *http.Request) (auth.Scope, bool) {
		for _, scope := range scopes {
			if need, ok := scope(r); ok {
				return need, false
			}
		}
		return general(r)
	}
}
