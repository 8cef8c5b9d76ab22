// Package query measures PromQL latency for the queries dashboards
// run, over a synthetic data set shaped like the AI workflow engine's
// services, on any Prometheus storage. The same data and queries run on
// every store, so their latencies compare.
package query

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
	promstorage "github.com/prometheus/prometheus/storage"
)

// SeriesPerInstance is how many series one instance of a service has:
// 20 request counters (5 routes × 4 status codes), a latency histogram per
// route (5 × (11 buckets + _sum + _count) = 65) and 15 queue depth gauges.
const SeriesPerInstance = 100

var (
	routes = []struct{ method, path string }{
		{"GET", "/api/v1/jobs"},
		{"POST", "/api/v1/jobs"},
		{"GET", "/api/v1/runs"},
		{"POST", "/api/v1/runs"},
		{"GET", "/healthz"},
	}
	statuses = []string{"200", "400", "500", "503"}
	// Upper bounds of the latency buckets, in seconds; +Inf is added.
	bucketBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5}
	queues       = 15
)

// Dataset describes the synthetic data: Services × InstancesPerService ×
// SeriesPerInstance series, one sample every Interval over Duration ending
// at End.
type Dataset struct {
	Services            int
	InstancesPerService int
	End                 time.Time
	Duration            time.Duration
	Interval            time.Duration
	// Seed makes the values reproducible.
	Seed uint64
}

// DefaultDataset is 10,000 series × 6 h at 15 s resolution (14.4 million
// samples) ending at end.
func DefaultDataset(end time.Time) Dataset {
	return Dataset{
		Services:            20,
		InstancesPerService: 5,
		End:                 end.Truncate(15 * time.Second),
		Duration:            6 * time.Hour,
		Interval:            15 * time.Second,
		Seed:                1,
	}
}

// Validate reports what is wrong with d.
func (d Dataset) Validate() error {
	switch {
	case d.Services <= 0 || d.Services > 100:
		return fmt.Errorf("query: services must be in 1..100, got %d", d.Services)
	case d.InstancesPerService <= 0:
		return fmt.Errorf("query: instances per service must be > 0, got %d", d.InstancesPerService)
	case d.Interval <= 0:
		return fmt.Errorf("query: interval must be > 0, got %s", d.Interval)
	case d.Duration < d.Interval:
		return fmt.Errorf("query: duration must be at least the interval, got %s", d.Duration)
	case d.End.IsZero():
		return errors.New("query: end time must be set")
	}
	return nil
}

// Series is how many series the data set has.
func (d Dataset) Series() int { return d.Services * d.InstancesPerService * SeriesPerInstance }

// Steps is how many samples each series has.
func (d Dataset) Steps() int { return int(d.Duration/d.Interval) + 1 }

// Start is the time of the first sample.
func (d Dataset) Start() time.Time { return d.End.Add(-time.Duration(d.Steps()-1) * d.Interval) }

// series is one generated series and the state that produces its values.
type series struct {
	lset   labels.Labels
	ref    promstorage.SeriesRef
	opts   promstorage.AppendV2Options
	value  float64
	next   func(s *series, rng *rand.Rand, step int)
	weight float64
}

// Load appends the data set to app in time order, one commit per
// timestamp, with OTLP-like metadata (family name, type, help, unit), so a
// store sees what its ingest path would.
func (d Dataset) Load(ctx context.Context, app promstorage.AppendableV2) error {
	if err := d.Validate(); err != nil {
		return err
	}
	all := d.build()
	rng := rand.New(rand.NewPCG(d.Seed, d.Seed^0x9e3779b97f4a7c15))
	start := d.Start()
	for step := range d.Steps() {
		if err := ctx.Err(); err != nil {
			return err
		}
		ts := start.Add(time.Duration(step) * d.Interval).UnixMilli()
		a := app.AppenderV2(ctx)
		for _, s := range all {
			s.next(s, rng, step)
			ref, err := a.Append(s.ref, s.lset, 0, ts, s.value, nil, nil, s.opts)
			if err != nil {
				_ = a.Rollback()
				return fmt.Errorf("query: append %s at %d: %w", s.lset, ts, err)
			}
			s.ref = ref
		}
		if err := a.Commit(); err != nil {
			return fmt.Errorf("query: commit samples at %d: %w", ts, err)
		}
	}
	return nil
}

