package engine_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/aiops-dev/aiops/analyzer/detect"
	"github.com/aiops-dev/aiops/analyzer/forecast"
	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/sim/chaos"
	"github.com/aiops-dev/aiops/sim/engine"
	"github.com/aiops-dev/aiops/sim/model"
	"github.com/aiops-dev/aiops/sim/simtest"
	"github.com/aiops-dev/aiops/sim/telemetry"
	"github.com/aiops-dev/aiops/sim/truth"
)

// step is the simulated time per tick in these tests, and the rules'
// evaluation interval.
const step = 30 * time.Second

// run is one simulation whose metrics go into a Prometheus TSDB where
// the shipped rules are evaluated every step.
type run struct {
	t     *testing.T
	e     *engine.Engine
	rules *simtest.Rules
	// fired remembers every alert (name and labels) that fired.
	fired map[string][]labels.Labels
}

func newRun(t *testing.T, start time.Time) *run {
	t.Helper()
	mc := model.DefaultConfig()
	mc.Start, mc.Seed = start, 7
	opts := telemetry.DefaultOptions()
	e, err := engine.New(engine.Config{Model: mc, Levels: truth.DefaultLevels(), Step: step, Telemetry: &opts})
	if err != nil {
		t.Fatal(err)
	}
	return &run{t: t, e: e, rules: simtest.NewRules(t, step, simtest.RuleFiles(t, "../..")...), fired: map[string][]labels.Labels{}}
}

func (r *run) tick() {
	r.t.Helper()
	batch, err := r.e.Tick(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	r.rules.Append(batch)
	r.rules.Eval(r.e.Now())
	for name, ls := range r.rules.Firing() {
		r.fired[name] = append(r.fired[name], ls...)
	}
}

// until ticks until cond holds, failing the test when it has not within
// max of simulated time.
func (r *run) until(what string, max time.Duration, cond func() (bool, string)) {
	r.t.Helper()
	deadline := r.e.Now().Add(max)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if r.e.Now().After(deadline) {
			r.t.Fatalf("%s: not within %s of simulated time (at %s); %s", what, max, r.e.Now().Format(time.TimeOnly), state)
		}
		r.tick()
	}
}

// ticks runs for d of simulated time, checking cond after every step.
func (r *run) ticks(d time.Duration, what string, cond func() (bool, string)) {
	r.t.Helper()
	end := r.e.Now().Add(d)
	for r.e.Now().Before(end) {
		r.tick()
		if ok, state := cond(); !ok {
			r.t.Fatalf("%s: broken at %s: %s", what, r.e.Now().Format(time.TimeOnly), state)
		}
	}
}

// alert names an alert and, optionally, labels it must carry.
type alert struct {
	name   string
	labels map[string]string
}

