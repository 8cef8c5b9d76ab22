package storage

import "time"

// LeaseBeat is one heartbeat of a candidate in an election (package
// lease): the candidate is alive and, when Term is not 0, claims or
// holds that term.
type LeaseBeat struct {
	Name, Holder string
	Term         int64
	// Released marks a holder's last beat of a term when it stops.
	Released bool
}

// LeaseRecord is what a store holds of one candidate's beats in one term,
// in the store server's clock: one server's, so that the replicas' clocks
// never meet.
type LeaseRecord struct {
	Holder string
	Term   int64
	// First is the time of the candidate's first beat of the term (its
	// claim), Last of its latest.
	First, Last time.Time
	Released    bool
}
