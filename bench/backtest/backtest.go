// Package backtest measures capacity forecasters on generated series whose
// exhaustion times are known, against Prometheus's predict_linear evaluated
// by the real PromQL engine over the same samples in a real TSDB.
package backtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"

	"github.com/aiops-dev/aiops/analyzer/forecast"
)

// Config describes one backtest run.
type Config struct {
	// Window is the lookback both forecasters see. Default 72h.
	Window time.Duration
	// Step is the sample spacing. Default 5m.
	Step time.Duration
	// Seeds is how many random variants of each scenario run. Default 10.
	Seeds int
	// Horizon is the "fills within" horizon for precision/recall.
	// Default 24h.
	Horizon time.Duration
	// Dir is where the TSDB lives; empty means a temporary directory
	// removed afterwards.
	Dir string
}

func (c Config) withDefaults() Config {
	if c.Window <= 0 {
		c.Window = 72 * time.Hour
	}
	if c.Step <= 0 {
		c.Step = 5 * time.Minute
	}
	if c.Seeds <= 0 {
		c.Seeds = 10
	}
	if c.Horizon <= 0 {
		c.Horizon = 24 * time.Hour
	}
	return c
}

// capacity is the same for every generated series.
const capacity = 100.0

// base is where generated time starts; any fixed instant works.
var base = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// scenario generates one noise-free usage curve and its observed samples.
type scenario struct {
	name string
	// truth is the noise-free usage at t seconds after base.
	truth func(t float64) float64
	// observe adds the scenario's noise to truth.
	observe func(t float64, rng *rand.Rand) float64
}

const day = 86400.0

// scenarios returns the suite for one seed. Every curve except never_fills
// reaches capacity between day 8 and day 12, so that evaluation points up
// to four days before exhaustion all have a full window behind them.
func scenarios(seed int) []scenario {
	rng := rand.New(rand.NewPCG(uint64(seed), 42))
	u := func(lo, hi float64) float64 { return lo + (hi-lo)*rng.Float64() }
	gauss := func(sd float64) func(t float64, r *rand.Rand) float64 {
		return func(t float64, r *rand.Rand) float64 { return sd * r.NormFloat64() }
	}
	var out []scenario
	add := func(name string, truth func(float64) float64, noise func(float64, *rand.Rand) float64) {
		out = append(out, scenario{name: name, truth: truth, observe: func(t float64, r *rand.Rand) float64 { return truth(t) + noise(t, r) }})
	}

	// Straight growth to capacity.
	{
		full := u(8, 12) * day
		start := u(10, 40)
		rate := (capacity - start) / full
		add("linear", func(t float64) float64 { return start + rate*t }, gauss(0.5))
	}
	// Growth with occasional cleanups that free part of it.
	{
		rate := u(15, 25) / day
		every := u(1.2, 2.0) * day
		drop := rate * every * u(0.3, 0.5)
		start := u(5, 15)
		f := func(t float64) float64 { return start + rate*t - drop*math.Floor(t/every) }
		add("step_cleanups", f, gauss(0.5))
	}
	// Log rotation: fills quickly, emptied every few hours, but a little
	// is left behind each time.
	{
		cycle := u(4, 8) * 3600
		fill := u(20, 30)      // growth within one cycle
		leak := u(6, 10) / day // what the troughs gain per second
		start := u(10, 20)
		f := func(t float64) float64 {
			k := math.Floor(t / cycle)
			return start + leak*k*cycle + fill*(t-k*cycle)/cycle
		}
		add("sawtooth", f, gauss(0.3))
	}
	// A daily cycle on a trend.
	{
		amp := u(8, 15)
		rate := u(5, 8) / day
		start := u(10, 20)
		phase := u(0, 2*math.Pi)
		f := func(t float64) float64 { return start + rate*t + amp*math.Sin(2*math.Pi*t/day+phase) }
		add("daily_seasonal", f, gauss(1))
	}
	// Heavy noise with outliers on a trend.
	{
		full := u(8, 12) * day
		start := u(10, 30)
		rate := (capacity - start) / full
		f := func(t float64) float64 { return start + rate*t }
		noise := func(t float64, r *rand.Rand) float64 {
			n := 6 * r.NormFloat64()
			if r.Float64() < 0.02 {
				n += 40 * (r.Float64() - 0.3)
			}
			return n
		}
		add("heavy_noise", f, noise)
	}
	// Busy but not growing: never fills.
	{
		level := u(40, 60)
		amp := u(5, 15)
		f := func(t float64) float64 { return level + amp*math.Sin(2*math.Pi*t/day) }
		add("never_fills", f, gauss(2))
	}
	return out
}

// exhaustion returns the seconds after t until truth reaches capacity,
// searched on a one-minute grid up to limit; +Inf when it does not.
func exhaustion(truth func(float64) float64, t, limit float64) float64 {
	for dt := 0.0; dt <= limit; dt += 60 {
		if truth(t+dt) >= capacity {
			return dt
		}
	}
	return math.Inf(1)
}

