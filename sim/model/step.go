package model

import (
	"math"
	"time"
)

// routeState is how one route behaves on one instance during a step:
// the mean of each part of handling it, and the chance of each failure,
// tested in the order below.
type routeState struct {
	lambda  float64 // legitimate requests/s on this instance
	attack  float64 // attack requests/s admitted by the rate limit
	limited float64 // attack requests/s refused by it (429)

	wait, own, auth, cache, poolWait, db, llm, enqueue float64
	// fixed is the part of the duration that does not vary: a timeout
	// every request waits out.
	fixed    float64
	missP    float64 // share of requests that miss the cache
	provider *Provider

	pReject, pBad, pAuth, pPool, pStmt, pDisk, pLLM, pLLMFast, pTimeout float64
	p401                                                                float64 // legitimate logins only
}

func (rs *routeState) hit() float64 {
	return rs.wait + rs.own + rs.auth + rs.cache + rs.llm + rs.enqueue
}
func (rs *routeState) miss() float64 { return rs.hit() + rs.poolWait + rs.db }

// mean is the mean duration of a successful request.
func (rs *routeState) mean() float64 {
	if rs.missP >= 1 {
		return rs.miss()
	}
	return rs.hit() + rs.missP*(rs.poolWait+rs.db)
}

// Calibration constants of the behaviour models.
const (
	loginFailShare = 0.05 // legitimate logins with a wrong password
	llmSigma       = 0.5
	// memPressureStart is the share of the memory limit above which the
	// process slows down (garbage collection, page reclaim).
	memPressureStart = 0.85
	// queuedMemShare is the memory a request waiting for a thread holds,
	// as a share of what a request being handled holds.
	queuedMemShare = 0.05
)

// maxSubstep is the longest interval the model integrates over at once.
// A step is cut into substeps of at most this length, so that the
// services' feedback on each other (a caller's load reaches its callee
// one substep later) is as quick as in a real system and the run does
// not depend on how often telemetry is exported.
const maxSubstep = time.Second

// loadMemory is the time constant with which callers' loads reach their
// callees: the smoothing that keeps a saturated system at its equilibrium
// instead of swinging around it.
const loadMemory = 2 * time.Second

// Step advances the engine by dt, telling sink (which may be nil) about
// every request and job. Knobs set by faults apply to the whole step and
// are cleared at its end.
func (s *System) Step(dt time.Duration, sink Sink) {
	if sink == nil {
		sink = discard{}
	}
	s.sink = sink
	n := int((dt + maxSubstep - 1) / maxSubstep)
	for k := range n {
		sub := dt / time.Duration(n)
		if k == n-1 {
			sub = dt - sub*time.Duration(n-1)
		}
		s.substep(sub.Seconds())
		s.now = s.now.Add(sub)
	}
	s.tick++
	s.ClearKnobs()
	s.sink = nil
}

func (s *System) substep(d float64) {
	a := 1 - math.Exp(-d/loadMemory.Seconds())
	for k := range s.prev.auth {
		s.prev.auth[k] += a * (s.cur.auth[k] - s.prev.auth[k])
	}
	s.prev.loginAttack += a * (s.cur.loginAttack - s.prev.loginAttack)
	s.prev.dbCPU += a * (s.cur.dbCPU - s.prev.dbCPU)
	s.cur = loads{}
	s.lifecycle()
	s.demand.advance(d, s.rng)
	s.demandRate = s.demand.rate(s.now)
	s.stepDatabase(d)
	s.stepAuth(d)
	s.stepAPI(d)
	s.stepWorkers(d)
	s.stepResources(d)
}

// QueryLatency is the mean time q takes on a connection in the current
// step.
func (s *System) QueryLatency(q *Query) float64 { return s.queryLatency(q) }

// queryLatency is the mean time q takes on a connection.
func (s *System) queryLatency(q *Query) float64 {
	return q.CPU*s.DB.CPUFactor + s.DB.Wait + s.DB.Delay + netLatency
}

