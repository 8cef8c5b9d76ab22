package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/aiops-dev/aiops/api/auth"
)

// TestAccessPolicy pins the scope each kind of request needs: reading,
// remote read included, needs read; changing anything needs write; only
// reloading the configuration needs admin.
func TestAccessPolicy(t *testing.T) {
	for _, tc := range []struct {
		method, path string
		need         auth.Scope
		public       bool
	}{
		{http.MethodGet, "/healthz", "", true},
		{http.MethodGet, "/readyz", "", true},
		{http.MethodGet, "/api/v1/query", auth.ScopeRead, false},
		{http.MethodPost, "/api/v1/query", auth.ScopeRead, false},
		{http.MethodPost, "/api/v1/query_range", auth.ScopeRead, false},
		// Remote read is a query in a protobuf body.
		{http.MethodPost, "/api/v1/read", auth.ScopeRead, false},
		{http.MethodPost, "/api/v1/write", auth.ScopeWrite, false},
		// The trace and log reads.
		{http.MethodGet, "/api/traces/0af7651916cd43dd8448eb211c80319c", auth.ScopeRead, false},
		{http.MethodGet, "/api/services", auth.ScopeRead, false},
		{http.MethodGet, "/api/dependencies", auth.ScopeRead, false},
		{http.MethodGet, "/api/v1/logs", auth.ScopeRead, false},
		{http.MethodPost, "/api/v1/otlp/v1/metrics", auth.ScopeWrite, false},
		{http.MethodPost, "/api/v1/incidents/x/acknowledge", auth.ScopeWrite, false},
		{http.MethodDelete, "/api/v2/silence/x", auth.ScopeWrite, false},
		{http.MethodPost, "/-/reload", auth.ScopeAdmin, false},
		// Tokens are managed by `aiops token`, not over HTTP: no path
		// of that name is special.
		{http.MethodGet, "/api/v1/tokens", auth.ScopeRead, false},
		{http.MethodPost, "/api/v1/tokens", auth.ScopeWrite, false},
	} {
		need, public := accessPolicy(httptest.NewRequest(tc.method, tc.path, nil))
		if need != tc.need || public != tc.public {
			t.Errorf("%s %s needs %q (public %v), want %q (public %v)", tc.method, tc.path, need, public, tc.need, tc.public)
		}
	}
}
