package model

import "math"

// station is a fluid first-in-first-out server: work arrives at a rate,
// is served at a capacity, and what cannot be served waits in a backlog
// that carries over to the next tick. It is the queueing approximation
// every bottleneck of the engine uses: an instance's CPU and threads, a
// connection pool, the database server, a job queue.
type station struct {
	backlog float64 // units waiting at the end of the last tick
}

// stationResult is what one tick of a station did.
type stationResult struct {
	served  float64 // units served during the tick
	dropped float64 // units refused because the backlog was over its limit
	// dropFrac is dropped as a share of the units that arrived.
	dropFrac float64
	// wait is the mean time a unit arriving now waits before service:
	// the backlog drained at capacity, plus the M/M/1 queueing delay of a
	// busy but stable server.
	wait float64
	rho  float64 // offered / capacity
}

// maxRho bounds the utilisation used in the M/M/1 term, so that a
// server at capacity has a large but finite queueing delay; beyond
// capacity the backlog carries the delay.
const maxRho = 0.97

// step advances the station by dt seconds. offered and capacity are
// units per second; serviceTime is the mean service time of one unit (for
// the queueing delay); limit bounds the backlog in units (math.Inf(1) for
// none). A station with no capacity drops everything that exceeds limit
// and serves nothing.
func (s *station) step(offered, capacity, serviceTime, dt, limit float64) stationResult {
	arrived := offered * dt
	total := s.backlog + arrived
	served := math.Min(total, capacity*dt)
	left := total - served
	var r stationResult
	r.served = served
	if left > limit {
		r.dropped = left - limit
		left = limit
	}
	if arrived > 0 {
		r.dropFrac = math.Min(1, r.dropped/arrived)
	}
	s.backlog = left
	if capacity <= 0 {
		r.rho = math.Inf(1)
		r.wait = math.Inf(1)
		return r
	}
	r.rho = offered / capacity
	rho := math.Min(r.rho, maxRho)
	r.wait = left/capacity + serviceTime*rho/(1-rho)
	return r
}

// reset empties the station, as when the process holding it restarts.
func (s *station) reset() { s.backlog = 0 }
