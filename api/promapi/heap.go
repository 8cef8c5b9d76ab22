package promapi

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// heapGuard refuses requests that start queries while the Go heap holds
// more than limit bytes. A query's own growth is bounded by
// query.max_samples; this bounds how many may pile up on a heap that is
// already full, which per-query limits cannot.
type heapGuard struct {
	limit    uint64
	inUse    func() uint64
	refusals prometheus.Counter
	logger   *slog.Logger

	mu       sync.Mutex
	lastLog  time.Time
	unlogged int
}

func newHeapGuard(maxHeapMiB int, logger *slog.Logger, reg prometheus.Registerer) *heapGuard {
	g := &heapGuard{
		limit:  uint64(maxHeapMiB) << 20,
		inUse:  heapInUse,
		logger: logger,
		refusals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "query_heap_refusals_total",
			Help: "Query API requests refused because the Go heap was above query.max_heap_mib.",
		}),
	}
	if g.limit == 0 {
		g.limit = defaultHeapLimit()
	}
	if reg != nil {
		reg.MustRegister(g.refusals)
	}
	return g
}

// startsQuery reports whether a request to path (under Prefix) evaluates
// or selects series.
func startsQuery(path string) bool {
	switch strings.TrimPrefix(path, Prefix) {
	case "/query", "/query_range", "/query_exemplars", "/series", "/labels", "/read":
		return true
	}
	return strings.HasPrefix(path, Prefix+"/label/")
}

func (g *heapGuard) wrap(next http.Handler) http.Handler {
	if g.limit == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !startsQuery(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		if heap := g.inUse(); heap > g.limit {
			g.refuse(w, heap)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (g *heapGuard) refuse(w http.ResponseWriter, heap uint64) {
	g.refusals.Inc()
	g.mu.Lock()
	if now := time.Now(); now.Sub(g.lastLog) >= time.Minute {
		g.logger.Warn("Refusing queries: the heap is above query.max_heap_mib", "heap_mib", heap>>20, "limit_mib", g.limit>>20, "refused_before_unlogged", g.unlogged)
		g.lastLog, g.unlogged = now, 0
	} else {
		g.unlogged++
	}
	g.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "5")
	w.WriteHeader(http.StatusServiceUnavailable)
	json.NewEncoder(w).Encode(map[string]string{
		"status":    "error",
		"errorType": "unavailable",
		"error":     fmt.Sprintf("the server is short of memory (%d MiB of heap in use, query.max_heap_mib is %d); try again later", heap>>20, g.limit>>20),
	})
}

// heapInUse is the memory held by heap objects, live or not yet swept.
func heapInUse() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// defaultHeapLimit is 80% of GOMEMLIMIT when it is set, otherwise half of
// the memory of the container (cgroup limit) or machine; 0 when none of
// them can be read.
func defaultHeapLimit() uint64 {
	if lim := debug.SetMemoryLimit(-1); lim > 0 && lim != math.MaxInt64 {
		return uint64(lim) / 10 * 8
	}
	return availableMemory() / 2
}

// availableMemory is the smallest of the cgroup v2 and v1 memory limits and
// the machine's memory, in bytes; 0 when none can be read.
func availableMemory() uint64 {
	var least uint64
	consider := func(n uint64) {
		if n > 0 && (least == 0 || n < least) {
			least = n
		}
	}
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if b, err := os.ReadFile(f); err == nil {
			if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil { // "max" means no limit
				consider(n)
			}
		}
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// MemTotal:       24570412 kB
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				if n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64); err == nil {
					consider(n << 10)
				}
				break
			}
		}
	}
	return least
}