// queriesLatency is the mean time qs hold a connection, a cancelled
// query counting as the statement timeout, and the share of requests
// running them that one cancellation fails.
func (s *System) queriesLatency(qs []Query) (hold, pCancel float64) {
	ok := 1.0
	for k := range qs {
		m := s.queryLatency(&qs[k])
		hold += math.Min(m, statementTimeout)
		ok *= 1 - lognormalTail(m, querySigma, statementTimeout)
	}
	return hold, 1 - ok
}

func queriesCPU(qs []Query) float64 {
	t := 0.0
	for _, q := range qs {
		t += q.CPU
	}
	return t
}

func (s *System) stepDatabase(d float64) {
	conns := 0.0
	for _, svc := range s.Services {
		for _, i := range svc.Instances {
			if i.Up() {
				conns += float64(svc.Spec.PoolMax)
			}
		}
	}
	const meanQueryCPU = 0.003
	svcTime := meanQueryCPU * s.DB.CPUFactor
	work := s.prev.dbCPU * s.DB.CPUFactor
	r := s.DB.st.step(work, s.DB.Cores, svcTime, d, conns*svcTime)
	s.DB.Rho = r.rho
	// A query waits behind at most every open connection's query.
	s.DB.Wait = math.Min(r.wait, conns*svcTime/s.DB.Cores)
}

// speed is the share of its CPU limit an instance gets: a neighbour
// hogging the node leaves it less.
func speed(i *Instance) float64 {
	avail := i.Node.Cores - i.Node.Hog - nodeSystemCPU
	return math.Min(1, math.Max(0.05, avail/i.Service.Spec.CPULimit))
}

// slowness multiplies the time handling takes: a stuck lock, or memory
// pressure near the limit.
func slowness(i *Instance) float64 {
	f := i.Slowdown
	if f < 1 {
		f = 1
	}
	over := (i.Memory/i.Service.Spec.MemLimit - memPressureStart) / (1 - memPressureStart)
	over = math.Min(1, math.Max(0, over))
	return f * (1 + 2*over*over)
}

func ready(svc *Service) []*Instance {
	var out []*Instance
	for _, i := range svc.Instances {
		if i.Ready() {
			out = append(out, i)
		}
	}
	return out
}

// pool runs one tick of an instance's connection pool for dbRate
// requests/s holding a connection for hold seconds each: it returns the
// share that times out waiting and the mean wait.
func pool(i *Instance, dbRate, hold, d float64) (pTimeout, wait float64) {
	capConns := math.Max(0, float64(i.PoolMax())-i.LeakedConns)
	if dbRate <= 0 && i.pool.backlog == 0 {
		i.PoolUsed, i.PoolPending = i.LeakedConns, 0
		return 0, 0
	}
	capRate := 0.0
	if hold > 0 {
		capRate = capConns / hold
	}
	r := i.pool.step(dbRate, capRate, hold/math.Max(1, capConns), d, poolTimeout*capRate)
	if capRate == 0 {
		// No connection will ever be free: everything times out.
		i.pool.backlog = 0
		i.PoolUsed, i.PoolPending = i.LeakedConns, dbRate*poolTimeout
		i.PoolTimeouts += dbRate * d
		return 1, poolTimeout
	}
	i.PoolUsed = math.Min(capConns, r.served/d*hold) + i.LeakedConns
	i.PoolPending = i.pool.backlog
	i.PoolTimeouts += r.dropped
	return r.dropFrac, math.Min(r.wait, poolTimeout)
}

