// Package traces measures the trace reads of the Jaeger-compatible API on
// a store holding many spans: a trace by its id, and a search by service
// and time range followed by reading the traces found, as GET
// /api/traces does.
package traces

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// Store is what the benchmark writes and reads.
type Store interface {
	AppendSpans(ctx context.Context, spans []storage.Span) error
	QuerySpans(ctx context.Context, q storage.SpanQuery) ([]storage.Span, error)
	TraceIDs(ctx context.Context, q storage.SpanQuery) ([]string, error)
}

// Dataset is Spans spans in traces of SpansPerTrace spans over Services
// services, starting evenly over Span of time that ends at End.
type Dataset struct {
	Spans, SpansPerTrace, Services int
	Span                           time.Duration
	End                            time.Time
}

// DefaultDataset is a million spans in 100,000 traces of 10 spans over 20
// services during the day before end.
func DefaultDataset(end time.Time) Dataset {
	return Dataset{Spans: 1_000_000, SpansPerTrace: 10, Services: 20, Span: 24 * time.Hour, End: end.Truncate(time.Second)}
}

// Traces is the number of traces.
func (d Dataset) Traces() int { return d.Spans / d.SpansPerTrace }

// TraceID is the id of trace i.
func (d Dataset) TraceID(i int) string {
	return fmt.Sprintf("%016x%016x", uint64(i)*0x9e3779b97f4a7c15, uint64(i))
}

func (d Dataset) start(i int) time.Time {
	return d.End.Add(-d.Span).Add(time.Duration(int64(d.Span) / int64(d.Traces()) * int64(i)))
}

// Load writes the dataset in batches of whole traces.
func (d Dataset) Load(ctx context.Context, s Store) error {
	const batchTraces = 1000
	rng := rand.New(rand.NewPCG(1, 2))
	batch := make([]storage.Span, 0, batchTraces*d.SpansPerTrace)
	for i := range d.Traces() {
		start := d.start(i)
		root := rng.IntN(d.Services)
		parent := ""
		for j := range d.SpansPerTrace {
			svc := (root + j*j) % d.Services
			id := fmt.Sprintf("%016x", uint64(i)<<8|uint64(j)+1)
			st := start.Add(time.Duration(j) * time.Millisecond)
			batch = append(batch, storage.Span{
				TraceID: d.TraceID(i), SpanID: id, ParentSpanID: parent,
				Name: fmt.Sprintf("op-%d", j%4), Kind: "Server", ServiceName: fmt.Sprintf("svc-%02d", svc), ScopeName: "bench",
				StartTime: st, EndTime: st.Add(time.Duration(1+rng.IntN(500)) * time.Millisecond), StatusCode: "Unset",
				Attributes:         map[string]string{"http.route": fmt.Sprintf("/r/%d", j%7), "http.response.status_code": "200"},
				AttributeTypes:     map[string]storage.ValueType{"http.response.status_code": storage.TypeInt},
				ResourceAttributes: map[string]string{"service.name": fmt.Sprintf("svc-%02d", svc), "host.name": fmt.Sprintf("node-%d", svc%5)},
			})
			parent = id
		}
		if len(batch) >= batchTraces*d.SpansPerTrace || i == d.Traces()-1 {
			if err := s.AppendSpans(ctx, batch); err != nil {
				return fmt.Errorf("load traces up to %d: %w", i, err)
			}
			batch = batch[:0]
		}
	}
	return nil
}

// Result is the latencies of one kind of read.
type Result struct {
	Name      string
	Durations []time.Duration
	// Spans is how many spans the last read returned.
	Spans int
	// Wall is how long the clients took together to make every read of
	// this kind, from the first one's start to the last one's end; 0 for
	// a part of another kind of read.
	Wall time.Duration
}

// Median of the durations.
func (r Result) Median() time.Duration {
	d := slices.Clone(r.Durations)
	slices.Sort(d)
	if len(d) == 0 {
		return 0
	}
	return d[len(d)/2]
}

// PerSecond is the reads of this kind finished per second of Wall (0
// without a Wall).
func (r Result) PerSecond() float64 {
	if r.Wall <= 0 {
		return 0
	}
	return float64(len(r.Durations)) / r.Wall.Seconds()
}

