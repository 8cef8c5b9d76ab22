package collector

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/processor/processortest"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/aiops-dev/aiops/collector/internal/obs"
	"github.com/aiops-dev/aiops/collector/internal/outcome"
	"github.com/aiops-dev/aiops/internal/testutil"
)

// TestIngressJudgesLogAndSpanTimesByItsClock: log records and spans from
// clients whose clocks are hours off are refused, as data points are,
// with the collector's clock the reference. Found from outside: aiops
// serve acknowledged log records and spans from clients 5 and 30 hours
// ahead or behind (outside the windows their arrival puts them in; from
// the future they outlive retention, and older than the retention they
// are deleted within the hour), while it refused such data points.
func TestIngressJudgesLogAndSpanTimesByItsClock(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	m, err := obs.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	clock := testutil.NewClock(testutil.Epoch)
	f := newIngressFactory(ingressDeps{metrics: m, logger: testutil.Logger(t), now: clock.Now, health: &health{}})
	cfg := f.CreateDefaultConfig()
	now := clock.Now()
	times := []time.Time{now.Add(-30 * time.Hour), now.Add(-time.Hour), now, now.Add(5 * time.Minute), now.Add(30 * time.Hour)}

	logSink := new(consumertest.LogsSink)
	lp, err := f.CreateLogs(ctx, processortest.NewNopSettings(f.Type()), cfg, logSink)
	if err != nil {
		t.Fatal(err)
	}
	ld := plog.NewLogs()
	lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	for _, ts := range times {
		lrs.AppendEmpty().SetTimestamp(pcommon.NewTimestampFromTime(ts))
	}
	// No timestamp: the observed time the ingress stamps (now) counts.
	lrs.AppendEmpty()
	octx, out := outcome.NewContext(ctx)
	if err := lp.ConsumeLogs(octx, ld); err != nil {
		t.Fatalf("logs: %v", err)
	}
	if got := logSink.LogRecordCount(); got != 4 {
		t.Errorf("%d log records passed, want 4 (1h behind, now, 5m ahead, no timestamp)", got)
	}
	if r := out.Refused(); r.Points != 2 || !strings.Contains(r.String(), "log record: timestamp 30h0m0s behind the collector's clock") || !strings.Contains(r.String(), "1 log record") {
		t.Errorf("logs refused: %d, %s", r.Points, r)
	}

	spanSink := new(consumertest.TracesSink)
	tp, err := f.CreateTraces(ctx, processortest.NewNopSettings(f.Type()), cfg, spanSink)
	if err != nil {
		t.Fatal(err)
	}
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	for i, ts := range times {
		s := ss.AppendEmpty()
		s.SetTraceID(pcommon.TraceID{1, byte(i)})
		s.SetSpanID(pcommon.SpanID{1, byte(i)})
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(ts))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(ts.Add(time.Millisecond)))
	}
	octx, out = outcome.NewContext(ctx)
	if err := tp.ConsumeTraces(octx, td); err != nil {
		t.Fatalf("traces: %v", err)
	}
	if got := spanSink.SpanCount(); got != 3 {
		t.Errorf("%d spans passed, want 3", got)
	}
	if r := out.Refused(); r.Points != 2 || !strings.Contains(r.String(), "span: timestamp 30h0m0s ahead of the collector's clock, limit max_future 10m0s") {
		t.Errorf("spans refused: %d, %s", r.Points, r)
	}
	for _, reason := range []string{"too_far_in_future", "too_far_in_past"} {
		for _, signal := range []string{obs.SignalLogs, obs.SignalSpans} {
			if n := metricValue(t, reg, "aiops_collector_refused_items_total", map[string]string{"signal": signal, "reason": reason}); n != 1 {
				t.Errorf("refused{signal=%s,reason=%s} = %v, want 1", signal, reason, n)
			}
		}
	}

	// A request with nothing left is refused whole, as InvalidArgument.
	td = ptrace.NewTraces()
	s := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetTraceID(pcommon.TraceID{2})
	s.SetSpanID(pcommon.SpanID{2})
	s.SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(-48 * time.Hour)))
	err = tp.ConsumeTraces(ctx, td)
	if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "all 1 spans refused: too_far_in_past") {
		t.Errorf("a request of one span 48h old: %v", err)
	}
}
