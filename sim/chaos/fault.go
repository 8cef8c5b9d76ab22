package chaos

import (
	"fmt"
	"hash/fnv"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/aiops-dev/aiops/sim/model"
)

// Spec asks for a fault. An empty Target and a nil Intensity take the
// catalogue's defaults; zero Duration is DefaultDuration; Start delays
// the fault.
type Spec struct {
	Fault     string   `json:"fault" yaml:"fault"`
	Target    string   `json:"target,omitempty" yaml:"target"`
	Intensity *float64 `json:"intensity,omitempty" yaml:"intensity"`
	Start     Duration `json:"start,omitempty" yaml:"start"`
	Duration  Duration `json:"duration,omitempty" yaml:"duration"`
}

// Bounds of a fault's timing.
const (
	DefaultDuration = 10 * time.Minute
	MaxDuration     = 7 * 24 * time.Hour
	// MaxFaults bounds the faults kept (active, pending and ended).
	MaxFaults = 1000
)

// InvalidError is a bad parameter; Field names it.
type InvalidError struct{ Field, Reason string }

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

// NotFoundError is a target or fault that does not exist.
type NotFoundError struct{ Kind, Name string }

func (e *NotFoundError) Error() string { return fmt.Sprintf("%s %q not found", e.Kind, e.Name) }

// State of a fault.
type State string

const (
	Pending State = "pending"
	Active  State = "active"
	Ended   State = "ended"
)

