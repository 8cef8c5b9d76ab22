package clickhouse

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// Benchmarks. Run them with, e.g.:
//
//	go test ./storage/clickhouse -run '^$' -bench 'Append' -benchtime 20x -count 5
//	go test ./storage/clickhouse -run '^$' -bench 'BytesPerSample' -benchtime 1x -count 3
//	go test ./storage/clickhouse -run '^$' -bench 'DashboardQueries' -benchtime 5x -count 3 -timeout 60m
//
// They share the package's ClickHouse server (TestMain).

// benchSeries returns n realistic label sets: a metric name and five to
// seven labels.
func benchSeries(n int) []labels.Labels {
	out := make([]labels.Labels, n)
	for i := range out {
		out[i] = labels.FromStrings(
			"__name__", "http_server_requests_total",
			"job", "api",
			"instance", fmt.Sprintf("10.0.%d.%d:8080", i/250, i%250),
			"method", []string{"GET", "POST", "PUT", "DELETE"}[i%4],
			"route", fmt.Sprintf("/v1/resource/%d", i%50),
			"status", []string{"200", "201", "404", "500"}[i/4%4],
			"service_name", "workflow-engine",
		)
	}
	return out
}

// BenchmarkAppend measures samples per second through AppenderV2 and
// Commit into ClickHouse: batches of 10,000 series × N samples, the shape
// of a collector batch. Each iteration writes new timestamps.
func BenchmarkAppend(b *testing.B) {
	for _, perSeries := range []int{1, 10} {
		for _, writers := range []int{1, 2} {
			b.Run(fmt.Sprintf("series=10000/samples_per_series=%d/writers=%d", perSeries, writers), func(b *testing.B) {
				benchAppend(b, 10000, perSeries, writers)
			})
		}
	}
}

