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
