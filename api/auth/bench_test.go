package auth

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage"
)

// BenchmarkAuthenticateUnderAttack measures a good token's authentication
// while 8 clients send made-up token ids as fast as they can, over an
// embedded store holding 50,000 other events (audit records, incidents),
// as a server that has run for a while does. docs/BENCHMARKS.md.
func BenchmarkAuthenticateUnderAttack(b *testing.B) {
	for _, attackers := range []int{0, 8} {
		b.Run(fmt.Sprintf("attackers=%d", attackers), func(b *testing.B) {
			ctx := context.Background()
			store := storetest.Embedded(b)
			events := &countingEvents{EventStore: store}
			s := NewTokenStore(events, nil)
			// The token was made a day ago; the other events came since.
			s.now = func() time.Time { return time.Now().Add(-24 * time.Hour) }
			good, _, err := s.Create(ctx, "grafana", []Scope{ScopeRead}, 0, "")
			if err != nil {
				b.Fatal(err)
			}
			s.now = time.Now
			fillEvents(b, store, 50_000)
			if _, err := s.Authenticate(ctx, good); err != nil {
				b.Fatal(err)
			}

			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range attackers {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						s.Authenticate(ctx, fmt.Sprintf("aiops_%08x_secret", rand.Uint32()))
					}
				})
			}
			lat := make([]time.Duration, 0, b.N)
			readsBefore, began := events.reads.Load(), time.Now()
			b.ResetTimer()
			for b.Loop() {
				t0 := time.Now()
				if _, err := s.Authenticate(ctx, good); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
			reads := float64(events.reads.Load()-readsBefore) / time.Since(began).Seconds()
			slices.Sort(lat)
			µs := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
			b.ReportMetric(µs(lat[len(lat)/2]), "p50-µs")
			b.ReportMetric(µs(lat[len(lat)*99/100]), "p99-µs")
			b.ReportMetric(µs(lat[len(lat)-1]), "max-µs")
			b.ReportMetric(reads, "store-reads/s")
		})
	}
}

func fillEvents(b *testing.B, store storage.EventStore, n int) {
	b.Helper()
	base := time.Now().Add(-time.Hour)
	batch := make([]storage.Event, 0, 1000)
	for i := range n {
		batch = append(batch, storage.Event{
			ID: fmt.Sprintf("audit-%08d", i), Time: base.Add(time.Duration(i) * time.Millisecond),
			Kind: "audit", Subject: "someone", Labels: map[string]string{"path": "/api/v1/incidents/1/ack"},
			Payload: []byte(`{"method":"POST","status":200}`),
		})
		if len(batch) == cap(batch) {
			if err := store.AppendEvents(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}
