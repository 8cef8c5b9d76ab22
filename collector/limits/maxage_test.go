package limits

import (
	"math"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/aiops-dev/aiops/internal/testutil"
)

// TestMaxAgeBeforeUnixEpoch: a max_age reaching before 1970 admits every
// time. Found from outside: with collector.limits.max_age: 876000h (to
// load history) aiops serve refused data 2000h old as "2000h behind
// the collector's clock, limit max_age 876000h": the oldest admitted
// time, negative in Unix nanoseconds, wrapped to the largest OTLP
// timestamp and every point was older than it.
func TestMaxAgeBeforeUnixEpoch(t *testing.T) {
	now := testutil.Epoch
	c := DefaultConfig()
	c.MaxAge = 876000 * time.Hour
	old := pcommon.NewTimestampFromTime(now.Add(-2000 * time.Hour))

	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("x")
	m.SetEmptyGauge().DataPoints().AppendEmpty().SetTimestamp(old)
	if r := c.Admit(md, now); r.Points != 0 {
		t.Errorf("data point 2000h old refused: %s", r)
	}
	ld := plog.NewLogs()
	ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().SetTimestamp(old)
	if r := c.AdmitLogs(ld, now); r.Points != 0 {
		t.Errorf("log record 2000h old refused: %s", r)
	}
	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetStartTimestamp(old)
	if r := c.AdmitSpans(td, now); r.Points != 0 {
		t.Errorf("span 2000h old refused: %s", r)
	}
}

// TestFarFutureMessage: a timestamp past 2262 is reported ahead, not
// behind. Found from outside: a data point at the largest OTLP timestamp
// was refused as "timestamp -499068h9m10.911s ahead of the collector's
// clock".
func TestFarFutureMessage(t *testing.T) {
	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName("x")
	m.SetEmptyGauge().DataPoints().AppendEmpty().SetTimestamp(math.MaxUint64)
	r := DefaultConfig().Admit(md, testutil.Epoch)
	if s := r.String(); r.Points != 1 || strings.Contains(s, "-") || !strings.Contains(s, "ahead of the collector's clock") {
		t.Errorf("refused %d: %s", r.Points, s)
	}
	td := ptrace.NewTraces()
	td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans().AppendEmpty().SetStartTimestamp(math.MaxUint64)
	r = DefaultConfig().AdmitSpans(td, testutil.Epoch)
	if s := r.String(); r.Points != 1 || strings.Contains(s, "-") {
		t.Errorf("span refused %d: %s", r.Points, s)
	}
}
