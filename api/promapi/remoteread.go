package promapi

import (
	"bytes"
	"fmt"
	"io"
	"net/http"

	"github.com/prometheus/prometheus/storage/remote"
)

// remoteReadBodyLimit is what Prometheus's remote read handler reads of a
// request body at most (its decodeReadLimit).
const remoteReadBodyLimit = 32 << 20

// boundRemoteRead refuses remote read requests whose label matchers,
// names and values of all its queries together, are longer than maxLen
// bytes: they are selectors, bounded as those of /api/v1/series are. A
// 32 MiB regular expression compresses to almost nothing and would
// otherwise be compiled. Requests that do not decode go on to Prometheus's
// handler, which refuses them in its own words.
func boundRemoteRead(maxLen int, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, remoteReadBodyLimit))
		if err != nil {
			http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		r.Body.Close()
		probe := r.Clone(r.Context())
		probe.Body = io.NopCloser(bytes.NewReader(body))
		if req, err := remote.DecodeReadRequest(probe); err == nil {
			n := 0
			for _, q := range req.Queries {
				for _, m := range q.Matchers {
					n += len(m.Name) + len(m.Value)
				}
			}
			if n > maxLen {
				http.Error(w, fmt.Sprintf("label matchers too long: %d bytes, at most %d allowed (query.max_length)", n, maxLen), http.StatusBadRequest)
				return
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}
