package collector

import (
	"context"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aiops-dev/aiops/collector/storeexporter"
	"github.com/aiops-dev/aiops/storage"
	"github.com/aiops-dev/aiops/storage/clickhouse"
)

// openClickHouse returns how the clickhouse exporter opens its store: the
// storage/clickhouse defaults with the exporter's addresses and
// credentials.
func openClickHouse(logger *slog.Logger, _ prometheus.Registerer) storeexporter.OpenFunc {
	return func(ctx context.Context, cfg storeexporter.ClickHouseConfig) (storage.Store, error) {
		c := clickhouse.DefaultConfig()
		c.Addresses = cfg.Addresses
		c.Database = cfg.Database
		if cfg.Username != "" {
			c.Username = cfg.Username
		}
		c.Password = clickhouse.Secret(cfg.Password)
		c.WAL.Mode, c.WAL.Dir = clickhouse.WALOff, cfg.WALDir
		if cfg.WALDir != "" {
			c.WAL.Mode = clickhouse.WALOn
		}
		return clickhouse.Open(ctx, c, logger.With("component", "clickhouse-exporter"))
	}
}
