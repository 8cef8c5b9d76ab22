package storage

import "time"

// QueryLimit is the number of records a query with Limit n returns at
// most: n, or DefaultQueryLimit when n is zero or negative.
func QueryLimit(n int) int {
	if n <= 0 {
		return DefaultQueryLimit
	}
	return n
}

// UnixNano is how stores keep record times: nanoseconds since the epoch,
// with the zero time as 0 rather than a date before 1678, which
// time.Time.UnixNano cannot represent.
func UnixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// FromUnixNano reverses UnixNano, in UTC.
func FromUnixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns).UTC()
}
