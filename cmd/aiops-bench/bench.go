package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/api/promapi"
	"github.com/aiops-dev/aiops/bench/alerting"
	"github.com/aiops-dev/aiops/bench/ingest"
	"github.com/aiops-dev/aiops/bench/query"
	"github.com/aiops-dev/aiops/bench/traces"
	"github.com/aiops-dev/aiops/internal/chserver"
	"github.com/aiops-dev/aiops/internal/stats"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/clickhouse"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// The stores the benchmarks compare.
const (
	storeEmbedded   = "embedded"
	storeClickHouse = "clickhouse"
)

// benchCommands measure what docs/BENCHMARKS.md reports, on the embedded
// store and on ClickHouse in one run. Without --clickhouse-addr they start
// a private ClickHouse server (Debian's clickhouse-server must be
// installed) and stop it afterwards.
type benchCommands struct {
	ingest, query, alerting *kingpin.CmdClause
	traces                  *kingpin.CmdClause
	spans, traceReads       int
	traceClients            []int
	merge                   bool // bench query: merge ClickHouse parts first

	stores         []string
	clickhouseAddr string
	runs           int
	dir            string

	points, series int
	senders        int
	perRequest     int
	rules          int
	alertSeries    int
	sampleCacheMiB int
	spanHeadMiB    int
	spanRefresh    time.Duration
	wal            bool
	protocol       string
	prometheus     string
}

func newBenchCommands(app *kingpin.Application) []command {
	c := &benchCommands{}
	c.ingest = app.Command("ingest", "OTLP metric points/s end to end (OTLP clients → collector → store, until every point is queryable), checking that none is lost, and bytes per stored sample.")
	c.ingest.Flag("points", "Points sent per run.").Default("2000000").IntVar(&c.points)
	c.ingest.Flag("points-per-request", "Points in each OTLP request; a sender's request may span several rounds of its series, as a batching collector's does. SDKs send a whole collection at once; the OTel Collector's batch processor sends 8,192 by default.").Default("2000").IntVar(&c.perRequest)
	c.ingest.Flag("series", "Distinct series they belong to.").Default("10000").IntVar(&c.series)
	c.ingest.Flag("protocol", "OTLP over grpc or http (protobuf bodies).").Default(ingest.ProtocolGRPC).EnumVar(&c.protocol, ingest.ProtocolGRPC, ingest.ProtocolHTTP)
	c.ingest.Flag("prometheus", "Also measure a Prometheus server started from this binary (v3, OTLP receiver on), sent the same requests by the same clients over OTLP/HTTP: the reference to compare with. POINTS/S for a store counts until every point is queryable, ACKED/S until every request was answered; for Prometheus they are the same.").PlaceHolder("PATH").StringVar(&c.prometheus)
	c.ingest.Flag("senders", "Concurrent OTLP clients. Each is one source: it owns an equal share of the series and sends their points in time order, one request at a time. 1 is the case of an OTel SDK or a single forwarding Collector.").Default("4").IntVar(&c.senders)
	c.query = app.Command("query", "Latency of dashboard queries over 10,000 series × 6 h at 15 s.")
	c.query.Flag("merge", "Before querying ClickHouse, merge the parts the load made (OPTIMIZE … FINAL), the state its background merges work towards; --no-merge queries them as loaded.").Default("true").BoolVar(&c.merge)
	c.alerting = app.Command("alerting", "One evaluation round of 1,000 alert rules over 100,000 series, and threshold-to-webhook latency.")
	c.alerting.Flag("rules", "Alert rules.").Default("1000").IntVar(&c.rules)
	c.alerting.Flag("series", "Series the rules select.").Default("100000").IntVar(&c.alertSeries)
	c.traces = app.Command("traces", "Trace reads of the Jaeger-compatible API over 1,000,000 stored spans: a trace by id, and a search by service and one hour that reads the 20 traces found.")
	c.traces.Flag("spans", "Spans stored (traces of 10 spans over 20 services during a day).").Default("1000000").IntVar(&c.spans)
	c.traces.Flag("merge", "Before reading ClickHouse, merge the parts the load made (OPTIMIZE … FINAL).").Default("true").BoolVar(&c.merge)
	c.traces.Flag("reads", "Reads of each kind per run and client.").Default("50").IntVar(&c.traceReads)
	c.traces.Flag("clients", "Concurrent readers, each making --reads reads of each kind; repeat for several (1 is one Jaeger UI user, more are a team's dashboards at once).").Default("1", "8").IntsVar(&c.traceClients)
	c.traces.Flag("clickhouse-span-head-mib", "The ClickHouse store's clickhouse.span_head_mib; 0 reads every trace from ClickHouse.").Default(strconv.Itoa(clickhouse.DefaultConfig().SpanHeadMiB)).IntVar(&c.spanHeadMiB)
	c.traces.Flag("clickhouse-span-head-refresh", "The ClickHouse store's clickhouse.span_head_refresh; 0 lists the parts of the spans table before every read.").Default(time.Duration(clickhouse.DefaultConfig().SpanHeadRefresh).String()).DurationVar(&c.spanRefresh)
	for _, cmd := range []*kingpin.CmdClause{c.ingest, c.query, c.alerting, c.traces} {
		cmd.Flag("store", "Store to measure; repeat for several.").Default(storeEmbedded, storeClickHouse).EnumsVar(&c.stores, storeEmbedded, storeClickHouse)
		cmd.Flag("clickhouse-addr", "Use this ClickHouse server (a fresh database in it) instead of starting a private one.").PlaceHolder("HOST:PORT").StringVar(&c.clickhouseAddr)
		cmd.Flag("runs", "Measured runs.").Default("3").IntVar(&c.runs)
		cmd.Flag("dir", "Directory for the embedded stores and queues (default: a temporary one, removed afterwards).").PlaceHolder("DIR").StringVar(&c.dir)
		cmd.Flag("clickhouse-wal", "Give the ClickHouse store its write-ahead log (clickhouse.wal.mode on), as aiops serve's all-in-one role does; --no-clickhouse-wal inserts every commit (group commit in front).").Default("true").BoolVar(&c.wal)
		cmd.Flag("clickhouse-sample-cache-mib", "The ClickHouse store's clickhouse.sample_cache_mib; 0 reads every sample from ClickHouse.").Default(strconv.Itoa(clickhouse.DefaultConfig().SampleCacheMiB)).IntVar(&c.sampleCacheMiB)
	}
	return []command{
		commandFunc{c.ingest, c.runIngest},
		commandFunc{c.query, c.runQuery},
		commandFunc{c.alerting, c.runAlerting},
		commandFunc{c.traces, c.runTraces},
	}
}

