// Package auth authenticates API requests and decides what they may do.
//
// Every aiops API except the health probes requires a credential: an API
// token created with `aiops token create` (stored hashed), the bootstrap
// admin token read from a file, or, when configured, an OIDC/JWT bearer
// token. A credential carries scopes: read < write < admin, each implying
// the ones before it; beside them stand ingest, the right to send OTLP
// data and nothing else, and execute and approve, which let a credential
// run runbooks and approve their runs and imply read. Only admin implies
// those three, and write implies neither execute nor approve: changing
// incidents is not acting on production.
package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Scope is a level of access.
type Scope string

// Scopes, from least to most privileged. Each implies the ones before it.
const (
	ScopeRead  Scope = "read"
	ScopeWrite Scope = "write"
	ScopeAdmin Scope = "admin"
)

// ScopeIngest lets a client send telemetry over OTLP. It is apart from
// the chain above: it grants no API access, and only admin implies it,
// so that the many credentials spread over a fleet of services can
// neither read data nor change anything.
const ScopeIngest Scope = "ingest"

// Scopes beside the ranked ones: each implies read, and admin implies
// them; nothing else does.
const (
	// ScopeExecute runs runbooks, cancels their runs and engages the
	// remediation kill switch.
	ScopeExecute Scope = "execute"
	// ScopeApprove approves or denies runbook runs that wait for a person.
	ScopeApprove Scope = "approve"
)

// scopeRank orders the API scopes.
var scopeRank = map[Scope]int{ScopeRead: 1, ScopeWrite: 2, ScopeAdmin: 3}

// sideScopes are the scopes beside the ranked ones, which only admin
// implies; the value says whether the scope implies read.
var sideScopes = map[Scope]bool{ScopeIngest: false, ScopeExecute: true, ScopeApprove: true}

// known reports whether s is a scope.
func known(s Scope) bool {
	_, side := sideScopes[s]
	return scopeRank[s] > 0 || side
}

// side reports whether s is one of the scopes beside the ranked ones.
func side(s Scope) bool {
	_, ok := sideScopes[s]
	return ok
}

// ParseScopes parses a comma-separated list such as "read,write".
func ParseScopes(s string) ([]Scope, error) {
	var out []Scope
	for part := range strings.SplitSeq(s, ",") {
		sc := Scope(strings.TrimSpace(part))
		if sc == "" {
			continue
		}
		if !known(sc) {
			return nil, fmt.Errorf("unknown scope %q: want read, write, admin, ingest, execute or approve", sc)
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no scope given: want read, write, admin, ingest, execute or approve")
	}
	return out, nil
}

// Principal is who made a request.
type Principal struct {
	// ID identifies the credential: a token id, "bootstrap-admin", or the
	// JWT subject. It is safe to log; the credential itself never is.
	ID string
	// Name is a human-readable name for audit records.
	Name string
	// Method is how the principal authenticated: "token", "bootstrap" or "jwt".
	Method string
	Scopes []Scope
	// Tenant, when set, is the tenant whose data an ingest credential
	// writes (stamped as the tenant label on everything it sends).
	Tenant string
}

// Has reports whether the principal holds scope s or one that implies it.
func (p Principal) Has(s Scope) bool {
	if !known(s) {
		return false
	}
	for _, have := range p.Scopes {
		switch {
		case have == s || have == ScopeAdmin:
			return true
		case side(s) || !known(have):
		case side(have):
			if s == ScopeRead && sideScopes[have] {
				return true
			}
		case scopeRank[have] >= scopeRank[s]:
			return true
		}
	}
	return false
}

// ErrUnauthenticated means the credential is missing, unknown, expired or
// revoked. Messages wrapping it never include the credential.
var ErrUnauthenticated = errors.New("unauthenticated")

// Authenticator turns a credential into a principal. It returns an error
// wrapping ErrUnauthenticated when the credential is not its to accept.
type Authenticator interface {
	Authenticate(ctx context.Context, credential string) (Principal, error)
}

// Chain tries each authenticator in turn and returns the first principal.
type Chain []Authenticator

// Authenticate implements Authenticator. When every authenticator refuses
// the credential, the error is that of one that recognised its form (the
// token store's "revoked" for an API token, not the JWT verifier's "not a
// JWT").
func (c Chain) Authenticate(ctx context.Context, credential string) (Principal, error) {
	if credential == "" {
		return Principal{}, refuse(ReasonMissing, "no credential")
	}
	var refused error
	for _, a := range c {
		p, err := a.Authenticate(ctx, credential)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, ErrUnauthenticated) {
			// The authenticator could not decide (e.g. storage down):
			// report that rather than a misleading "bad token".
			return Principal{}, err
		}
		if refused == nil || notMine(refused) {
			refused = err
		}
	}
	if refused == nil {
		return Principal{}, refuse(ReasonUnknown, "no authenticator configured")
	}
	return Principal{}, refused
}

type principalKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal of an authenticated request.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