func (s *System) stepAuth(d float64) {
	svc := s.Service(Auth)
	rdy := ready(svc)
	routes := []*Route{s.topo.auth.validate, s.topo.auth.login, s.topo.auth.token}
	if len(rdy) == 0 {
		for k := range s.authView {
			s.authView[k] = callView{mean: 0.001, fail: 1}
		}
		return
	}
	attackShare := 0.0
	if s.prev.auth[1] > 0 {
		attackShare = math.Min(1, s.prev.loginAttack/s.prev.auth[1])
	}
	var view [3]callView
	n := float64(len(rdy))
	for _, i := range rdy {
		sp, sl := speed(i), slowness(i)
		var total, cpuSum, latSum, dbRate, holdSum float64
		for k, r := range routes {
			rs := &i.routes[k]
			*rs = routeState{lambda: s.prev.auth[k] / n}
			rs.own = r.CPU * sl / sp
			if len(r.Queries) > 0 {
				rs.db, rs.pStmt = s.queriesLatency(r.Queries)
				rs.db += 0.001
				dbRate += rs.lambda
				holdSum += rs.lambda * rs.db
			}
			rs.missP = 1
			total += rs.lambda
			cpuSum += rs.lambda * r.CPU * sl
		}
		hold := 0.0
		if dbRate > 0 {
			hold = holdSum / dbRate
		}
		pPool, poolWait := pool(i, dbRate, hold, d)
		for k, r := range routes {
			rs := &i.routes[k]
			if len(r.Queries) > 0 {
				rs.poolWait, rs.pPool = poolWait, pPool
			}
			latSum += rs.lambda * rs.miss()
			rs.pBad = math.Max(i.BadConfig, svc.Bugs[i.Version])
		}
		st := s.serve(i, total, cpuSum, latSum, sp, d, svc.Spec.QueueLimit)
		for k, r := range routes {
			rs := &i.routes[k]
			rs.wait, rs.pReject = st.wait, st.dropFrac
			if r.Login {
				rs.p401 = attackShare + (1-attackShare)*loginFailShare
			}
			m := rs.miss()
			late := lognormalTail(m, r.Sigma, authTimeout)
			fail := 1 - (1-rs.pReject)*(1-rs.pBad)*(1-rs.pPool)*(1-rs.pStmt)*(1-late)
			view[k].mean += math.Min(m, authTimeout) / n
			view[k].fail += fail / n
			s.cur.dbCPU += rs.lambda * (1 - rs.pReject) * (1 - rs.pBad) * (1 - rs.pPool) * queriesCPU(r.Queries)
			s.emitRequests(svc, i, r, rs, d)
		}
	}
	s.authView = view
}

// serve runs an instance's thread pool and CPU as one station: capacity
// is the lesser of what its CPU can handle and what its threads can hold
// at the current latency. It records the CPU used and the requests in
// flight.
func (s *System) serve(i *Instance, offered, cpuSum, latSum, sp, d, queueLimit float64) stationResult {
	spec := i.Service.Spec
	meanCPU, meanLat := 0.0, 0.0
	if offered > 0 {
		meanCPU, meanLat = cpuSum/offered, latSum/offered
	}
	capacity := math.Inf(1)
	if meanCPU > 0 {
		capacity = spec.CPULimit * sp / meanCPU
	}
	if meanLat > 0 {
		capacity = math.Min(capacity, float64(spec.Threads)/meanLat)
	}
	limit := math.Min(queueLimit, gatewayTimeout*capacity)
	st := i.cpu.step(offered, capacity, meanCPU/sp, d, limit)
	if math.IsInf(st.wait, 1) {
		st.wait = gatewayTimeout
	}
	st.wait = math.Min(st.wait, gatewayTimeout)
	rate := st.served / d
	i.CPU = math.Min(spec.CPULimit*sp, rate*meanCPU) + 0.01
	i.InFlight = math.Min(float64(spec.Threads), rate*meanLat) + queuedMemShare*i.cpu.backlog
	return st
}

// llmFor returns the provider a call goes to: the first whose breaker is
// closed, or nil when every breaker is open.
func (s *System) llmFor() *Provider {
	for _, p := range s.Providers {
		if !p.Breaker.Open {
			return p
		}
	}
	return nil
}

// llmState fills the LLM part of rs for one call of mean duration base.
func (s *System) llmState(rs *routeState, base float64) {
	p := s.llmFor()
	rs.provider = p
	if p == nil {
		rs.pLLM, rs.pLLMFast = 1, 1
		return
	}
	rs.llm = base*p.LatencyFactor + p.Delay
	late := lognormalTail(rs.llm, llmSigma, llmTimeout)
	rs.pLLM = p.ErrorRate + (1-p.ErrorRate)*late
	if rs.pLLM > 0 {
		rs.pLLMFast = p.ErrorRate / rs.pLLM
	}
}

