package engine

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/sim/chaos"
	"github.com/aiops-dev/aiops/sim/model"
	"github.com/aiops-dev/aiops/sim/truth"
)

// Code classifies a refused request.
type Code int

const (
	NotFound Code = iota + 1
	Invalid
	Conflict
)

// Error is a refused control action or fault.
type Error struct {
	Code Code
	// Field names the bad parameter of an Invalid error.
	Field string
	Err   error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// classify turns the model's and the catalogue's errors into Errors.
func classify(err error) error {
	if err == nil {
		return nil
	}
	var mnf *model.NotFoundError
	var mi *model.InvalidError
	var mc *model.ConflictError
	var cnf *chaos.NotFoundError
	var ci *chaos.InvalidError
	switch {
	case errors.As(err, &mnf), errors.As(err, &cnf):
		return &Error{Code: NotFound, Err: err}
	case errors.As(err, &mi):
		return &Error{Code: Invalid, Field: mi.Field, Err: err}
	case errors.As(err, &ci):
		return &Error{Code: Invalid, Field: ci.Field, Err: err}
	case errors.As(err, &mc):
		return &Error{Code: Conflict, Err: err}
	}
	return err
}

// act runs one control action under the lock and records it, with its
// outcome or the reason it was refused, on the timeline.
func (e *Engine) act(a chaos.Action, f func() (model.Outcome, error)) (model.Outcome, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	out, err := f()
	err = classify(err)
	e.rec.Action(e.sys.Now(), e.sys.Tick(), a, string(out), err)
	if err != nil {
		e.logger.Info("control action refused", "action", a.String(), "err", err)
	} else {
		e.logger.Info("control action", "action", a.String(), "outcome", out)
	}
	return out, err
}

// RestartInstance restarts one instance of a service.
func (e *Engine) RestartInstance(service, id string) (model.Outcome, error) {
	return e.act(chaos.Action{Action: chaos.ActRestartInstance, Target: service + "/" + id}, func() (model.Outcome, error) {
		return e.sys.RestartInstance(service, id)
	})
}

// RestartService restarts a service, one instance at a time.
func (e *Engine) RestartService(service string) (model.Outcome, error) {
	return e.act(chaos.Action{Action: chaos.ActRestartService, Target: service}, func() (model.Outcome, error) {
		return e.sys.RestartService(service)
	})
}

// Scale sets a service's number of instances.
func (e *Engine) Scale(service string, replicas int) (model.Outcome, error) {
	a := chaos.Action{Action: chaos.ActScale, Target: service, Params: map[string]string{"replicas": strconv.Itoa(replicas)}}
	return e.act(a, func() (model.Outcome, error) { return e.sys.Scale(service, replicas) })
}

// Rollback rolls a service back to its previous version.
func (e *Engine) Rollback(service string) (model.Outcome, error) {
	return e.act(chaos.Action{Action: chaos.ActRollback, Target: service}, func() (model.Outcome, error) {
		return e.sys.Rollback(service)
	})
}

// SetBreaker trips (open) or resets a circuit breaker.
func (e *Engine) SetBreaker(name string, open bool) (model.Outcome, error) {
	act := chaos.ActResetBreaker
	if open {
		act = chaos.ActTripBreaker
	}
	return e.act(chaos.Action{Action: act, Target: name}, func() (model.Outcome, error) {
		return e.sys.SetBreaker(name, open)
	})
}

// SetFlag sets a feature flag.
func (e *Engine) SetFlag(name string, on bool) (model.Outcome, error) {
	a := chaos.Action{Action: chaos.ActSetFlag, Target: name, Params: map[string]string{"enabled": strconv.FormatBool(on)}}
	return e.act(a, func() (model.Outcome, error) { return e.sys.SetFlag(name, on) })
}

// ExpandVolume grows a volume.
func (e *Engine) ExpandVolume(name string, add float64) (model.Outcome, error) {
	a := chaos.Action{Action: chaos.ActExpandVolume, Target: name, Params: map[string]string{"add_bytes": strconv.FormatFloat(add, 'f', -1, 64)}}
	return e.act(a, func() (model.Outcome, error) { return e.sys.ExpandVolume(name, add) })
}

// CleanVolume removes what can be removed from a volume and returns the
// bytes freed.
func (e *Engine) CleanVolume(name string) (float64, error) {
	var freed float64
	_, err := e.act(chaos.Action{Action: chaos.ActCleanVolume, Target: name}, func() (model.Outcome, error) {
		var err error
		freed, err = e.sys.CleanVolume(name)
		if freed == 0 {
			return model.Unchanged, err
		}
		return model.Changed, err
	})
	return freed, err
}

// SetRateLimit limits each client of a route of the api.
func (e *Engine) SetRateLimit(service, route string, perClient float64) (model.Outcome, error) {
	a := chaos.Action{Action: chaos.ActSetRateLimit, Target: service,
		Params: map[string]string{"route": route, "per_client_rps": strconv.FormatFloat(perClient, 'f', -1, 64)}}
	return e.act(a, func() (model.Outcome, error) { return e.sys.SetRateLimit(service, route, perClient) })
}

// InjectFault schedules a fault.
func (e *Engine) InjectFault(spec chaos.Spec) (chaos.Fault, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f, err := e.chaos.Inject(e.sys, spec, e.sys.Now())
	if err != nil {
		return chaos.Fault{}, classify(err)
	}
	return *f, nil
}

// StopFault ends a fault now.
func (e *Engine) StopFault(id string) (chaos.Fault, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	before := chaos.State("")
	for _, f := range e.chaos.List() {
		if f.ID == id {
			before = f.State
		}
	}
	f, err := e.chaos.Stop(id, e.sys.Now())
	if err != nil {
		return chaos.Fault{}, classify(err)
	}
	if before == chaos.Active {
		e.rec.FaultEnded(e.sys.Now(), e.sys.Tick(), f)
	}
	return *f, nil
}

// Faults lists every fault known.
func (e *Engine) Faults() []chaos.Fault {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []chaos.Fault
	for _, f := range e.chaos.List() {
		out = append(out, *f)
	}
	return out
}

// Fault returns one fault.
func (e *Engine) Fault(id string) (chaos.Fault, error) {
	for _, f := range e.Faults() {
		if f.ID == id {
			return f, nil
		}
	}
	return chaos.Fault{}, &Error{Code: NotFound, Err: &chaos.NotFoundError{Kind: "fault", Name: id}}
}

// State is the engine as an operator sees it.
type State struct {
	Time     time.Time       `json:"time"`
	Step     int             `json:"step"`
	Healthy  bool            `json:"healthy"`
	Checks   []truth.Check   `json:"checks"`
	Demand   float64         `json:"demand_rps"`
	Services []ServiceState  `json:"services"`
	Database DatabaseState   `json:"database"`
	Cache    CacheState      `json:"cache"`
	LLM      []ProviderState `json:"llm_providers"`
	Breakers []BreakerState  `json:"breakers"`
	Flags    map[string]bool `json:"flags"`
	Volumes  []VolumeState   `json:"volumes"`
	Queues   []QueueState    `json:"queues"`
}

// ServiceState is one service.
type ServiceState struct {
	Name            string             `json:"name"`
	Version         string             `json:"version"`
	PreviousVersion string             `json:"previous_version,omitempty"`
	Replicas        int                `json:"replicas"`
	Ready           int                `json:"ready"`
	Rollout         string             `json:"rollout,omitempty"`
	RateLimits      map[string]float64 `json:"rate_limits,omitempty"`
	Instances       []InstanceState    `json:"instances"`
}

// InstanceState is one instance.
type InstanceState struct {
	ID               string    `json:"id"`
	State            string    `json:"state"`
	Ready            bool      `json:"ready"`
	Version          string    `json:"version"`
	Node             string    `json:"node"`
	Process          int       `json:"process"`
	Started          time.Time `json:"started"`
	Restarts         int       `json:"restarts"`
	LastCrash        string    `json:"last_crash,omitempty"`
	CPUCores         float64   `json:"cpu_cores"`
	MemoryBytes      int64     `json:"memory_bytes"`
	MemoryLimitBytes int64     `json:"memory_limit_bytes"`
	PoolUsed         int       `json:"pool_used"`
	PoolMax          int       `json:"pool_max"`
}

// DatabaseState is PostgreSQL.
type DatabaseState struct {
	CPUUtilization   float64 `json:"cpu_utilization"`
	QueryWaitSeconds float64 `json:"query_wait_seconds"`
}

// CacheState is Redis.
type CacheState struct {
	Reachable bool `json:"reachable"`
}

// ProviderState is an LLM provider.
type ProviderState struct {
	Name    string `json:"name"`
	Model   string `json:"model"`
	Breaker string `json:"breaker"`
}

// BreakerState is a circuit breaker.
type BreakerState struct {
	Name string `json:"name"`
	Open bool   `json:"open"`
}

// VolumeState is a volume.
type VolumeState struct {
	Name           string `json:"name"`
	Node           string `json:"node"`
	Mountpoint     string `json:"mountpoint"`
	CapacityBytes  int64  `json:"capacity_bytes"`
	UsedBytes      int64  `json:"used_bytes"`
	CleanableBytes int64  `json:"cleanable_bytes"`
}

// QueueState is a job queue.
type QueueState struct {
	Name             string  `json:"name"`
	Depth            int64   `json:"depth"`
	OldestAgeSeconds float64 `json:"oldest_age_seconds"`
}

// State returns a snapshot of the engine.
func (e *Engine) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.sys
	st := State{Time: s.Now(), Step: s.Tick(), Healthy: e.health.Healthy, Checks: e.health.Checks,
		Demand: s.DemandRate(), Flags: map[string]bool{}}
	for _, svc := range s.Services {
		ss := ServiceState{Name: svc.Name, Version: svc.Version, PreviousVersion: svc.Previous, Replicas: len(svc.Instances),
			Rollout: svc.Rollout()}
		for r, v := range svc.RateLimits {
			if ss.RateLimits == nil {
				ss.RateLimits = map[string]float64{}
			}
			ss.RateLimits[r.Name] = v
		}
		for _, i := range svc.Instances {
			if i.Ready() {
				ss.Ready++
			}
			ss.Instances = append(ss.Instances, InstanceState{ID: i.ID, State: i.State.String(), Ready: i.Ready(), Version: i.Version,
				Node: i.Node.Name, Process: i.Process, Started: i.ProcessStart, Restarts: i.Restarts, LastCrash: i.LastCrash,
				CPUCores: round3(i.CPU), MemoryBytes: int64(i.Memory), MemoryLimitBytes: int64(svc.Spec.MemLimit),
				PoolUsed: int(i.PoolUsed + 0.5), PoolMax: i.PoolMax()})
		}
		st.Services = append(st.Services, ss)
	}
	st.Database = DatabaseState{CPUUtilization: round3(min(1, s.DB.Rho)), QueryWaitSeconds: round3(s.DB.Wait)}
	st.Cache = CacheState{Reachable: !s.Cache.Unreachable}
	for _, p := range s.Providers {
		st.LLM = append(st.LLM, ProviderState{Name: p.Name, Model: p.Model, Breaker: p.Breaker.Name})
	}
	for _, b := range s.Breakers {
		st.Breakers = append(st.Breakers, BreakerState{Name: b.Name, Open: b.Open})
	}
	for k, v := range s.Flags {
		st.Flags[k] = v
	}
	for _, v := range s.Volumes {
		st.Volumes = append(st.Volumes, VolumeState{Name: v.Name, Node: v.Node.Name, Mountpoint: v.Mountpoint,
			CapacityBytes: int64(v.Capacity), UsedBytes: int64(v.Used), CleanableBytes: int64(v.Junk)})
	}
	for _, q := range s.Queues {
		st.Queues = append(st.Queues, QueueState{Name: q.Name, Depth: int64(q.Depth + 0.5), OldestAgeSeconds: round3(q.OldestAge)})
	}
	return st
}

