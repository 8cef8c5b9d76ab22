package scenario

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/sim/chaos"
)

// TestShippedScenarios loads every scenario under deploy/sim/scenarios.
func TestShippedScenarios(t *testing.T) {
	files, err := filepath.Glob("../../deploy/sim/scenarios/*.yaml")
	if err != nil || len(files) < 3 {
		t.Fatalf("scenarios: %v %v", files, err)
	}
	faults := map[string]bool{}
	for _, f := range files {
		s, err := Load(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if s.Name == "" {
			t.Errorf("%s has no name", f)
		}
		if filepath.Base(f) == "catalogue.yaml" {
			for _, spec := range s.Specs() {
				faults[spec.Fault] = true
			}
		}
	}
	for _, name := range chaos.Names() {
		if !faults[name] {
			t.Errorf("catalogue.yaml lacks %s", name)
		}
	}
}

func TestParse(t *testing.T) {
	s, err := Parse([]byte(`
engine:
  seed: 9
  start: 2026-03-10T10:00:00Z
  replicas: {api: 5}
service_levels:
  api_p95: 300ms
faults:
  - at: 90s
    fault: traffic_surge
    intensity: 4
    duration: 2m
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.Engine.Seed != 9 || s.Engine.Replicas["api"] != 5 || s.Engine.Replicas["auth"] != 3 || s.Engine.PeakRPS != 120 {
		t.Errorf("engine %+v: keys set and defaults kept", s.Engine)
	}
	if !s.Engine.Start.Equal(time.Date(2026, 3, 10, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("start %v", s.Engine.Start)
	}
	if time.Duration(s.ServiceLevels.APIP95) != 300*time.Millisecond || s.ServiceLevels.ErrorRatio != 0.01 {
		t.Errorf("service levels %+v", s.ServiceLevels)
	}
	spec := s.Specs()[0]
	if time.Duration(spec.Start) != 90*time.Second || time.Duration(spec.Duration) != 2*time.Minute || *spec.Intensity != 4 || spec.Target != "" {
		t.Errorf("fault %+v", spec)
	}
}

// TestParseErrors: every error names its key.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"engine:\n  peak_rps: -1\n", "engine.peak_rps: must be in (0, 100000], got -1"},
		{"engine:\n  replicas: {api: 0}\n", "engine.replicas.api: must be in [1, max_replicas=50], got 0"},
		{"engine:\n  replicas: {web: 2}\n", "engine.replicas.web: unknown service"},
		{"engine:\n  peak_hour: 24\n", "engine.peak_hour: must be in [0, 24)"},
		{"engine:\n  speed: 3\n", "field speed not found"},
		{"service_levels:\n  error_ratio: 2\n", "service_levels.error_ratio: must be in (0, 1), got 2"},
		{"service_levels:\n  api_p95: soon\n", "want a duration"},
		{"faults:\n  - fault: meteor\n", `faults[0].fault: unknown fault "meteor"`},
		{"faults:\n  - fault: traffic_surge\n  - fault: llm_outage\n    target: api\n", "faults[1].target: llm_outage acts on an LLM provider"},
		{"faults:\n  - fault: cpu_hog\n    target: api-7\n", `faults[0].target: target "api-7" not found`},
		{"faults:\n  - fault: traffic_surge\n    intensity: 500\n", "faults[0].intensity: must be in (1, 100]"},
		{"faults:\n  - fault: traffic_surge\n    at: -1m\n", "faults[0].at: must be >= 0"},
		{"faults:\n  - fault: traffic_surge\n    duration: 9000h\n", "faults[0].duration: must be in (0, 168h0m0s]"},
		{"faults:\n  - fault: traffic_surge\n    when: 1m\n", "field when not found"},
	} {
		_, err := Parse([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
