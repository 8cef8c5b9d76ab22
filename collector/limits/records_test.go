package limits

import (
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/aiops-dev/aiops/internal/testutil"
)

// TestAdmitLogsAndSpans: records and spans outside the window go, the
// containers they empty with them.
func TestAdmitLogsAndSpans(t *testing.T) {
	now := testutil.Epoch
	c := DefaultConfig()
	ld := plog.NewLogs()
	lrs := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	lrs.AppendEmpty().SetTimestamp(pcommon.NewTimestampFromTime(now.Add(-25 * time.Hour)))
	ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().SetObservedTimestamp(pcommon.NewTimestampFromTime(now))
	r := c.AdmitLogs(ld, now)
	if r.Points != 1 || ld.ResourceLogs().Len() != 1 || ld.LogRecordCount() != 1 || r.String() != "too_far_in_past: 1 log record (e.g. log record: timestamp 25h0m0s behind the collector's clock, limit max_age 24h0m0s)" {
		t.Errorf("logs: %d refused (%s), %d resources and %d records left", r.Points, r, ld.ResourceLogs().Len(), ld.LogRecordCount())
	}
	td := ptrace.NewTraces()
	ss := td.ResourceSpans().AppendEmpty().ScopeSpans().AppendEmpty().Spans()
	ss.AppendEmpty().SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(11 * time.Minute)))
	ss.AppendEmpty().SetStartTimestamp(pcommon.NewTimestampFromTime(now.Add(12 * time.Minute)))
	r = c.AdmitSpans(td, now)
	if r.Points != 2 || td.ResourceSpans().Len() != 0 || r.ByReason()[TooFarInFuture] != 2 {
		t.Errorf("spans: %d refused (%s), %d resources left", r.Points, r, td.ResourceSpans().Len())
	}
}