func (s *System) stepAPI(d float64) {
	svc := s.Service(API)
	rdy := ready(svc)
	legit := s.demandRate * svc.DemandFactor
	login := svc.Spec.Route("/v1/auth/login")
	attack, limited := s.AttackRPS, 0.0
	if lim := svc.RateLimits[login]; lim > 0 && attack > 0 {
		attack = s.attackers * math.Min(s.AttackRPS/s.attackers, lim)
		limited = s.AttackRPS - attack
	}
	if len(rdy) == 0 {
		s.emitUnserved(svc, legit, s.AttackRPS, d)
		return
	}
	n := float64(len(rdy))
	bypass := s.Cache.Breaker.Open
	s.Cache.Unreachable = s.Cache.Down
	missP := 1 - s.Cache.HitRatio
	if s.Cache.Down || bypass {
		missP = 1
	}
	full := s.Volume(VolumePostgres).Full()
	for _, i := range rdy {
		sp, sl := speed(i), slowness(i)
		var total, cpuSum, dbRate, holdSum float64
		for k, r := range svc.Spec.Routes {
			rs := &i.routes[k]
			*rs = routeState{lambda: legit * r.Share / n, missP: 1}
			if r == login {
				rs.attack, rs.limited = attack/n, limited/n
				rs.p401 = loginFailShare
			}
			rs.own = r.CPU * sl / sp
			if r.Auth {
				rs.auth, rs.pAuth = s.authView[0].mean+netLatency, s.authView[0].fail
			}
			if r.Proxy != nil {
				rs.auth, rs.pAuth = s.authView[1].mean+netLatency, s.authView[1].fail
			}
			if r.Cache {
				rs.cache, rs.missP = redisLatency, missP
				switch {
				case bypass:
					rs.cache = 0
				case s.Cache.Down:
					rs.cache, rs.fixed = redisConnectTimeout, redisConnectTimeout
				case s.Cache.Delay > 0:
					rs.cache, rs.fixed = redisLatency+s.Cache.Delay, s.Cache.Delay
				}
			}
			if len(r.Queries) > 0 {
				rs.db, rs.pStmt = s.queriesLatency(r.Queries)
				rs.db += 0.001
				rate := rs.lambda * rs.missP
				dbRate += rate
				holdSum += rate * rs.db
				if full && r.Writes() {
					rs.pDisk = 1
				}
			} else {
				rs.missP = 0
			}
			if r.LLM {
				s.llmState(rs, s.topo.providers[0].Chat)
			}
			if r.Enqueue != "" {
				rs.enqueue = enqueueLatency
			}
			rs.pBad = math.Max(i.BadConfig, svc.Bugs[i.Version])
			total += rs.lambda + rs.attack
			cpuSum += (rs.lambda + rs.attack) * r.CPU * sl
		}
		hold := 0.0
		if dbRate > 0 {
			hold = holdSum / dbRate
		}
		pPool, poolWait := pool(i, dbRate, hold, d)
		latSum := 0.0
		for k, r := range svc.Spec.Routes {
			rs := &i.routes[k]
			if len(r.Queries) > 0 {
				rs.poolWait, rs.pPool = poolWait, pPool
			}
			latSum += (rs.lambda + rs.attack) * rs.mean()
		}
		st := s.serve(i, total, cpuSum, latSum, sp, d, svc.Spec.QueueLimit)
		for k, r := range svc.Spec.Routes {
			rs := &i.routes[k]
			rs.wait, rs.pReject = st.wait, st.dropFrac
			rs.pTimeout = lognormalTail(rs.mean(), r.Sigma, gatewayTimeout)
			s.countAPILoads(r, rs)
			s.emitRequests(svc, i, r, rs, d)
		}
	}
}