func round3(v float64) float64 {
	const k = 1000
	if v < 0 {
		return -float64(int64(-v*k+0.5)) / k
	}
	return float64(int64(v*k+0.5)) / k
}

// Do runs a control action given by name, as a fault's Fix lists them.
func (e *Engine) Do(a chaos.Action) (model.Outcome, error) {
	p := a.Params
	num := func(key string) (float64, error) {
		v, err := strconv.ParseFloat(p[key], 64)
		if err != nil {
			return 0, &Error{Code: Invalid, Field: key, Err: fmt.Errorf("%s: want a number, got %q", key, p[key])}
		}
		return v, nil
	}
	switch a.Action {
	case chaos.ActRestartInstance:
		svc, id, ok := strings.Cut(a.Target, "/")
		if !ok {
			return "", &Error{Code: Invalid, Field: "target", Err: fmt.Errorf("target: want service/instance, got %q", a.Target)}
		}
		return e.RestartInstance(svc, id)
	case chaos.ActRestartService:
		return e.RestartService(a.Target)
	case chaos.ActScale:
		n, err := num("replicas")
		if err != nil {
			return "", err
		}
		return e.Scale(a.Target, int(n))
	case chaos.ActTripBreaker:
		return e.SetBreaker(a.Target, true)
	case chaos.ActResetBreaker:
		return e.SetBreaker(a.Target, false)
	case chaos.ActSetFlag:
		on, err := strconv.ParseBool(p["enabled"])
		if err != nil {
			return "", &Error{Code: Invalid, Field: "enabled", Err: fmt.Errorf("enabled: want true or false, got %q", p["enabled"])}
		}
		return e.SetFlag(a.Target, on)
	case chaos.ActRollback:
		return e.Rollback(a.Target)
	case chaos.ActExpandVolume:
		n, err := num("add_bytes")
		if err != nil {
			return "", err
		}
		return e.ExpandVolume(a.Target, n)
	case chaos.ActCleanVolume:
		freed, err := e.CleanVolume(a.Target)
		if err != nil || freed == 0 {
			return model.Unchanged, err
		}
		return model.Changed, nil
	case chaos.ActSetRateLimit:
		n, err := num("per_client_rps")
		if err != nil {
			return "", err
		}
		return e.SetRateLimit(a.Target, p["route"], n)
	}
	return "", &Error{Code: Invalid, Field: "action", Err: fmt.Errorf("action: unknown action %q", a.Action)}
}
