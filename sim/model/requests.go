package model

import "time"

// Sink receives what the engine did during a step, one request or job at
// a time. The pointers are valid only during the call: the model reuses
// them.
type Sink interface {
	Request(r *Request)
	Job(j *Job)
}

type discard struct{}

func (discard) Request(*Request) {}
func (discard) Job(*Job)         {}

// Request is one HTTP request a service answered.
type Request struct {
	Service *Service
	// Instance is nil when no instance of the service was ready: the load
	// balancer answered.
	Instance *Instance
	Route    *Route
	Start    time.Time
	Duration float64 // seconds
	Status   int
	// ErrorType names why a request failed with a 5xx; "" otherwise.
	ErrorType string
	// Cache routes only: whether Redis had the answer.
	CacheHit bool
	// Attack marks requests of the credential-stuffing attack.
	Attack bool
	// LLM is the chat completion the request made, if any.
	LLM *LLMCall
	llm LLMCall
}

// LLMCall is one call to an LLM provider.
type LLMCall struct {
	Provider     *Provider
	Operation    string // gen_ai.operation.name
	Duration     float64
	ErrorType    string
	InputTokens  int
	OutputTokens int
}

// Job is one job a worker processed, successfully or not.
type Job struct {
	Queue    *Queue
	Instance *Instance
	Start    time.Time
	Wait     float64 // seconds it waited in the queue
	Duration float64
	// ErrorType names why the job failed; "" when it succeeded. Failed
	// jobs go back on the queue.
	ErrorType string
	LLM       *LLMCall
	llm       LLMCall
}

// Error types of requests and jobs.
const (
	ErrNoUpstream      = "no_healthy_upstream"
	ErrOverloaded      = "overloaded"
	ErrInternal        = "internal_error"
	ErrAuthUnavailable = "auth_unavailable"
	ErrPoolTimeout     = "pool_timeout"
	ErrStatement       = "statement_timeout"
	ErrDiskFull        = "disk_full"
	ErrLLM             = "llm_error"
	ErrLLMTimeout      = "llm_timeout"
	ErrCircuitOpen     = "circuit_open"
	ErrGatewayTimeout  = "gateway_timeout"
	ErrWorkerLost      = "worker_lost"
	// LLM call error types: the provider's HTTP status, or a timeout.
	ErrLLMUnavailable = "503"
	ErrTimeout        = "timeout"
)

// CallKind is what a call inside a request or job goes to.
type CallKind int

const (
	CallAuth     CallKind = iota // an HTTP call to the auth service
	CallCache                    // a Redis GET
	CallDB                       // a PostgreSQL statement
	CallLLM                      // a chat completion
	CallEnqueue                  // publishing a job
	CallExternal                 // a third-party HTTP API
)

// Call is one call a request or job made, for traces.
type Call struct {
	Kind   CallKind
	Peer   string // the service or dependency called
	Route  *Route // CallAuth: the auth route
	Query  *Query // CallDB
	Queue  string // CallEnqueue
	Offset float64
	// Duration of the call; for CallDB it includes waiting for a pooled
	// connection (PoolWait).
	Duration  float64
	PoolWait  float64
	ErrorType string
	Status    int // CallAuth: the status auth answered
}

