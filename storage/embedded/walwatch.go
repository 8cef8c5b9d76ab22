package embedded

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// writeFailureMetrics are the TSDB's counters of failed writes to its
// write-ahead logs: the WAL, whose failures a commit also returns, and
// the out-of-order WBL, whose failures it only logs.
var writeFailureMetrics = []string{
	"prometheus_tsdb_wal_writes_failed_total",
	"prometheus_tsdb_out_of_order_wbl_writes_failed_total",
}

// tsdbRegisterer is the prometheus.Registerer the TSDB registers its
// metrics on. It passes them to the store's registerer, remembers them so
// that they can be unregistered when the TSDB is reopened (the TSDB never
// unregisters most of its metrics, and registering them twice panics),
// and keeps the counters of failed log writes, which say that the log is
// torn (see Store.afterWrite).
type tsdbRegisterer struct {
	next prometheus.Registerer // may be nil

	mu         sync.Mutex
	registered []prometheus.Collector
	failures   []prometheus.Collector
}

func (r *tsdbRegisterer) Register(c prometheus.Collector) error {
	if r.next != nil {
		if err := r.next.Register(c); err != nil {
			return err
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.registered = append(r.registered, c)
	if describes(c, writeFailureMetrics) {
		r.failures = append(r.failures, c)
	}
	return nil
}

func (r *tsdbRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *tsdbRegisterer) Unregister(c prometheus.Collector) bool {
	ok := true
	if r.next != nil {
		ok = r.next.Unregister(c)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.registered = remove(r.registered, c)
	r.failures = remove(r.failures, c)
	return ok
}

// reset unregisters everything the TSDB registered, before it is opened
// again.
func (r *tsdbRegisterer) reset() {
	r.mu.Lock()
	cs := r.registered
	r.registered, r.failures = nil, nil
	r.mu.Unlock()
	if r.next == nil {
		return
	}
	for _, c := range cs {
		r.next.Unregister(c)
	}
}

// writeFailures is how many writes to the open TSDB's logs have failed.
func (r *tsdbRegisterer) writeFailures() float64 {
	r.mu.Lock()
	cs := r.failures
	r.mu.Unlock()
	var n float64
	for _, c := range cs {
		ch := make(chan prometheus.Metric, 4)
		c.Collect(ch)
		close(ch)
		for m := range ch {
			var d dto.Metric
			if m.Write(&d) == nil && d.Counter != nil {
				n += d.Counter.GetValue()
			}
		}
	}
	return n
}

func remove(cs []prometheus.Collector, c prometheus.Collector) []prometheus.Collector {
	for i, x := range cs {
		if x == c {
			return append(cs[:i:i], cs[i+1:]...)
		}
	}
	return cs
}

// describes reports whether c describes a metric of one of these names.
// A Desc shows its name only in its String form.
func describes(c prometheus.Collector, names []string) bool {
	ch := make(chan *prometheus.Desc, 16)
	go func() { c.Describe(ch); close(ch) }()
	found := false
	for d := range ch {
		s := d.String()
		for _, name := range names {
			if strings.Contains(s, `fqName: "`+name+`"`) {
				found = true
			}
		}
	}
	return found
}