// Prediction is one forecaster's answer at one evaluation point.
type Prediction struct {
	Scenario string
	Truth    float64 // seconds to exhaustion, +Inf for never
	Ours     float64
	Linear   float64 // from predict_linear
	// OursSoon and LinearSoon: does the forecaster say it fills within
	// the horizon?
	OursSoon, LinearSoon bool
}

// Row is one line of the report.
type Row struct {
	Scenario, Forecaster string
	N                    int     // evaluation points with a finite truth
	MdAPE                float64 // median absolute percentage error, %
	Precision, Recall    float64 // of "fills within the horizon", NaN if undefined
}

// Report is the result of Run.
type Report struct {
	Config      Config
	Predictions []Prediction
	Rows        []Row
}

// leads are how long before the true exhaustion each evaluation happens.
var leads = []time.Duration{3 * time.Hour, 8 * time.Hour, 16 * time.Hour, 23 * time.Hour, 30 * time.Hour, 48 * time.Hour, 72 * time.Hour, 96 * time.Hour}

// Run generates the suite into a TSDB, evaluates both forecasters at every
// evaluation point and summarises.
func Run(ctx context.Context, cfg Config) (Report, error) {
	cfg = cfg.withDefaults()
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "aiops-backtest-")
		if err != nil {
			return Report{}, fmt.Errorf("backtest: %w", err)
		}
		defer os.RemoveAll(d)
		dir = d
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := tsdb.DefaultOptions()
	db, err := tsdb.Open(dir, logger, nil, opts, nil)
	if err != nil {
		return Report{}, fmt.Errorf("backtest: open tsdb: %w", err)
	}
	defer db.Close()
	db.DisableCompactions()

	type series struct {
		lset  labels.Labels
		sc    scenario
		seed  int
		end   float64 // seconds after base covered by samples
		evals []float64
	}
	var all []series
	horizon := 16 * day
	for seed := 0; seed < cfg.Seeds; seed++ {
		for _, sc := range scenarios(seed) {
			s := series{
				lset: labels.FromStrings("__name__", "usage", "scenario", sc.name, "seed", strconv.Itoa(seed)),
				sc:   sc, seed: seed,
			}
			full := exhaustion(sc.truth, 0, horizon)
			anchor := full
			if math.IsInf(full, 1) {
				anchor = 10 * day // evaluate never_fills at the same kind of times
			}
			for _, l := range leads {
				t := anchor - l.Seconds()
				if t >= cfg.Window.Seconds()+cfg.Step.Seconds() {
					s.evals = append(s.evals, t)
				}
			}
			s.end = anchor
			all = append(all, s)
		}
	}
	app := db.Appender(ctx)
	step := cfg.Step.Seconds()
	for _, s := range all {
		rng := rand.New(rand.NewPCG(uint64(s.seed), uint64(len(s.sc.name))))
		var ref storage.SeriesRef
		for t := 0.0; t <= s.end; t += step {
			ref, err = app.Append(ref, s.lset, base.Add(time.Duration(t*float64(time.Second))).UnixMilli(), s.sc.observe(t, rng))
			if err != nil {
				return Report{}, fmt.Errorf("backtest: append: %w", err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		return Report{}, fmt.Errorf("backtest: commit: %w", err)
	}

	engine := promql.NewEngine(promql.EngineOpts{
		Logger: logger, MaxSamples: 50_000_000, Timeout: time.Minute,
		LookbackDelta: 5 * time.Minute, EnableAtModifier: true,
	})
	rep := Report{Config: cfg}
	win := promDuration(cfg.Window)
	for _, s := range all {
		sel := fmt.Sprintf(`usage{scenario=%q,seed="%d"}`, s.sc.name, s.seed)
		for _, t := range s.evals {
			if err := ctx.Err(); err != nil {
				return Report{}, err
			}
			now := base.Add(time.Duration(t * float64(time.Second)))
			// predict_linear's value now and one horizon ahead give its
			// line; where the line meets capacity is its time to exhaustion.
			v0, err := instant(ctx, engine, db, fmt.Sprintf("predict_linear(%s[%s], 0)", sel, win), now)
			if err != nil {
				return Report{}, err
			}
			vh, err := instant(ctx, engine, db, fmt.Sprintf("predict_linear(%s[%s], %d)", sel, win, int(cfg.Horizon.Seconds())), now)
			if err != nil {
				return Report{}, err
			}
			lin := math.Inf(1)
			if slope := (vh - v0) / cfg.Horizon.Seconds(); v0 >= capacity {
				lin = 0
			} else if slope > 0 {
				lin = (capacity - v0) / slope
			}
			samples, err := readWindow(ctx, db, s.lset, now, cfg.Window)
			if err != nil {
				return Report{}, err
			}
			f, err := forecast.Predict(samples, capacity, now.UnixMilli(), forecast.Config{})
			if err != nil {
				return Report{}, fmt.Errorf("backtest: %s seed %d: %w", s.sc.name, s.seed, err)
			}
			rep.Predictions = append(rep.Predictions, Prediction{
				Scenario: s.sc.name, Truth: exhaustion(s.sc.truth, t, horizon),
				Ours: f.Seconds, Linear: lin,
				OursSoon: f.Seconds <= cfg.Horizon.Seconds(), LinearSoon: vh >= capacity,
			})
		}
	}
	rep.Rows = summarise(rep.Predictions, cfg.Horizon.Seconds())
	return rep, nil
}

func promDuration(d time.Duration) string {
	if d%time.Hour == 0 {
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%ds", int(d.Seconds()))
}

func instant(ctx context.Context, ng *promql.Engine, q storage.Queryable, qs string, ts time.Time) (float64, error) {
	qry, err := ng.NewInstantQuery(ctx, q, nil, qs, ts)
	if err != nil {
		return 0, fmt.Errorf("backtest: %s: %w", qs, err)
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return 0, fmt.Errorf("backtest: %s: %w", qs, res.Err)
	}
	vec, err := res.Vector()
	if err != nil {
		return 0, fmt.Errorf("backtest: %s: %w", qs, err)
	}
	if len(vec) != 1 {
		return 0, fmt.Errorf("backtest: %s: want one series, got %d", qs, len(vec))
	}
	return vec[0].F, nil
}

// readWindow reads the samples predict_linear sees: (now-window, now].
func readWindow(ctx context.Context, db storage.Queryable, lset labels.Labels, now time.Time, window time.Duration) ([]forecast.Sample, error) {
	mint, maxt := now.Add(-window).UnixMilli()+1, now.UnixMilli()
	q, err := db.Querier(mint, maxt)
	if err != nil {
		return nil, fmt.Errorf("backtest: querier: %w", err)
	}
	defer q.Close()
	var ms []*labels.Matcher
	lset.Range(func(l labels.Label) { ms = append(ms, labels.MustNewMatcher(labels.MatchEqual, l.Name, l.Value)) })
	ss := q.Select(ctx, true, nil, ms...)
	var out []forecast.Sample
	for ss.Next() {
		it := ss.At().Iterator(nil)
		for it.Next() != 0 {
			t, v := it.At()
			out = append(out, forecast.Sample{T: t, V: v})
		}
		if err := it.Err(); err != nil {
			return nil, err
		}
	}
	return out, ss.Err()
}

func summarise(ps []Prediction, horizon float64) []Row {
	groups := map[string][]Prediction{}
	var names []string
	for _, p := range ps {
		if _, ok := groups[p.Scenario]; !ok {
			names = append(names, p.Scenario)
		}
		groups[p.Scenario] = append(groups[p.Scenario], p)
	}
	names = append(names, "all")
	groups["all"] = ps
	var rows []Row
	for _, name := range names {
		g := groups[name]
		for _, which := range []string{"aiops", "predict_linear"} {
			r := Row{Scenario: name, Forecaster: which}
			var apes []float64
			tp, fp, fn := 0, 0, 0
			for _, p := range g {
				pred, soon := p.Ours, p.OursSoon
				if which == "predict_linear" {
					pred, soon = p.Linear, p.LinearSoon
				}
				if !math.IsInf(p.Truth, 1) && p.Truth > 0 {
					apes = append(apes, 100*math.Abs(pred-p.Truth)/p.Truth)
				}
				actual := p.Truth <= horizon
				switch {
				case soon && actual:
					tp++
				case soon && !actual:
					fp++
				case !soon && actual:
					fn++
				}
			}
			sort.Float64s(apes)
			r.N = len(apes)
			r.MdAPE = median(apes)
			r.Precision = ratio(tp, tp+fp)
			r.Recall = ratio(tp, tp+fn)
			rows = append(rows, r)
		}
	}
	return rows
}

func median(sorted []float64) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return math.NaN()
	case n%2 == 1:
		return sorted[n/2]
	}
	a, b := sorted[n/2-1], sorted[n/2]
	if math.IsInf(a, 1) || math.IsInf(b, 1) {
		return math.Inf(1)
	}
	return (a + b) / 2
}

func ratio(a, b int) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// Print writes the report as a table.
func (r Report) Print(w io.Writer) error {
	fmt.Fprintf(w, "forecast backtest: window=%v step=%v seeds=%d horizon=%v capacity=%g, %d evaluation points\n",
		r.Config.Window, r.Config.Step, r.Config.Seeds, r.Config.Horizon, capacity, len(r.Predictions))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tforecaster\tn\tMdAPE_%\tprecision_24h\trecall_24h")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.1f\t%s\t%s\n", row.Scenario, row.Forecaster, row.N, row.MdAPE, pct(row.Precision), pct(row.Recall))
	}
	return tw.Flush()
}

func pct(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.2f", v)
}
