package promapi

import (
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/promqltest"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// TestPromQLConformance runs Prometheus's own PromQL test suite with the
// engine options the API uses, on a fresh embedded store for every
// storage the suite asks for.
//
// The suite loads each series' whole history before the next series, up
// to ~2.8 h apart (at_modifier.test), which the embedded store takes only
// as out-of-order samples; the default 2 h window refuses them as "too old
// sample". A wider window also sends those samples through the TSDB's
// out-of-order head, so its query path is checked as well.
func TestPromQLConformance(t *testing.T) {
	engine := promql.NewEngine(EngineOpts(DefaultConfig(), nil, nil))
	t.Cleanup(func() { engine.Close() })
	cfg := embedded.DefaultConfig()
	cfg.DataDir = "" // a fresh one for each test
	cfg.OutOfOrderWindow = model.Duration(7 * 24 * time.Hour)
	promqltest.RunBuiltinTestsWithStorage(t, engine, func(t testing.TB) promstorage.Storage {
		return storetest.EmbeddedWith(t, cfg)
	})
}
