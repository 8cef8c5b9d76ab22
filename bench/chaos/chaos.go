// Package chaos measures the closed loop: the simulated workflow engine
// (sim) with faults of its catalogue injected, aiops's shipped rules,
// incidents and remediation runbooks healing it, judged by the
// simulator's own ground truth. It runs in simulated time (see loop), so
// that the whole catalogue, a few overlapping pairs and a long healthy
// baseline take minutes, not hours, and measure the same on a loaded
// machine. `aiops-bench chaos run` writes the report; docs/BENCHMARKS.md
// records it.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"go.yaml.in/yaml/v3"

	"github.com/aiops-dev/aiops/sim/chaos"
	"github.com/aiops-dev/aiops/sim/truth"
)

// Config configures a run.
type Config struct {
	// RuleFiles and RunbookFiles are the shipped rules and runbooks.
	RuleFiles, RunbookFiles []string
	// Step is the simulator's step and the rules' evaluation interval.
	Step time.Duration
	Seed uint64
	// Faults selects scenarios: those whose faults are all named here;
	// empty runs every one.
	Faults []string
	// Scenarios replace the built-in scenarios (see LoadScenarios).
	Scenarios []Scenario
	// Runs is how many times the scenarios run in turn against one aiops,
	// whose incidents, executions and learning record carry over from
	// run to run (each scenario on a fresh simulator); 0 is 1.
	Runs int
	// Baseline is the healthy stretch in which no action may run; 0
	// skips it.
	Baseline time.Duration
	// EscalateAfter and EscalateAlerts are remediation's unhandled-alert
	// policy (remediation.escalate_unhandled).
	EscalateAfter  time.Duration
	EscalateAlerts []string
	// DataDir holds the stores, one per scenario (removed after); empty
	// is the system's temporary directory.
	DataDir string
	Logger  *slog.Logger
	// Progress, when set, is told each scenario's result as it ends.
	Progress func(Result)
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Step: 5 * time.Second, Seed: 7, Baseline: 30 * time.Minute, Runs: 2,
		// Within two minutes of the first alert: the critical alert the
		// policy covers may follow a first warning by up to 30 s.
		EscalateAfter:  90 * time.Second,
		EscalateAlerts: []string{`{severity="critical"}`, `{alertname="CrashLooping"}`},
	}
}

// Scenario is a fault or a few overlapping ones.
type Scenario struct {
	Name   string       `yaml:"name"`
	Faults []chaos.Spec `yaml:"faults"`
	// Warmup is the healthy time before the first fault; Within bounds
	// the time from it to recovery or escalation.
	Warmup time.Duration `yaml:"warmup"`
	Within time.Duration `yaml:"within"`
}

func f(v float64) *float64 { return &v }

// Catalogue is one scenario per fault of the simulator's catalogue (two
// for cascade: from the database and from the cache), at intensities the
// shipped rules see, then overlapping pairs on different services.
func Catalogue() []Scenario {
	one := func(spec chaos.Spec, within time.Duration) Scenario {
		name := spec.Fault
		if spec.Target != "" {
			name += "/" + spec.Target
		}
		return Scenario{Name: name, Faults: []chaos.Spec{spec}, Within: within}
	}
	surge := one(chaos.Spec{Fault: chaos.TrafficSurge, Intensity: f(10)}, 15*time.Minute)
	// The surge runbook compares demand with 20 minutes before.
	surge.Warmup = 40 * time.Minute
	return []Scenario{
		one(chaos.Spec{Fault: chaos.LLMOutage}, 15*time.Minute),
		one(chaos.Spec{Fault: chaos.LLMSlow}, 15*time.Minute),
		one(chaos.Spec{Fault: chaos.DBPoolLeak, Intensity: f(3)}, 20*time.Minute),
		one(chaos.Spec{Fault: chaos.DBSlow}, 15*time.Minute),
		one(chaos.Spec{Fault: chaos.MemoryLeak, Intensity: f(30)}, 50*time.Minute),
		one(chaos.Spec{Fault: chaos.WorkerCrashLoop}, 20*time.Minute),
		surge,
		one(chaos.Spec{Fault: chaos.RedisDown}, 15*time.Minute),
		one(chaos.Spec{Fault: chaos.AuthAttack}, 15*time.Minute),
		one(chaos.Spec{Fault: chaos.DiskFill, Intensity: f(500)}, 20*time.Minute),
		one(chaos.Spec{Fault: chaos.CPUHog, Target: "api-0"}, 15*time.Minute),
		one(chaos.Spec{Fault: chaos.BadConfig, Target: "api-1"}, 15*time.Minute),
		one(chaos.Spec{Fault: chaos.BadDeploy}, 15*time.Minute),
		one(chaos.Spec{Fault: chaos.Cascade, Target: "postgres"}, 20*time.Minute),
		one(chaos.Spec{Fault: chaos.Cascade, Target: "redis"}, 15*time.Minute),
		{Name: "llm_outage+auth_attack", Within: 20 * time.Minute, Faults: []chaos.Spec{
			{Fault: chaos.LLMOutage}, {Fault: chaos.AuthAttack, Start: chaos.Duration(time.Minute)}}},
		{Name: "disk_fill+llm_outage", Within: 25 * time.Minute, Faults: []chaos.Spec{
			{Fault: chaos.DiskFill, Intensity: f(500)}, {Fault: chaos.LLMOutage, Start: chaos.Duration(2 * time.Minute)}}},
		{Name: "bad_deploy+worker_crash_loop", Within: 20 * time.Minute, Faults: []chaos.Spec{
			{Fault: chaos.BadDeploy}, {Fault: chaos.WorkerCrashLoop, Start: chaos.Duration(time.Minute)}}},
	}
}

