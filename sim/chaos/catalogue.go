// Package chaos is the simulator's fault catalogue: what each fault does
// to the model, what target and intensity it takes, and the fix that ends
// or contains it — or that it has none an operator may apply and must be
// escalated. Active faults set the model's knobs before every step.
package chaos

import (
	"fmt"
	"math"
	"strings"

	"github.com/aiops-dev/aiops/sim/model"
)

// Fault names.
const (
	LLMOutage       = "llm_outage"
	LLMSlow         = "llm_slow"
	DBPoolLeak      = "db_pool_leak"
	DBSlow          = "db_slow"
	MemoryLeak      = "memory_leak"
	WorkerCrashLoop = "worker_crash_loop"
	TrafficSurge    = "traffic_surge"
	RedisDown       = "redis_down"
	AuthAttack      = "auth_attack"
	DiskFill        = "disk_fill"
	CPUHog          = "cpu_hog"
	BadConfig       = "bad_config"
	BadDeploy       = "bad_deploy"
	Cascade         = "cascade"
)

// targetKind is what a fault acts on.
type targetKind int

const (
	targetProvider targetKind = iota
	targetDatabase
	targetCache
	targetVolume
	targetIngress           // the api
	targetService           // any service
	targetServiceOrInstance // a service (all its instances) or one instance
	targetInstance          // one instance; a service means its first
	targetDependency        // postgres, redis or an LLM provider
)

// Intensity describes a fault's intensity parameter.
type Intensity struct {
	Default  float64 `json:"default"`
	Min      float64 `json:"min"` // exclusive unless MinInclusive
	Max      float64 `json:"max"`
	Unit     string  `json:"unit"`
	inclMin  bool
	Describe string `json:"meaning"`
}

func (in Intensity) check(v float64) error {
	lowOK := v > in.Min || (in.inclMin && v == in.Min)
	if !lowOK || v > in.Max || math.IsNaN(v) {
		lo := "("
		if in.inclMin {
			lo = "["
		}
		return fmt.Errorf("must be in %s%g, %g] (%s), got %g", lo, in.Min, in.Max, in.Unit, v)
	}
	return nil
}

// Entry is one fault of the catalogue.
type Entry struct {
	Name          string    `json:"fault"`
	Description   string    `json:"description"`
	Targets       string    `json:"targets"`
	DefaultTarget string    `json:"default_target"`
	Intensity     Intensity `json:"intensity"`
	// FixSummary says in words what ends or contains the fault.
	FixSummary string `json:"fix"`
	kind       targetKind
}

