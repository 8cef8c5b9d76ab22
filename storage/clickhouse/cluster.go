package clickhouse

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Cluster mode (clickhouse.cluster).
//
// Every table that holds data exists twice on every server of the
// cluster: <name>_local, a ReplacingMergeTree with the rows of that
// server's shard, and <name>, a Distributed table over the _local tables
// of all shards. The store writes and reads through the Distributed
// tables under the names it uses on a single server, so the querier does
// not know the difference. Rows are sharded so that duplicates meet on
// one shard and merge there: samples, histograms and series rows by the
// series fingerprint, which also keeps a series' samples and its series
// rows on one shard. That makes distributed_product_mode = local exact
// for the querier's `fingerprint IN (SELECT … FROM metric_series …)`:
// each shard answers it from its own series.
//
// Inserts are synchronous (insert_distributed_sync): a commit returns
// once every shard has its rows, so an acknowledged write (and a Kafka
// offset committed after it) is on the shards, not queued on the node
// that took it.
//
// The schema is created on each server by the store itself, shard by
// shard, rather than with ON CLUSTER, which needs ZooKeeper; every
// statement is idempotent, each server records its own migrations, and
// two processes may migrate at once. Retention and Merge act on each
// shard's _local tables. Replicas within a shard (ReplicatedMergeTree)
// need ZooKeeper or Keeper: see docs/SCALING.md.

// localSuffix names a data table's per-shard table.
const localSuffix = "_local"

// distributedSettings are sent with every query in cluster mode.
var distributedSettings = ch.Settings{
	"insert_distributed_sync": 1,
}

// shardingKeys is the sharding expression of each data table, by its
// unqualified name.
var shardingKeys = map[string]string{
	seriesTable:         "fingerprint",
	samplesTable:        "fingerprint",
	"metric_histograms": "fingerprint",
	"metric_metadata":   "cityHash64(metric_family)",
	"logs":              "cityHash64(id)",
	"spans":             "cityHash64(trace_id)",
	"events":            "cityHash64(id)",
	// A trace's index rows sit on its spans' shard; operations are
	// distinct per shard and read with DISTINCT.
	"trace_index":     "cityHash64(trace_id)",
	"span_operations": "cityHash64(service_name)",
}

// shard is one server of the store: with its connection and the names of
// the tables that hold its rows.
type shard struct {
	addr string
	conn driver.Conn
	t    tables
}

// clusterState is the store's connections to each server of its cluster.
type clusterState struct {
	mu     sync.Mutex
	shards []shard
}

// dataTables lists the tables that hold rows: in cluster mode each has
// a _local table per shard and a Distributed table over them.
func (t *tables) dataTables() []*string {
	return []*string{&t.series, &t.samples, &t.histograms, &t.metadata, &t.logs, &t.spans, &t.events, &t.traceIndex, &t.operations}
}

// localTables names the per-shard tables of db.
func localTables(db string) tables {
	t := newTables(db)
	for _, q := range t.dataTables() {
		*q = (*q)[:len(*q)-1] + localSuffix + "`"
	}
	return t
}

// localOf maps a table of s.t to the table that holds one shard's rows.
func (s *Store) localOf(table string, lt tables) string {
	local := lt.dataTables()
	for i, q := range s.t.dataTables() {
		if *q == table {
			return *local[i]
		}
	}
	return table
}

// shardsOf returns the servers whose tables hold rows: every shard's in
// cluster mode, otherwise the one server's.
func (s *Store) shardsOf() []shard {
	if s.cluster == nil {
		return []shard{{addr: strings.Join(s.cfg.Addresses, ","), conn: s.conn, t: s.t}}
	}
	s.cluster.mu.Lock()
	defer s.cluster.mu.Unlock()
	return s.cluster.shards
}

// connectShards finds the cluster's servers in system.clusters and opens
// a connection to each, replacing the ones it had.
func (s *Store) connectShards(ctx context.Context) error {
	rows, err := s.conn.Query(ctx,
		"SELECT host_address, port FROM system.clusters WHERE cluster = "+quote(s.cfg.Cluster)+" ORDER BY shard_num, replica_num")
	if err != nil {
		return s.wrap("list servers of cluster "+s.cfg.Cluster, err)
	}
	var addrs []string
	for rows.Next() {
		var (
			host string
			port uint16
		)
		if err := rows.Scan(&host, &port); err != nil {
			rows.Close()
			return s.wrap("list servers of cluster "+s.cfg.Cluster, err)
		}
		addrs = append(addrs, net.JoinHostPort(host, strconv.Itoa(int(port))))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return s.wrap("list servers of cluster "+s.cfg.Cluster, err)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("clickhouse.cluster: the server at %v knows no cluster %q (remote_servers)", s.cfg.Addresses, s.cfg.Cluster)
	}
	var shards []shard
	for _, a := range addrs {
		cfg := s.cfg
		cfg.Addresses = []string{a}
		conn, err := ch.Open(connOptions(cfg))
		if err != nil {
			for _, sh := range shards {
				sh.conn.Close()
			}
			return fmt.Errorf("clickhouse: connect to %s of cluster %s: %w", a, s.cfg.Cluster, err)
		}
		shards = append(shards, shard{addr: a, conn: conn, t: localTables(s.cfg.Database)})
	}
	s.cluster.mu.Lock()
	old := s.cluster.shards
	s.cluster.shards = shards
	s.cluster.mu.Unlock()
	for _, sh := range old {
		sh.conn.Close()
	}
	return nil
}

// distributedSchema creates the Distributed table over each _local
// table, by the migration that creates the _local table.
func distributedSchema(t, lt tables, cluster string) map[uint32][]string {
	out := map[uint32][]string{}
	for v, pairs := range map[uint32][][2]string{
		1: {
			{t.series, lt.series}, {t.samples, lt.samples}, {t.histograms, lt.histograms},
			{t.metadata, lt.metadata}, {t.logs, lt.logs}, {t.spans, lt.spans}, {t.events, lt.events},
		},
		3: {{t.traceIndex, lt.traceIndex}, {t.operations, lt.operations}},
	} {
		for _, p := range pairs {
			_, local, _ := strings.Cut(p[1], ".")
			_, name, _ := strings.Cut(p[0], ".")
			out[v] = append(out[v], fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s AS %s ENGINE = Distributed(%s, %s, %s, %s)",
				p[0], p[1], quoteIdent(cluster), t.db, local, shardingKeys[unquoteIdent(name)]))
		}
	}
	return out
}

func (c *clusterState) close() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var first error
	for _, sh := range c.shards {
		if err := sh.conn.Close(); err != nil && first == nil {
			first = err
		}
	}
	c.shards = nil
	return first
}
