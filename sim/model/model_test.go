package model

import (
	"math"
	"sort"
	"testing"
	"time"
)

// stats collects one service's requests during some steps.
type stats struct {
	service  string
	durs     []float64
	errors   int
	byModel  map[string]int
	failedLL int
}

func (s *stats) Request(r *Request) {
	if r.Service.Name != s.service {
		return
	}
	s.durs = append(s.durs, r.Duration)
	if r.Status >= 500 {
		s.errors++
	}
	if r.LLM != nil {
		s.byModel[r.LLM.Provider.Model]++
		if r.LLM.ErrorType != "" {
			s.failedLL++
		}
	}
}
func (s *stats) Job(*Job) {}

func (s *stats) p95() float64 {
	sort.Float64s(s.durs)
	return s.durs[len(s.durs)*95/100]
}

func (s *stats) errorRatio() float64 { return float64(s.errors) / float64(len(s.durs)) }

// at10 is a system at 10:00 UTC on a fixed date.
func at10(t *testing.T) *System {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Start = time.Date(2026, time.March, 10, 10, 0, 0, 0, time.UTC)
	cfg.Seed = 5
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// run steps s for d in 15 s steps, with knobs set before each, and
// returns the api's requests of the last minute.
func run(s *System, d time.Duration, knobs func()) *stats {
	var st *stats
	steps := int(d / (15 * time.Second))
	for k := range steps {
		if knobs != nil {
			knobs()
		}
		if k >= steps-4 {
			if st == nil {
				st = &stats{service: API, byModel: map[string]int{}}
			}
			s.Step(15*time.Second, st)
		} else {
			s.Step(15*time.Second, nil)
		}
	}
	return st
}

func TestScalingOutLowersLatencyUnderASurge(t *testing.T) {
	s := at10(t)
	surge := func() { s.Service(API).DemandFactor = 6 }
	before := run(s, 5*time.Minute, surge)
	if _, err := s.Scale(API, 12); err != nil {
		t.Fatal(err)
	}
	after := run(s, 3*time.Minute, surge)
	t.Logf("surge on 3 instances: p95 %.3fs, errors %.1f%%; on 12: p95 %.3fs, errors %.1f%%",
		before.p95(), 100*before.errorRatio(), after.p95(), 100*after.errorRatio())
	if !(before.p95() > 1 && after.p95() < 0.5 && after.errorRatio() < 0.01) {
		t.Errorf("scaling out did not relieve the surge")
	}
}

func TestRestartClearsALeak(t *testing.T) {
	s := at10(t)
	leak := func() {
		for _, i := range s.Service(API).Instances {
			i.MemLeakRate = 60 * mib / 60
		}
	}
	run(s, 15*time.Minute, leak)
	i := s.Instance("api-0")
	if i.Memory < 1000*mib {
		t.Fatalf("after 15 minutes of leaking api-0 holds %.0f MiB", i.Memory/mib)
	}
	if _, err := s.RestartInstance(API, "api-0"); err != nil {
		t.Fatal(err)
	}
	run(s, time.Minute, nil)
	if i.Memory > 400*mib || i.State != Running {
		t.Errorf("after a restart api-0 holds %.0f MiB, %s", i.Memory/mib, i.State)
	}
	if s.Instance("api-1").Memory < 1000*mib {
		t.Errorf("api-1, not restarted, lost its leak")
	}
}

func TestBreakerMovesChatsToTheFallback(t *testing.T) {
	s := at10(t)
	outage := func() { s.Provider(OpenAI).ErrorRate = 1 }
	before := run(s, 2*time.Minute, outage)
	if before.byModel["gpt-4o-mini"] == 0 || before.failedLL != before.byModel["gpt-4o-mini"] || before.errorRatio() < 0.01 {
		t.Fatalf("outage: %+v", before)
	}
	if _, err := s.SetBreaker(BreakerOpenAI, true); err != nil {
		t.Fatal(err)
	}
	after := run(s, time.Minute, outage)
	if after.byModel["gpt-4o-mini"] != 0 || after.byModel["claude-3-5-haiku"] == 0 || after.failedLL != 0 {
		t.Errorf("after tripping llm-openai: %v, %d failed", after.byModel, after.failedLL)
	}
}

// TestSlowDependencyBacksUpCallers: a hung database fills the pools of
// every service that calls it and fails their requests and jobs.
func TestSlowDependencyBacksUpCallers(t *testing.T) {
	s := at10(t)
	run(s, 2*time.Minute, nil)
	var jobsFailed float64
	for _, q := range s.Queues {
		jobsFailed -= q.Failed
	}
	st := run(s, 3*time.Minute, func() { s.DB.Delay = 2 })
	for _, q := range s.Queues {
		jobsFailed += q.Failed
	}
	full := 0
	for _, svc := range s.Services {
		for _, i := range svc.Instances {
			if i.PoolUsed >= 0.9*float64(i.PoolMax()) {
				full++
			}
		}
	}
	if st.errorRatio() < 0.2 || jobsFailed == 0 || s.authView[1].fail < 0.5 || full < 3 {
		t.Errorf("api errors %.2f, jobs failed %.0f, logins failing %.2f, full pools %d", st.errorRatio(), jobsFailed, s.authView[1].fail, full)
	}
}

func TestStation(t *testing.T) {
	var st station
	// Below capacity nothing waits for long and nothing is dropped.
	r := st.step(50, 100, 0.01, 1, math.Inf(1))
	if r.dropped != 0 || st.backlog != 0 || r.wait > 0.011 {
		t.Errorf("under capacity: %+v backlog %v", r, st.backlog)
	}
	// Above capacity the backlog grows by the excess, up to the limit.
	r = st.step(150, 100, 0.01, 1, 70)
	if st.backlog != 50 || r.dropped != 0 || math.Abs(r.wait-(0.5+0.01*0.97/0.03)) > 1e-9 {
		t.Errorf("over capacity: %+v backlog %v", r, st.backlog)
	}
	r = st.step(150, 100, 0.01, 1, 70)
	if st.backlog != 70 || r.dropped != 30 || math.Abs(r.dropFrac-0.2) > 1e-9 {
		t.Errorf("at the limit: %+v backlog %v", r, st.backlog)
	}
	// Without capacity everything over the limit is dropped.
	var dead station
	if r := dead.step(10, 0, 0.01, 1, 0); r.dropFrac != 1 || r.served != 0 {
		t.Errorf("no capacity: %+v", r)
	}
}

func TestLognormalTail(t *testing.T) {
	for _, tc := range []struct{ mean, sigma, x, lo, hi float64 }{
		{1, 0.5, 1e-9, 0.999, 1},
		{1, 0.5, 100, 0, 1e-9},
		{1, 0.5, 1.2, 0.25, 0.35},
		{2, 0, 1, 1, 1},
		{2, 0, 3, 0, 0},
		{math.Inf(1), 0.5, 3, 1, 1},
	} {
		if p := lognormalTail(tc.mean, tc.sigma, tc.x); p < tc.lo || p > tc.hi {
			t.Errorf("P(X > %v) for mean %v sigma %v = %v, want in [%v, %v]", tc.x, tc.mean, tc.sigma, p, tc.lo, tc.hi)
		}
	}
}

func TestControlBounds(t *testing.T) {
	s := at10(t)
	for _, n := range []int{0, -1, 51, 10000} {
		if _, err := s.Scale(API, n); err == nil {
			t.Errorf("scale to %d accepted", n)
		}
	}
	if out, err := s.Scale(Worker, 50); err != nil || out != Changed || len(s.Service(Worker).Instances) != 50 {
		t.Errorf("scale to 50: %v %v", out, err)
	}
	if out, err := s.Scale(Worker, 2); err != nil || out != Changed || s.Instance("worker-2") != nil {
		t.Errorf("scale in: %v %v, worker-2 %v", out, err, s.Instance("worker-2"))
	}
	if _, err := s.Rollback(API); err == nil {
		t.Error("rollback without a previous version accepted")
	}
	v, err := s.Deploy(API)
	if err != nil || v != "2.8.0" {
		t.Fatalf("deploy: %v %v", v, err)
	}
	run(s, 2*time.Minute, nil)
	for _, i := range s.Service(API).Instances {
		if i.Version != "2.8.0" || !i.Ready() {
			t.Errorf("%s after the deploy: %s %s", i.ID, i.Version, i.State)
		}
	}
	if out, err := s.Rollback(API); err != nil || out != Started {
		t.Fatalf("rollback: %v %v", out, err)
	}
	if out, _ := s.Rollback(API); out != InProgress {
		t.Errorf("second rollback: %v", out)
	}
	run(s, 2*time.Minute, nil)
	if svc := s.Service(API); svc.Version != "2.7.1" || svc.Instances[2].Version != "2.7.1" || svc.Rollout() != "" {
		t.Errorf("after the rollback: %s, %s, rollout %q", svc.Version, svc.Instances[2].Version, svc.Rollout())
	}
}