// Run reads n traces by id (chosen at random) and makes n searches (a
// random service, a one-hour window, 20 traces, their spans read) in each
// of clients concurrent clients, as Grafana panels and Jaeger UI users
// read at once: first every client's reads by id, then every client's
// searches, each client after a warm-up read that is not counted. Each
// client draws its own reads; with clients = 1 the reads are those of one
// user.
func (d Dataset) Run(ctx context.Context, s Store, n, clients int) ([]Result, error) {
	if clients < 1 {
		return nil, fmt.Errorf("clients %d: want at least 1", clients)
	}
	if _, err := s.QuerySpans(ctx, storage.SpanQuery{TraceID: d.TraceID(0), Limit: 10000}); err != nil {
		return nil, err
	}
	byID := Result{Name: "trace by id"}
	search := Result{Name: "service + 1 h search, 20 traces"}
	find := Result{Name: "  of which: find the 20 ids"}
	perClient := make([][3]Result, clients)
	if err := runClients(ctx, clients, &byID.Wall, func(ctx context.Context, c int) error {
		return d.readByID(ctx, s, rand.New(rand.NewPCG(3, 4+uint64(c))), n, &perClient[c][0])
	}); err != nil {
		return nil, err
	}
	if err := runClients(ctx, clients, &search.Wall, func(ctx context.Context, c int) error {
		return d.search(ctx, s, rand.New(rand.NewPCG(5, 6+uint64(c))), n, &perClient[c][1], &perClient[c][2])
	}); err != nil {
		return nil, err
	}
	for _, r := range perClient {
		byID.Durations = append(byID.Durations, r[0].Durations...)
		search.Durations = append(search.Durations, r[1].Durations...)
		find.Durations = append(find.Durations, r[2].Durations...)
		byID.Spans, search.Spans, find.Spans = r[0].Spans, r[1].Spans, r[2].Spans
	}
	return []Result{byID, search, find}, nil
}

// runClients runs read in clients goroutines, waits for them all and sets
// wall to how long they took; the first error cancels the others.
func runClients(ctx context.Context, clients int, wall *time.Duration, read func(ctx context.Context, client int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	t0 := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := read(ctx, c); err != nil {
				errs <- fmt.Errorf("client %d: %w", c, err)
				cancel()
			}
		}()
	}
	wg.Wait()
	*wall = time.Since(t0)
	close(errs)
	return <-errs // nil when no client failed
}

// readByID reads n random traces by id into r.
func (d Dataset) readByID(ctx context.Context, s Store, rng *rand.Rand, n int, r *Result) error {
	for range n {
		id := d.TraceID(rng.IntN(d.Traces()))
		t0 := time.Now()
		spans, err := s.QuerySpans(ctx, storage.SpanQuery{TraceID: id, Limit: 10000})
		if err != nil {
			return err
		}
		r.Durations = append(r.Durations, time.Since(t0))
		if len(spans) != d.SpansPerTrace {
			return fmt.Errorf("trace %s: %d spans, want %d", id, len(spans), d.SpansPerTrace)
		}
		r.Spans = len(spans)
	}
	return nil
}

// search makes n random searches into search, and the time they took to
// find the ids into find, after a warm-up search.
func (d Dataset) search(ctx context.Context, s Store, rng *rand.Rand, n int, search, find *Result) error {
	for i := range n + 1 {
		end := d.End.Add(-time.Duration(rng.Int64N(int64(d.Span - time.Hour))))
		q := storage.SpanQuery{ServiceName: fmt.Sprintf("svc-%02d", rng.IntN(d.Services)), Start: end.Add(-time.Hour), End: end, Limit: 20}
		t0 := time.Now()
		ids, err := s.TraceIDs(ctx, q)
		if err != nil {
			return err
		}
		found := time.Since(t0)
		spans, err := s.QuerySpans(ctx, storage.SpanQuery{TraceIDs: ids, Limit: 100_000})
		if err != nil {
			return err
		}
		if i == 0 {
			continue // warm-up
		}
		search.Durations = append(search.Durations, time.Since(t0))
		find.Durations = append(find.Durations, found)
		if len(ids) == 0 || len(ids) > 20 || len(spans) != len(ids)*d.SpansPerTrace {
			return fmt.Errorf("search %+v: %d traces, %d spans; want 1 to 20 traces of %d spans", q, len(ids), len(spans), d.SpansPerTrace)
		}
		search.Spans, find.Spans = len(spans), len(spans)
	}
	return nil
}