// countAPILoads adds what the requests of rs ask of auth, the database
// and the queues to this step's loads.
func (s *System) countAPILoads(r *Route, rs *routeState) {
	pass := (1 - rs.pReject) * (1 - rs.pBad)
	if r.Auth {
		s.cur.auth[0] += rs.lambda * pass
	}
	if r.Proxy != nil {
		s.cur.auth[1] += (rs.lambda + rs.attack) * pass
		s.cur.loginAttack += rs.attack * pass
	}
	pass *= 1 - rs.pAuth
	s.cur.dbCPU += rs.lambda * pass * rs.missP * (1 - rs.pPool) * queriesCPU(r.Queries)
	if rs.provider != nil {
		rs.provider.Calls += rs.lambda * pass
	}
}

// emitUnserved tells the sink about requests no instance could take:
// legit requests/s of legitimate demand and attack of the attack.
func (s *System) emitUnserved(svc *Service, legit, attack, d float64) {
	for _, r := range svc.Spec.Routes {
		rate := legit * r.Share
		if r.Proxy != nil {
			rate += attack
		}
		for range s.rng.poisson(rate * d) {
			q := s.request(svc, nil, r, d)
			q.Status, q.ErrorType, q.Duration = 503, ErrNoUpstream, s.rng.lognormal(rejectLatency, 0.3)
			s.sink.Request(q)
		}
	}
}

func (s *System) request(svc *Service, i *Instance, r *Route, d float64) *Request {
	q := &s.scratch
	*q = Request{Service: svc, Instance: i, Route: r}
	q.Start = s.now.Add(time.Duration(s.rng.Float64() * d * float64(time.Second)))
	return q
}

// emitRequests draws the requests of one route on one instance for a step
// and tells the sink about each.
func (s *System) emitRequests(svc *Service, i *Instance, r *Route, rs *routeState, d float64) {
	for range s.rng.poisson(rs.lambda * d) {
		s.emitOne(svc, i, r, rs, d, false)
	}
	for range s.rng.poisson(rs.attack * d) {
		s.emitOne(svc, i, r, rs, d, true)
	}
	for range s.rng.poisson(rs.limited * d) {
		q := s.request(svc, i, r, d)
		q.Attack, q.Status, q.Duration = true, 429, s.rng.lognormal(rejectLatency, 0.3)
		s.sink.Request(q)
	}
}