// Catalogue lists every fault the simulator can inject, in a fixed order.
func Catalogue() []Entry {
	return []Entry{
		{Name: LLMOutage, kind: targetProvider, DefaultTarget: model.OpenAI,
			Description: "The LLM provider fails a share of calls at once (HTTP 503): chats answer 502, document summaries fail and are retried.",
			Targets:     "an LLM provider: openai (primary) or anthropic (fallback)",
			Intensity:   Intensity{Default: 1, Min: 0, Max: 1, Unit: "share of calls", Describe: "share of calls that fail"},
			FixSummary:  "trip the provider's breaker (llm-<provider>): calls go to the fallback provider"},
		{Name: LLMSlow, kind: targetProvider, DefaultTarget: model.OpenAI,
			Description: "The LLM provider answers slowly: chats hold the api's threads, summaries hold the workers' slots, calls past 30 s time out.",
			Targets:     "an LLM provider: openai or anthropic",
			Intensity:   Intensity{Default: 30, Min: 1, Max: 100, Unit: "factor", Describe: "factor on the provider's latency"},
			FixSummary:  "trip the provider's breaker (llm-<provider>): calls go to the fallback provider"},
		{Name: DBPoolLeak, kind: targetServiceOrInstance, DefaultTarget: model.API,
			Description: "Every process of the target leaks PostgreSQL connections until its pool is exhausted; then requests time out waiting for one (500).",
			Targets:     "a service (all its processes) or one instance",
			Intensity:   Intensity{Default: 2, Min: 0, Max: 60, Unit: "connections/min", Describe: "connections leaked per minute per process"},
			FixSummary:  "restart the target (rolling for a service): a new process has a fresh pool; the leak resumes while the fault lasts"},
		{Name: DBSlow, kind: targetDatabase, DefaultTarget: model.Postgres,
			Description: "Queries cost more database CPU (a bad plan): the database saturates, queries wait, pools fill, requests slow down and hit the 1.5 s statement timeout.",
			Targets:     "the database: postgres",
			Intensity:   Intensity{Default: 30, Min: 1, Max: 200, Unit: "factor", Describe: "factor on the CPU each query costs"},
			FixSummary:  "none: the query plan is the database team's; escalate"},
		{Name: MemoryLeak, kind: targetServiceOrInstance, DefaultTarget: model.API,
			Description: "Every process of the target leaks memory; near its limit it slows down (GC, reclaim), at the limit it is OOM-killed and restarted with growing back-off: a crash loop.",
			Targets:     "a service (all its processes) or one instance",
			Intensity:   Intensity{Default: 100, Min: 0, Max: 10240, Unit: "MiB/min", Describe: "MiB leaked per minute per process"},
			FixSummary:  "restart the target before it is OOM-killed (rolling for a service): memory is reclaimed; the leak resumes while the fault lasts"},
		{Name: WorkerCrashLoop, kind: targetService, DefaultTarget: model.Worker,
			Description: "Processes of the target crash seconds after becoming ready (a broken dependency at start-up); they are restarted with growing back-off and the queues back up.",
			Targets:     "a service, normally worker",
			Intensity:   Intensity{Default: 1, Min: 0, Max: 1, Unit: "share of starts", Describe: "share of process starts that crash"},
			FixSummary:  "none: restarting does not help, the cause is outside the engine; escalate"},
		{Name: TrafficSurge, kind: targetIngress, DefaultTarget: model.API,
			Description: "Demand on the api is multiplied: CPU saturates, requests queue and are refused (503), the workers' queues grow.",
			Targets:     "the ingress: api",
			Intensity:   Intensity{Default: 10, Min: 1, Max: 100, Unit: "factor", Describe: "factor on demand"},
			FixSummary:  "scale the api out (and the workers, for the queues)"},
		{Name: RedisDown, kind: targetCache, DefaultTarget: model.Redis,
			Description: "Redis stops answering: every cache call waits for the 2 s connect timeout, then falls back to the database; threads fill and the database takes every session read.",
			Targets:     "the cache: redis",
			Intensity:   Intensity{Default: 1, Min: 1, Max: 1, Unit: "none", inclMin: true, Describe: "unused; must be 1"},
			FixSummary:  "trip the redis-cache breaker: requests skip the cache and go to the database at once"},
		{Name: AuthAttack, kind: targetIngress, DefaultTarget: model.API,
			Description: "Credential stuffing from five client addresses on POST /v1/auth/login: 401s spike and bcrypt saturates the auth service, slowing every request that validates a token.",
			Targets:     "the ingress: api",
			Intensity:   Intensity{Default: 200, Min: 0, Max: 10000, Unit: "requests/s", Describe: "attack requests per second"},
			FixSummary:  "rate-limit the login route per client (0.05 requests/s, 3 a minute): the attack gets 429 and no longer reaches auth"},
		{Name: DiskFill, kind: targetVolume, DefaultTarget: model.VolumePostgres,
			Description: "The database volume fills (WAL kept by a stuck replication slot) until writes fail; the trend over hours is what a capacity forecast sees.",
			Targets:     "a volume: postgres-data",
			Intensity:   Intensity{Default: 20, Min: 0, Max: 10000, Unit: "GiB/h", Describe: "GiB written per hour"},
			FixSummary:  "clean the volume (removes the WAL kept) or expand it; the filling resumes while the fault lasts"},
		{Name: CPUHog, kind: targetInstance, DefaultTarget: "api-0",
			Description: "A neighbour process on the target instance's node takes its CPU: that instance slows down and refuses requests; the node is busy.",
			Targets:     "an instance (a service means its first instance)",
			Intensity:   Intensity{Default: 1.9, Min: 0, Max: 2, Unit: "cores", Describe: "cores the neighbour takes (nodes have 2)"},
			FixSummary:  "restart the instance: it is rescheduled on another node, away from the neighbour"},
		{Name: BadConfig, kind: targetInstance, DefaultTarget: "api-1",
			Description: "One instance runs with a broken configuration: a share of its requests fail (500), the other instances are fine.",
			Targets:     "an instance (a service means its first instance)",
			Intensity:   Intensity{Default: 1, Min: 0, Max: 1, Unit: "share of requests", Describe: "share of the instance's requests that fail"},
			FixSummary:  "restart the instance: it starts with the current configuration"},
		{Name: BadDeploy, kind: targetService, DefaultTarget: model.API,
			Description: "A new version is rolled out, one instance at a time; it fails a share of its requests (500).",
			Targets:     "a service",
			Intensity:   Intensity{Default: 0.25, Min: 0, Max: 1, Unit: "share of requests", Describe: "share of the new version's requests that fail"},
			FixSummary:  "roll the service back to its previous version"},
		{Name: Cascade, kind: targetDependency, DefaultTarget: model.Postgres,
			Description: "A dependency hangs: every call to it takes seconds longer, so callers hold connections and threads, pools and thread pools fill, and failures (timeouts, cancelled statements) spread to every service that calls it.",
			Targets:     "a dependency: postgres, redis, openai or anthropic",
			Intensity:   Intensity{Default: 2, Min: 0, Max: 60, Unit: "seconds", Describe: "seconds added to every call"},
			FixSummary:  "trip the breaker that protects callers from the dependency (redis-cache, llm-<provider>); postgres has none: escalate"},
	}
}

// Lookup returns the catalogue entry of the named fault.
func Lookup(name string) (Entry, bool) {
	for _, e := range Catalogue() {
		if e.Name == name {
			return e, true
		}
	}
	return Entry{}, false
}

// Names lists the fault names in catalogue order.
func Names() []string {
	var out []string
	for _, e := range Catalogue() {
		out = append(out, e.Name)
	}
	return out
}

// Action is one control action, as the control API names it.
type Action struct {
	Action string            `json:"action"`
	Target string            `json:"target"`
	Params map[string]string `json:"params,omitempty"`
}

func (a Action) String() string {
	if len(a.Params) == 0 {
		return a.Action + " " + a.Target
	}
	var kv []string
	for _, k := range sortedKeys(a.Params) {
		kv = append(kv, k+"="+a.Params[k])
	}
	return a.Action + " " + a.Target + " " + strings.Join(kv, " ")
}

// Fix is what ends or contains one injected fault: the control actions to
// take, or Escalate when there is none an operator may apply.
type Fix struct {
	Actions  []Action `json:"actions,omitempty"`
	Escalate bool     `json:"escalate"`
	Note     string   `json:"note"`
}

// Control action names; the control API's routes take the same actions.
const (
	ActRestartInstance = "restart_instance"
	ActRestartService  = "restart_service"
	ActScale           = "scale"
	ActTripBreaker     = "trip_breaker"
	ActResetBreaker    = "reset_breaker"
	ActSetFlag         = "set_flag"
	ActRollback        = "rollback"
	ActExpandVolume    = "expand_volume"
	ActCleanVolume     = "clean_volume"
	ActSetRateLimit    = "set_rate_limit"
)
