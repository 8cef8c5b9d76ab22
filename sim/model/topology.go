package model

import "time"

// The engine's architecture is fixed; its size (replicas, demand) is
// configurable. The numbers below are the model's calibration: the
// gateway spends about 10 ms of CPU per request, bcrypt about 25 ms per
// login, an LLM call takes about a second, and so on. docs/SIMULATOR.md
// explains them.

// Service names.
const (
	API    = "api"
	Auth   = "auth"
	Worker = "worker"
)

// Dependency names: the parts of the engine that run outside it and are
// seen only through their clients.
const (
	Postgres  = "postgres"
	Redis     = "redis"
	OpenAI    = "openai"
	Anthropic = "anthropic"
)

// Names of the other control targets.
const (
	BreakerOpenAI    = "llm-openai"
	BreakerAnthropic = "llm-anthropic"
	BreakerCache     = "redis-cache"
	FlagDegradeDocs  = "degrade_document_processing"
	VolumePostgres   = "postgres-data"
	QueueDocuments   = "documents"
	QueueCalendar    = "calendar"
)

const (
	mib = 1 << 20
	gib = 1 << 30
)

// Timeouts of the engine's clients and servers, and fixed latencies, in
// seconds.
const (
	gatewayTimeout = 30.0 // the load balancer in front of the api
	authTimeout    = 3.0  // the api's and workers' calls to auth
	poolTimeout    = 5.0  // waiting for a pooled connection
	// statementTimeout is PostgreSQL's statement_timeout: a query that
	// runs longer is cancelled and its request or job fails.
	statementTimeout = 1.5
	querySigma       = 0.3
	llmTimeout       = 30.0 // an LLM call
	netLatency       = 0.0005
	redisLatency     = 0.0004
	// redisConnectTimeout is how long a cache call waits when Redis does
	// not answer, before the request falls back to the database.
	redisConnectTimeout = 2.0
	enqueueLatency      = 0.001
	// llmOutageLatency is how long a call to a provider that is down
	// takes to fail.
	llmOutageLatency = 0.15
	// rejectLatency is how long a refused request (503, 429) takes.
	rejectLatency = 0.002
)

// Query is one database statement a request runs.
type Query struct {
	Operation string  // SELECT, INSERT, UPDATE
	Table     string  // db.collection.name
	CPU       float64 // seconds of database CPU
	Write     bool
}

// Route is one HTTP route a service serves.
type Route struct {
	Method string
	Path   string // http.route
	Name   string // "GET /v1/sessions/{session_id}"
	Status int    // status of a successful answer
	// Share is the route's share of the api's demand; the routes of other
	// services are driven by their callers.
	Share float64
	CPU   float64 // seconds of CPU in the service itself
	Sigma float64 // log-scale spread of the duration
	// What handling the request involves, in this order.
	Auth    bool    // validates the caller's token with the auth service
	Cache   bool    // reads Redis first; Queries run only on a miss
	Queries []Query // PostgreSQL statements, on one pooled connection
	LLM     bool    // one chat completion
	Enqueue string  // a job for the workers, on this queue
	// Proxy is the auth route a login is passed on to.
	Proxy *Route
	Login bool // may answer 401: wrong credentials
	Index int  // position in its service's Routes
}

// Writes reports whether the route writes to the database.
func (r *Route) Writes() bool { return writes(r.Queries) }

// JobKind is the work behind one queue.
type JobKind struct {
	Queue    string
	CPU      float64
	Queries  []Query
	LLM      bool    // summarises with an LLM (skipped when degraded)
	Token    bool    // fetches the user's OAuth token from auth
	External float64 // seconds waiting on a third-party API
	Sigma    float64
}

func writes(qs []Query) bool {
	for _, q := range qs {
		if q.Write {
			return true
		}
	}
	return false
}

// ServiceSpec is the fixed shape of one service.
type ServiceSpec struct {
	Name     string
	Version  string
	CPULimit float64 // cores of its container
	MemLimit float64 // bytes of its container
	BaseMem  float64 // resident memory of an idle process
	// MemPerInFlight is the memory each request or job in progress holds.
	MemPerInFlight float64
	// Threads bounds concurrent requests (the server's thread pool) or
	// jobs (the worker's concurrency).
	Threads int
	// QueueLimit is how many requests may wait for a thread before the
	// server answers 503.
	QueueLimit float64
	Startup    time.Duration
	PoolMax    int // PostgreSQL connections per process
	Routes     []*Route
	NodeCores  float64
	NodeMem    float64
}

// Route returns the route with the given path or name, or nil.
func (s *ServiceSpec) Route(pathOrName string) *Route {
	for _, r := range s.Routes {
		if r.Path == pathOrName || r.Name == pathOrName {
			return r
		}
	}
	return nil
}

