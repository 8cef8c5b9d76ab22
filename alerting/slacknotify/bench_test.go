package slacknotify

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/notify"
	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/internal/slackstandin"
	tu "github.com/aiops-dev/aiops/internal/testutil"
)

// BenchmarkIncidentToSlack measures, against the Slack stand-in, the time
// from an incident opening (the Manager's commit) to its message posted,
// and from its acknowledgement to the message updated: the notifier's
// own latency, journal syncs included, without Slack's network.
func BenchmarkIncidentToSlack(b *testing.B) {
	sl := slackstandin.New(token)
	defer sl.Stop()
	e := newBenchEnv(b, sl)
	ctx := context.Background()
	var posted, updated []time.Duration
	b.ResetTimer()
	for i := range b.N {
		group := fmt.Sprintf("bench-%d", i)
		start := time.Now()
		id := e.fire(b, group)
		waitUntil(b, "posted "+id, func() bool { _, ok := e.n.MessageOf(id); return ok })
		posted = append(posted, time.Since(start))

		start = time.Now()
		if _, err := e.mg.Acknowledge(ctx, id, incident.Action{Actor: "bench"}); err != nil {
			b.Fatal(err)
		}
		inc, _ := e.mg.Get(id)
		waitUntil(b, fmt.Sprintf("updated %s to version %d", id, inc.Version), func() bool { m, _ := e.n.MessageOf(id); return m.Version >= inc.Version })
		updated = append(updated, time.Since(start))
	}
	b.StopTimer()
	report(b, "posted", posted)
	report(b, "updated", updated)
}

func report(b *testing.B, name string, d []time.Duration) {
	slices.Sort(d)
	q := func(p float64) float64 { return float64(d[int(p*float64(len(d)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), name+"-p50-ms")
	b.ReportMetric(q(0.99), name+"-p99-ms")
}

func waitUntil(b *testing.B, what string, cond func() bool) {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("%s: not reached within 30s", what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

type benchEnv struct {
	mg *incident.Manager
	n  *Notifier
}

func newBenchEnv(b *testing.B, sl *slackstandin.Server) *benchEnv {
	b.Helper()
	e := newEnvOn(b, sl)
	n, err := New(e.cfg, Deps{
		Incidents: e.mg, Feed: e.mg.Feed(incident.FeedOptions{Logger: tu.Logger(b)}), Head: e.mg.FeedHead, BotToken: token, Logger: tu.Logger(b),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := n.Run(ctx)
		if err != nil {
			b.Errorf("Run: %v", err)
		}
		done <- err
	}()
	b.Cleanup(func() { cancel(); <-done })
	return &benchEnv{mg: e.mg, n: n}
}

func (e *benchEnv) fire(b *testing.B, group string) string {
	now := time.Now()
	a := alert.New(model.Alert{
		Labels:   model.LabelSet{"alertname": "BenchAlert", "group": model.LabelValue(group), "severity": "critical"},
		StartsAt: now, EndsAt: now.Add(time.Hour),
	}, now, false)
	ctx := notify.WithGroupKey(context.Background(), group)
	ctx = notify.WithReceiverName(ctx, "oncall")
	ctx = notify.WithGroupLabels(ctx, model.LabelSet{"group": model.LabelValue(group)})
	if v := e.mg.Notify(ctx, a); v.Err() != nil {
		b.Fatal(v.Err())
	}
	incs, _ := e.mg.List(incident.Query{Limit: 1})
	return incs[0].ID
}
