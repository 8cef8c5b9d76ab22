// Package alerting measures the alerting component on a store: one
// evaluation round of many alerting rules over many series, and the
// latency from a sample crossing a threshold to a webhook receiving the
// notification through the embedded Alertmanager. aiops-bench alerting
// runs it on the embedded store and on ClickHouse.
package alerting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/rules"
	promstorage "github.com/prometheus/prometheus/storage"

	aiopsalerting "github.com/aiops-dev/aiops/alerting"
	"github.com/aiops-dev/aiops/alerting/webhook"
)

// Store is what the alerting benchmark needs from a store.
type Store interface {
	promstorage.Queryable
	promstorage.Appendable
	promstorage.AppendableV2
}

// Options configures Run.
type Options struct {
	Store Store
	// Rules alerting rules over Series series (defaults 1,000 and
	// 100,000), in groups of RulesPerGroup (default 100).
	Rules, Series, RulesPerGroup int
	// Rounds is how many evaluation rounds are timed (default 5).
	Rounds int
	// Trials is how many threshold crossings the latency run times
	// (default 20); 0 with SkipLatency skips it.
	Trials      int
	SkipLatency bool
	// LatencyInterval is the evaluation interval of the latency rule
	// (default 100ms); BackgroundInterval that of the Rules rules running
	// meanwhile (default 15s).
	LatencyInterval, BackgroundInterval time.Duration
	// Dir holds the generated rule files and the alerting data dir;
	// default a temporary directory, removed afterwards.
	Dir    string
	Logger *slog.Logger
}

// Result is what Run measured.
type Result struct {
	Rules, Series, Groups int
	// Rounds are the wall-clock durations of evaluating every rule once,
	// all groups concurrently as the rule manager runs them.
	Rounds      []time.Duration
	MedianRound time.Duration
	// FiringAlerts is how many alerts the rules keep firing (their ALERTS
	// series are written every round).
	FiringAlerts int
	// Latencies run from appending a sample that crosses the threshold
	// to the webhook receiving the notification; the latency rule has no
	// `for`, so nothing is to be subtracted.
	Latencies                 []time.Duration
	MedianLatency, P90, Worst time.Duration
	LatencySettings           string
}

func (r Result) String() string {
	s := fmt.Sprintf("%d rules in %d groups over %d series (%d alerts firing): evaluation round median %s (rounds %s)",
		r.Rules, r.Groups, r.Series, r.FiringAlerts, r.MedianRound.Round(time.Millisecond), roundAll(r.Rounds))
	if len(r.Latencies) > 0 {
		s += fmt.Sprintf("\nthreshold crossing → webhook: median %s, p90 %s, max %s over %d trials (%s)",
			r.MedianLatency.Round(time.Millisecond), r.P90.Round(time.Millisecond), r.Worst.Round(time.Millisecond),
			len(r.Latencies), r.LatencySettings)
	}
	return s
}

func roundAll(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Round(time.Millisecond).String()
	}
	return strings.Join(parts, " ")
}