// LoadScenarios reads every *.yaml and *.yml file of dir: each holds one
// scenario, or a list of them under `scenarios`.
func LoadScenarios(dir string) ([]Scenario, error) {
	var files []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		files = append(files, m...)
	}
	slices.Sort(files)
	if len(files) == 0 {
		return nil, fmt.Errorf("--scenarios: no *.yaml or *.yml in %s", dir)
	}
	var out []Scenario
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--scenarios: %w", err)
		}
		var doc struct {
			Scenario  `yaml:",inline"`
			Scenarios []Scenario `yaml:"scenarios"`
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		list := doc.Scenarios
		if doc.Name != "" || len(doc.Faults) > 0 {
			list = append(list, doc.Scenario)
		}
		for i, sc := range list {
			if sc.Name == "" || len(sc.Faults) == 0 {
				return nil, fmt.Errorf("%s: scenario %d: name and faults are required", file, i+1)
			}
			for j, spec := range sc.Faults {
				if _, ok := chaos.Lookup(spec.Fault); !ok {
					return nil, fmt.Errorf("%s: scenario %s: faults[%d].fault: unknown fault %q", file, sc.Name, j, spec.Fault)
				}
			}
		}
		out = append(out, list...)
	}
	return out, nil
}

// Outcomes of a scenario.
const (
	AutoResolved = "auto_resolved"
	Escalated    = "escalated"
	WrongAction  = "wrong_action"
	Missed       = "missed"
)

// Result is one scenario's measurement; times are seconds from the first
// fault's injection, nil when it did not happen.
type Result struct {
	Name string `json:"name"`
	// Run counts the runs of the scenarios against one aiops, from 1.
	Run    int      `json:"run"`
	Faults []string `json:"faults"`
	// Fixable: the simulator knows a fix for every fault, which
	// remediation may apply; otherwise the right outcome is escalation.
	Fixable            bool     `json:"fixable"`
	Outcome            string   `json:"outcome"`
	Correct            bool     `json:"correct"`
	DetectSeconds      *float64 `json:"detect_seconds"`
	FirstActionSeconds *float64 `json:"first_action_seconds"`
	RecoverSeconds     *float64 `json:"recover_seconds"`
	// UnhealthySeconds is how long the simulator judged itself unhealthy
	// (its service levels broken) between the injection and the
	// recovery, or the scenario's end: what users felt. Slow faults (a
	// leak, a filling disk) are fixed before they hurt.
	UnhealthySeconds float64  `json:"unhealthy_seconds"`
	EscalateSeconds  *float64 `json:"escalate_seconds,omitempty"`
	// UnfixableDetectSeconds is, when later than DetectSeconds, the
	// first alert after the fault without a fix started: what its
	// escalation is timed from.
	UnfixableDetectSeconds *float64 `json:"unfixable_detect_seconds,omitempty"`
	// ResolvedByRunbook: an incident resolved itself as fixed by the run
	// (its alerts cleared after the fix), at ResolvedSeconds.
	ResolvedByRunbook bool     `json:"resolved_by_runbook"`
	ResolvedSeconds   *float64 `json:"resolved_seconds,omitempty"`
	Actions           int      `json:"actions"`
	ActionList        []string `json:"action_list,omitempty"`
	Note              string   `json:"note,omitempty"`
	// Wall is how long the scenario took to simulate.
	WallSeconds float64 `json:"wall_seconds"`
	// Series are what the timeline picture draws, one point a step.
	Series []Point `json:"-"`
}

