package limits

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// AdmitLogs removes from ld the log records whose time is more than
// MaxFuture ahead of now, the collector's clock, or more than MaxAge
// behind it, and returns what it removed. A record's time is its
// timestamp, or its observed timestamp when the source set none (the
// time the store keeps it under). Scopes and resources it empties are
// removed too.
//
// The clock of the collector is the reference for every signal: a record
// from a clock hours off is not found where its arrival puts it, one from
// the future outlives retention, and one older than the retention would
// be acknowledged and then deleted within the hour (retention is measured
// from its time).
func (c Config) AdmitLogs(ld plog.Logs, now time.Time) Refusals {
	w := c.window(now, "log record")
	ld.ResourceLogs().RemoveIf(func(rl plog.ResourceLogs) bool {
		rl.ScopeLogs().RemoveIf(func(sl plog.ScopeLogs) bool {
			sl.LogRecords().RemoveIf(func(lr plog.LogRecord) bool {
				ts := lr.Timestamp()
				if ts == 0 {
					ts = lr.ObservedTimestamp()
				}
				return w.refuse(ts)
			})
			return sl.LogRecords().Len() == 0
		})
		return rl.ScopeLogs().Len() == 0
	})
	return w.refused
}

// AdmitSpans removes from td the spans whose start is outside the same
// window as AdmitLogs', and returns what it removed.
func (c Config) AdmitSpans(td ptrace.Traces, now time.Time) Refusals {
	w := c.window(now, "span")
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			ss.Spans().RemoveIf(func(s ptrace.Span) bool { return w.refuse(s.StartTimestamp()) })
			return ss.Spans().Len() == 0
		})
		return rs.ScopeSpans().Len() == 0
	})
	return w.refused
}

// timeWindow judges items' times against the collector's clock.
type timeWindow struct {
	c            Config
	now          time.Time
	what         string
	minTS, maxTS pcommon.Timestamp
	refused      Refusals
}

func (c Config) window(now time.Time, what string) *timeWindow {
	return &timeWindow{c: c, now: now, what: what,
		minTS: oldest(now, c.MaxAge), maxTS: pcommon.NewTimestampFromTime(now.Add(c.MaxFuture))}
}

func (w *timeWindow) refuse(ts pcommon.Timestamp) bool {
	switch {
	case ts > w.maxTS:
		w.refused.Add(Violation{Reason: TooFarInFuture, Where: w.what, Ahead: ahead(ts, w.now), Limit: int(w.c.MaxFuture)}, 1)
	case ts < w.minTS:
		w.refused.Add(Violation{Reason: TooFarInPast, Where: w.what, Ahead: w.now.Sub(ts.AsTime()), Limit: int(w.c.MaxAge)}, 1)
	default:
		return false
	}
	return true
}