func (o *Options) defaults() error {
	if o.Store == nil {
		return errors.New("bench: no store")
	}
	if o.Rules <= 0 {
		o.Rules = 1000
	}
	if o.Series <= 0 {
		o.Series = 100_000
	}
	if o.RulesPerGroup <= 0 {
		o.RulesPerGroup = 100
	}
	if o.Series%o.Rules != 0 {
		return fmt.Errorf("bench: series (%d) must be a multiple of rules (%d)", o.Series, o.Rules)
	}
	if o.Rounds <= 0 {
		o.Rounds = 5
	}
	if o.Trials <= 0 {
		o.Trials = 20
	}
	if o.LatencyInterval <= 0 {
		o.LatencyInterval = 100 * time.Millisecond
	}
	if o.BackgroundInterval <= 0 {
		o.BackgroundInterval = 15 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Run measures rule evaluation over opts.Store: the duration of one
// round of opts.Rules alerting rules over opts.Series series, and the
// latency from a sample crossing a threshold to a webhook receiving the
// notification, through the embedded Alertmanager, while those rules keep
// being evaluated.
//
// Each rule selects its own Series/Rules counters (label group); rules
// alternate between a per-job rate aggregation and a per-series
// threshold, and every 50th rule fires for all its series.
func Run(ctx context.Context, opts Options) (Result, error) {
	if err := opts.defaults(); err != nil {
		return Result{}, err
	}
	if opts.Dir == "" {
		dir, err := os.MkdirTemp("", "aiops-bench-alerting-")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(dir)
		opts.Dir = dir
	}
	now := time.Now()
	if err := load(ctx, opts, now); err != nil {
		return Result{}, err
	}
	files, groups, firing, err := ruleFiles(opts)
	if err != nil {
		return Result{}, err
	}
	res := Result{Rules: opts.Rules, Series: opts.Series, Groups: groups, FiringAlerts: firing}

	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: 2 * time.Minute, LookbackDelta: 5 * time.Minute})
	defer engine.Close()
	extURL, _ := url.Parse("http://localhost:9090")
	mgr := rules.NewManager(&rules.ManagerOptions{
		ExternalURL:  extURL,
		QueryFunc:    rules.EngineQueryFunc(engine, opts.Store),
		NotifyFunc:   func(context.Context, string, ...*rules.Alert) {},
		Context:      ctx,
		AppendableV2: opts.Store,
		Queryable:    opts.Store,
		Logger:       opts.Logger,
		Registerer:   prometheus.NewRegistry(),
	})
	loaded, errs := mgr.LoadGroups(opts.BackgroundInterval, labels.EmptyLabels(), extURL.String(), nil, false, files...)
	if len(errs) > 0 {
		return res, fmt.Errorf("bench: load rules: %w", errors.Join(errs...))
	}
	for i := range opts.Rounds {
		// Rounds are evaluated at increasing timestamps, as the manager
		// would, so ALERTS samples are appended in order.
		ts := time.Now()
		start := time.Now()
		var wg sync.WaitGroup
		for _, g := range loaded {
			wg.Go(func() { g.Eval(ctx, ts) })
		}
		wg.Wait()
		res.Rounds = append(res.Rounds, time.Since(start))
		if err := ctx.Err(); err != nil {
			return res, err
		}
		opts.Logger.Info("bench: evaluation round", "round", i, "duration", res.Rounds[i])
		for _, g := range loaded {
			for _, r := range g.Rules() {
				if err := r.LastError(); err != nil {
					return res, fmt.Errorf("bench: rule %s: %w", r.Name(), err)
				}
			}
		}
	}
	res.MedianRound = median(res.Rounds)
	if opts.SkipLatency {
		return res, nil
	}
	return latency(ctx, opts, files, res)
}

const (
	benchMetric   = "aiops_bench_requests_total"
	latencyMetric = "aiops_bench_latency_value"
)

// load writes five samples, 15 s apart and ending at now, to each
// series.
func load(ctx context.Context, opts Options, now time.Time) error {
	perRule := opts.Series / opts.Rules
	for step := range 5 {
		ts := now.Add(time.Duration(step-4) * 15 * time.Second).UnixMilli()
		app := opts.Store.Appender(ctx)
		for i := range opts.Series {
			ls := labels.FromStrings(
				"__name__", benchMetric,
				"group", "g"+strconv.Itoa(i/perRule),
				"job", "svc"+strconv.Itoa(i%perRule%10),
				"instance", "i"+strconv.Itoa(i),
			)
			if _, err := app.Append(0, ls, ts, float64(step*(i%100+1))); err != nil {
				app.Rollback()
				return fmt.Errorf("bench: append: %w", err)
			}
			if i%10_000 == 9_999 {
				if err := app.Commit(); err != nil {
					return fmt.Errorf("bench: commit: %w", err)
				}
				app = opts.Store.Appender(ctx)
			}
		}
		if err := app.Commit(); err != nil {
			return fmt.Errorf("bench: commit: %w", err)
		}
	}
	return nil
}

// ruleFiles writes the rule files and returns them, the number of
// groups and the number of alerts that fire.
func ruleFiles(opts Options) ([]string, int, int, error) {
	perRule := opts.Series / opts.Rules
	var files []string
	groups, firing := 0, 0
	for g := 0; g*opts.RulesPerGroup < opts.Rules; g++ {
		var b strings.Builder
		fmt.Fprintf(&b, "groups:\n  - name: bench-%d\n    interval: %s\n    rules:\n", g, opts.BackgroundInterval)
		for k := g * opts.RulesPerGroup; k < min((g+1)*opts.RulesPerGroup, opts.Rules); k++ {
			threshold := "1e12"
			if k%50 == 1 {
				threshold = "-1"
				firing += perRule
			}
			if k%2 == 0 {
				fmt.Fprintf(&b, "      - alert: BenchRate%d\n        expr: sum by (job) (rate(%s{group=\"g%d\"}[5m])) > 1e12\n        for: 1m\n", k, benchMetric, k)
			} else {
				fmt.Fprintf(&b, "      - alert: BenchValue%d\n        expr: %s{group=\"g%d\"} > %s\n        labels:\n          severity: warning\n", k, benchMetric, k, threshold)
			}
		}
		file := filepath.Join(opts.Dir, fmt.Sprintf("bench-%03d.yml", g))
		if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
			return nil, 0, 0, err
		}
		files = append(files, file)
		groups++
	}
	return files, groups, firing, nil
}

