package clickhouse

import (
	"context"
	"fmt"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// codeCannotAssignOptimize is the server's answer when OPTIMIZE has
// nothing it may do now (background merges hold the parts).
const codeCannotAssignOptimize = 388

// Merge merges the parts of every metric table, the spans and their trace
// index into one per partition
// (OPTIMIZE … FINAL), the state ClickHouse's background merges work
// towards. While background merges hold parts, OPTIMIZE would silently do
// nothing; Merge waits for them and tries again until ctx is done. It
// rewrites whole tables: for benchmarks and maintenance, not for the
// write path.
func (s *Store) Merge(ctx context.Context) error {
	if err := s.whenConnected(); err != nil {
		return err
	}
	ctx = ch.Context(ctx, ch.WithSettings(ch.Settings{"optimize_throw_if_noop": 1}))
	for _, t := range []string{s.t.series, s.t.samples, s.t.histograms, s.t.spans, s.t.traceIndex} {
		for _, sh := range s.shardsOf() {
			table := s.localOf(t, sh.t)
			parts, err := s.shardPartitions(ctx, sh.conn, table)
			if err != nil {
				return err
			}
			for _, p := range parts {
				if err := s.mergePartition(ctx, sh.conn, table, p); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (s *Store) mergePartition(ctx context.Context, conn driver.Conn, table string, partition int64) error {
	for {
		err := conn.Exec(ctx, fmt.Sprintf("OPTIMIZE TABLE %s PARTITION %d FINAL", table, partition))
		if err == nil || !isException(err, codeCannotAssignOptimize) {
			return s.wrap(fmt.Sprintf("merge %s partition %d", table, partition), err)
		}
		select {
		case <-ctx.Done():
			return s.wrap("merge "+table, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