func (d Dataset) build() []*series {
	reqMeta := promstorage.AppendV2Options{
		MetricFamilyName: "http_requests_total",
		Metadata:         metadata.Metadata{Type: model.MetricTypeCounter, Help: "HTTP requests served."},
	}
	durMeta := promstorage.AppendV2Options{
		MetricFamilyName: "http_request_duration_seconds",
		Metadata:         metadata.Metadata{Type: model.MetricTypeHistogram, Help: "HTTP request latency.", Unit: "seconds"},
	}
	queueMeta := promstorage.AppendV2Options{
		MetricFamilyName: "worker_queue_depth",
		Metadata:         metadata.Metadata{Type: model.MetricTypeGauge, Help: "Jobs waiting in a worker queue."},
	}
	interval := d.Interval.Seconds()

	out := make([]*series, 0, d.Series())
	for svc := range d.Services {
		service := fmt.Sprintf("svc-%02d", svc)
		for inst := range d.InstancesPerService {
			instance := service + "-" + strconv.Itoa(inst)
			for _, r := range routes {
				// Requests per second on this route of this instance.
				rate := 1 + 20*weight(instance, r.path, r.method)
				for i, status := range statuses {
					share := []float64{0.93, 0.05, 0.015, 0.005}[i]
					out = append(out, &series{
						lset: labels.FromStrings("__name__", "http_requests_total",
							"service", service, "instance", instance, "route", r.path, "method", r.method, "status", status),
						opts:   reqMeta,
						weight: rate * share * interval,
						next: func(s *series, rng *rand.Rand, _ int) {
							s.value += math.Round(s.weight * (0.5 + rng.Float64()))
						},
					})
				}
				// The histogram's series share one latency draw per step,
				// so bucket counts stay cumulative.
				h := &histogramState{perStep: rate * interval, median: 0.02 + 0.3*weight(instance, r.path, "latency")}
				base := []string{"service", service, "instance", instance, "route", r.path, "method", r.method}
				for b := 0; b <= len(bucketBounds); b++ {
					le := "+Inf"
					if b < len(bucketBounds) {
						le = strconv.FormatFloat(bucketBounds[b], 'f', -1, 64)
					}
					out = append(out, &series{
						lset: labels.FromStrings(append([]string{"__name__", "http_request_duration_seconds_bucket", "le", le}, base...)...),
						opts: durMeta,
						next: func(s *series, rng *rand.Rand, step int) {
							h.advance(rng, step)
							s.value = h.buckets[b]
						},
					})
				}
				out = append(out,
					&series{
						lset: labels.FromStrings(append([]string{"__name__", "http_request_duration_seconds_sum"}, base...)...),
						opts: durMeta,
						next: func(s *series, rng *rand.Rand, step int) { h.advance(rng, step); s.value = h.sum },
					},
					&series{
						lset: labels.FromStrings(append([]string{"__name__", "http_request_duration_seconds_count"}, base...)...),
						opts: durMeta,
						next: func(s *series, rng *rand.Rand, step int) { h.advance(rng, step); s.value = h.count },
					},
				)
			}
			for q := range queues {
				out = append(out, &series{
					lset: labels.FromStrings("__name__", "worker_queue_depth",
						"service", service, "instance", instance, "queue", fmt.Sprintf("queue-%02d", q)),
					opts:   queueMeta,
					weight: 50 * weight(instance, strconv.Itoa(q), "queue"),
					next: func(s *series, rng *rand.Rand, _ int) {
						// A random walk that drifts back to its level.
						s.value = max(0, s.value+(s.weight-s.value)*0.1+rng.NormFloat64()*3)
					},
				})
			}
		}
	}
	return out
}

// histogramState holds one classic histogram's cumulative counts.
type histogramState struct {
	step    int // the step the counts are for, so that they advance once
	started bool
	perStep float64
	median  float64
	buckets [11]float64
	sum     float64
	count   float64
}

func (h *histogramState) advance(rng *rand.Rand, step int) {
	if h.started && h.step == step {
		return
	}
	h.started, h.step = true, step
	n := math.Round(h.perStep * (0.5 + rng.Float64()))
	// Spread n requests over the buckets with a log-normal-ish latency;
	// a handful of draws keeps this cheap at 10,000 series.
	const draws = 8
	for i := range draws {
		share := math.Floor(n / draws)
		if i == draws-1 {
			share = n - share*(draws-1)
		}
		lat := h.median * math.Exp(rng.NormFloat64()*0.8)
		for b, bound := range bucketBounds {
			if lat <= bound {
				h.buckets[b] += share
			}
		}
		h.buckets[len(bucketBounds)] += share
		h.sum += share * lat
	}
	h.count += n
}

// weight is a stable pseudo-random number in [0, 1) for the given keys,
// so that each series gets its own level.
func weight(keys ...string) float64 {
	f := fnv.New64a()
	for _, k := range keys {
		f.Write([]byte(k))
		f.Write([]byte{0})
	}
	return float64(f.Sum64()>>11) / (1 << 53)
}
