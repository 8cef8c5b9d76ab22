package ingest

import (
	"context"
	"fmt"

	ch "github.com/ClickHouse/clickhouse-go/v2"
)

// ClickHouseDiskBytes returns an Options.DiskBytes for a ClickHouse
// store in database at addresses (native protocol): it merges every table
// of the database (OPTIMIZE ... FINAL, the steady state ClickHouse reaches
// in the background) and sums the bytes on disk of its active parts.
func ClickHouseDiskBytes(addresses []string, database, username, password string) func(context.Context) (int64, error) {
	return func(ctx context.Context) (int64, error) {
		conn, err := ch.Open(&ch.Options{
			Protocol: ch.Native,
			Addr:     addresses,
			Auth:     ch.Auth{Database: database, Username: username, Password: password},
		})
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		rows, err := conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ? AND engine LIKE '%MergeTree'", database)
		if err != nil {
			return 0, err
		}
		var tables []string
		for rows.Next() {
			var name string
			if err := rows.Scan(&name); err != nil {
				rows.Close()
				return 0, err
			}
			tables = append(tables, name)
		}
		rows.Close()
		for _, t := range tables {
			if err := conn.Exec(ctx, fmt.Sprintf("OPTIMIZE TABLE `%s`.`%s` FINAL", database, t)); err != nil {
				return 0, fmt.Errorf("optimize %s: %w", t, err)
			}
		}
		var bytes uint64
		if err := conn.QueryRow(ctx, "SELECT sum(bytes_on_disk) FROM system.parts WHERE database = ? AND active", database).Scan(&bytes); err != nil {
			return 0, err
		}
		return int64(bytes), nil
	}
}

// ClickHouseInserts returns an Options.Inserts for a ClickHouse server:
// the INSERT queries it has run since it started (system.events), which
// the benchmark reads before and after a run to report inserts per
// second. The server's own count, so it includes every writer's inserts.
func ClickHouseInserts(addresses []string, username, password string) func(context.Context) (int64, error) {
	return func(ctx context.Context) (int64, error) {
		conn, err := ch.Open(&ch.Options{Protocol: ch.Native, Addr: addresses, Auth: ch.Auth{Username: username, Password: password}})
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT value FROM system.events WHERE event = 'InsertQuery'").Scan(&n); err != nil {
			return 0, fmt.Errorf("count inserts: %w", err)
		}
		return int64(n), nil
	}
}
