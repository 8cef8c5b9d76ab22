package model

import (
	"fmt"
	"math"
	"time"
)

// Crash loop back-off, as the kubelet does it: 10 s doubling to 5 min,
// forgotten after 10 min of running.
const (
	backoffBase  = 10 * time.Second
	backoffMax   = 5 * time.Minute
	backoffReset = 10 * time.Minute
)

// rollout replaces a service's processes one at a time (at most one
// instance unavailable): a rolling restart, or a deploy or rollback when
// version is set.
type rollout struct {
	kind    string // "restart", "deploy" or "rollback"
	version string
	pending []*Instance
	current *Instance
}

func (s *System) newNode(cores, memory float64) *Node {
	s.nodeSeq++
	return &Node{Name: fmt.Sprintf("node-%d", s.nodeSeq), Cores: cores, Memory: memory}
}

// addInstance adds a starting instance with the lowest free index.
func (s *System) addInstance(svc *Service) *Instance {
	idx := 0
	for _, i := range svc.Instances {
		if i.Index == idx {
			idx++
		}
	}
	inst := &Instance{ID: fmt.Sprintf("%s-%d", svc.Name, idx), Index: idx, Service: svc, Version: svc.Version, Slowdown: 1}
	inst.routes = make([]routeState, len(svc.Spec.Routes))
	s.startProcess(inst, true)
	pos := len(svc.Instances)
	for k, i := range svc.Instances {
		if i.Index > idx {
			pos = k
			break
		}
	}
	svc.Instances = append(svc.Instances[:pos], append([]*Instance{inst}, svc.Instances[pos:]...)...)
	return inst
}

// startProcess starts a fresh process on inst, on a new node when
// reschedule is set (a new or deleted pod lands anywhere; a crashed
// container restarts in place).
func (s *System) startProcess(inst *Instance, reschedule bool) {
	spec := inst.Service.Spec
	if reschedule || inst.Node == nil {
		inst.Node = s.newNode(spec.NodeCores, spec.NodeMem)
	}
	inst.Process++
	inst.State = Starting
	inst.ProcessStart = s.now
	inst.ReadyAt = s.now.Add(spec.Startup)
	inst.Memory = spec.BaseMem
	inst.leakedMem = 0
	inst.LeakedConns = 0
	inst.cpu.reset()
	inst.pool.reset()
	inst.InFlight, inst.CPU, inst.PoolUsed, inst.PoolPending = 0, 0, 0, 0
}

// crash ends inst's process; it is started again after the back-off.
func (s *System) crash(inst *Instance, reason string) {
	inst.State = BackOff
	inst.Restarts++
	inst.LastCrash = reason
	back := time.Duration(float64(backoffBase) * math.Pow(2, float64(inst.crashStreak)))
	inst.crashStreak++
	inst.RestartAt = s.now.Add(min(back, backoffMax))
	inst.Memory, inst.leakedMem, inst.LeakedConns = 0, 0, 0
	inst.InFlight, inst.CPU, inst.PoolUsed, inst.PoolPending = 0, 0, 0, 0
	inst.cpu.reset()
	inst.pool.reset()
}

// lifecycle moves instances through their states and rollouts along.
func (s *System) lifecycle() {
	for _, svc := range s.Services {
		for _, i := range svc.Instances {
			switch i.State {
			case Starting:
				if !s.now.Before(i.ReadyAt) {
					i.State = Running
				}
			case BackOff:
				if !s.now.Before(i.RestartAt) {
					s.startProcess(i, false)
					if !s.now.Before(i.ReadyAt) {
						i.State = Running
					}
				}
			case Running:
				if i.crashStreak > 0 && s.now.Sub(i.ReadyAt) >= backoffReset {
					i.crashStreak = 0
				}
			}
		}
		s.advanceRollout(svc)
	}
}

func (s *System) advanceRollout(svc *Service) {
	r := svc.rollout
	for r != nil {
		if r.current != nil && r.current.State != Running && s.hasInstance(svc, r.current) {
			return
		}
		if len(r.pending) == 0 {
			svc.rollout = nil
			return
		}
		next := r.pending[0]
		r.pending = r.pending[1:]
		if !s.hasInstance(svc, next) {
			continue
		}
		r.current = next
		if r.version != "" {
			next.Version = r.version
		}
		next.crashStreak = 0
		s.startProcess(next, true)
		if !s.now.Before(next.ReadyAt) {
			next.State = Running
		}
	}
}

func (s *System) hasInstance(svc *Service, inst *Instance) bool {
	for _, i := range svc.Instances {
		if i == inst {
			return true
		}
	}
	return false
}

// Rollout names the rollout in progress ("restart", "deploy" or
// "rollback"), or "" when there is none.
func (svc *Service) Rollout() string {
	if svc.rollout == nil {
		return ""
	}
	return svc.rollout.kind
}
