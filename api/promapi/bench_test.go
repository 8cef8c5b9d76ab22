package promapi

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/aiops-dev/aiops/internal/testutil/storetest"
)

// BenchmarkHostileQuery sends `1+1+…+1` to parse_query, format_query and
// query, with the default bounds (refused at once) and with bounds set out of reach (what
// aiops did before it had them). docs/BENCHMARKS.md.
func BenchmarkHostileQuery(b *testing.B) {
	store := storetest.Embedded(b)
	for _, bounded := range []bool{true, false} {
		cfg := DefaultConfig()
		name := "bounded"
		if !bounded {
			cfg.MaxLength, cfg.MaxDepth, name = 1<<30, 1<<30, "unbounded"
		}
		srv := newTestAPI(b, cfg, store)
		for _, path := range []string{"/api/v1/parse_query", "/api/v1/format_query", "/api/v1/query"} {
			for _, terms := range []int{1_000, 5_000} {
				if !bounded && path == "/api/v1/format_query" && terms > 1_000 {
					continue // cubic: minutes
				}
				q := "1" + strings.Repeat("+1", terms-1)
				b.Run(fmt.Sprintf("%s%s/terms=%d", name, strings.TrimPrefix(path, "/api/v1"), terms), func(b *testing.B) {
					for b.Loop() {
						got := call(b, srv, http.MethodPost, path, url.Values{"query": {q}, "time": {"0"}})
						if bounded && got.code != http.StatusBadRequest || !bounded && got.code != http.StatusOK {
							b.Fatalf("%d %.200s", got.code, got.body)
						}
					}
				})
			}
		}
	}
}
