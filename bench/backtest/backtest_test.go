package backtest

import (
	"context"
	"math"
	"strings"
	"testing"
)

// TestForecasterBeatsPredictLinear runs a small backtest through the real
// TSDB and PromQL engine and checks the project's target: at most half of
// predict_linear's median error, and no worse recall of "fills in 24h".
func TestForecasterBeatsPredictLinear(t *testing.T) {
	rep, err := Run(context.Background(), Config{Seeds: 3, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var ours, lin Row
	for _, r := range rep.Rows {
		if r.Scenario == "all" && r.Forecaster == "aiops" {
			ours = r
		}
		if r.Scenario == "all" && r.Forecaster == "predict_linear" {
			lin = r
		}
	}
	if ours.N == 0 || ours.N != lin.N {
		t.Fatalf("want equal, non-zero evaluation counts, got %d and %d", ours.N, lin.N)
	}
	if !(ours.MdAPE <= lin.MdAPE/2) {
		t.Errorf("MdAPE: ours %.2f%%, predict_linear %.2f%%: want at most half", ours.MdAPE, lin.MdAPE)
	}
	if math.IsNaN(ours.Recall) || ours.Recall < lin.Recall {
		t.Errorf("recall: ours %.2f, predict_linear %.2f", ours.Recall, lin.Recall)
	}
	var b strings.Builder
	if err := rep.Print(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "predict_linear") {
		t.Fatalf("report lacks predict_linear rows:\n%s", b.String())
	}
	t.Log("\n" + b.String())
}