func (s *System) emitOne(svc *Service, i *Instance, r *Route, rs *routeState, d float64, attack bool) {
	q := s.request(svc, i, r, d)
	q.Attack = attack
	g := s.rng
	fail := func(p float64) bool { return p > 0 && g.Float64() < p }
	sig := r.Sigma
	hit := !(r.Cache && g.Float64() < rs.missP)
	q.CacheHit = r.Cache && hit
	dbPath := len(r.Queries) > 0 && (!r.Cache || !hit)
	base := rs.hit()
	if dbPath {
		base = rs.miss()
	}
	switch {
	case fail(rs.pReject):
		q.Status, q.ErrorType, q.Duration = 503, ErrOverloaded, g.lognormal(rejectLatency, 0.3)
	case fail(rs.pBad):
		q.Status, q.ErrorType, q.Duration = 500, ErrInternal, g.lognormal(rs.wait+rs.own*0.5, sig)
	case fail(rs.pAuth):
		q.Status, q.ErrorType = 503, ErrAuthUnavailable
		q.Duration = rs.wait + g.lognormal(rs.own+math.Min(rs.auth, authTimeout), sig)
	case dbPath && fail(rs.pPool):
		q.Status, q.ErrorType = 500, ErrPoolTimeout
		q.Duration = rs.wait + g.lognormal(rs.own+rs.auth+rs.cache, sig) + poolTimeout
	case dbPath && fail(rs.pStmt):
		q.Status, q.ErrorType = 500, ErrStatement
		q.Duration = rs.wait + g.lognormal(rs.own+rs.auth+rs.cache, sig) + rs.poolWait + statementTimeout
	case dbPath && fail(rs.pDisk):
		q.Status, q.ErrorType, q.Duration = 500, ErrDiskFull, g.lognormal(base, sig)
	case r.LLM && fail(rs.pLLM):
		q.Status = 502
		pre := rs.wait + g.lognormal(rs.own+rs.auth+rs.poolWait+rs.db, sig)
		q.LLM = &q.llm
		*q.LLM = LLMCall{Provider: rs.provider, Operation: "chat"}
		switch {
		case rs.provider == nil:
			q.ErrorType, q.LLM, q.Duration = ErrCircuitOpen, nil, pre
		case g.Float64() < rs.pLLMFast:
			q.ErrorType, q.LLM.ErrorType, q.LLM.Duration = ErrLLM, ErrLLMUnavailable, g.lognormal(llmOutageLatency, 0.3)
			q.Duration = pre + q.LLM.Duration
		default:
			q.ErrorType, q.LLM.ErrorType, q.LLM.Duration = ErrLLMTimeout, ErrTimeout, llmTimeout
			q.Duration = pre + llmTimeout
		}
	case fail(rs.pTimeout):
		q.Status, q.ErrorType, q.Duration = 504, ErrGatewayTimeout, gatewayTimeout
	default:
		q.Status = r.Status
		if r.Login && (attack || fail(rs.p401)) {
			q.Status = 401
		}
		q.Duration = g.lognormal(base-rs.fixed, sig) + rs.fixed
		if r.LLM {
			q.LLM = &q.llm
			*q.LLM = LLMCall{Provider: rs.provider, Operation: "chat",
				Duration:    math.Min(q.Duration*rs.llm/math.Max(base, 1e-9), llmTimeout),
				InputTokens: int(g.lognormal(900, 0.5)), OutputTokens: int(g.lognormal(200, 0.6)) + 1}
		}
		if q.Status == r.Status && r.Enqueue != "" {
			s.Queue(r.Enqueue).arrivals++
		}
	}
	if q.Status >= 500 && q.Duration > gatewayTimeout {
		q.Duration = gatewayTimeout
	}
	s.sink.Request(q)
}

