// Package scenario reads the simulator's scenario files: the engine's
// size and service levels, and a timed sequence of faults.
//
//	engine:
//	  peak_rps: 120
//	  replicas: {api: 3, auth: 3, worker: 3}
//	service_levels:
//	  api_p95: 500ms
//	faults:
//	  - at: 2m
//	    fault: traffic_surge
//	    target: api
//	    intensity: 10
//	    duration: 10m
package scenario

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/aiops-dev/aiops/sim/chaos"
	"github.com/aiops-dev/aiops/sim/model"
	"github.com/aiops-dev/aiops/sim/truth"
)

// Scenario is one scenario file.
type Scenario struct {
	Name          string       `yaml:"name"`
	Description   string       `yaml:"description"`
	Engine        model.Config `yaml:"engine"`
	ServiceLevels truth.Levels `yaml:"service_levels"`
	Faults        []Fault      `yaml:"faults"`
}

// Fault is one fault of the sequence: At is when it starts, from the
// beginning of the run.
type Fault struct {
	At        chaos.Duration `yaml:"at"`
	Fault     string         `yaml:"fault"`
	Target    string         `yaml:"target"`
	Intensity *float64       `yaml:"intensity"`
	Duration  chaos.Duration `yaml:"duration"`
}

// Spec is the fault as the catalogue takes it.
func (f Fault) Spec() chaos.Spec {
	return chaos.Spec{Fault: f.Fault, Target: f.Target, Intensity: f.Intensity, Start: f.At, Duration: f.Duration}
}

// Specs are all the scenario's faults.
func (s *Scenario) Specs() []chaos.Spec {
	var out []chaos.Spec
	for _, f := range s.Faults {
		out = append(out, f.Spec())
	}
	return out
}

// Default is the scenario without a file: the default engine, the
// default service levels, no faults.
func Default() *Scenario {
	return &Scenario{Engine: model.DefaultConfig(), ServiceLevels: truth.DefaultLevels()}
}

// Load reads and checks a scenario file.
func Load(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("scenario %s: %w", path, err)
	}
	return s, nil
}

// Parse reads a scenario: unknown keys are errors, omitted ones keep
// their defaults. Start and seed may be left for the caller to set.
func Parse(b []byte) (*Scenario, error) {
	s := Default()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return s, s.Validate()
}

// Validate checks the scenario, naming the key of the first problem. A
// fault's target is checked against the engine the scenario describes.
func (s *Scenario) Validate() error {
	cfg := s.Engine
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if err := cfg.Validate("engine."); err != nil {
		return err
	}
	if err := s.ServiceLevels.Validate("service_levels."); err != nil {
		return err
	}
	m, err := model.New(cfg)
	if err != nil {
		return err
	}
	var c chaos.Chaos
	for k, f := range s.Faults {
		if f.At < 0 {
			return fmt.Errorf("faults[%d].at: must be >= 0, got %s", k, f.At)
		}
		if _, err := c.Inject(m, f.Spec(), cfg.Start); err != nil {
			var inv *chaos.InvalidError
			if errors.As(err, &inv) {
				field := inv.Field
				if field == "start" {
					field = "at"
				}
				return fmt.Errorf("faults[%d].%s: %s", k, field, inv.Reason)
			}
			return fmt.Errorf("faults[%d].target: %w", k, err)
		}
	}
	return nil
}
