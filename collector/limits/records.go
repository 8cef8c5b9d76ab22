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
	w := c.window(now)
	var r Refusals
	ld.ResourceLogs().RemoveIf(func(rl plog.ResourceLogs) bool {
		rl.ScopeLogs().RemoveIf(func(sl plog.ScopeLogs) bool {
			sl.LogRecords().RemoveIf(func(lr plog.LogRecord) bool {
				ts := lr.Timestamp()
				if ts == 0 {
					ts = lr.ObservedTimestamp()
				}
				return r.refuse(w, ts, "log record")
			})
			return sl.LogRecords().Len() == 0
		})
		return rl.ScopeLogs().Len() == 0
	})
	return r
}

// AdmitSpans removes from td the spans whose start is outside the same
// window as AdmitLogs', and returns what it removed.
func (c Config) AdmitSpans(td ptrace.Traces, now time.Time) Refusals {
	w := c.window(now)
	var r Refusals
	td.ResourceSpans().RemoveIf(func(rs ptrace.ResourceSpans) bool {
		rs.ScopeSpans().RemoveIf(func(ss ptrace.ScopeSpans) bool {
			ss.Spans().RemoveIf(func(s ptrace.Span) bool { return r.refuse(w, s.StartTimestamp(), "span") })
			return ss.Spans().Len() == 0
		})
		return rs.ScopeSpans().Len() == 0
	})
	return r
}

// timeWindow judges times against the collector's clock: metric points
// (Admit), log records and spans alike.
type timeWindow struct {
	c            Config
	now          time.Time
	minTS, maxTS pcommon.Timestamp
}

func (c Config) window(now time.Time) timeWindow {
	return timeWindow{c: c, now: now, minTS: oldest(now, c.MaxAge), maxTS: pcommon.NewTimestampFromTime(now.Add(c.MaxFuture))}
}

// check returns the violation of a time outside the window (its Metric
// or Where for the caller to name), and whether there is one.
func (w timeWindow) check(ts pcommon.Timestamp) (Violation, bool) {
	switch {
	case ts > w.maxTS:
		return Violation{Reason: TooFarInFuture, Ahead: ahead(ts, w.now), Limit: int(w.c.MaxFuture)}, true
	case ts < w.minTS:
		return Violation{Reason: TooFarInPast, Ahead: w.now.Sub(ts.AsTime()), Limit: int(w.c.MaxAge)}, true
	}
	return Violation{}, false
}

// refuse records an item (what) whose time is outside w, and reports
// whether it is.
func (r *Refusals) refuse(w timeWindow, ts pcommon.Timestamp, what string) bool {
	v, bad := w.check(ts)
	if bad {
		v.Where = what
		r.Add(v, 1)
	}
	return bad
}