// benchEnv hands out fresh stores of each kind for one benchmark command.
type benchEnv struct {
	dir     string
	chAddr  string
	chSrv   *chserver.Server
	cleanup []func()
	n       int

	sampleCacheMiB int
	spanHeadMiB    int
	spanRefresh    time.Duration
	wal            bool
}

func (c *benchCommands) env() (*benchEnv, error) {
	e := &benchEnv{dir: c.dir, chAddr: c.clickhouseAddr, sampleCacheMiB: c.sampleCacheMiB, spanHeadMiB: c.spanHeadMiB, spanRefresh: c.spanRefresh, wal: c.wal}
	if e.dir == "" {
		dir, err := os.MkdirTemp("", "aiops-bench-")
		if err != nil {
			return nil, err
		}
		e.dir = dir
		e.cleanup = append(e.cleanup, func() { os.RemoveAll(dir) })
	}
	if slices.Contains(c.stores, storeClickHouse) && e.chAddr == "" {
		srv, err := chserver.Start()
		if err != nil {
			e.close()
			return nil, fmt.Errorf("start a private ClickHouse server (or pass --clickhouse-addr): %w", err)
		}
		e.chSrv, e.chAddr = srv, srv.NativeAddr()
		e.cleanup = append(e.cleanup, srv.Close)
	}
	return e, nil
}

func (e *benchEnv) close() {
	for i := len(e.cleanup) - 1; i >= 0; i-- {
		e.cleanup[i]()
	}
}