func benchAppend(b *testing.B, nSeries, perSeries, writers int) {
	s := openStore(b)
	series := benchSeries(nSeries)
	base := time.Now().Add(-time.Hour).UnixMilli()
	var next int64
	var mu sync.Mutex
	batch := func() error {
		mu.Lock()
		start := base + next*15000
		next += int64(perSeries)
		mu.Unlock()
		app := s.AppenderV2(context.Background())
		for k := 0; k < perSeries; k++ {
			ts := start + int64(k)*15000
			for i, ls := range series {
				if _, err := app.Append(0, ls, 0, ts, float64(ts/1000+int64(i)), nil, nil, promstorage.AOptions{}); err != nil {
					return err
				}
			}
		}
		return app.Commit()
	}
	// The first batch also writes the series rows; steady state is what
	// an ingester sees all day.
	if err := batch(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	per := (b.N + writers - 1) / writers
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				if err := batch(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	samples := float64(per * writers * nSeries * perSeries)
	b.ReportMetric(samples/b.Elapsed().Seconds(), "samples/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/samples, "ns/sample")
}

// BenchmarkBytesPerSample writes 10,000 series × 6 h at 15 s (counters,
// gauges and histogram buckets with realistic increments), merges the
// parts (OPTIMIZE FINAL) and reports the compressed bytes of
// metric_samples per sample from system.parts. Run it with -benchtime 1x.
func BenchmarkBytesPerSample(b *testing.B) {
	for i := 0; i < b.N; i++ {
		s := openStore(b)
		d := newDashboardData()
		if err := d.load(s); err != nil {
			b.Fatal(err)
		}
		if err := server.Exec(context.Background(), "OPTIMIZE TABLE "+s.t.samples+" FINAL"); err != nil {
			b.Fatal(err)
		}
		out, err := server.Query(context.Background(), fmt.Sprintf(
			"SELECT sum(rows), sum(data_compressed_bytes), sum(bytes_on_disk) FROM system.parts WHERE database = %s AND table = 'metric_samples' AND active",
			quote(unquoteIdent(s.t.db))))
		if err != nil {
			b.Fatal(err)
		}
		f := strings.Fields(out)
		rows, _ := strconv.ParseFloat(f[0], 64)
		compressed, _ := strconv.ParseFloat(f[1], 64)
		disk, _ := strconv.ParseFloat(f[2], 64)
		if rows != float64(d.samples()) {
			b.Fatalf("%v rows stored, want %d", rows, d.samples())
		}
		cols, err := server.Query(context.Background(), fmt.Sprintf(
			"SELECT name, data_compressed_bytes FROM system.columns WHERE database = %s AND table = 'metric_samples'",
			quote(unquoteIdent(s.t.db))))
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("server %s: %v rows, %.2f compressed bytes/sample, %.2f on disk (with marks and index); per column:\n%s",
			s.ServerVersion(), rows, compressed/rows, disk/rows, cols)
		b.ReportMetric(compressed/rows, "bytes/sample")
		b.ReportMetric(disk/rows, "disk_bytes/sample")
	}
}

// dashboardData is 10,000 series × 6 h at 15 s: request counters with
// five labels, latency histogram buckets and CPU counters, the data behind
// a typical service dashboard.
type dashboardData struct {
	series []labels.Labels
	kind   []int // 0 counter, 1 bucket (cumulative in le), 2 cpu
	start  int64
	steps  int
}

const dashboardStep = 15000

func newDashboardData() *dashboardData {
	d := &dashboardData{start: time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC).UnixMilli(), steps: 6 * 3600 * 1000 / dashboardStep}
	jobs := []string{"api", "worker"}
	methods := []string{"GET", "POST", "PUT", "DELETE"}
	statuses := []string{"200", "201", "400", "404", "500"}
	for _, job := range jobs {
		for inst := 0; inst < 50; inst++ {
			for _, m := range methods {
				for _, st := range statuses {
					d.series = append(d.series, labels.FromStrings("__name__", "http_requests_total", "job", job,
						"instance", fmt.Sprintf("host-%d", inst), "method", m, "status", st, "handler", "/api/v1/run"))
					d.kind = append(d.kind, 0)
				}
			}
		}
	}
	les := []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"}
	for _, job := range jobs {
		for inst := 0; inst < 50; inst++ {
			for _, m := range methods {
				for _, le := range les {
					d.series = append(d.series, labels.FromStrings("__name__", "http_request_duration_seconds_bucket", "job", job,
						"instance", fmt.Sprintf("host-%d", inst), "method", m, "le", le))
					d.kind = append(d.kind, 1)
				}
			}
		}
	}
	modes := []string{"user", "system", "idle", "iowait", "irq", "softirq", "steal", "nice"}
	for inst := 0; inst < 50; inst++ {
		for cpu := 0; cpu < 8; cpu++ {
			for _, mode := range modes {
				d.series = append(d.series, labels.FromStrings("__name__", "node_cpu_seconds_total", "job", "node",
					"instance", fmt.Sprintf("host-%d", inst), "cpu", strconv.Itoa(cpu), "mode", mode))
				d.kind = append(d.kind, 2)
			}
		}
	}
	return d
}

func (d *dashboardData) samples() int { return len(d.series) * d.steps }

// load writes the data in batches of ten scrapes of every series.
func (d *dashboardData) load(st promstorage.Appendable) error {
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([]float64, len(d.series))
	for step := 0; step < d.steps; step += 10 {
		app := st.Appender(context.Background())
		for k := step; k < step+10 && k < d.steps; k++ {
			ts := d.start + int64(k)*dashboardStep
			for i, ls := range d.series {
				switch d.kind[i] {
				case 0:
					vals[i] += float64(rng.IntN(20))
				case 1:
					// Buckets of one histogram are consecutive series with
					// growing le: cumulative counts.
					inc := float64(rng.IntN(5))
					if i > 0 && d.kind[i-1] == 1 && ls.Get("le") != "0.005" {
						inc += vals[i-1] - vals[i] + float64(rng.IntN(3))
						if inc < 0 {
							inc = 0
						}
					}
					vals[i] += inc
				case 2:
					vals[i] += rng.Float64() * 15
				}
				if _, err := app.Append(0, ls, ts, vals[i]); err != nil {
					return err
				}
			}
		}
		if err := app.Commit(); err != nil {
			return err
		}
	}
	return nil
}

var dashboardQueries = []struct{ name, expr string }{
	{"rate", `rate(http_requests_total[5m])`},
	{"sum_by_rate", `sum by (job, status) (rate(http_requests_total[5m]))`},
	{"histogram_quantile", `histogram_quantile(0.99, sum by (le, job) (rate(http_request_duration_seconds_bucket[5m])))`},
	{"topk", `topk(5, sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m])))`},
	{"regex_5_labels", `sum(rate(http_requests_total{job=~"api|worker", instance=~"host-1.*", method=~"GET|POST", status=~"5..", handler=~"/api/.*"}[5m]))`},
}

var (
	dashboardOnce sync.Once
	dashboardCH   *Store
	dashboardTSDB *tsdb.DB
	dashboardSet  *dashboardData
	dashboardErr  error
)

// BenchmarkDashboardQueries runs dashboard PromQL range queries (6 h,
// step 60 s) on ClickHouse and, for comparison, on Prometheus's TSDB
// holding the same 10,000 series × 6 h at 15 s. ns/op is the latency of
// one query.
func BenchmarkDashboardQueries(b *testing.B) {
	dashboardOnce.Do(func() {
		dashboardSet = newDashboardData()
		cfg := DefaultConfig()
		cfg.Addresses = []string{server.NativeAddr()}
		cfg.Compression = "none"
		cfg.Retention = 0
		if cfg.Database, dashboardErr = server.CreateDatabase(context.Background()); dashboardErr != nil {
			return
		}
		if dashboardCH, dashboardErr = Open(context.Background(), cfg, nil); dashboardErr != nil {
			return
		}
		t0 := time.Now()
		if dashboardErr = dashboardSet.load(dashboardCH); dashboardErr != nil {
			return
		}
		b.Logf("loaded %d samples into ClickHouse in %s", dashboardSet.samples(), time.Since(t0))
		if dashboardErr = server.Exec(context.Background(), "OPTIMIZE TABLE "+dashboardCH.t.samples+" FINAL"); dashboardErr != nil {
			return
		}
		dir, err := os.MkdirTemp("", "bench-tsdb-")
		if err != nil {
			dashboardErr = err
			return
		}
		afterAll = append(afterAll, func() { os.RemoveAll(dir) })
		opts := tsdb.DefaultOptions()
		opts.RetentionDuration = 0
		if dashboardTSDB, dashboardErr = tsdb.Open(dir, nil, nil, opts, nil); dashboardErr != nil {
			return
		}
		afterAll = append(afterAll, func() { dashboardTSDB.Close() }, func() { dashboardCH.Close() })
		dashboardErr = dashboardSet.load(dashboardTSDB)
	})
	if dashboardErr != nil {
		b.Fatal(dashboardErr)
	}
	engine := promql.NewEngine(promql.EngineOpts{
		MaxSamples: 100_000_000,
		Timeout:    10 * time.Minute,
		Parser:     parser.NewParser(parser.Options{}),
	})
	start := time.UnixMilli(dashboardSet.start).Add(10 * time.Minute)
	end := time.UnixMilli(dashboardSet.start + int64(dashboardSet.steps-1)*dashboardStep)
	for _, q := range dashboardQueries {
		for _, backend := range []struct {
			name string
			st   promstorage.Queryable
		}{{"clickhouse", dashboardCH}, {"tsdb", dashboardTSDB}} {
			b.Run(q.name+"/"+backend.name, func(b *testing.B) {
				for i := 0; i < b.N; i++ {
					qry, err := engine.NewRangeQuery(context.Background(), backend.st, nil, q.expr, start, end, time.Minute)
					if err != nil {
						b.Fatal(err)
					}
					res := qry.Exec(context.Background())
					if res.Err != nil {
						b.Fatal(res.Err)
					}
					m, err := res.Matrix()
					if err != nil || len(m) == 0 {
						b.Fatalf("empty result: %v", err)
					}
					qry.Close()
				}
			})
		}
	}
}
