package model

import (
	"errors"
	"fmt"
	"time"
)

// Config sizes the engine and fixes its randomness.
type Config struct {
	// Seed fixes every random draw: two systems with the same
	// configuration and the same control actions at the same ticks evolve
	// identically.
	Seed uint64 `yaml:"seed"`
	// Start is the simulated time of tick 0.
	Start time.Time `yaml:"start"`
	// PeakRPS is the api's demand in requests per second at the daily
	// peak.
	PeakRPS float64 `yaml:"peak_rps"`
	// TroughRatio is the demand at the daily trough as a share of the peak.
	TroughRatio float64 `yaml:"trough_ratio"`
	// PeakHour is the hour of the day (UTC, 0–24) at which demand peaks.
	PeakHour float64 `yaml:"peak_hour"`
	// Noise is the relative standard deviation of the slow random
	// wandering of demand around its daily curve.
	Noise float64 `yaml:"noise"`
	// Replicas is the initial number of instances per service.
	Replicas map[string]int `yaml:"replicas"`
	// MaxReplicas bounds what a scale action may ask for.
	MaxReplicas int `yaml:"max_replicas"`
}

// DefaultConfig is the engine's default size: 120 requests/s at 14:00
// UTC, three instances of each service.
func DefaultConfig() Config {
	return Config{
		PeakRPS:     120,
		TroughRatio: 0.3,
		PeakHour:    14,
		Noise:       0.05,
		Replicas:    map[string]int{API: 3, Auth: 3, Worker: 3},
		MaxReplicas: 50,
	}
}

// Validate reports the first invalid setting, naming its key under
// prefix (e.g. "engine.").
func (c Config) Validate(prefix string) error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s%s: %s", prefix, key, fmt.Sprintf(format, args...)))
	}
	if c.Start.IsZero() {
		bad("start", "must be set")
	}
	if !(c.PeakRPS > 0 && c.PeakRPS <= 100000) {
		bad("peak_rps", "must be in (0, 100000], got %v", c.PeakRPS)
	}
	if !(c.TroughRatio > 0 && c.TroughRatio <= 1) {
		bad("trough_ratio", "must be in (0, 1], got %v", c.TroughRatio)
	}
	if !(c.PeakHour >= 0 && c.PeakHour < 24) {
		bad("peak_hour", "must be in [0, 24), got %v", c.PeakHour)
	}
	if !(c.Noise >= 0 && c.Noise <= 0.5) {
		bad("noise", "must be in [0, 0.5], got %v", c.Noise)
	}
	if c.MaxReplicas < 1 || c.MaxReplicas > 1000 {
		bad("max_replicas", "must be in [1, 1000], got %d", c.MaxReplicas)
	}
	for _, name := range []string{API, Auth, Worker} {
		n, ok := c.Replicas[name]
		if !ok {
			bad("replicas."+name, "must be set")
			continue
		}
		if n < 1 || n > c.MaxReplicas {
			bad("replicas."+name, "must be in [1, max_replicas=%d], got %d", c.MaxReplicas, n)
		}
	}
	for name := range c.Replicas {
		if name != API && name != Auth && name != Worker {
			bad("replicas."+name, "unknown service; the services are api, auth and worker")
		}
	}
	return errors.Join(errs...)
}
