package traces

import (
	"context"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage/embedded"
)

// TestRunSmall runs the benchmark on a small dataset: every read finds
// what the dataset holds (Run checks the counts).
func TestRunSmall(t *testing.T) {
	end := testutil.Epoch
	s := storetest.Embedded(t, embedded.WithClock(testutil.NewClock(end).Now))
	d := Dataset{Spans: 20_000, SpansPerTrace: 10, Services: 4, Span: 6 * time.Hour, End: end}
	if err := d.Load(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	res, err := d.Run(context.Background(), s, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 || len(res[0].Durations) != 5 || len(res[1].Durations) != 5 || res[0].Spans != 10 || res[1].Spans == 0 {
		t.Errorf("results %+v", res)
	}
}
