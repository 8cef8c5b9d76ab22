package engine_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/sim/chaos"
	"github.com/aiops-dev/aiops/sim/engine"
	"github.com/aiops-dev/aiops/sim/model"
	"github.com/aiops-dev/aiops/sim/telemetry"
	"github.com/aiops-dev/aiops/sim/truth"
)

// replay runs a fixed script: faults from the start, control actions at
// fixed steps. It returns the timeline and the final state as JSON.
func replay(t *testing.T, seed uint64, withTelemetry bool) (timeline, state string) {
	t.Helper()
	mc := model.DefaultConfig()
	mc.Start, mc.Seed = testutil.Epoch, seed
	cfg := engine.Config{Model: mc, Levels: truth.DefaultLevels(), Step: 10 * time.Second,
		Faults: []chaos.Spec{
			{Fault: chaos.TrafficSurge, Start: chaos.Duration(2 * time.Minute), Duration: chaos.Duration(10 * time.Minute)},
			{Fault: chaos.BadDeploy, Target: model.Auth, Start: chaos.Duration(15 * time.Minute), Duration: chaos.Duration(20 * time.Minute)},
			{Fault: chaos.MemoryLeak, Target: "worker-1", Start: chaos.Duration(5 * time.Minute), Duration: chaos.Duration(time.Hour)},
		}}
	if withTelemetry {
		opts := telemetry.DefaultOptions()
		opts.Seed = seed
		cfg.Telemetry = &opts
	}
	e, err := engine.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	actions := map[int]chaos.Action{
		40:  {Action: chaos.ActScale, Target: model.API, Params: map[string]string{"replicas": "18"}},
		41:  {Action: chaos.ActScale, Target: model.Worker, Params: map[string]string{"replicas": "15"}},
		100: {Action: chaos.ActRollback, Target: model.Auth},
		120: {Action: chaos.ActScale, Target: model.API, Params: map[string]string{"replicas": "3"}},
		150: {Action: chaos.ActRestartInstance, Target: "worker/worker-1"},
	}
	for k := range 240 {
		if a, ok := actions[k]; ok {
			if _, err := e.Do(a); err != nil {
				t.Fatalf("step %d: %s: %v", k, a, err)
			}
		}
		if _, err := e.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	tl, err := json.Marshal(e.Timeline())
	if err != nil {
		t.Fatal(err)
	}
	st, err := json.Marshal(e.State())
	if err != nil {
		t.Fatal(err)
	}
	return string(tl), string(st)
}

// TestDeterminism: the same seed and the same script give the same
// ground-truth timeline and the same final state, with telemetry or
// without (telemetry draws from its own stream); another seed gives
// another run.
func TestDeterminism(t *testing.T) {
	tl1, st1 := replay(t, 42, true)
	tl2, st2 := replay(t, 42, true)
	if tl1 != tl2 {
		t.Fatalf("same seed, different timelines:\n%s\n%s", tl1, tl2)
	}
	if st1 != st2 {
		t.Fatalf("same seed, different states:\n%s\n%s", st1, st2)
	}
	tl3, st3 := replay(t, 42, false)
	if tl3 != tl1 || st3 != st1 {
		t.Fatalf("telemetry changed the run:\n%s\n%s", tl1, tl3)
	}
	var tl truth.Timeline
	if err := json.Unmarshal([]byte(tl1), &tl); err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, ev := range tl.Events {
		kinds[ev.Kind]++
	}
	if kinds[truth.FaultInjected] != 3 || kinds[truth.ActionReceived] != 5 || kinds[truth.HealthyLost] == 0 || kinds[truth.HealthyRegained] == 0 {
		t.Errorf("timeline misses events: %v", kinds)
	}
	if _, st4 := replay(t, 43, false); st4 == st1 {
		t.Errorf("seeds 42 and 43 gave the same run")
	}
}
