package incident

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/prometheus/alertmanager/alert"
)

// BenchmarkHandleGroup measures one alert group opening an incident and
// the same group resolving, on the embedded store (two appends).
func BenchmarkHandleGroup(b *testing.B) {
	store := openEmbedded(b, b.TempDir())
	m, err := New(context.Background(), testConfig(), Deps{Events: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		ls := model.LabelSet{"alertname": "Bench", "instance": model.LabelValue(fmt.Sprint(i)), "job": "api"}
		key := fmt.Sprintf("g%d", i)
		if err := m.HandleGroup(context.Background(), Group{Key: key, Receiver: "r", Alerts: []*alert.Alert{mkAlert(ls, t0, time.Time{})}}); err != nil {
			b.Fatal(err)
		}
		if err := m.HandleGroup(context.Background(), Group{Key: key, Receiver: "r", Alerts: []*alert.Alert{mkAlert(ls, t0, time.Now())}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRebuild measures New over a store holding 2,000 incidents of
// 6 events each (12,000 events): the start-up cost of the projection.
func BenchmarkRebuild(b *testing.B) {
	store := openEmbedded(b, b.TempDir())
	ctx := context.Background()
	m, err := New(ctx, testConfig(), Deps{Events: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 2000 {
		ls := model.LabelSet{"alertname": "Bench", "instance": model.LabelValue(fmt.Sprint(i)), "job": "api"}
		key := fmt.Sprintf("g%d", i)
		if err := m.HandleGroup(ctx, Group{Key: key, Receiver: "r", Alerts: []*alert.Alert{mkAlert(ls, t0, time.Time{})}}); err != nil {
			b.Fatal(err)
		}
		incs, _ := m.List(Query{Limit: 1})
		id := incs[0].ID
		for _, f := range []func() (Incident, error){
			func() (Incident, error) { return m.Acknowledge(ctx, id, Action{Actor: "a"}) },
			func() (Incident, error) { return m.AddNote(ctx, id, "note", Action{Actor: "a"}) },
			func() (Incident, error) { return m.Resolve(ctx, id, Action{Actor: "a"}) },
		} {
			if _, err := f(); err != nil {
				b.Fatal(err)
			}
		}
		if err := m.HandleGroup(ctx, Group{Key: key, Receiver: "r", Alerts: []*alert.Alert{mkAlert(ls, t0, time.Now())}}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		m2, err := New(ctx, testConfig(), Deps{Events: store, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		if incs, _ := m2.List(Query{Limit: 5000}); len(incs) != 2000 {
			b.Fatalf("%d incidents", len(incs))
		}
	}
}

// BenchmarkLargeGroup measures one notification of a group of n firing
// alerts opening an incident, and the same group with every alert
// resolved, on the embedded store: with the default incidents.max_alerts
// (1000) and with no limit (every alert recorded, 2n events). Each
// iteration uses a new group.
func BenchmarkLargeGroup(b *testing.B) {
	for _, limit := range []int{DefaultConfig().MaxAlerts, 0} {
		for _, n := range []int{8_000, 100_000} {
			b.Run(fmt.Sprintf("max_alerts=%d/alerts=%d", limit, n), func(b *testing.B) {
				cfg := testConfig()
				cfg.MaxAlerts = limit
				store := openEmbedded(b, b.TempDir())
				m, err := New(context.Background(), cfg, Deps{Events: store, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				firing := stormAlerts(n, t0, time.Time{})
				resolved := stormAlerts(n, t0, t0.Add(24*time.Hour))
				b.ResetTimer()
				for i := range b.N {
					key := fmt.Sprintf("storm%d", i)
					if err := m.HandleGroup(ctx, Group{Key: key, Receiver: "r", Alerts: firing}); err != nil {
						b.Fatal(err)
					}
					if err := m.HandleGroup(ctx, Group{Key: key, Receiver: "r", Alerts: resolved}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkAcknowledgeDuringStorm measures an acknowledgement of one
// incident while groups of 100,000 alerts arrive without pause (default
// incidents.max_alerts): how long a person waits behind a storm.
func BenchmarkAcknowledgeDuringStorm(b *testing.B) {
	store := openEmbedded(b, b.TempDir())
	m, err := New(context.Background(), testConfig(), Deps{Events: store, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if err := m.HandleGroup(ctx, Group{Key: "other", Receiver: "r", Alerts: []*alert.Alert{mkAlert(errRate, t0, time.Time{})}}); err != nil {
		b.Fatal(err)
	}
	incs, _ := m.List(Query{})
	id := incs[0].ID
	firing := stormAlerts(100_000, t0, time.Time{})
	resolved := stormAlerts(100_000, t0, t0.Add(24*time.Hour))
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			key := fmt.Sprintf("storm%d", i)
			m.HandleGroup(ctx, Group{Key: key, Receiver: "r", Alerts: firing})
			m.HandleGroup(ctx, Group{Key: key, Receiver: "r", Alerts: resolved})
		}
	}()
	var worst, total time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		var err error
		if i%2 == 0 {
			_, err = m.Acknowledge(ctx, id, Action{Actor: "alice"})
		} else {
			_, err = m.AddNote(ctx, id, "looking", Action{Actor: "alice"})
		}
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		total += took
		worst = max(worst, took)
		time.Sleep(10 * time.Millisecond) // a person, not a loop
	}
	b.StopTimer()
	close(stop)
	<-done
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/ack")
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
}