// Fault is an injected fault.
type Fault struct {
	ID        string    `json:"id"`
	Fault     string    `json:"fault"`
	Target    string    `json:"target"`
	Intensity float64   `json:"intensity"`
	Duration  Duration  `json:"duration"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	State     State     `json:"state"`
	// EndReason is "expired" or "stopped" once ended, or why the fault
	// could not start.
	EndReason string `json:"end_reason,omitempty"`
	Fix       Fix    `json:"fix"`
	entry     Entry
	// What the fault is bound to once active.
	procs   map[*model.Instance]int // process-bound faults: the infected process
	node    *model.Node             // cpu_hog
	version string                  // bad_deploy
}

// Chaos keeps the injected faults.
type Chaos struct {
	faults []*Fault
	seq    int
}

// Inject validates spec against the system's current state and schedules
// the fault; it starts at the next step at or after now + spec.Start.
func (c *Chaos) Inject(m *model.System, spec Spec, now time.Time) (*Fault, error) {
	e, ok := Lookup(spec.Fault)
	if !ok {
		if spec.Fault == "" {
			return nil, &InvalidError{"fault", "must be set; one of " + fmt.Sprint(Names())}
		}
		return nil, &InvalidError{"fault", fmt.Sprintf("unknown fault %q; one of %v", spec.Fault, Names())}
	}
	target := spec.Target
	if target == "" {
		target = e.DefaultTarget
	}
	target, err := resolveTarget(m, e, target)
	if err != nil {
		return nil, err
	}
	x := e.Intensity.Default
	if spec.Intensity != nil {
		x = *spec.Intensity
	}
	if err := e.Intensity.check(x); err != nil {
		return nil, &InvalidError{"intensity", err.Error()}
	}
	d := time.Duration(spec.Duration)
	if d == 0 {
		d = DefaultDuration
	}
	if d < 0 || d > MaxDuration {
		return nil, &InvalidError{"duration", fmt.Sprintf("must be in (0, %s], got %s", MaxDuration, d)}
	}
	start := time.Duration(spec.Start)
	if start < 0 || start > MaxDuration {
		return nil, &InvalidError{"start", fmt.Sprintf("must be in [0, %s], got %s", MaxDuration, start)}
	}
	c.prune()
	if len(c.faults) >= MaxFaults {
		return nil, &InvalidError{"fault", fmt.Sprintf("%d faults are pending or active; stop some first", MaxFaults)}
	}
	c.seq++
	f := &Fault{ID: "f" + strconv.Itoa(c.seq), Fault: e.Name, Target: target, Intensity: x, Duration: Duration(d),
		StartsAt: now.Add(start), EndsAt: now.Add(start + d), State: Pending, entry: e}
	f.Fix = fixFor(m, f)
	c.faults = append(c.faults, f)
	return f, nil
}

// prune forgets the oldest ended faults beyond MaxFaults/2.
func (c *Chaos) prune() {
	ended := 0
	for _, f := range c.faults {
		if f.State == Ended {
			ended++
		}
	}
	drop := ended - MaxFaults/2
	if drop <= 0 {
		return
	}
	kept := c.faults[:0]
	for _, f := range c.faults {
		if f.State == Ended && drop > 0 {
			drop--
			continue
		}
		kept = append(kept, f)
	}
	c.faults = kept
}

// Stop ends a fault now. Stopping an ended fault changes nothing.
func (c *Chaos) Stop(id string, now time.Time) (*Fault, error) {
	for _, f := range c.faults {
		if f.ID == id {
			if f.State != Ended {
				f.State, f.EndReason, f.EndsAt = Ended, "stopped", now
			}
			return f, nil
		}
	}
	return nil, &NotFoundError{"fault", id}
}

// List returns every fault known, in injection order.
func (c *Chaos) List() []*Fault { return append([]*Fault(nil), c.faults...) }

// Apply starts the faults due at now, ends those whose time is up, and
// sets the model's knobs for every active one. It returns the faults that
// started and ended.
func (c *Chaos) Apply(m *model.System, now time.Time) (started, ended []*Fault) {
	for _, f := range c.faults {
		if f.State == Active && !now.Before(f.EndsAt) {
			f.State, f.EndReason = Ended, "expired"
			ended = append(ended, f)
		}
		if f.State == Pending && !now.Before(f.StartsAt) {
			if err := f.start(m); err != nil {
				f.State, f.EndReason = Ended, "could not start: "+err.Error()
				ended = append(ended, f)
				continue
			}
			f.State = Active
			started = append(started, f)
		}
	}
	for _, f := range c.faults {
		if f.State == Active {
			f.apply(m)
		}
	}
	return started, ended
}

// resolveTarget checks that target exists and suits the fault: an unknown
// name is not found, a known one of the wrong kind is invalid.
func resolveTarget(m *model.System, e Entry, target string) (string, error) {
	bad := func(want string) error {
		return &InvalidError{"target", fmt.Sprintf("%s acts on %s, got %s", e.Name, want, target)}
	}
	isService := m.Service(target) != nil
	inst := m.Instance(target)
	isProvider := m.Provider(target) != nil
	isDep := isProvider || target == model.Postgres || target == model.Redis
	isVolume := m.Volume(target) != nil
	if !isService && inst == nil && !isDep && !isVolume {
		return "", &NotFoundError{"target", target}
	}
	switch e.kind {
	case targetProvider:
		if !isProvider {
			return "", bad(e.Targets)
		}
	case targetDatabase:
		if target != model.Postgres {
			return "", bad(e.Targets)
		}
	case targetCache:
		if target != model.Redis {
			return "", bad(e.Targets)
		}
	case targetVolume:
		if !isVolume {
			return "", bad(e.Targets)
		}
	case targetIngress:
		if target != model.API {
			return "", bad(e.Targets)
		}
	case targetService:
		if !isService {
			return "", bad(e.Targets)
		}
	case targetServiceOrInstance:
		if !isService && inst == nil {
			return "", bad(e.Targets)
		}
	case targetInstance:
		if isService {
			svc := m.Service(target)
			if len(svc.Instances) == 0 {
				return "", bad(e.Targets)
			}
			return svc.Instances[0].ID, nil
		}
		if inst == nil {
			return "", bad(e.Targets)
		}
	case targetDependency:
		if !isDep {
			return "", bad(e.Targets)
		}
	}
	return target, nil
}

// instances returns the instances a service-or-instance target covers now.
func (f *Fault) instances(m *model.System) []*model.Instance {
	if svc := m.Service(f.Target); svc != nil {
		return svc.Instances
	}
	if i := m.Instance(f.Target); i != nil {
		return []*model.Instance{i}
	}
	return nil
}

// start binds a fault to what it acts on when it becomes active.
func (f *Fault) start(m *model.System) error {
	switch f.Fault {
	case BadDeploy:
		v, err := m.Deploy(f.Target)
		if err != nil {
			return err
		}
		f.version = v
	case CPUHog:
		i := m.Instance(f.Target)
		if i == nil {
			return fmt.Errorf("instance %s is gone", f.Target)
		}
		f.node = i.Node
	case BadConfig:
		f.procs = map[*model.Instance]int{}
		for _, i := range f.instances(m) {
			f.procs[i] = i.Process
		}
	}
	return nil
}

// apply sets the knobs of one active fault for the next step.
func (f *Fault) apply(m *model.System) {
	x := f.Intensity
	switch f.Fault {
	case LLMOutage:
		p := m.Provider(f.Target)
		p.ErrorRate = math.Max(p.ErrorRate, x)
	case LLMSlow:
		m.Provider(f.Target).LatencyFactor *= x
	case DBPoolLeak:
		for _, i := range f.instances(m) {
			i.ConnLeakRate += x / 60
		}
	case DBSlow:
		m.DB.CPUFactor *= x
	case MemoryLeak:
		for _, i := range f.instances(m) {
			i.MemLeakRate += x * (1 << 20) / 60
		}
	case WorkerCrashLoop:
		for _, i := range f.instances(m) {
			if crashes(f.ID, i.ID, i.Process, x) {
				i.CrashAfter = 5 * time.Second
			}
		}
	case TrafficSurge:
		m.Service(f.Target).DemandFactor *= x
	case RedisDown:
		m.Cache.Down = true
	case AuthAttack:
		m.AttackRPS += x
	case DiskFill:
		m.Volume(f.Target).FillRate += x * (1 << 30) / 3600
	case CPUHog:
		if i := m.Instance(f.Target); i != nil && i.Node == f.node {
			i.Node.Hog = math.Min(i.Node.Cores, i.Node.Hog+x)
		}
	case BadConfig:
		for i, proc := range f.procs {
			if i.Process == proc {
				i.BadConfig = math.Max(i.BadConfig, x)
			}
		}
	case BadDeploy:
		svc := m.Service(f.Target)
		svc.Bugs[f.version] = math.Max(svc.Bugs[f.version], x)
	case Cascade:
		switch f.Target {
		case model.Postgres:
			m.DB.Delay += x
		case model.Redis:
			m.Cache.Delay += x
		default:
			m.Provider(f.Target).Delay += x
		}
	}
}

// crashes decides, without drawing from the model's randomness, whether
// one process start of an instance crashes: a hash of the fault, the
// instance and the process compared with the share.
func crashes(fault, inst string, proc int, share float64) bool {
	if share >= 1 {
		return true
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%s/%d", fault, inst, proc)
	return float64(h.Sum64()%1_000_000)/1_000_000 < share
}

// fixFor is the fix of fault f given the system as it is when the fault
// is injected.
func fixFor(m *model.System, f *Fault) Fix {
	one := func(action, target string, params map[string]string, note string) Fix {
		return Fix{Actions: []Action{{Action: action, Target: target, Params: params}}, Note: note}
	}
	escalate := func(note string) Fix { return Fix{Escalate: true, Note: note} }
	restart := func(note string) Fix {
		if m.Service(f.Target) != nil {
			return one(ActRestartService, f.Target, nil, note)
		}
		i := m.Instance(f.Target)
		return one(ActRestartInstance, i.Service.Name+"/"+i.ID, nil, note)
	}
	switch f.Fault {
	case LLMOutage, LLMSlow:
		p := m.Provider(f.Target)
		return one(ActTripBreaker, p.Breaker.Name, nil, "calls go to the next provider whose breaker is closed")
	case DBPoolLeak:
		return restart("a new process has a fresh pool; the leak resumes while the fault lasts")
	case DBSlow:
		return escalate("the query plan is the database team's")
	case MemoryLeak:
		return restart("memory is reclaimed; the leak resumes while the fault lasts")
	case WorkerCrashLoop:
		return escalate("restarts crash again; the cause is outside the engine")
	case TrafficSurge:
		api, worker := m.Service(model.API), m.Service(model.Worker)
		na := int(math.Ceil(float64(len(api.Instances)) * f.Intensity * 0.6))
		nw := int(math.Ceil(float64(len(worker.Instances)) * f.Intensity * 0.7))
		max := m.Config().MaxReplicas
		return Fix{Actions: []Action{
			{Action: ActScale, Target: model.API, Params: map[string]string{"replicas": strconv.Itoa(min(na, max))}},
			{Action: ActScale, Target: model.Worker, Params: map[string]string{"replicas": strconv.Itoa(min(nw, max))}},
		}, Note: "capacity in proportion to the surge; scale back in when it is over"}
	case RedisDown:
		return one(ActTripBreaker, model.BreakerCache, nil, "requests skip the cache and read the database")
	case AuthAttack:
		return one(ActSetRateLimit, model.API, map[string]string{"route": "POST /v1/auth/login", "per_client_rps": "0.05"},
			"the attack's five clients get 429; users are unaffected")
	case DiskFill:
		return one(ActCleanVolume, f.Target, nil, "removes the WAL kept; expand_volume also helps; the filling resumes while the fault lasts")
	case CPUHog:
		i := m.Instance(f.Target)
		return one(ActRestartInstance, i.Service.Name+"/"+i.ID, nil, "the instance is rescheduled on another node")
	case BadConfig:
		i := m.Instance(f.Target)
		return one(ActRestartInstance, i.Service.Name+"/"+i.ID, nil, "the instance starts with the current configuration")
	case BadDeploy:
		return one(ActRollback, f.Target, nil, "back to the version before the deploy")
	case Cascade:
		switch f.Target {
		case model.Postgres:
			return escalate("the database hangs and has no breaker in front of it")
		case model.Redis:
			return one(ActTripBreaker, model.BreakerCache, nil, "requests skip the cache")
		default:
			return one(ActTripBreaker, m.Provider(f.Target).Breaker.Name, nil, "calls go to the next provider")
		}
	}
	return escalate("")
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