func (a alert) String() string {
	if len(a.labels) == 0 {
		return a.name
	}
	var kv []string
	for k, v := range a.labels {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return a.name + "{" + strings.Join(kv, ",") + "}"
}

func matches(ls labels.Labels, want map[string]string) bool {
	for k, v := range want {
		if ls.Get(k) != v {
			return false
		}
	}
	return true
}

// firing reports whether the alert fires now.
func (r *run) firing(a alert) bool {
	for _, ls := range r.rules.Firing()[a.name] {
		if matches(ls, a.labels) {
			return true
		}
	}
	return false
}

func (r *run) everFired(a alert) bool {
	for _, ls := range r.fired[a.name] {
		if matches(ls, a.labels) {
			return true
		}
	}
	return false
}

func (r *run) healthy() bool { return r.e.Health().Healthy }

func (r *run) state() string {
	h := r.e.Health()
	var failing []string
	for _, c := range h.Checks {
		if !c.OK {
			failing = append(failing, fmt.Sprintf("%s=%v", c.Name, c.Value))
		}
	}
	var firing []string
	for name := range r.rules.Firing() {
		firing = append(firing, name)
	}
	sort.Strings(firing)
	return fmt.Sprintf("healthy=%v failing=%v firing=%v", h.Healthy, failing, firing)
}

// faultCase is one fault of the catalogue, the alerts it must trip, and
// how it ends.
type faultCase struct {
	spec chaos.Spec
	// alerts must all have fired within detect of the fault's start.
	alerts []alert
	detect time.Duration
	// unhealthy: the ground truth must lose health.
	unhealthy bool
	// wrongFix is tried on a fault that has no fix: it must not help.
	wrongFix *chaos.Action
	// extra checks run once the alerts fired.
	extra func(t *testing.T, r *run)
	// warmup before the fault; 12 minutes when zero.
	warmup time.Duration
	// afterEnd is what the operator does once a fault without a fix has
	// ended, to recover faster (drain a backlog).
	afterEnd []chaos.Action
}

func x(v float64) *float64 { return &v }

func faultCases() []faultCase {
	api := map[string]string{"job": "api"}
	return []faultCase{
		{spec: chaos.Spec{Fault: chaos.LLMOutage, Target: model.OpenAI},
			alerts:    []alert{{"LLMHighErrorRate", map[string]string{"job": "api", "gen_ai_request_model": "gpt-4o-mini"}}, {"JobFailureRate", map[string]string{"job": "worker"}}},
			unhealthy: true},
		{spec: chaos.Spec{Fault: chaos.LLMSlow, Target: model.OpenAI},
			alerts:    []alert{{"QueueNotDraining", map[string]string{"messaging_destination_name": "documents"}}},
			unhealthy: true},
		{spec: chaos.Spec{Fault: chaos.DBPoolLeak, Target: model.API, Intensity: x(3)},
			alerts:    []alert{{"DatabaseConnectionPoolNearlyFull", map[string]string{"job": "api", "db_client_connection_pool_name": "postgres"}}},
			unhealthy: true},
		{spec: chaos.Spec{Fault: chaos.DBSlow},
			alerts:    []alert{{"SlowResponses", api}, {"DatabaseConnectionPoolNearlyFull", api}},
			unhealthy: true,
			wrongFix:  &chaos.Action{Action: chaos.ActRestartService, Target: model.API}},
		{spec: chaos.Spec{Fault: chaos.MemoryLeak, Target: model.API, Intensity: x(30)},
			alerts: []alert{{"HighMemoryUsage", api}, {"HostHighMemoryUsage", map[string]string{"job": "node"}}},
			detect: 45 * time.Minute},
		{spec: chaos.Spec{Fault: chaos.WorkerCrashLoop},
			alerts:    []alert{{"CrashLooping", map[string]string{"job": "worker"}}, {"QueueNotDraining", nil}},
			unhealthy: true,
			wrongFix:  &chaos.Action{Action: chaos.ActRestartService, Target: model.Worker},
			afterEnd:  []chaos.Action{{Action: chaos.ActScale, Target: model.Worker, Params: map[string]string{"replicas": "9"}}}},
		{spec: chaos.Spec{Fault: chaos.TrafficSurge, Target: model.API, Intensity: x(10)},
			alerts:    []alert{{"HighCPUUsage", api}, {"HighErrorRate", api}, {"SlowResponses", api}},
			unhealthy: true,
			extra:     unusualTraffic,
			warmup:    2 * time.Hour},
		{spec: chaos.Spec{Fault: chaos.RedisDown},
			alerts:    []alert{{"SlowResponses", api}},
			unhealthy: true},
		{spec: chaos.Spec{Fault: chaos.AuthAttack},
			alerts:    []alert{{"AuthenticationFailureSpike", api}, {"HighCPUUsage", map[string]string{"job": "auth"}}},
			unhealthy: true},
		{spec: chaos.Spec{Fault: chaos.DiskFill, Intensity: x(500)},
			alerts:    []alert{{"DiskAlmostFull", map[string]string{"instance": "db-0"}}, {"HighErrorRate", api}},
			unhealthy: true,
			extra:     capacityForecast},
		{spec: chaos.Spec{Fault: chaos.CPUHog, Target: "api-0"},
			alerts:    []alert{{"HostHighCPUUsage", map[string]string{"job": "node"}}},
			unhealthy: true},
		{spec: chaos.Spec{Fault: chaos.BadConfig, Target: "api-1"},
			alerts:    []alert{{"HighErrorRate", api}},
			unhealthy: true},
		{spec: chaos.Spec{Fault: chaos.BadDeploy, Target: model.API},
			alerts:    []alert{{"HighErrorRate", api}},
			unhealthy: true},
		{spec: chaos.Spec{Fault: chaos.Cascade, Target: model.Postgres},
			alerts:    []alert{{"CascadingFailure", nil}},
			unhealthy: true,
			wrongFix:  &chaos.Action{Action: chaos.ActRestartService, Target: model.API}},
	}
}

// TestFaults injects every fault of the catalogue into an engine warmed
// up for twelve minutes, evaluates the shipped rules over its metrics
// every step, and checks that the alerts the fault should trip fire
// within a bounded time and that the ground truth loses health. A fault
// with a fix must be healthy again soon after the fix is applied (and
// its alerts resolve); a fault without one must stay broken, a wrong
// action included, until it is stopped.
func TestFaults(t *testing.T) {
	for _, fc := range faultCases() {
		t.Run(fc.spec.Fault, func(t *testing.T) {
			t.Parallel()
			testFault(t, fc)
		})
	}
}

func testFault(t *testing.T, fc faultCase) {
	r := newRun(t, testutil.Epoch)
	warmup := fc.warmup
	if warmup == 0 {
		warmup = 12 * time.Minute
	}
	r.ticks(warmup, "warm-up", func() (bool, string) { return true, "" })
	if !r.healthy() || len(r.rules.Firing()) > 0 {
		t.Fatalf("not quiet before the fault: %s", r.state())
	}
	spec := fc.spec
	spec.Duration = chaos.Duration(3 * time.Hour)
	f, err := r.e.InjectFault(spec)
	if err != nil {
		t.Fatal(err)
	}
	injected := r.e.Now()
	detectBound := fc.detect
	if detectBound == 0 {
		detectBound = 15 * time.Minute
	}
	r.until("the fault's alerts fire", detectBound, func() (bool, string) {
		for _, a := range fc.alerts {
			if !r.everFired(a) {
				return false, "waiting for " + a.String() + "; " + r.state()
			}
		}
		return !fc.unhealthy || !r.healthy(), r.state()
	})
	t.Logf("%s: alerts %v after %s", f.Fault, fc.alerts, r.e.Now().Sub(injected))
	if fc.extra != nil {
		fc.extra(t, r)
	}

	if f.Fix.Escalate {
		if fc.wrongFix != nil {
			if _, err := r.e.Do(*fc.wrongFix); err != nil {
				t.Fatal(err)
			}
		}
		r.ticks(10*time.Minute, "a fault with no fix stays broken", func() (bool, string) { return !r.healthy(), r.state() })
		if _, err := r.e.StopFault(f.ID); err != nil {
			t.Fatal(err)
		}
		for _, a := range fc.afterEnd {
			if _, err := r.e.Do(a); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		if len(f.Fix.Actions) == 0 {
			t.Fatalf("%s has neither a fix nor escalate", f.Fault)
		}
		for _, a := range f.Fix.Actions {
			if _, err := r.e.Do(a); err != nil {
				t.Fatalf("fix %s: %v", a, err)
			}
		}
	}
	r.until("healthy again", 10*time.Minute, func() (bool, string) { return r.healthy(), r.state() })
	r.until("the fault's alerts resolved", 15*time.Minute, func() (bool, string) {
		for _, a := range fc.alerts {
			if r.firing(a) {
				return false, a.String() + " still firing; " + r.state()
			}
		}
		return true, ""
	})
	checkTimeline(t, r.e.Timeline(), f.ID, fc.unhealthy)
}

// checkTimeline checks the ground truth tells the story in order: the
// fault; then, when health was lost, the action or the fault's end before
// health came back; and health is regained after it was last lost.
func checkTimeline(t *testing.T, tl truth.Timeline, id string, lost bool) {
	t.Helper()
	var kinds []string
	for _, ev := range tl.Events {
		if ev.Fault != nil && ev.Fault.ID != id {
			continue
		}
		kinds = append(kinds, ev.Kind)
	}
	got := strings.Join(kinds, " ")
	want := `^fault_injected( \w+)*$`
	if lost {
		want = `^fault_injected( \w+)*? healthy_lost( \w+)* (action_received|fault_ended)( \w+)* healthy_regained`
	}
	if !regexp.MustCompile(want).MatchString(got) {
		t.Errorf("timeline %q does not match %s", got, want)
	}
	if strings.LastIndex(got, truth.HealthyLost) > strings.LastIndex(got, truth.HealthyRegained) {
		t.Errorf("timeline %q ends unhealthy", got)
	}
}

// unusualTraffic feeds the api's request rate, as the recording rule
// makes it, to the analyzer's detector: the surge must score at least
// 0.8, what UnusualTraffic alerts on.
func unusualTraffic(t *testing.T, r *run) {
	now := r.e.Now()
	m := r.rules.Range(`job:http_server_requests:rate5m{job="api"}`, now.Add(-2*time.Hour), now, step)
	if len(m) != 1 {
		t.Fatalf("request rate series: %v", m)
	}
	d := detect.New(detect.Config{WarmUp: 32})
	best := 0.0
	for _, p := range m[0].Floats {
		res := d.Observe(time.UnixMilli(p.T), p.F)
		best = math.Max(best, res.Score)
	}
	t.Logf("the detector scores the surge %.2f", best)
	if best < 0.8 {
		t.Errorf("the surge scores %.2f at most; UnusualTraffic needs 0.8", best)
	}
}

// capacityForecast feeds the volume's usage to the analyzer's forecaster:
// it must put exhaustion within four hours, what
// CapacityExhaustionImminent alerts on.
func capacityForecast(t *testing.T, r *run) {
	now := r.e.Now()
	sel := `system_filesystem_usage_bytes{system_filesystem_state="used",system_filesystem_mountpoint="/var/lib/postgresql"}`
	used := r.rules.Range(sel, now.Add(-20*time.Minute), now, step)
	capacity := r.rules.Query(`sum without (system_filesystem_state) (system_filesystem_usage_bytes{system_filesystem_mountpoint="/var/lib/postgresql"})`, now)
	if len(used) != 1 || len(capacity) != 1 {
		t.Fatalf("filesystem series: %v %v", used, capacity)
	}
	var samples []forecast.Sample
	for _, p := range used[0].Floats {
		samples = append(samples, forecast.Sample{T: p.T, V: p.F})
	}
	fc, err := forecast.Predict(samples, capacity[0].F, now.UnixMilli(), forecast.Config{Period: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the forecaster puts exhaustion in %.0f s", fc.Seconds)
	if !(fc.Seconds < 4*3600) {
		t.Errorf("forecast puts exhaustion in %.0f s; CapacityExhaustionImminent needs < 14400", fc.Seconds)
	}
}

// TestEveryShippedAlertHasAFault checks the table above covers every
// alert of deploy/rules: each can fire on some simulated fault. The
// analyzer's alerts are covered by the checks that feed the analyzer's
// own detector and forecaster.
func TestEveryShippedAlertHasAFault(t *testing.T) {
	covered := map[string]bool{"UnusualTraffic": true, "CapacityExhaustionPredicted": true, "CapacityExhaustionImminent": true}
	for _, fc := range faultCases() {
		for _, a := range fc.alerts {
			covered[a.name] = true
		}
	}
	for _, f := range simtest.RuleFiles(t, "../..") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert: "); ok && !covered[name] {
				t.Errorf("alert %s (%s) fires on no simulated fault", name, f)
			}
		}
	}
	for _, name := range chaos.Names() {
		found := false
		for _, fc := range faultCases() {
			found = found || fc.spec.Fault == name
		}
		if !found {
			t.Errorf("fault %s is not tested", name)
		}
	}
}