// Point is one step of a scenario's timeline.
type Point struct {
	Seconds float64
	Healthy bool
	Firing  int
	Action  bool
}

// Baseline is the healthy stretch.
type Baseline struct {
	Seconds float64  `json:"seconds"`
	Actions int      `json:"actions"`
	Alerts  []string `json:"alerts"`
	Healthy bool     `json:"healthy"`
}

// Report is a run's result.
type Report struct {
	// Scenarios are every run's, in order.
	Scenarios []Result  `json:"scenarios"`
	Baseline  *Baseline `json:"baseline,omitempty"`
	// Summary is the first run's; Runs has one per run.
	Summary Summary   `json:"summary"`
	Runs    []Summary `json:"runs"`
	// NoSlower: every run's median time to recover is no longer than the
	// first's, nor is any scenario's time to recover (within a step).
	NoSlower bool     `json:"later_runs_no_slower"`
	Slower   []string `json:"slower,omitempty"`
	StepSec  float64  `json:"step_seconds"`
	Seed     uint64   `json:"seed"`
}

// Run runs the scenarios one at a time, each on a fresh simulator, cfg.Runs
// times against one aiops, then the baseline on a fresh simulator and a
// fresh aiops.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Step <= 0 || cfg.Step > time.Minute {
		return nil, fmt.Errorf("step: must be in (0, 1m], got %s", cfg.Step)
	}
	if len(cfg.RuleFiles) == 0 || len(cfg.RunbookFiles) == 0 {
		return nil, errors.New("the rule files and the runbook files are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	scenarios := cfg.Scenarios
	if scenarios == nil {
		scenarios = Catalogue()
	}
	if len(cfg.Faults) > 0 {
		want := map[string]bool{}
		for _, name := range cfg.Faults {
			if _, ok := chaos.Lookup(name); !ok {
				return nil, fmt.Errorf("--faults: unknown fault %q (known: %s)", name, strings.Join(chaos.Names(), ", "))
			}
			want[name] = true
		}
		scenarios = slices.DeleteFunc(slices.Clone(scenarios), func(sc Scenario) bool {
			return slices.ContainsFunc(sc.Faults, func(s chaos.Spec) bool { return !want[s.Fault] })
		})
	}
	rep := &Report{StepSec: cfg.Step.Seconds(), Seed: cfg.Seed}
	if len(scenarios) > 0 {
		l, err := newLoop(ctx, cfg, cfg.Seed, cfg.Logger)
		if err != nil {
			return nil, err
		}
		defer l.close()
		for run := 1; run <= max(cfg.Runs, 1); run++ {
			for _, sc := range scenarios {
				if err := l.reset(ctx, cfg.Seed); err != nil {
					return nil, err
				}
				r, err := runScenario(ctx, cfg, l, sc)
				if err != nil {
					return nil, fmt.Errorf("run %d: scenario %s: %w", run, sc.Name, err)
				}
				r.Run = run
				rep.Scenarios = append(rep.Scenarios, r)
				if cfg.Progress != nil {
					cfg.Progress(r)
				}
			}
		}
	}
	if cfg.Baseline > 0 {
		b, err := runBaseline(ctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("baseline: %w", err)
		}
		rep.Baseline = b
	}
	rep.summarizeRuns(cfg.Step)
	return rep, nil
}

func secs(d time.Duration) *float64 { v := d.Seconds(); return &v }

func runScenario(ctx context.Context, cfg Config, l *loop, sc Scenario) (Result, error) {
	wall := time.Now()
	res := Result{Name: sc.Name}
	start := l.sim.Now()
	warmup := sc.Warmup
	if warmup == 0 {
		warmup = 12 * time.Minute
	}
	within := sc.Within
	if within == 0 {
		within = 20 * time.Minute
	}
	for end := l.sim.Now().Add(warmup); l.sim.Now().Before(end); {
		if err := l.tick(ctx); err != nil {
			return res, err
		}
	}
	if !l.sim.Health().Healthy || len(l.active()) > 0 || len(l.actions(start)) > 0 {
		res.Note = "not quiet before the fault"
	}
	injected := l.sim.Now()
	fix := map[string]bool{}
	res.Fixable = true
	// unfixableAt is when the first fault without a fix starts; the
	// escalation it needs is timed from its own detection (a pair's other
	// fault may have been detected long before): the first alert that
	// was not firing then and names what the fault hits (its target as
	// a label value, e.g. job="worker"), else the first that was not
	// firing then.
	var unfixableAt time.Time
	unfixableTargets := map[string]bool{}
	for _, spec := range sc.Faults {
		spec.Duration = chaos.Duration(3 * time.Hour)
		flt, err := l.sim.InjectFault(spec)
		if err != nil {
			return res, fmt.Errorf("inject %s: %w", spec.Fault, err)
		}
		res.Faults = append(res.Faults, flt.Fault)
		if flt.Fix.Escalate {
			if at := injected.Add(time.Duration(spec.Start)); res.Fixable || at.Before(unfixableAt) {
				unfixableAt = at
			}
			unfixableTargets[flt.Target] = true
			res.Fixable = false
		}
		for _, a := range flt.Fix.Actions {
			fix[a.Action+" "+a.Target] = true
		}
	}
	var detected, escalated, fixedAt, unfixableDetected, unfixableNew time.Time
	firingBefore := map[uint64]bool{}
	wrong := false
	for deadline := injected.Add(within); ; {
		if err := l.tick(ctx); err != nil {
			return res, err
		}
		now := l.sim.Now()
		healthy := l.sim.Health().Healthy
		acts := l.actions(injected)
		p := Point{Seconds: now.Sub(injected).Seconds(), Healthy: healthy, Firing: len(l.active())}
		if n := len(acts); n > 0 && acts[n-1].Time.After(now.Add(-cfg.Step)) {
			p.Action = true
		}
		res.Series = append(res.Series, p)
		if detected.IsZero() && p.Firing > 0 {
			detected = now
		}
		if !res.Fixable && unfixableDetected.IsZero() {
			for _, a := range l.active() {
				switch h := a.Labels.Hash(); {
				case now.Before(unfixableAt):
					firingBefore[h] = true
				case !firingBefore[h]:
					if unfixableNew.IsZero() {
						unfixableNew = now
					}
					a.Labels.Range(func(lb labels.Label) {
						if unfixableTargets[lb.Value] && unfixableDetected.IsZero() {
							unfixableDetected = now
						}
					})
				}
			}
		}
		if escalated.IsZero() && l.escalated(injected) {
			escalated = now
		}
		got := map[string]bool{}
		for _, ev := range acts {
			k := ev.Action.Action.Action + " " + ev.Action.Target
			got[k] = true
			if !fix[k] {
				wrong = true
			}
		}
		allFixed := len(fix) > 0
		for k := range fix {
			allFixed = allFixed && got[k]
		}
		if res.Fixable && allFixed && healthy && fixedAt.IsZero() {
			fixedAt = now
		}
		done := res.Fixable && !fixedAt.IsZero() || !res.Fixable && !escalated.IsZero()
		if done || !now.Before(deadline) {
			// An unfixable fault: watch a little longer for flailing.
			if !res.Fixable && done {
				for end := now.Add(5 * time.Minute); l.sim.Now().Before(end); {
					if err := l.tick(ctx); err != nil {
						return res, err
					}
				}
			}
			break
		}
	}
	if !fixedAt.IsZero() {
		// The incident resolves itself as fixed by the run once its alerts
		// clear; anything else done meanwhile counts too.
		for end := l.sim.Now().Add(20 * time.Minute); l.sim.Now().Before(end); {
			if l.resolvedByRunbook(injected) {
				res.ResolvedByRunbook = true
				res.ResolvedSeconds = secs(l.sim.Now().Sub(injected))
				break
			}
			if err := l.tick(ctx); err != nil {
				return res, err
			}
		}
	}
	acts := l.actions(injected)
	for _, ev := range acts {
		if !fix[ev.Action.Action.Action+" "+ev.Action.Target] {
			wrong = true
		}
	}
	res.Actions = len(acts)
	for _, ev := range acts {
		res.ActionList = append(res.ActionList, fmt.Sprintf("%s %s at %.0fs: %s", ev.Action.Action.Action, ev.Action.Target, ev.Time.Sub(injected).Seconds(), ev.Action.Outcome))
	}
	if len(acts) > 0 {
		res.FirstActionSeconds = secs(acts[0].Time.Sub(injected))
	}
	if !detected.IsZero() {
		res.DetectSeconds = secs(detected.Sub(injected))
	}
	if !escalated.IsZero() {
		res.EscalateSeconds = secs(escalated.Sub(injected))
	}
	if !fixedAt.IsZero() {
		res.RecoverSeconds = secs(recoveredAt(l.sim.Timeline(), injected, fixedAt).Sub(injected))
	}
	for _, p := range res.Series {
		if !p.Healthy && (fixedAt.IsZero() || p.Seconds <= fixedAt.Sub(injected).Seconds()) {
			res.UnhealthySeconds += cfg.Step.Seconds()
		}
	}
	switch {
	case res.Fixable && wrong, !res.Fixable && res.Actions > 1:
		res.Outcome = WrongAction
	case res.Fixable && !fixedAt.IsZero() && (escalated.IsZero() || escalated.After(fixedAt)):
		res.Outcome = AutoResolved
	case !escalated.IsZero():
		res.Outcome = Escalated
	default:
		res.Outcome = Missed
	}
	switch {
	case !unfixableAt.After(injected):
		// The fault without a fix came first: its detection is the
		// first alert.
		unfixableDetected = detected
	case unfixableDetected.IsZero():
		unfixableDetected = unfixableNew
	}
	if !unfixableDetected.IsZero() && unfixableDetected.After(detected) {
		res.UnfixableDetectSeconds = secs(unfixableDetected.Sub(injected))
	}
	res.Correct = res.Fixable && res.Outcome == AutoResolved ||
		!res.Fixable && res.Outcome == Escalated && !unfixableDetected.IsZero() && escalated.Sub(unfixableDetected) <= 2*time.Minute+cfg.Step
	res.WallSeconds = time.Since(wall).Seconds()
	return res, nil
}

// recoveredAt is when the simulator judged itself healthy again for good
// by fixedAt: its last healthy_regained event, or fixedAt if health was
// never lost.
func recoveredAt(tl truth.Timeline, injected, fixedAt time.Time) time.Time {
	at := fixedAt
	lost := false
	for _, ev := range tl.Events {
		if ev.Time.Before(injected) || ev.Time.After(fixedAt) {
			continue
		}
		switch ev.Kind {
		case truth.HealthyLost:
			lost = true
		case truth.HealthyRegained:
			at = ev.Time
		}
	}
	if !lost {
		return fixedAt
	}
	return at
}

func runBaseline(ctx context.Context, cfg Config) (*Baseline, error) {
	l, err := newLoop(ctx, cfg, cfg.Seed+1, cfg.Logger.With("scenario", "baseline"))
	if err != nil {
		return nil, err
	}
	defer l.close()
	start := l.sim.Now()
	alerts := map[string]bool{}
	healthy := true
	for end := start.Add(cfg.Baseline); l.sim.Now().Before(end); {
		if err := l.tick(ctx); err != nil {
			return nil, err
		}
		for _, a := range l.active() {
			alerts[a.Labels.Get("alertname")] = true
		}
		// The first minutes are the simulator starting up.
		if l.sim.Now().Sub(start) > 5*time.Minute {
			healthy = healthy && l.sim.Health().Healthy
		}
	}
	return &Baseline{Seconds: cfg.Baseline.Seconds(), Actions: len(l.actions(start)), Alerts: slices.Sorted(maps.Keys(alerts)), Healthy: healthy}, nil
}