// Calls appends to dst the calls r made, laid out in time within the
// request. It draws nothing at random: the components' shares come from
// the instance's state in the current step, scaled to the request's
// duration.
func (s *System) Calls(r *Request, dst []Call) []Call {
	if r.Instance == nil {
		return dst
	}
	rs := &r.Instance.routes[r.Route.Index]
	switch r.ErrorType {
	case ErrOverloaded, ErrInternal, ErrNoUpstream:
		return dst
	}
	if r.Status == 429 {
		return dst
	}
	b := callBuilder{dst: dst, end: r.Duration}
	nominal := rs.wait + rs.own + rs.auth + rs.cache + rs.llm + rs.enqueue
	if !r.CacheHit && len(r.Route.Queries) > 0 {
		nominal += rs.poolWait + rs.db
	}
	scale := 1.0
	if nominal > 0 && r.ErrorType == "" {
		scale = r.Duration / nominal
	}
	b.at = (rs.wait + rs.own/2) * scale
	if r.Route.Auth || r.Route.Proxy != nil {
		route, status := s.topo.auth.validate, 200
		if r.Route.Proxy != nil {
			route = r.Route.Proxy
			if r.Status == 401 {
				status = 401
			}
		}
		if r.ErrorType == ErrAuthUnavailable {
			return b.add(Call{Kind: CallAuth, Peer: Auth, Route: route, Duration: b.rest(), ErrorType: ErrAuthUnavailable, Status: 503})
		}
		b.add(Call{Kind: CallAuth, Peer: Auth, Route: route, Duration: rs.auth * scale, Status: status})
	}
	if r.Route.Cache && rs.cache > 0 {
		c := Call{Kind: CallCache, Peer: Redis, Duration: rs.cache * scale}
		if s.Cache.Down {
			c.Duration, c.ErrorType = rs.cache, ErrTimeout
		}
		b.add(c)
	}
	if !r.CacheHit && len(r.Route.Queries) > 0 {
		wait := rs.poolWait * scale
		if r.ErrorType == ErrPoolTimeout {
			return b.add(Call{Kind: CallDB, Peer: Postgres, Query: &r.Route.Queries[0], Duration: b.rest(), PoolWait: b.rest(), ErrorType: ErrPoolTimeout})
		}
		if r.ErrorType == ErrStatement {
			return b.add(Call{Kind: CallDB, Peer: Postgres, Query: &r.Route.Queries[0], Duration: wait + statementTimeout, PoolWait: wait, ErrorType: ErrStatement})
		}
		for k := range r.Route.Queries {
			q := &r.Route.Queries[k]
			d := s.queryLatency(q) * scale
			c := Call{Kind: CallDB, Peer: Postgres, Query: q, Duration: wait + d, PoolWait: wait}
			if r.ErrorType == ErrDiskFull && q.Write {
				c.ErrorType = ErrDiskFull
				return b.add(c)
			}
			b.add(c)
			wait = 0
		}
	}
	if r.LLM != nil {
		c := Call{Kind: CallLLM, Peer: r.LLM.Provider.Name, Duration: r.LLM.Duration, ErrorType: r.LLM.ErrorType}
		if r.LLM.ErrorType == "" {
			c.Duration = rs.llm * scale
		}
		b.add(c)
		if r.LLM.ErrorType != "" {
			return b.dst
		}
	}
	if r.Route.Enqueue != "" {
		b.add(Call{Kind: CallEnqueue, Peer: Redis, Queue: r.Route.Enqueue, Duration: rs.enqueue * scale})
	}
	return b.dst
}

// JobCalls appends to dst the calls job j made.
func (s *System) JobCalls(j *Job, dst []Call) []Call {
	if j.ErrorType == ErrWorkerLost || j.Instance == nil {
		return dst
	}
	k := j.Queue.Kind
	b := callBuilder{dst: dst, end: j.Duration, at: k.CPU / 2}
	if k.Token {
		v := s.authView[2]
		if j.ErrorType == ErrAuthUnavailable {
			return b.add(Call{Kind: CallAuth, Peer: Auth, Route: s.topo.auth.token, Duration: b.rest(), ErrorType: ErrAuthUnavailable, Status: 503})
		}
		b.add(Call{Kind: CallAuth, Peer: Auth, Route: s.topo.auth.token, Duration: v.mean, Status: 200})
	}
	if j.ErrorType == ErrPoolTimeout {
		return b.add(Call{Kind: CallDB, Peer: Postgres, Query: &k.Queries[0], Duration: b.rest(), PoolWait: b.rest(), ErrorType: ErrPoolTimeout})
	}
	if j.ErrorType == ErrStatement {
		return b.add(Call{Kind: CallDB, Peer: Postgres, Query: &k.Queries[0], Duration: statementTimeout, ErrorType: ErrStatement})
	}
	if len(k.Queries) > 0 {
		q := &k.Queries[0]
		b.add(Call{Kind: CallDB, Peer: Postgres, Query: q, Duration: s.queryLatency(q)})
	}
	if j.LLM != nil {
		b.add(Call{Kind: CallLLM, Peer: j.LLM.Provider.Name, Duration: j.LLM.Duration, ErrorType: j.LLM.ErrorType})
		if j.LLM.ErrorType != "" {
			return b.dst
		}
	}
	if k.External > 0 {
		b.add(Call{Kind: CallExternal, Peer: "calendar-api", Duration: k.External})
	}
	for qi := 1; qi < len(k.Queries); qi++ {
		q := &k.Queries[qi]
		c := Call{Kind: CallDB, Peer: Postgres, Query: q, Duration: s.queryLatency(q)}
		if j.ErrorType == ErrDiskFull && q.Write {
			c.ErrorType = ErrDiskFull
			return b.add(c)
		}
		b.add(c)
	}
	if len(k.Queries) == 1 && j.ErrorType == ErrDiskFull {
		b.dst[len(b.dst)-1].ErrorType = ErrDiskFull
	}
	return b.dst
}

// callBuilder lays calls out one after the other, never past the end of
// their parent.
type callBuilder struct {
	dst     []Call
	at, end float64
}

func (b *callBuilder) rest() float64 { return max(0, b.end-b.at) }

func (b *callBuilder) add(c Call) []Call {
	c.Offset = min(b.at, b.end)
	c.Duration = min(c.Duration, b.rest())
	b.at += c.Duration
	b.dst = append(b.dst, c)
	return b.dst
}