// open returns a fresh, empty store of the given kind and the bytes its
// samples take on disk, when that can be measured.
func (e *benchEnv) open(ctx context.Context, kind string) (storage.Store, func(context.Context) (int64, error), error) {
	e.n++
	switch kind {
	case storeEmbedded:
		cfg := embedded.DefaultConfig()
		cfg.DataDir = fmt.Sprintf("%s/embedded-%d", e.dir, e.n)
		s, err := embedded.Open(cfg, nil, nil)
		return s, nil, err
	default:
		cfg := clickhouse.DefaultConfig()
		cfg.Addresses = []string{e.chAddr}
		cfg.Database = fmt.Sprintf("aiops_bench_%d_%d", time.Now().Unix(), e.n)
		cfg.SampleCacheMiB = e.sampleCacheMiB
		cfg.SpanHeadMiB = e.spanHeadMiB
		cfg.SpanHeadRefresh = model.Duration(e.spanRefresh)
		if e.wal {
			cfg.WAL.Mode, cfg.WAL.Dir = clickhouse.WALOn, fmt.Sprintf("%s/clickhouse-wal-%d", e.dir, e.n)
		}
		s, err := clickhouse.Open(ctx, cfg, nil)
		if err != nil {
			return nil, nil, err
		}
		return s, ingest.ClickHouseDiskBytes(cfg.Addresses, cfg.Database, cfg.Username, string(cfg.Password)), nil
	}
}

