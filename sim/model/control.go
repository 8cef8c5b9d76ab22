package model

import (
	"fmt"
	"math"
)

// NotFoundError is returned for a control target that does not exist.
type NotFoundError struct{ Kind, Name string }

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %q not found", e.Kind, e.Name) }

// InvalidError is returned for a parameter out of its bounds; Field
// names the parameter.
type InvalidError struct{ Field, Reason string }

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

// ConflictError is returned when an action cannot apply in the current
// state (a rollback with nothing to roll back to).
type ConflictError struct{ Reason string }

func (e *ConflictError) Error() string { return e.Reason }

// Outcome says what a control action did: "started" or "changed" when it
// acted, "in_progress" or "unchanged" when there was nothing to do (the
// same action is already under way, or the target is already so), which
// makes repeating an action harmless.
type Outcome string

const (
	Started    Outcome = "started"
	InProgress Outcome = "in_progress"
	Changed    Outcome = "changed"
	Unchanged  Outcome = "unchanged"
)

func (s *System) service(name string) (*Service, error) {
	svc := s.Service(name)
	if svc == nil {
		return nil, &NotFoundError{"service", name}
	}
	return svc, nil
}

// RestartInstance replaces the instance's process with a new one on a
// fresh node. An instance already starting is left alone.
func (s *System) RestartInstance(service, id string) (Outcome, error) {
	svc, err := s.service(service)
	if err != nil {
		return "", err
	}
	var inst *Instance
	for _, i := range svc.Instances {
		if i.ID == id {
			inst = i
		}
	}
	if inst == nil {
		return "", &NotFoundError{"instance", id}
	}
	if inst.State == Starting {
		return InProgress, nil
	}
	inst.crashStreak = 0
	s.startProcess(inst, true)
	return Started, nil
}

// RestartService restarts every instance of the service, one at a time,
// each after the previous one is ready again.
func (s *System) RestartService(service string) (Outcome, error) {
	svc, err := s.service(service)
	if err != nil {
		return "", err
	}
	if r := svc.rollout; r != nil {
		if r.kind == "restart" {
			return InProgress, nil
		}
		return "", &ConflictError{fmt.Sprintf("a %s of %s is in progress", r.kind, service)}
	}
	svc.rollout = &rollout{kind: "restart", pending: append([]*Instance(nil), svc.Instances...)}
	s.advanceRollout(svc)
	return Started, nil
}

// Scale sets the number of instances of the service. New instances start
// on fresh nodes; removed ones are those with the highest indexes.
func (s *System) Scale(service string, replicas int) (Outcome, error) {
	svc, err := s.service(service)
	if err != nil {
		return "", err
	}
	if replicas < 1 || replicas > s.cfg.MaxReplicas {
		return "", &InvalidError{"replicas", fmt.Sprintf("must be between 1 and %d, got %d", s.cfg.MaxReplicas, replicas)}
	}
	if replicas == len(svc.Instances) {
		svc.Desired = replicas
		return Unchanged, nil
	}
	svc.Desired = replicas
	for len(svc.Instances) < replicas {
		s.addInstance(svc)
	}
	if len(svc.Instances) > replicas {
		svc.Instances = svc.Instances[:replicas]
	}
	return Changed, nil
}

// Deploy rolls the service out to its next minor version and returns the
// version.
func (s *System) Deploy(service string) (string, error) {
	svc, err := s.service(service)
	if err != nil {
		return "", err
	}
	if r := svc.rollout; r != nil && r.kind != "restart" {
		return "", &ConflictError{fmt.Sprintf("a %s of %s is in progress", r.kind, service)}
	}
	var major, minor, patch int
	fmt.Sscanf(svc.Version, "%d.%d.%d", &major, &minor, &patch)
	next := fmt.Sprintf("%d.%d.0", major, minor+1)
	svc.Previous, svc.Version = svc.Version, next
	svc.rollout = &rollout{kind: "deploy", version: next, pending: append([]*Instance(nil), svc.Instances...)}
	s.advanceRollout(svc)
	return next, nil
}

// Rollback rolls the service back to the version it ran before its last
// deploy.
func (s *System) Rollback(service string) (Outcome, error) {
	svc, err := s.service(service)
	if err != nil {
		return "", err
	}
	if r := svc.rollout; r != nil && r.kind == "rollback" {
		return InProgress, nil
	}
	if svc.Previous == "" {
		return "", &ConflictError{fmt.Sprintf("%s %s has no previous version to roll back to", service, svc.Version)}
	}
	svc.Version, svc.Previous = svc.Previous, ""
	svc.rollout = &rollout{kind: "rollback", version: svc.Version, pending: append([]*Instance(nil), svc.Instances...)}
	s.advanceRollout(svc)
	return Started, nil
}

// SetBreaker opens (trips) or closes (resets) the named breaker.
func (s *System) SetBreaker(name string, open bool) (Outcome, error) {
	b := s.Breaker(name)
	if b == nil {
		return "", &NotFoundError{"breaker", name}
	}
	if b.Open == open {
		return Unchanged, nil
	}
	b.Open = open
	return Changed, nil
}

// SetFlag sets a feature flag.
func (s *System) SetFlag(name string, on bool) (Outcome, error) {
	v, ok := s.Flags[name]
	if !ok {
		return "", &NotFoundError{"flag", name}
	}
	if v == on {
		return Unchanged, nil
	}
	s.Flags[name] = on
	return Changed, nil
}

// maxVolumeExpansion bounds one expansion.
const maxVolumeExpansion = 10 << 40

// ExpandVolume grows the volume by add bytes.
func (s *System) ExpandVolume(name string, add float64) (Outcome, error) {
	v := s.Volume(name)
	if v == nil {
		return "", &NotFoundError{"volume", name}
	}
	if !(add > 0 && add <= maxVolumeExpansion) || math.IsNaN(add) {
		return "", &InvalidError{"add_bytes", fmt.Sprintf("must be between 1 and %d, got %v", int64(maxVolumeExpansion), add)}
	}
	v.Capacity += add
	return Changed, nil
}

// CleanVolume removes what can be removed (old WAL segments and logs) and
// returns the bytes freed.
func (s *System) CleanVolume(name string) (float64, error) {
	v := s.Volume(name)
	if v == nil {
		return 0, &NotFoundError{"volume", name}
	}
	freed := v.Junk
	v.Used -= freed
	v.Junk = 0
	return freed, nil
}

// maxRateLimit bounds a per-client limit.
const maxRateLimit = 100000

// SetRateLimit limits each client of the api to perClient requests per
// second on the route (0 removes the limit). Only the api, the engine's
// gateway, has a rate limiter.
func (s *System) SetRateLimit(service, route string, perClient float64) (Outcome, error) {
	svc, err := s.service(service)
	if err != nil {
		return "", err
	}
	if svc.Name != API {
		return "", &InvalidError{"service", fmt.Sprintf("only the api gateway has a rate limiter, got %s", service)}
	}
	r := svc.Spec.Route(route)
	if r == nil {
		return "", &NotFoundError{"route", route}
	}
	if !(perClient >= 0 && perClient <= maxRateLimit) {
		return "", &InvalidError{"per_client_rps", fmt.Sprintf("must be between 0 and %d, got %v", maxRateLimit, perClient)}
	}
	if svc.RateLimits[r] == perClient {
		return Unchanged, nil
	}
	if perClient == 0 {
		delete(svc.RateLimits, r)
	} else {
		svc.RateLimits[r] = perClient
	}
	return Changed, nil
}
