// Package ingest measures OTLP metric ingest end to end: OTLP/gRPC clients
// → an all-in-one collector → a store, until every point is written, and
// checks in the store that none was lost. aiops-bench ingest runs it on
// the embedded store and on ClickHouse.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"

	"github.com/aiops-dev/aiops/collector"
	"github.com/aiops-dev/aiops/storage"
)

// Options configures Run.
type Options struct {
	// Store receives the points (all-in-one role, exporter store).
	Store storage.Store
	// Points is how many metric data points are sent in total.
	Points int
	// Series is how many distinct series they belong to.
	Series int
	// PointsPerRequest is the size of one OTLP export request.
	PointsPerRequest int
	// Senders is the number of concurrent clients.
	Senders int
	// Protocol is ProtocolGRPC (default) or ProtocolHTTP.
	Protocol string
	// QueueDir holds the persistent queue; empty uses the in-memory queue.
	QueueDir string
	// Config, when set, is the collector configuration to start from
	// (endpoints and queue dir are set by Run).
	Config *collector.Config
	// DiskBytes, when set, reports the bytes the store uses for samples;
	// Run divides it by the samples stored.
	DiskBytes func(ctx context.Context) (int64, error)
	// Inserts, when set, counts the store's server's INSERT queries so
	// far; Run reports how many the run made per second.
	Inserts func(ctx context.Context) (int64, error)
	// Timeout bounds the wait for everything to be stored.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Result is what Run measured.
type Result struct {
	// Points were sent and accepted; Stored were found in the store
	// afterwards; Lost = Points - Stored.
	Points, Stored, Lost int64
	// Elapsed runs from the first request until the collector had written
	// every point; PointsPerSecond is Points / Elapsed.
	Elapsed         time.Duration
	PointsPerSecond float64
	// SendElapsed is how long the clients took to have every request
	// accepted.
	SendElapsed time.Duration
	// Acked is when the collector had acknowledged every point; Elapsed
	// also waits for the store to have them queryable (ClickHouse's
	// write-ahead log drained).
	Acked time.Duration
	// Refused counts requests the collector pushed back (and the client
	// retried).
	Refused int64
	// Spilled counts points that went through the queue because the
	// store failed or was slow (write-through, see docs/COLLECTOR.md).
	Spilled int64
	// MaxHeapBytes is the largest Go heap seen during the run.
	MaxHeapBytes uint64
	// CPU is the user+system CPU time this process spent during Elapsed
	// (clients included, a ClickHouse server not); PointsPerCPUSecond is
	// Points / CPU, which stays comparable on a machine shared with other
	// work where points/s does not.
	CPU                time.Duration
	PointsPerCPUSecond float64
	// InsertsPerSecond is the INSERT queries the store's server ran per
	// second of Elapsed, when Options.Inserts is set.
	InsertsPerSecond float64
	// BytesPerSample is DiskBytes / Stored, when DiskBytes is set.
	BytesPerSample float64
}

func (r Result) String() string {
	s := fmt.Sprintf("%d points in %s: %.0f points/s (sent in %s, acknowledged in %s), stored %d, lost %d, refused requests %d, spilled points %d, max heap %d MiB, CPU %s = %.0f points per CPU second",
		r.Points, r.Elapsed.Round(time.Millisecond), r.PointsPerSecond, r.SendElapsed.Round(time.Millisecond), r.Acked.Round(time.Millisecond),
		r.Stored, r.Lost, r.Refused, r.Spilled, r.MaxHeapBytes>>20, r.CPU.Round(time.Millisecond), r.PointsPerCPUSecond)
	if r.BytesPerSample > 0 {
		s += fmt.Sprintf(", %.2f bytes/sample on disk", r.BytesPerSample)
	}
	return s
}

func (o *Options) defaults(needStore bool) error {
	if needStore && o.Store == nil {
		return errors.New("bench: no store")
	}
	switch o.Protocol {
	case "":
		o.Protocol = ProtocolGRPC
	case ProtocolGRPC, ProtocolHTTP:
	default:
		return fmt.Errorf("bench: protocol must be %q or %q, got %q", ProtocolGRPC, ProtocolHTTP, o.Protocol)
	}
	if o.Points <= 0 {
		o.Points = 2_000_000
	}
	if o.Series <= 0 {
		o.Series = 10_000
	}
	if o.PointsPerRequest <= 0 {
		o.PointsPerRequest = 2_000
	}
	if o.Senders <= 0 {
		o.Senders = 4
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Senders > o.Series {
		return fmt.Errorf("bench: more senders (%d) than series (%d): every sender owns some series", o.Senders, o.Series)
	}
	return nil
}

// metricName is the name of the benchmark's gauge.
const metricName = "aiops_bench_value"

// Run measures OTLP metric points per second end to end: OTLP clients
// (gRPC or HTTP) → all-in-one collector → opts.Store, until every point is
// written, then checks in the store that none was lost. The requests are
// encoded before the clock starts, so the clients cost little CPU.
func Run(ctx context.Context, opts Options) (Result, error) {
	if err := opts.defaults(true); err != nil {
		return Result{}, err
	}
	cfg := collector.DefaultConfig()
	if opts.Config != nil {
		cfg = *opts.Config
	}
	cfg.Role, cfg.Exporter, cfg.ConfigFile = collector.RoleAllInOne, collector.ExporterStore, ""
	addr, err := freeLocalAddr()
	if err != nil {
		return Result{}, err
	}
	httpAddr, err := freeLocalAddr()
	if err != nil {
		return Result{}, err
	}
	cfg.OTLP.GRPCEndpoint, cfg.OTLP.HTTPEndpoint = addr, httpAddr
	cfg.Queue.Dir = opts.QueueDir
	cfg.RetryAfter = time.Second

	reg := prometheus.NewRegistry()
	c, err := collector.New(cfg, collector.Deps{Store: opts.Store, Logger: opts.Logger, Registerer: reg})
	if err != nil {
		return Result{}, err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(runCtx) }()
	select {
	case <-c.Started():
	case err := <-runErr:
		return Result{}, fmt.Errorf("bench: collector: %w", err)
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	defer func() { stop(); <-runErr }()

	requests, points, start := encodeRequests(opts)
	res := Result{Points: points}

	var exp exporter
	if opts.Protocol == ProtocolHTTP {
		exp = newHTTPExporter("http://" + httpAddr + "/v1/metrics")
	} else if exp, err = newGRPCExporter(addr); err != nil {
		return res, err
	}
	defer exp.close()

	heapDone := make(chan struct{})
	var maxHeap atomic.Uint64
	go func() {
		var ms runtime.MemStats
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > maxHeap.Load() {
				maxHeap.Store(ms.HeapInuse)
			}
			select {
			case <-heapDone:
				return
			case <-t.C:
			}
		}
	}()
	defer close(heapDone)

	var insertsBefore int64
	if opts.Inserts != nil {
		if insertsBefore, err = opts.Inserts(ctx); err != nil {
			return res, fmt.Errorf("bench: %w", err)
		}
	}
	cpuBefore := processCPU()
	began := time.Now()
	res.Refused, err = sendAll(ctx, exp, requests)
	res.SendElapsed = time.Since(began)
	if err != nil {
		return res, fmt.Errorf("bench: send: %w", err)
	}

	counter := func(name string) float64 {
		mfs, _ := reg.Gather()
		sum := 0.0
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "signal" && l.GetValue() == "metrics" {
						sum += m.GetCounter().GetValue()
					}
				}
			}
		}
		return sum
	}
	stored := func() float64 { return counter("aiops_collector_stored_items_total") }
	deadline := time.Now().Add(opts.Timeout)
	for stored() < float64(res.Points) {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("bench: %v of %d points stored after %s", stored(), res.Points, opts.Timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	res.Acked = time.Since(began)
	if f, ok := opts.Store.(interface{ Flush(context.Context) error }); ok {
		if err := f.Flush(ctx); err != nil {
			return res, fmt.Errorf("bench: flush the store: %w", err)
		}
	}
	res.Elapsed = time.Since(began)
	res.CPU = processCPU() - cpuBefore
	if opts.Inserts != nil {
		n, err := opts.Inserts(ctx)
		if err != nil {
			return res, fmt.Errorf("bench: %w", err)
		}
		res.InsertsPerSecond = float64(n-insertsBefore) / res.Elapsed.Seconds()
	}
	res.PointsPerSecond = float64(res.Points) / res.Elapsed.Seconds()
	if res.CPU > 0 {
		res.PointsPerCPUSecond = float64(res.Points) / res.CPU.Seconds()
	}
	res.MaxHeapBytes = maxHeap.Load()
	res.Spilled = int64(counter("aiops_collector_spilled_items_total"))

	res.Stored, err = countSamples(ctx, opts.Store, start)
	if err != nil {
		return res, err
	}
	res.Lost = res.Points - res.Stored
	if opts.DiskBytes != nil && res.Stored > 0 {
		b, err := opts.DiskBytes(ctx)
		if err != nil {
			return res, fmt.Errorf("bench: disk bytes: %w", err)
		}
		res.BytesPerSample = float64(b) / float64(res.Stored)
	}
	return res, nil
}

// encodeRequests encodes the requests of each sender: Series series ×
// rounds, one point per series per round, rounds one second apart, ending
// now. Each sender is one source, as an OTel SDK or a collector in front
// of aiops is: it owns a share of the series and sends their points in
// time order, PointsPerRequest at a time (a request may span rounds, as a
// batching collector's does).
func encodeRequests(o Options) (requests [][][]byte, points int64, start time.Time) {
	rounds := max(o.Points/o.Series, 1)
	start = time.Now().Add(-time.Duration(rounds) * time.Second).Truncate(time.Second)
	const perInstance = 100 // series per service instance (resource)
	requests = make([][][]byte, o.Senders)
	for k := range o.Senders {
		first, end := k*o.Series/o.Senders, (k+1)*o.Series/o.Senders
		var (
			md  pmetric.Metrics
			dps pmetric.NumberDataPointSlice
			n   int
		)
		flush := func() {
			if n == 0 {
				return
			}
			b, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
			requests[k] = append(requests[k], b)
			n = 0
		}
		for r := range rounds {
			ts := pcommon.NewTimestampFromTime(start.Add(time.Duration(r) * time.Second))
			for s := first; s < end; s++ {
				if n == 0 {
					md = pmetric.NewMetrics()
				}
				if n == 0 || s == first || s%perInstance == 0 {
					rm := md.ResourceMetrics().AppendEmpty()
					rm.Resource().Attributes().PutStr("service.name", "bench")
					rm.Resource().Attributes().PutStr("service.instance.id", fmt.Sprintf("inst-%d", s/perInstance))
					m := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
					m.SetName(metricName)
					dps = m.SetEmptyGauge().DataPoints()
				}
				dp := dps.AppendEmpty()
				dp.Attributes().PutStr("series", fmt.Sprintf("s%06d", s))
				dp.Attributes().PutStr("region", "eu-west-1")
				dp.SetTimestamp(ts)
				dp.SetDoubleValue(float64(r*o.Series + s))
				points++
				if n++; n == o.PointsPerRequest {
					flush()
				}
			}
		}
		flush()
	}
	return requests, points, start
}

// countSamples counts the benchmark's samples in the store.
func countSamples(ctx context.Context, st storage.Store, since time.Time) (int64, error) {
	q, err := st.Querier(since.Add(-time.Minute).UnixMilli(), time.Now().Add(time.Minute).UnixMilli())
	if err != nil {
		return 0, err
	}
	defer q.Close()
	set := q.Select(ctx, false, nil, labels.MustNewMatcher(labels.MatchEqual, labels.MetricName, metricName))
	var n int64
	var it chunkenc.Iterator
	for set.Next() {
		it = set.At().Iterator(it)
		for it.Next() != chunkenc.ValNone {
			n++
		}
		if err := it.Err(); err != nil {
			return n, err
		}
	}
	return n, set.Err()
}

// processCPU is the CPU time (user + system) the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func freeLocalAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// rawCodec sends pre-encoded protobuf bytes as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*(v.(*[]byte)))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*(v.(*[]byte)) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

var _ encoding.CodecV2 = rawCodec{}