func (c *benchCommands) runIngest(ctx context.Context, stdout, _ io.Writer) error {
	e, err := c.env()
	if err != nil {
		return err
	}
	defer e.close()
	kinds := slices.Clone(c.stores)
	if c.prometheus != "" {
		kinds = append(kinds, "prometheus")
	}
	// Rows are flushed as runs finish; a minimum width keeps them aligned.
	// Runs go round the stores, so that a change in the machine's load
	// during the command touches every store alike.
	tw := tabwriter.NewWriter(stdout, 14, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STORE\tRUN\tPOINTS/S\tACKED/S\tPOINTS/CPU-S\tINSERTS/S\tLOST\tREFUSED\tMAX HEAP MiB\tBYTES/SAMPLE")
	rates, acked := map[string][]float64{}, map[string][]float64{}
	for run := 1; run <= c.runs; run++ {
		for _, kind := range kinds {
			opts := ingest.Options{
				Points: c.points, Series: c.series, PointsPerRequest: c.perRequest, Senders: c.senders, Protocol: c.protocol,
			}
			var res ingest.Result
			if kind == "prometheus" {
				e.n++
				res, err = ingest.RunPrometheus(ctx, ingest.PrometheusOptions{Binary: c.prometheus, Dir: fmt.Sprintf("%s/prometheus-%d", e.dir, e.n)}, opts)
			} else {
				store, diskBytes, err := e.open(ctx, kind)
				if err != nil {
					return fmt.Errorf("%s: %w", kind, err)
				}
				opts.Store, opts.DiskBytes, opts.QueueDir = store, diskBytes, fmt.Sprintf("%s/queue-%d", e.dir, e.n)
				if kind == storeClickHouse {
					opts.Inserts = ingest.ClickHouseInserts([]string{e.chAddr}, "default", "")
				}
				res, err = ingest.Run(ctx, opts)
				store.Close()
			}
			if err != nil {
				return fmt.Errorf("%s run %d: %w", kind, run, err)
			}
			if res.Lost != 0 {
				return fmt.Errorf("%s run %d lost %d of %d points", kind, run, res.Lost, res.Points)
			}
			ackRate := float64(res.Points) / res.Acked.Seconds()
			rates[kind] = append(rates[kind], res.PointsPerSecond)
			acked[kind] = append(acked[kind], ackRate)
			bps, ins := "-", "-"
			if res.BytesPerSample > 0 {
				bps = fmt.Sprintf("%.2f", res.BytesPerSample)
			}
			if res.InsertsPerSecond > 0 {
				ins = fmt.Sprintf("%.1f", res.InsertsPerSecond)
			}
			fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f\t%s\t%d\t%d\t%d\t%s\n", kind, run, res.PointsPerSecond, ackRate, res.PointsPerCPUSecond, ins, res.Lost, res.Refused, res.MaxHeapBytes>>20, bps)
			tw.Flush()
		}
	}
	for _, kind := range kinds {
		fmt.Fprintf(tw, "%s\tmedian\t%.0f\t%.0f\t\t\t\t\t\t\n", kind, stats.Median(rates[kind]), stats.Median(acked[kind]))
	}
	return tw.Flush()
}

func (c *benchCommands) runQuery(ctx context.Context, stdout, _ io.Writer) error {
	e, err := c.env()
	if err != nil {
		return err
	}
	defer e.close()
	qcfg := promapi.DefaultConfig()
	engine, err := promapi.NewEngine(qcfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return err
	}
	defer engine.Close()
	ds := query.DefaultDataset(time.Now())
	opts := query.DefaultOptions()
	opts.Runs = c.runs
	medians := map[string]map[string]time.Duration{}
	firsts := map[string]map[string]time.Duration{}
	for _, kind := range c.stores {
		store, _, err := e.open(ctx, kind)
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		loadStart := time.Now()
		if err := ds.Load(ctx, store); err != nil {
			store.Close()
			return fmt.Errorf("%s: load: %w", kind, err)
		}
		fmt.Fprintf(stdout, "%s: loaded %d series × %d samples in %s\n", kind, ds.Series(), ds.Steps(), time.Since(loadStart).Round(time.Millisecond))
		if m, ok := store.(interface{ Merge(context.Context) error }); ok && c.merge {
			mergeStart := time.Now()
			if err := m.Merge(ctx); err != nil {
				store.Close()
				return fmt.Errorf("%s: %w", kind, err)
			}
			fmt.Fprintf(stdout, "%s: merged its parts in %s\n", kind, time.Since(mergeStart).Round(time.Millisecond))
		}
		results, err := query.Run(ctx, engine, store, ds, opts)
		store.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		medians[kind], firsts[kind] = map[string]time.Duration{}, map[string]time.Duration{}
		for _, r := range results {
			medians[kind][r.Query.Name] = r.Median()
			firsts[kind][r.Query.Name] = r.First
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	header := "QUERY"
	for _, kind := range c.stores {
		header += "\t" + strings.ToUpper(kind) + " MEDIAN"
	}
	if len(c.stores) == 2 {
		header += "\tRATIO"
	}
	// The first run of each query (not in the median) shows what a store
	// does before its caches know the query.
	for _, kind := range c.stores {
		header += "\t" + strings.ToUpper(kind) + " FIRST RUN"
	}
	fmt.Fprintln(tw, header)
	for _, q := range query.Queries() {
		line := q.Name
		for _, kind := range c.stores {
			line += "\t" + medians[kind][q.Name].Round(time.Millisecond).String()
		}
		if len(c.stores) == 2 {
			a, b := medians[c.stores[0]][q.Name], medians[c.stores[1]][q.Name]
			line += fmt.Sprintf("\t%.2f", float64(b)/float64(a))
		}
		for _, kind := range c.stores {
			line += "\t" + firsts[kind][q.Name].Round(time.Millisecond).String()
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

func (c *benchCommands) runAlerting(ctx context.Context, stdout, _ io.Writer) error {
	e, err := c.env()
	if err != nil {
		return err
	}
	defer e.close()
	for _, kind := range c.stores {
		store, _, err := e.open(ctx, kind)
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		res, err := alerting.Run(ctx, alerting.Options{Store: store, Rules: c.rules, Series: c.alertSeries, Rounds: c.runs})
		store.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		fmt.Fprintf(stdout, "%s: %s\n", kind, res)
	}
	return nil
}

func (c *benchCommands) runTraces(ctx context.Context, stdout, _ io.Writer) error {
	e, err := c.env()
	if err != nil {
		return err
	}
	defer e.close()
	ds := traces.DefaultDataset(time.Now())
	ds.Spans = c.spans
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STORE\tCLIENTS\tRUN\tREAD\tMEDIAN\tP90\tREADS/S\tSPANS")
	// Per store, per clients and kind of read: each run's median latency
	// and reads per second.
	type key struct {
		clients int
		read    string
	}
	medians := map[string]map[key][]time.Duration{}
	rates := map[string]map[key][]float64{}
	for _, kind := range c.stores {
		store, _, err := e.open(ctx, kind)
		if err != nil {
			return fmt.Errorf("%s: %w", kind, err)
		}
		loadStart := time.Now()
		if err := ds.Load(ctx, store); err != nil {
			store.Close()
			return fmt.Errorf("%s: load: %w", kind, err)
		}
		fmt.Fprintf(stdout, "%s: loaded %d spans in %s\n", kind, ds.Spans, time.Since(loadStart).Round(time.Millisecond))
		if m, ok := store.(interface{ Merge(context.Context) error }); ok && c.merge {
			if err := m.Merge(ctx); err != nil {
				store.Close()
				return fmt.Errorf("%s: %w", kind, err)
			}
		}
		// The first read starts loading the ClickHouse store's span head,
		// which the runs wait for; what it holds is measured as the Go
		// heap's growth.
		var before runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		t0 := time.Now()
		if _, err := store.QuerySpans(ctx, storage.SpanQuery{TraceID: ds.TraceID(0)}); err != nil {
			store.Close()
			return fmt.Errorf("%s: first read: %w", kind, err)
		}
		if h, ok := store.(interface{ WaitSpanHead(context.Context) error }); ok {
			if err := h.WaitSpanHead(ctx); err != nil {
				store.Close()
				return fmt.Errorf("%s: load the span head: %w", kind, err)
			}
		}
		first := time.Since(t0)
		var after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&after)
		fmt.Fprintf(stdout, "%s: first read (and the span head's load) %s, Go heap %+.1f MiB\n", kind, first.Round(time.Millisecond), (float64(after.HeapAlloc)-float64(before.HeapAlloc))/(1<<20))
		if h, ok := store.(interface{ SpanHeadStats() (int, int64, int64) }); ok {
			if n, bytes, _ := h.SpanHeadStats(); n > 0 {
				fmt.Fprintf(stdout, "%s: span head holds %d spans, counted at %.1f MiB (%d bytes a span); heap growth a span: %d bytes\n",
					kind, n, float64(bytes)/(1<<20), bytes/int64(n), (int64(after.HeapAlloc)-int64(before.HeapAlloc))/int64(n))
			}
		}
		medians[kind], rates[kind] = map[key][]time.Duration{}, map[key][]float64{}
		for _, clients := range c.traceClients {
			for run := 1; run <= c.runs; run++ {
				results, err := ds.Run(ctx, store, c.traceReads, clients)
				if err != nil {
					store.Close()
					return fmt.Errorf("%s, %d clients: %w", kind, clients, err)
				}
				for _, r := range results {
					d := slices.Clone(r.Durations)
					slices.Sort(d)
					fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%d\n", kind, clients, run, r.Name, r.Median().Round(time.Microsecond), d[len(d)*9/10].Round(time.Microsecond), perSecond(r.PerSecond()), r.Spans)
					k := key{clients, r.Name}
					medians[kind][k] = append(medians[kind][k], r.Median())
					rates[kind][k] = append(rates[kind][k], r.PerSecond())
				}
			}
		}
		store.Close()
	}
	for _, kind := range c.stores {
		keys := slices.SortedFunc(maps.Keys(medians[kind]), func(a, b key) int {
			return cmp.Or(cmp.Compare(a.clients, b.clients), strings.Compare(a.read, b.read))
		})
		for _, k := range keys {
			d, r := slices.Clone(medians[kind][k]), slices.Clone(rates[kind][k])
			slices.Sort(d)
			slices.Sort(r)
			fmt.Fprintf(tw, "%s\t%d\tmedian\t%s\t%s\t\t%s\t\n", kind, k.clients, k.read, d[len(d)/2].Round(time.Microsecond), perSecond(r[len(r)/2]))
		}
	}
	return tw.Flush()
}

// perSecond formats a rate of reads, blank for none (a part of a read).
func perSecond(r float64) string {
	if r == 0 {
		return ""
	}
	return strconv.FormatFloat(r, 'f', 0, 64)
}
