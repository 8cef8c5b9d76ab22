package restapi

import (
	"net/http"
	"slices"
	"strings"
)

// Route is one operation of an API: a method, a path pattern as
// http.ServeMux spells it ("/api/v1/incidents/{id}") and its handler.
type Route struct {
	Method, Path string
	Handle       http.HandlerFunc
}

// Mux serves an API's routes. Anything else under the API's top-level
// paths (a wrong method, an unknown sub-path) is answered by Unrouted in
// the API's error format rather than with the ServeMux's text.
type Mux struct {
	mux      *http.ServeMux
	patterns []string
}

// NewMux serves routes, whose paths lie below prefix ("/api/v1").
func NewMux(prefix string, routes []Route) *Mux {
	m := &Mux{mux: http.NewServeMux()}
	for _, rt := range routes {
		m.mux.HandleFunc(rt.Method+" "+rt.Path, rt.Handle)
		rest := strings.TrimPrefix(rt.Path, prefix+"/")
		top := prefix + "/" + strings.SplitN(rest, "/", 2)[0]
		if slices.Contains(m.patterns, top) {
			continue
		}
		m.patterns = append(m.patterns, top)
		// A file such as openapi.json has no subtree.
		if !strings.Contains(top, ".") {
			m.patterns = append(m.patterns, top+"/")
		}
	}
	for _, p := range m.patterns {
		m.mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			var allow []string
			for _, rt := range routes {
				if PathMatches(rt.Path, r.URL.Path) {
					allow = append(allow, rt.Method)
				}
			}
			Unrouted(w, r, allow)
		})
	}
	return m
}

// Patterns are the ServeMux patterns to mount the API at, one exact and
// one subtree pattern per top-level path ("/api/v1/incidents" and
// "/api/v1/incidents/"). They are more specific than a "/api/v1/"
// catch-all for Prometheus's query API, and take none of its routes.
func (m *Mux) Patterns() []string { return slices.Clone(m.patterns) }

// Mount registers m on mux at every pattern of Patterns.
func (m *Mux) Mount(mux *http.ServeMux) {
	for _, p := range m.patterns {
		mux.Handle(p, m)
	}
}

func (m *Mux) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }
