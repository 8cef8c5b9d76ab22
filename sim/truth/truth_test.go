package truth

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/sim/chaos"
	"github.com/aiops-dev/aiops/sim/model"
)

func system(t *testing.T) *model.System {
	t.Helper()
	cfg := model.DefaultConfig()
	cfg.Start = time.Date(2026, time.March, 10, 10, 0, 0, 0, time.UTC)
	s, err := model.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestJudge: the p95 from the judge's log buckets is within their 2 %
// of the exact one; errors count 5xx only; the window forgets old steps.
func TestJudge(t *testing.T) {
	s := system(t)
	api := s.Service(model.API)
	other := s.Service(model.Auth)
	j := NewJudge(DefaultLevels())
	g := rand.New(rand.NewPCG(1, 2))
	var durs []float64
	for k := range 10000 {
		r := &model.Request{Service: api, Status: 200, Duration: math.Exp(g.NormFloat64()) * 0.05}
		switch {
		case k%100 == 0:
			r.Status = 503
		case k%50 == 1:
			r.Status = 401
		}
		durs = append(durs, r.Duration)
		j.Request(r)
		j.Request(&model.Request{Service: other, Status: 500, Duration: 100})
	}
	sort.Float64s(durs)
	exact := durs[int(math.Ceil(0.95*float64(len(durs))))-1]
	s.Step(time.Second, nil)
	h := j.Assess(s)
	p95, ratio := h.Checks[0].Value, h.Checks[1].Value
	if math.Abs(p95-exact)/exact > 0.025 {
		t.Errorf("p95 %v, exact %v", p95, exact)
	}
	if ratio != 0.01 || h.Checks[1].OK {
		t.Errorf("error ratio %v ok=%v, want 0.01 and not ok (limit 1 %%)", ratio, h.Checks[1].OK)
	}
	if h.Healthy {
		t.Error("healthy at the error limit")
	}
	// A minute and a half later with no failed requests the old step is
	// out of the window.
	for range 90 {
		j.Request(&model.Request{Service: api, Status: 200, Duration: 0.01})
		s.Step(time.Second, nil)
		h = j.Assess(s)
	}
	if !h.Healthy || h.Checks[1].Value != 0 || h.Checks[0].Value > 0.0105 {
		t.Errorf("after the window: %+v", h)
	}
}

func TestRecorder(t *testing.T) {
	start := time.Date(2026, time.March, 10, 10, 0, 0, 0, time.UTC)
	r := NewRecorder(start, 3)
	at := func(s int) time.Time { return start.Add(time.Duration(s) * time.Second) }
	good := Health{Healthy: true, Checks: []Check{{Name: "api_p95_seconds", Value: 0.1, Limit: 0.5, OK: true}}}
	bad := Health{Healthy: false, Checks: []Check{{Name: "api_p95_seconds", Value: 0.9, Limit: 0.5}, {Name: "api_error_ratio", OK: true}}}
	r.Health(at(1), 1, good)
	r.Health(at(2), 2, good)
	f := &chaos.Fault{ID: "f1", Fault: chaos.TrafficSurge, Target: "api", Intensity: 10, Duration: chaos.Duration(time.Minute),
		Fix: chaos.Fix{Actions: []chaos.Action{{Action: chaos.ActScale, Target: "api"}}}}
	r.FaultStarted(at(3), 3, f)
	r.Health(at(4), 4, bad)
	r.Health(at(5), 5, bad)
	r.Action(at(6), 6, chaos.Action{Action: chaos.ActScale, Target: "api", Params: map[string]string{"replicas": "18"}}, "changed", nil)
	r.Health(at(7), 7, good)
	f.EndReason = "expired"
	r.FaultEnded(at(8), 8, f)
	tl := r.Timeline()
	var kinds []string
	for _, ev := range tl.Events {
		kinds = append(kinds, ev.Kind)
	}
	want := []string{FaultInjected, HealthyLost, ActionReceived, HealthyRegained, FaultEnded}
	if len(kinds) != len(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	for k := range want {
		if kinds[k] != want[k] {
			t.Fatalf("events %v, want %v", kinds, want)
		}
	}
	lost := tl.Events[1]
	if len(lost.Checks) != 1 || lost.Checks[0].Name != "api_p95_seconds" || time.Duration(lost.Offset) != 4*time.Second {
		t.Errorf("healthy_lost: %+v", lost)
	}
	if tl.Events[4].Fault.Reason != "expired" || !tl.Healthy || tl.Seed != 3 {
		t.Errorf("timeline: %+v", tl)
	}
}
