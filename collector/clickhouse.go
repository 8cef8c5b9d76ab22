package collector

import (
	"context"
	"errors"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/aiops-dev/aiops/collector/storeexporter"
	"github.com/aiops-dev/aiops/storage"
)

// openClickHouse returns how the clickhouse exporter opens its store.
func openClickHouse(logger *slog.Logger, reg prometheus.Registerer) storeexporter.OpenFunc {
	return func(ctx context.Context, cfg storeexporter.ClickHouseConfig) (storage.Store, error) {
		return nil, errors.New("storage/clickhouse is not available yet")
	}
}
