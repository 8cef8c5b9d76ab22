package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/aiops-dev/aiops/storage"
)

// Lease heartbeats (package lease's StoreElector).
//
// One row per (lease, holder, term) once merged: first is the time of the
// holder's first beat of the term (its claim), at of its latest. Both are
// the server's now(), never a replica's clock, so the replicas' clocks do
// not matter; DateTime counts seconds, which is what 18.16 has. 18.16 has
// no compare-and-set: the elector settles concurrent claims by reading
// them back, which needs linearizable inserts and reads, so in cluster
// mode the table of one server (the first shard's) is used, never a
// Distributed table.

func leaseTable(t tables, _ features) []string {
	return []string{fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	name String,
	holder String,
	term Int64,
	first DateTime,
	at DateTime,
	released UInt8
) ENGINE = ReplacingMergeTree(at) ORDER BY (name, term, holder)`, t.leases)}
}

// leaseServer is the connection and tables of the server that holds the
// leases.
func (s *Store) leaseServer() (driver.Conn, tables) {
	sh := s.shardsOf()[0]
	return sh.conn, sh.t
}

// LeaseBeat records a heartbeat stamped with the server's clock; the
// first beat of a (holder, term) is its claim, whose time later beats
// carry on (read in the same statement), so that merges keep it.
func (s *Store) LeaseBeat(ctx context.Context, b storage.LeaseBeat) error {
	if err := s.whenConnected(); err != nil {
		return err
	}
	conn, t := s.leaseServer()
	released := 0
	if b.Released {
		released = 1
	}
	key := fmt.Sprintf("name = %s AND holder = %s AND term = %d", quote(b.Name), quote(b.Holder), b.Term)
	sql := fmt.Sprintf(`INSERT INTO %s (name, holder, term, first, at, released)
SELECT %s, %s, %d, if(toUInt32(f) = 0, now(), f), now(), greatest(r, %d)
FROM (SELECT min(first) AS f, max(released) AS r FROM %s WHERE %s)`,
		t.leases, quote(b.Name), quote(b.Holder), b.Term, released, t.leases, key)
	if err := conn.Exec(ctx, sql); err != nil {
		return s.wrap("lease beat", err)
	}
	return nil
}

// LeaseBeats reads the server's time, then every (holder, term) of the
// lease name.
func (s *Store) LeaseBeats(ctx context.Context, name string) ([]storage.LeaseRecord, time.Time, error) {
	if err := s.whenConnected(); err != nil {
		return nil, time.Time{}, err
	}
	conn, t := s.leaseServer()
	var now time.Time
	if err := conn.QueryRow(ctx, "SELECT now()").Scan(&now); err != nil {
		return nil, time.Time{}, s.wrap("lease time", err)
	}
	rows, err := conn.Query(ctx, fmt.Sprintf(
		"SELECT holder, term, min(first), max(at), max(released) FROM %s WHERE name = %s GROUP BY holder, term",
		t.leases, quote(name)))
	if err != nil {
		return nil, time.Time{}, s.wrap("lease read", err)
	}
	defer rows.Close()
	var out []storage.LeaseRecord
	for rows.Next() {
		var (
			r        storage.LeaseRecord
			released uint8
		)
		if err := rows.Scan(&r.Holder, &r.Term, &r.First, &r.Last, &released); err != nil {
			return nil, time.Time{}, s.wrap("lease read", err)
		}
		r.Released = released != 0
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, time.Time{}, s.wrap("lease read", err)
	}
	return out, now, nil
}
