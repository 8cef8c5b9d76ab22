// Package model is the simulated AI workflow engine: services with
// replicas, a database behind connection pools, a cache, a job queue with
// workers, LLM providers behind circuit breakers, and the nodes and volume
// they run on. Step advances it by one tick of simulated time; faults act
// on it through the knobs each entity exposes, and operators through the
// control methods. The model is deterministic: a seed and the same calls
// at the same ticks give the same run. It knows nothing of telemetry: a
// Sink receives every request and job it simulates.
package model

import (
	"fmt"
	"time"
)

// State is the lifecycle state of an instance.
type State int

const (
	// Starting: the process runs but is not ready for traffic yet.
	Starting State = iota
	// Running: ready and serving.
	Running
	// BackOff: the process crashed and waits to be started again.
	BackOff
)

func (s State) String() string {
	switch s {
	case Starting:
		return "starting"
	case Running:
		return "running"
	case BackOff:
		return "crash_loop_backoff"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Node is the machine one instance runs on.
type Node struct {
	Name   string
	Cores  float64
	Memory float64 // bytes
	// Hog is the cores a neighbour process takes (a knob).
	Hog float64
	// Results of the last tick.
	CPUUsed float64 // cores busy
	MemUsed float64 // bytes in use
}

// nodeSystemCPU and nodeSystemMem are what the operating system and the
// node's agents use.
const (
	nodeSystemCPU = 0.06
	nodeSystemMem = 400 * mib
)

// Instance is one replica of a service: a pod whose process may be
// restarted.
type Instance struct {
	ID      string
	Index   int
	Service *Service
	Node    *Node
	State   State
	// Process numbers the processes this instance has run; it changes with
	// every start, crash restart or controlled restart.
	Process      int
	ProcessStart time.Time
	ReadyAt      time.Time // when a starting process becomes ready
	RestartAt    time.Time // when a crashed process is started again
	Version      string
	// Restarts counts crash restarts (k8s.container.restart.count).
	Restarts    int
	LastCrash   string // OOMKilled or Error
	crashStreak int

	// Knobs, set by faults before each step and cleared after it.
	MemLeakRate  float64 // bytes/s leaked by the process
	ConnLeakRate float64 // connections/s leaked by its pool
	// CrashAfter makes a ready process crash after running this long.
	CrashAfter time.Duration
	// Slowdown multiplies the time handling a request takes (a stuck lock).
	Slowdown float64
	// BadConfig is the share of requests that fail because of a broken
	// configuration of this instance.
	BadConfig float64

	// Process state.
	Memory      float64 // resident bytes
	leakedMem   float64
	LeakedConns float64
	cpu         station
	pool        station

	// Results of the last tick.
	CPU         float64 // cores used
	InFlight    float64 // requests or jobs in progress
	PoolUsed    float64
	PoolPending float64
	// PoolTimeouts counts requests that gave up waiting for a connection.
	PoolTimeouts float64
	routes       []routeState
}

// Ready reports whether the instance takes traffic.
func (i *Instance) Ready() bool { return i.State == Running }

// Up reports whether a process runs (ready or still starting).
func (i *Instance) Up() bool { return i.State != BackOff }

// PoolMax is the size of the instance's database pool.
func (i *Instance) PoolMax() int { return i.Service.Spec.PoolMax }

// Service is one of the engine's own services.
type Service struct {
	Spec *ServiceSpec
	Name string
	// Version is what the service runs or is rolling towards; Previous is
	// what it ran before the last deploy ("" before any).
	Version, Previous string
	Desired           int
	Instances         []*Instance // ordered by index
	rollout           *rollout
	// Bugs maps a version to the share of its requests that fail (a knob:
	// a bad deploy).
	Bugs map[string]float64
	// DemandFactor multiplies the demand on the api (a knob: a surge).
	DemandFactor float64
	// RateLimits maps a route to the requests per second each client may
	// send (api only; 0 or absent is no limit).
	RateLimits   map[*Route]float64
	minorVersion int
}

// Provider is an LLM provider.
type Provider struct {
	Name, Model string
	Breaker     *Breaker
	spec        providerSpec
	// Knobs: the share of calls failing, and a factor on latency.
	ErrorRate     float64
	LatencyFactor float64
	// Delay is added to every call (a knob: a hung provider).
	Delay float64
	// Calls counts the calls made (for the state view).
	Calls float64
}

// Breaker is a circuit breaker an operator trips (open: calls go to the
// fallback) and resets.
type Breaker struct {
	Name string
	Open bool
}

// Database is the PostgreSQL server.
type Database struct {
	Cores float64
	// CPUFactor multiplies the CPU every query costs (a knob: slow
	// queries from a bad plan).
	CPUFactor float64
	// Delay is added to every query (a knob: a hung database, locks).
	Delay float64
	st    station
	// Results of the last tick.
	Rho  float64 // utilisation
	Wait float64 // seconds a query waits for CPU
}

// Cache is the Redis cache. While it is down every call waits for the
// connect timeout before falling back to the database, unless its
// breaker is open: then requests go to the database at once.
type Cache struct {
	Down bool // a knob
	// Delay is added to every call (a knob: a hung Redis).
	Delay    float64
	HitRatio float64
	// Unreachable reports whether Redis was down during the last step.
	Unreachable bool
	Breaker     *Breaker
}

// Queue is a job queue with its workers' share.
type Queue struct {
	Name string
	Kind *JobKind
	st   station
	// Results of the last tick.
	Depth     float64 // jobs waiting
	OldestAge float64 // seconds the oldest waiting job has waited
	// Cumulative counts.
	Enqueued, Processed, Failed float64
	retry                       float64 // failed jobs to put back
	arrivals                    float64 // jobs enqueued this tick
}

// Volume is a disk volume.
type Volume struct {
	Name       string
	Node       *Node
	Device     string
	Mountpoint string
	Capacity   float64 // bytes
	Used       float64 // bytes
	// Junk is what a cleanup can remove (old WAL segments and logs).
	Junk float64
	// Growth is the normal growth in bytes/s; FillRate is a knob.
	Growth   float64
	FillRate float64
}

// Full reports whether the volume has no room for writes.
func (v *Volume) Full() bool { return v.Used >= v.Capacity*0.995 }

// System is the whole engine.
type System struct {
	cfg       Config
	topo      *topology
	rng       rng
	now       time.Time
	tick      int
	demand    demand
	nodeSeq   int
	Services  []*Service
	Providers []*Provider
	Breakers  []*Breaker
	DB        *Database
	DBNode    *Node
	Cache     *Cache
	Queues    []*Queue
	Volumes   []*Volume
	Flags     map[string]bool
	// AttackRPS is the rate of a credential-stuffing attack on the login
	// route (a knob).
	AttackRPS float64
	// attackers is how many clients the attack comes from.
	attackers float64
	prev, cur loads
	authView  [3]callView // validate, login, token as callers see them
	// demandRate is the legitimate demand of the last tick, requests/s.
	demandRate float64
	scratch    Request
	jobScratch Job
	// sink receives requests and jobs during Step.
	sink Sink
}

// loads are what the services asked of each other during a tick; the
// next tick serves them, so a caller's load reaches its callee one tick
// later.
type loads struct {
	auth        [3]float64 // calls/s per auth route: validate, login, token
	loginAttack float64    // the part of the logins that is the attack
	dbCPU       float64    // database CPU-seconds per second
}

// callView is how callers see an auth route: its mean latency and the
// share of calls that fail.
type callView struct{ mean, fail float64 }

// New builds the engine at cfg.Start with every instance running.
func New(cfg Config) (*System, error) {
	if err := cfg.Validate(""); err != nil {
		return nil, err
	}
	s := &System{
		cfg:       cfg,
		topo:      newTopology(),
		rng:       newRNG(cfg.Seed, 0x5eed),
		now:       cfg.Start,
		demand:    demand{peak: cfg.PeakRPS, trough: cfg.TroughRatio, peakHour: cfg.PeakHour, sigma: cfg.Noise},
		Flags:     map[string]bool{FlagDegradeDocs: false},
		attackers: 5,
	}
	for _, spec := range s.topo.services {
		svc := &Service{Spec: spec, Name: spec.Name, Version: spec.Version, Desired: cfg.Replicas[spec.Name],
			Bugs: map[string]float64{}, DemandFactor: 1, RateLimits: map[*Route]float64{}}
		for range svc.Desired {
			inst := s.addInstance(svc)
			inst.State = Running
			inst.ReadyAt = s.now
		}
		s.Services = append(s.Services, svc)
	}
	for _, p := range s.topo.providers {
		b := &Breaker{Name: p.Breaker}
		s.Breakers = append(s.Breakers, b)
		s.Providers = append(s.Providers, &Provider{Name: p.Name, Model: p.Model, Breaker: b, spec: p, LatencyFactor: 1})
	}
	s.Breakers = append(s.Breakers, &Breaker{Name: BreakerCache})
	s.DB = &Database{Cores: 8, CPUFactor: 1}
	s.DBNode = &Node{Name: "db-0", Cores: 8, Memory: 32 * gib}
	s.Cache = &Cache{HitRatio: 0.9, Breaker: s.Breaker(BreakerCache)}
	for _, k := range s.topo.jobs {
		s.Queues = append(s.Queues, &Queue{Name: k.Queue, Kind: k})
	}
	s.Volumes = []*Volume{{Name: VolumePostgres, Node: s.DBNode, Device: "nvme1n1", Mountpoint: "/var/lib/postgresql",
		Capacity: 100 * gib, Used: 42 * gib, Growth: 0.5 * gib / 86400}}
	s.demandRate = s.demand.rate(s.now)
	return s, nil
}

// Now is the simulated time of the last tick.
func (s *System) Now() time.Time { return s.now }

// Tick is the number of steps taken.
func (s *System) Tick() int { return s.tick }

// Config returns the configuration the system was built with.
func (s *System) Config() Config { return s.cfg }

// DemandRate is the legitimate api demand of the last tick in requests/s,
// before any surge factor.
func (s *System) DemandRate() float64 { return s.demandRate }

// Service returns the named service, or nil.
func (s *System) Service(name string) *Service {
	for _, svc := range s.Services {
		if svc.Name == name {
			return svc
		}
	}
	return nil
}

// Instance returns the instance with the given id, or nil.
func (s *System) Instance(id string) *Instance {
	for _, svc := range s.Services {
		for _, i := range svc.Instances {
			if i.ID == id {
				return i
			}
		}
	}
	return nil
}

// Provider returns the named LLM provider, or nil.
func (s *System) Provider(name string) *Provider {
	for _, p := range s.Providers {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Breaker returns the named breaker, or nil.
func (s *System) Breaker(name string) *Breaker {
	for _, b := range s.Breakers {
		if b.Name == name {
			return b
		}
	}
	return nil
}

// Volume returns the named volume, or nil.
func (s *System) Volume(name string) *Volume {
	for _, v := range s.Volumes {
		if v.Name == name {
			return v
		}
	}
	return nil
}

// Queue returns the named queue, or nil.
func (s *System) Queue(name string) *Queue {
	for _, q := range s.Queues {
		if q.Name == name {
			return q
		}
	}
	return nil
}

// Nodes returns the nodes in use: one per instance, then the database's.
func (s *System) Nodes() []*Node {
	var out []*Node
	for _, svc := range s.Services {
		for _, i := range svc.Instances {
			out = append(out, i.Node)
		}
	}
	return append(out, s.DBNode)
}

// ClearKnobs resets every knob to its neutral value. Step calls it after
// using them; faults set them again before the next step.
func (s *System) ClearKnobs() {
	for _, svc := range s.Services {
		clear(svc.Bugs)
		svc.DemandFactor = 1
		for _, i := range svc.Instances {
			i.MemLeakRate, i.ConnLeakRate, i.CrashAfter, i.Slowdown, i.BadConfig = 0, 0, 0, 1, 0
			i.Node.Hog = 0
		}
	}
	for _, p := range s.Providers {
		p.ErrorRate, p.LatencyFactor, p.Delay = 0, 1, 0
	}
	s.DB.CPUFactor, s.DB.Delay = 1, 0
	s.Cache.Down, s.Cache.Delay = false, 0
	s.AttackRPS = 0
	for _, v := range s.Volumes {
		v.FillRate = 0
	}
}
