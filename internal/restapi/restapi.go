// Package restapi holds what aiops's JSON APIs (incidents, remediation)
// share: route matching, the error format (of answers no route took too)
// and their OpenAPI documents.
package restapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"sigs.k8s.io/yaml"
)

// PathMatches reports whether path fits the route pattern's segments
// ("{name}" matches any non-empty segment).
func PathMatches(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if strings.HasPrefix(ps[i], "{") {
			if xs[i] == "" {
				return false
			}
			continue
		}
		if ps[i] != xs[i] {
			return false
		}
	}
	return true
}

// Error is the body of an error answer: the shape of Prometheus's API
// errors (which the auth middleware's 401/403 answers share), plus the
// offending field.
type Error struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Field     string `json:"field,omitempty"`
}

// WriteJSON writes v as an uncached JSON answer.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// WriteError writes an error answer; field names the parameter, header
// or body field at fault, if any.
func WriteError(w http.ResponseWriter, status int, code, field, msg string) {
	WriteJSON(w, status, Error{Status: "error", ErrorType: code, Error: msg, Field: field})
}

// Unrouted answers a request under an API's paths that no route took, in
// the API's error format rather than the mux's text: 405 with Allow when
// routes with other methods (allow) have its path, 404 otherwise.
func Unrouted(w http.ResponseWriter, r *http.Request, allow []string) {
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", "",
			fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	WriteError(w, http.StatusNotFound, "not_found", "", "no such endpoint: "+r.URL.Path)
}

// OpenAPI is an API's OpenAPI document as JSON, as it is served.
type OpenAPI []byte

// NewOpenAPI converts an API's OpenAPI document from YAML, as it is
// written and embedded, to JSON.
func NewOpenAPI(doc []byte) (OpenAPI, error) {
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi.yaml: %w", err)
	}
	return OpenAPI(j), nil
}

// ServeHTTP answers with the document.
func (d OpenAPI) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(d)
}
