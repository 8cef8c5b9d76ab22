package alerting

import (
	"context"
	"testing"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage/embedded"
)

func benchStore(t testing.TB) *embedded.Store {
	t.Helper()
	cfg := embedded.DefaultConfig()
	cfg.DataDir = ""
	cfg.OutOfOrderWindow = model.Duration(0)
	return storetest.EmbeddedWith(t, cfg)
}

// TestRunSmall runs the benchmark code on a small scale so that it
// keeps working; the numbers come from BenchmarkAlerting.
func TestRunSmall(t *testing.T) {
	res, err := Run(context.Background(), Options{
		Store: benchStore(t), Rules: 100, Series: 1000, RulesPerGroup: 25, Rounds: 2, Trials: 3,
		Dir: t.TempDir(), Logger: testutil.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rounds) != 2 || len(res.Latencies) != 3 || res.Groups != 4 || res.FiringAlerts != 20 {
		t.Fatalf("unexpected result %+v", res)
	}
	t.Log(res)
}

// BenchmarkAlerting measures one evaluation round of 1,000 alerting rules
// over 100,000 series on the embedded store, and the latency from a
// threshold crossing to the webhook:
//
//	go test -run '^$' -bench BenchmarkAlerting -benchtime 1x ./bench/alerting/
func BenchmarkAlerting(b *testing.B) {
	for b.Loop() {
		res, err := Run(context.Background(), Options{Store: benchStore(b), Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.MedianRound.Seconds(), "round-s")
		b.ReportMetric(res.MedianLatency.Seconds(), "latency-median-s")
		b.ReportMetric(res.P90.Seconds(), "latency-p90-s")
		b.Log(res)
	}
}