func (s *System) stepWorkers(d float64) {
	svc := s.Service(Worker)
	rdy := ready(svc)
	slots := 0.0
	var sp, sl float64
	for _, i := range rdy {
		slots += float64(svc.Spec.Threads)
		sp += speed(i) / float64(len(rdy))
		sl += slowness(i) / float64(len(rdy))
	}
	if len(rdy) == 0 {
		sp, sl = 1, 1
	}
	full := s.Volume(VolumePostgres).Full()
	degraded := s.Flags[FlagDegradeDocs]
	plans := make([]workPlan, len(s.Queues))
	for k, q := range s.Queues {
		p := &plans[k]
		kind := q.Kind
		p.arrival = q.arrivals + q.retry
		q.Enqueued += q.arrivals
		q.arrivals, q.retry = 0, 0
		p.rs.own = kind.CPU * sl / sp
		if kind.Token {
			p.rs.auth, p.pToken = s.authView[2].mean+netLatency, s.authView[2].fail
		}
		p.rs.db, p.rs.pStmt = s.queriesLatency(kind.Queries)
		p.rs.db += 0.001
		if kind.LLM && !degraded {
			s.llmState(&p.rs, s.topo.providers[0].Summary)
		}
		if full && writes(kind.Queries) {
			p.rs.pDisk = 1
		}
		p.rs.pBad = svc.Bugs[svc.Version]
		p.time = p.rs.own + p.rs.auth + p.rs.db + p.rs.llm + kind.External
		if p.rs.pLLM > 0 && p.rs.pLLMFast < 1 {
			// Calls that time out hold the slot for the whole timeout.
			p.time += p.rs.pLLM * (1 - p.rs.pLLMFast) * llmTimeout
		}
	}
	// The workers' pools, with the jobs spread evenly over the workers.
	var dbRate, holdSum float64
	share := allocate(s.Queues, plans, slots, d)
	for k := range plans {
		rate := share[k] / plans[k].time
		dbRate += rate
		holdSum += rate * plans[k].rs.db
	}
	var pPool, poolWait float64
	if len(rdy) > 0 && dbRate > 0 {
		perInst := dbRate / float64(len(rdy))
		for _, i := range rdy {
			pPool, poolWait = pool(i, perInst, holdSum/dbRate, d)
		}
	}
	for k := range plans {
		plans[k].rs.poolWait, plans[k].rs.pPool = poolWait, pPool
		plans[k].time += poolWait
	}
	share = allocate(s.Queues, plans, slots, d)
	var busy, cpu float64
	next := 0
	for k, q := range s.Queues {
		p := &plans[k]
		capacity := share[k] / p.time
		r := q.st.step(p.arrival/d, capacity, p.time, d, math.Inf(1))
		q.Depth = q.st.backlog
		switch {
		case q.Depth < 0.5:
			q.OldestAge = 0
		case capacity > 0:
			q.OldestAge = q.Depth / capacity
		default:
			q.OldestAge += d
		}
		busy += r.served / d * p.time
		cpu += r.served / d * q.Kind.CPU * sl
		pFail := 1 - (1-p.pToken)*(1-p.rs.pPool)*(1-p.rs.pStmt)*(1-p.rs.pDisk)*(1-p.rs.pLLM)*(1-p.rs.pBad)
		s.cur.dbCPU += r.served * (1 - pFail) * queriesCPU(q.Kind.Queries) / d
		if q.Kind.Token {
			s.cur.auth[2] += r.served / d
		}
		if p.rs.provider != nil {
			p.rs.provider.Calls += r.served / d
		}
		if len(rdy) == 0 {
			continue
		}
		for range s.rng.round(r.served) {
			inst := rdy[next%len(rdy)]
			next++
			s.emitJob(q, inst, &p.rs, p.pToken, p.time, r.wait, d)
		}
	}
	for _, i := range rdy {
		i.CPU = cpu/float64(len(rdy)) + 0.01
		i.InFlight = busy / float64(len(rdy))
	}
}

// workPlan is how the jobs of one queue are processed during a step.
type workPlan struct {
	rs      routeState
	time    float64 // mean seconds a job holds a worker slot
	pToken  float64
	arrival float64 // jobs arriving this step, retries included
}

// allocate shares the worker slots among the queues in proportion to the
// slots each would need to clear its backlog and arrivals this step.
func allocate(qs []*Queue, plans []workPlan, slots, d float64) []float64 {
	want := make([]float64, len(qs))
	total := 0.0
	for k, q := range qs {
		want[k] = (q.st.backlog + plans[k].arrival) / d * plans[k].time
		total += want[k]
	}
	if total > slots {
		for k := range want {
			want[k] *= slots / total
		}
	}
	return want
}

