// Package action is what runbook steps do: one small Driver interface and
// the drivers behind it — the workflow engine's control API, Kubernetes
// (client-go), an HTTP webhook, an allow-listed command run without a
// shell, a notification, a wait — plus the catalogue of every action's
// parameters that lint checks runbooks against, and circuit breakers
// (sony/gobreaker) that stop calling a driver that keeps failing.
package action

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Call is one attempt of an action, its parameters rendered.
type Call struct {
	// Action is the action's full name ("workflow.restart_instance").
	Action string
	Params Params
	// Target is the run's target, for drivers that key on it and for
	// the circuit breakers.
	Target map[string]string
	// Key is the same for every attempt of one step of one run: drivers
	// whose systems take idempotency keys send it, so that a step run
	// again after a crash does not act twice.
	Key string
}

// Result is what an action did, in words safe to record: it must not
// carry secret values.
type Result struct {
	// Outcome is a short word: "started", "in_progress", "unchanged",
	// "done", "sent", …
	Outcome string `json:"outcome"`
	Detail  string `json:"detail,omitempty"`
}

// Driver runs the actions of one kind of system.
type Driver interface {
	// Do runs one attempt. An error wrapping ErrPermanent (a refusal:
	// bad parameters, not found, not allowed) is not retried.
	Do(ctx context.Context, c Call) (Result, error)
}

// DriverFunc adapts a function to Driver.
type DriverFunc func(ctx context.Context, c Call) (Result, error)

// Do implements Driver.
func (f DriverFunc) Do(ctx context.Context, c Call) (Result, error) { return f(ctx, c) }

// ErrPermanent marks a failure that trying again will not change.
var ErrPermanent = errors.New("permanent")

// Permanent wraps err as a failure not to retry.
func Permanent(err error) error {
	if err == nil || errors.Is(err, ErrPermanent) {
		return err
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}

// Secret reads a driver's secret (a token, a webhook URL) when it is
// needed, so that a rotated secret is picked up and a missing one fails
// the call that needs it rather than the start of aiops.
type Secret func() (string, error)

// Static is a Secret with a fixed value.
func Static(v string) Secret { return func() (string, error) { return v, nil } }

// Params are an action's rendered parameters.
type Params map[string]Value

// Value is one rendered parameter: a string, a list or a map.
type Value struct {
	Str  string            `json:"str,omitempty"`
	List []string          `json:"list,omitempty"`
	Map  map[string]string `json:"map,omitempty"`
}

// String returns the string parameter name, "" when absent.
func (p Params) String(name string) string { return p[name].Str }

// Int parses an integer parameter; ok is false when it is absent.
func (p Params) Int(name string) (v int, ok bool, err error) {
	s := strings.TrimSpace(p[name].Str)
	if s == "" {
		return 0, false, nil
	}
	// Templates that compute a count (ceil(...)) print floats.
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f != float64(int(f)) {
		return 0, true, Permanent(fmt.Errorf("%s: must be an integer, got %q", name, s))
	}
	return int(f), true, nil
}

// Float parses a number parameter.
func (p Params) Float(name string) (v float64, ok bool, err error) {
	s := strings.TrimSpace(p[name].Str)
	if s == "" {
		return 0, false, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, true, Permanent(fmt.Errorf("%s: must be a number, got %q", name, s))
	}
	return f, true, nil
}

// Bool parses a boolean parameter.
func (p Params) Bool(name string) (v, ok bool, err error) {
	s := strings.TrimSpace(p[name].Str)
	if s == "" {
		return false, false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, true, Permanent(fmt.Errorf("%s: must be true or false, got %q", name, s))
	}
	return b, true, nil
}

// Duration parses a duration parameter ("30s").
func (p Params) Duration(name string) (time.Duration, bool, error) {
	s := strings.TrimSpace(p[name].Str)
	if s == "" {
		return 0, false, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, true, Permanent(fmt.Errorf("%s: must be a duration, got %q", name, s))
	}
	return d, true, nil
}

// Required returns the string parameters names, failing permanently on
// the first one that is empty.
func (p Params) Required(names ...string) error {
	for _, n := range names {
		if strings.TrimSpace(p[n].Str) == "" {
			return Permanent(fmt.Errorf("%s: required", n))
		}
	}
	return nil
}

// Clone returns a deep copy.
func (p Params) Clone() Params {
	out := make(Params, len(p))
	for k, v := range p {
		out[k] = Value{Str: v.Str, List: slices.Clone(v.List), Map: maps.Clone(v.Map)}
	}
	return out
}

// Registry routes calls to drivers by the driver part of the action's
// name ("workflow" of "workflow.restart_instance").
type Registry struct {
	drivers map[string]Driver
}

// NewRegistry returns a registry of the given drivers by name.
func NewRegistry(drivers map[string]Driver) *Registry {
	return &Registry{drivers: maps.Clone(drivers)}
}

// Driver returns the driver of an action, if configured.
func (r *Registry) Driver(action string) (Driver, bool) {
	d, ok := r.drivers[DriverOf(action)]
	return d, ok
}

// Do runs c on its driver.
func (r *Registry) Do(ctx context.Context, c Call) (Result, error) {
	d, ok := r.Driver(c.Action)
	if !ok {
		return Result{}, Permanent(fmt.Errorf("action %s: driver %q is not configured (remediation.drivers)", c.Action, DriverOf(c.Action)))
	}
	return d.Do(ctx, c)
}

// DriverOf is the driver part of an action name.
func DriverOf(action string) string {
	d, _, ok := strings.Cut(action, ".")
	if !ok {
		return action
	}
	return d
}