// latency runs the full alerting component (rules, embedded
// Alertmanager, webhook) and times threshold crossings.
func latency(ctx context.Context, opts Options, files []string, res Result) (Result, error) {
	received := make(chan string, 64)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, fmt.Errorf("bench: webhook listener: %w", err)
	}
	hook := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m webhook.Message
		if err := json.NewDecoder(r.Body).Decode(&m); err == nil && m.Status == "firing" {
			received <- m.GroupLabels["trial"]
		}
	}), ReadHeaderTimeout: 10 * time.Second}
	go hook.Serve(ln)
	defer hook.Close()
	hookURL := "http://" + ln.Addr().String()

	latencyRules := filepath.Join(opts.Dir, "latency.yml")
	amConf := filepath.Join(opts.Dir, "alertmanager.yml")
	if err := os.WriteFile(latencyRules, []byte(fmt.Sprintf(`groups:
  - name: latency
    interval: %s
    rules:
      - alert: BenchThresholdCrossed
        expr: %s > 100
`, opts.LatencyInterval, latencyMetric)), 0o644); err != nil {
		return res, err
	}
	if err := os.WriteFile(amConf, []byte(fmt.Sprintf(`route:
  receiver: hook
  group_by: [trial]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: %s
`, hookURL)), 0o644); err != nil {
		return res, err
	}
	res.LatencySettings = fmt.Sprintf("rule interval %s, no for, group_wait 0s, %d background rules every %s",
		opts.LatencyInterval, opts.Rules, opts.BackgroundInterval)

	cfg := aiopsalerting.DefaultConfig()
	cfg.RuleFiles = append(slices.Clone(files), latencyRules)
	cfg.AlertmanagerConfigFile = amConf
	cfg.DataDir = filepath.Join(opts.Dir, "alerting")
	cfg.ExternalURL = "http://localhost:9090"
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: 2 * time.Minute, LookbackDelta: 5 * time.Minute})
	defer engine.Close()
	a, err := aiopsalerting.New(cfg, aiopsalerting.Deps{Storage: opts.Store, Engine: engine, Logger: opts.Logger})
	if err != nil {
		return res, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); a.Run(runCtx) }()
	defer func() { cancel(); <-done }()

	// Let the background groups start their first evaluations.
	time.Sleep(2 * time.Second)
	for trial := range opts.Trials {
		// Cross at a random phase of the evaluation interval.
		time.Sleep(time.Duration(rand.Int64N(int64(opts.LatencyInterval))) + 50*time.Millisecond)
		id := strconv.Itoa(trial)
		app := opts.Store.Appender(ctx)
		start := time.Now()
		if _, err := app.Append(0, labels.FromStrings("__name__", latencyMetric, "trial", id), start.UnixMilli(), 1000); err != nil {
			app.Rollback()
			return res, err
		}
		if err := app.Commit(); err != nil {
			return res, err
		}
		timeout := time.After(30 * time.Second)
	wait:
		for {
			select {
			case got := <-received:
				if got == id {
					res.Latencies = append(res.Latencies, time.Since(start))
					break wait
				}
			case <-timeout:
				return res, fmt.Errorf("bench: trial %d: no notification within 30s", trial)
			case <-ctx.Done():
				return res, ctx.Err()
			}
		}
		// Clear the crossing so the series is quiet for the next trial.
		app = opts.Store.Appender(ctx)
		if _, err := app.Append(0, labels.FromStrings("__name__", latencyMetric, "trial", id), time.Now().UnixMilli(), 0); err == nil {
			app.Commit()
		} else {
			app.Rollback()
		}
	}
	sorted := slices.Sorted(slices.Values(res.Latencies))
	res.MedianLatency = median(res.Latencies)
	res.P90 = sorted[(len(sorted)*9)/10-min(1, len(sorted)*9/10)]
	res.Worst = sorted[len(sorted)-1]
	return res, nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