func (s *System) emitJob(q *Queue, inst *Instance, rs *routeState, pToken, mean, wait, d float64) {
	g := s.rng
	j := &s.jobScratch
	*j = Job{Queue: q, Instance: inst}
	j.Start = s.now.Add(time.Duration(g.Float64() * d * float64(time.Second)))
	j.Wait = math.Max(0, g.lognormal(math.Max(wait, 0.01), 0.3))
	fail := func(p float64) bool { return p > 0 && g.Float64() < p }
	pre := rs.own
	switch {
	case fail(rs.pBad):
		j.ErrorType, j.Duration = ErrInternal, g.lognormal(pre, 0.3)
	case fail(pToken):
		j.ErrorType, j.Duration = ErrAuthUnavailable, pre+math.Min(rs.auth, authTimeout)
	case fail(rs.pPool):
		j.ErrorType, j.Duration = ErrPoolTimeout, pre+rs.auth+poolTimeout
	case fail(rs.pStmt):
		j.ErrorType, j.Duration = ErrStatement, pre+rs.auth+rs.poolWait+statementTimeout
	case fail(rs.pLLM):
		j.LLM = &j.llm
		*j.LLM = LLMCall{Provider: rs.provider, Operation: "chat"}
		pre += rs.auth + rs.poolWait + rs.db
		switch {
		case rs.provider == nil:
			j.ErrorType, j.LLM, j.Duration = ErrCircuitOpen, nil, pre
		case g.Float64() < rs.pLLMFast:
			j.ErrorType, j.LLM.ErrorType, j.LLM.Duration = ErrLLM, ErrLLMUnavailable, g.lognormal(llmOutageLatency, 0.3)
			j.Duration = pre + j.LLM.Duration
		default:
			j.ErrorType, j.LLM.ErrorType, j.LLM.Duration = ErrLLMTimeout, ErrTimeout, llmTimeout
			j.Duration = pre + llmTimeout
		}
	case fail(rs.pDisk):
		j.ErrorType, j.Duration = ErrDiskFull, g.lognormal(mean, q.Kind.Sigma)
	default:
		j.Duration = g.lognormal(mean, q.Kind.Sigma)
		if rs.provider != nil {
			j.LLM = &j.llm
			*j.LLM = LLMCall{Provider: rs.provider, Operation: "chat",
				Duration:    math.Min(j.Duration*rs.llm/math.Max(mean, 1e-9), llmTimeout),
				InputTokens: int(g.lognormal(3500, 0.6)), OutputTokens: int(g.lognormal(300, 0.4)) + 1}
		}
	}
	if j.ErrorType != "" {
		q.Failed++
		q.retry++
	} else {
		q.Processed++
	}
	s.sink.Job(j)
}

func (s *System) stepResources(d float64) {
	for _, svc := range s.Services {
		spec := svc.Spec
		for _, i := range svc.Instances {
			node := i.Node
			if !i.Up() {
				node.CPUUsed = math.Min(node.Cores, node.Hog+nodeSystemCPU)
				node.MemUsed = nodeSystemMem
				continue
			}
			if i.State == Starting {
				i.CPU = 0.3 * spec.CPULimit * speed(i)
				i.InFlight = 0
			}
			i.leakedMem += i.MemLeakRate * d
			i.LeakedConns = math.Min(float64(spec.PoolMax), i.LeakedConns+i.ConnLeakRate*d)
			if i.State != Running {
				i.PoolUsed = i.LeakedConns
			}
			i.Memory = spec.BaseMem + i.InFlight*spec.MemPerInFlight + i.leakedMem
			node.CPUUsed = math.Min(node.Cores, i.CPU+node.Hog+nodeSystemCPU)
			node.MemUsed = math.Min(node.Memory, nodeSystemMem+i.Memory)
			switch {
			case i.Memory >= spec.MemLimit:
				s.killInFlight(i, ErrWorkerLost)
				s.crash(i, "OOMKilled")
			case i.State == Running && i.CrashAfter > 0 && s.now.Sub(i.ReadyAt) >= i.CrashAfter:
				s.killInFlight(i, ErrWorkerLost)
				s.crash(i, "Error")
			}
		}
	}
	s.DBNode.CPUUsed = math.Min(s.DBNode.Cores, s.DB.Rho*s.DB.Cores+nodeSystemCPU)
	s.DBNode.MemUsed = 5*gib + 200*mib*math.Min(1, s.DB.Rho)
	for _, v := range s.Volumes {
		add := (v.Growth + v.FillRate) * d
		v.Used = math.Min(v.Capacity, v.Used+add)
		v.Junk = math.Min(v.Used, v.Junk+v.FillRate*d)
	}
}

// killInFlight fails the jobs a dying worker was processing: they go back
// on their queues.
func (s *System) killInFlight(i *Instance, errType string) {
	if i.Service.Name != Worker || i.State != Running {
		return
	}
	n := s.rng.round(i.InFlight)
	for k := range n {
		q := s.Queues[k%len(s.Queues)]
		j := &s.jobScratch
		*j = Job{Queue: q, Instance: i, Start: s.now.Add(-time.Second), Duration: 1, ErrorType: errType}
		q.Failed++
		q.retry++
		s.sink.Job(j)
	}
}