// providerSpec is one LLM provider. The primary serves chats and summaries
// unless its breaker is open; then the fallback does.
type providerSpec struct {
	Name, Model string
	Chat        float64 // mean seconds of a chat completion
	Summary     float64 // mean seconds of a document summary
	Breaker     string
}

// topology is the engine's fixed architecture, built fresh for every
// System so that no two share state.
type topology struct {
	services  []*ServiceSpec
	auth      struct{ validate, login, token *Route }
	jobs      []*JobKind // one per queue, in queue order
	providers []providerSpec
}

func newTopology() *topology {
	t := &topology{}
	validate := &Route{Method: "POST", Path: "/v1/token/validate", Status: 200, CPU: 0.0008, Sigma: 0.3}
	login := &Route{Method: "POST", Path: "/v1/login", Status: 200, CPU: 0.025, Sigma: 0.2, Login: true,
		Queries: []Query{{"SELECT", "users", 0.001, false}, {"INSERT", "login_attempts", 0.0006, true}}}
	token := &Route{Method: "POST", Path: "/v1/token/calendar", Status: 200, CPU: 0.0015, Sigma: 0.3,
		Queries: []Query{{"SELECT", "oauth_tokens", 0.001, false}}}
	t.auth.validate, t.auth.login, t.auth.token = validate, login, token

	apiRoutes := []*Route{
		{Method: "GET", Path: "/v1/sessions/{session_id}", Status: 200, Share: 0.515, CPU: 0.009, Sigma: 0.35,
			Auth: true, Cache: true,
			Queries: []Query{{"SELECT", "sessions", 0.004, false}, {"SELECT", "messages", 0.040, false}, {"SELECT", "participants", 0.006, false}}},
		{Method: "GET", Path: "/v1/documents/{document_id}", Status: 200, Share: 0.30, CPU: 0.008, Sigma: 0.35,
			Auth: true, Queries: []Query{{"SELECT", "documents", 0.0015, false}}},
		{Method: "POST", Path: "/v1/sessions/{session_id}/messages", Status: 200, Share: 0.03, CPU: 0.014, Sigma: 0.45,
			Auth: true, LLM: true,
			Queries: []Query{{"SELECT", "messages", 0.002, false}, {"INSERT", "messages", 0.0015, true}}},
		{Method: "POST", Path: "/v1/documents", Status: 202, Share: 0.06, CPU: 0.02, Sigma: 0.35,
			Auth: true, Enqueue: QueueDocuments, Queries: []Query{{"INSERT", "documents", 0.002, true}}},
		{Method: "POST", Path: "/v1/calendar/sync", Status: 202, Share: 0.075, CPU: 0.006, Sigma: 0.3,
			Auth: true, Enqueue: QueueCalendar},
		{Method: "POST", Path: "/v1/auth/login", Status: 200, Share: 0.02, CPU: 0.004, Sigma: 0.25,
			Login: true, Proxy: login},
	}
	t.services = []*ServiceSpec{
		{Name: API, Version: "2.7.1", CPULimit: 1, MemLimit: 1536 * mib, BaseMem: 320 * mib, MemPerInFlight: 2 * mib,
			Threads: 32, QueueLimit: 400, Startup: 15 * time.Second, PoolMax: 15,
			Routes: apiRoutes, NodeCores: 2, NodeMem: 2 * gib},
		{Name: Auth, Version: "1.4.0", CPULimit: 1, MemLimit: 512 * mib, BaseMem: 140 * mib, MemPerInFlight: 1 * mib,
			Threads: 40, QueueLimit: 100, Startup: 5 * time.Second, PoolMax: 10,
			Routes: []*Route{validate, login, token}, NodeCores: 2, NodeMem: 1 * gib},
		{Name: Worker, Version: "3.2.5", CPULimit: 1, MemLimit: 2 * gib, BaseMem: 450 * mib, MemPerInFlight: 40 * mib,
			Threads: 8, Startup: 10 * time.Second, PoolMax: 10,
			NodeCores: 2, NodeMem: 2*gib + 512*mib},
	}
	for _, s := range t.services {
		for i, r := range s.Routes {
			r.Name = r.Method + " " + r.Path
			r.Index = i
		}
	}
	t.jobs = []*JobKind{
		{Queue: QueueDocuments, CPU: 0.15, Sigma: 0.4, LLM: true,
			Queries: []Query{{"SELECT", "documents", 0.0015, false}, {"UPDATE", "documents", 0.003, true}}},
		{Queue: QueueCalendar, CPU: 0.02, Sigma: 0.4, Token: true, External: 0.25,
			Queries: []Query{{"INSERT", "events", 0.002, true}}},
	}
	t.providers = []providerSpec{
		{Name: OpenAI, Model: "gpt-4o-mini", Chat: 0.9, Summary: 1.6, Breaker: BreakerOpenAI},
		{Name: Anthropic, Model: "claude-3-5-haiku", Chat: 1.1, Summary: 1.9, Breaker: BreakerAnthropic},
	}
	return t
}
