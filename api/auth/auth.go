// Package auth authenticates API requests and decides what they may do.
//
// Every aiops API except the health probes requires a credential: an API
// token created with `aiops token create` (stored hashed), the bootstrap
// admin token read from a file, or, when configured, an OIDC/JWT bearer
// token. A credential carries scopes: read < write < admin, each implying
// the ones before it, and beside them execute and approve, which let a
// credential run runbooks and approve their runs: each implies read, only
// admin implies them, and write does not — changing incidents is not
// acting on production.
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

// Scopes beside the ranked ones: each implies read, and admin implies
// them; nothing else does.
const (
	// ScopeExecute runs runbooks, cancels their runs and engages the
	// remediation kill switch.
	ScopeExecute Scope = "execute"
	// ScopeApprove approves or denies runbook runs that wait for a person.
	ScopeApprove Scope = "approve"
)

var scopeRank = map[Scope]int{ScopeRead: 1, ScopeWrite: 2, ScopeAdmin: 3}

var sideScopes = map[Scope]bool{ScopeExecute: true, ScopeApprove: true}

// known reports whether s is a scope.
func known(s Scope) bool { return scopeRank[s] > 0 || sideScopes[s] }

// ParseScopes parses a comma-separated list such as "read,write".
func ParseScopes(s string) ([]Scope, error) {
	var out []Scope
	for part := range strings.SplitSeq(s, ",") {
		sc := Scope(strings.TrimSpace(part))
		if sc == "" {
			continue
		}
		if !known(sc) {
			return nil, fmt.Errorf("unknown scope %q: want read, write, admin, execute or approve", sc)
		}
		if !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no scope given: want read, write, admin, execute or approve")
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
}

// Has reports whether the principal holds scope s or one that implies it.
func (p Principal) Has(s Scope) bool {
	for _, have := range p.Scopes {
		switch {
		case have == s && known(s):
			return true
		case have == ScopeAdmin:
			return known(s)
		case sideScopes[s]:
		case sideScopes[have]:
			if s == ScopeRead {
				return true
			}
		case scopeRank[have] >= scopeRank[s] && scopeRank[s] > 0:
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

// Authenticate implements Authenticator.
func (c Chain) Authenticate(ctx context.Context, credential string) (Principal, error) {
	if credential == "" {
		return Principal{}, fmt.Errorf("%w: no credential", ErrUnauthenticated)
	}
	var errs []error
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
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return Principal{}, fmt.Errorf("%w: no authenticator configured", ErrUnauthenticated)
	}
	return Principal{}, errs[len(errs)-1]
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
