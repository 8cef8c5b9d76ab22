package traces

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
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
	for _, clients := range []int{1, 4} {
		res, err := d.Run(context.Background(), s, 5, clients)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 3 || len(res[0].Durations) != 5*clients || len(res[1].Durations) != 5*clients || len(res[2].Durations) != 5*clients ||
			res[0].Spans != 10 || res[1].Spans == 0 || res[0].PerSecond() <= 0 || res[1].PerSecond() <= 0 || res[2].PerSecond() != 0 {
			t.Errorf("%d clients: results %+v", clients, res)
		}
	}
	if _, err := d.Run(context.Background(), s, 5, 0); err == nil {
		t.Error("0 clients: no error")
	}
}

// failingStore fails every search after the first few, as a store going
// away mid-run would.
type failingStore struct {
	Store
	mu       sync.Mutex
	searches int
}

func (f *failingStore) TraceIDs(ctx context.Context, q storage.SpanQuery) ([]string, error) {
	f.mu.Lock()
	f.searches++
	n := f.searches
	f.mu.Unlock()
	if n > 6 {
		return nil, errors.New("store closed")
	}
	return f.Store.TraceIDs(ctx, q)
}

// TestRunReportsClientError: one client's failure ends the run with its
// error rather than a partial result.
func TestRunReportsClientError(t *testing.T) {
	end := testutil.Epoch
	s := storetest.Embedded(t, embedded.WithClock(testutil.NewClock(end).Now))
	d := Dataset{Spans: 2_000, SpansPerTrace: 10, Services: 4, Span: 6 * time.Hour, End: end}
	if err := d.Load(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	_, err := d.Run(context.Background(), &failingStore{Store: s}, 5, 3)
	if err == nil || !strings.Contains(err.Error(), "store closed") || !strings.Contains(err.Error(), "client ") {
		t.Fatalf("err = %v, want a client's \"store closed\"", err)
	}
}
