package limits

import (
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// Violation is one broken limit. It is formatted only when it is shown,
// so that refusing a flood of data costs no formatting per point.
type Violation struct {
	Reason Reason
	// Metric is the metric name (as sent, or as stored for label sets).
	Metric string
	// Where names what broke the limit: "resource attribute", "label", ...
	Where string
	// Name is the attribute or label name, if one is at fault.
	Name string
	// Got and Limit are the sizes (counts or bytes) compared.
	Got, Limit int
	// Ahead is how far in the future (TooFarInFuture) or in the past
	// (TooFarInPast) the point was.
	Ahead time.Duration
	// Err and At are a store's refusal of a sample and the sample's time.
	Err error
	At  time.Time
}

func (v Violation) String() string {
	var b strings.Builder
	switch {
	case v.Metric != "":
		fmt.Fprintf(&b, "metric %q: ", prefix(v.Metric))
	case v.Reason == TooFarInFuture || v.Reason == TooFarInPast:
		if v.Where != "" {
			b.WriteString(v.Where + ": ")
		}
	}
	switch v.Reason {
	case TooFarInFuture:
		fmt.Fprintf(&b, "timestamp %s ahead of the collector's clock, limit max_future %s", v.Ahead.Round(time.Millisecond), time.Duration(v.Limit))
	case TooFarInPast:
		fmt.Fprintf(&b, "timestamp %s behind the collector's clock, limit max_age %s", v.Ahead.Round(time.Millisecond), time.Duration(v.Limit))
	case LabelLimit:
		fmt.Fprintf(&b, "%d %ss, limit label_limit %d", v.Got, v.Where, v.Limit)
	case LabelNameLength:
		fmt.Fprintf(&b, "%s name %q has %d bytes, limit label_name_length_limit %d", v.Where, prefix(v.Name), v.Got, v.Limit)
	case LabelValueLength:
		fmt.Fprintf(&b, "value of %s %q has %d bytes, limit label_value_length_limit %d", v.Where, prefix(v.Name), v.Got, v.Limit)
	case MetricNameLength:
		fmt.Fprintf(&b, "name has %d bytes, limit metric_name_length_limit %d", v.Got, v.Limit)
	case InvalidUTF8:
		if v.Name != "" {
			fmt.Fprintf(&b, "%s %q is not valid UTF-8", v.Where, prefix(v.Name))
		} else {
			fmt.Fprintf(&b, "%s is not valid UTF-8", v.Where)
		}
	case BucketLimit:
		fmt.Fprintf(&b, "histogram point has %d buckets, limit bucket_limit %d", v.Got, v.Limit)
	case SeriesLimit:
		fmt.Fprintf(&b, "new series over the %s, %d active", v.Where, v.Limit)
	default:
		if v.Err != nil {
			fmt.Fprintf(&b, "sample at %s: %v", v.At.UTC().Format(time.RFC3339Nano), v.Err)
		} else {
			b.WriteString(string(v.Reason))
		}
	}
	// %q escapes invalid UTF-8, so the message can go into protobuf and
	// JSON answers.
	return b.String()
}

// prefix shortens a name for a message: the name may be the very thing
// that is too long.
func prefix(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// Refusals counts what was refused of one request, by reason, with the
// first violation of each reason as an example.
type Refusals struct {
	// Points is the number of data points refused.
	Points   int
	byReason map[Reason]int
	example  map[Reason]Violation
}

// Add records n refused points for v.
func (r *Refusals) Add(v Violation, n int) {
	if n <= 0 {
		return
	}
	if r.byReason == nil {
		r.byReason = map[Reason]int{}
		r.example = map[Reason]Violation{}
	}
	r.Points += n
	r.byReason[v.Reason] += n
	if _, ok := r.example[v.Reason]; !ok {
		r.example[v.Reason] = v
	}
}

// Merge adds o's refusals to r.
func (r *Refusals) Merge(o Refusals) {
	for reason, n := range o.byReason {
		v := o.example[reason]
		r.Add(v, n)
	}
}

// ByReason returns the refused points per reason.
func (r Refusals) ByReason() map[Reason]int { return r.byReason }

// String says what was refused and why, one example per reason:
// `too_far_in_future: 2 data points (e.g. metric "cpu": …)`.
func (r Refusals) String() string {
	parts := make([]string, 0, len(r.byReason))
	for _, reason := range slices.Sorted(maps.Keys(r.byReason)) {
		n := r.byReason[reason]
		unit := r.unit(reason, n)
		parts = append(parts, fmt.Sprintf("%s: %d %s (e.g. %s)", reason, n, unit, r.example[reason]))
	}
	return strings.Join(parts, "; ")
}

// unit names what n items refused for reason are: data points, or the
// log records or spans AdmitLogs and AdmitSpans refuse.
func (r Refusals) unit(reason Reason, n int) string {
	what := "data point"
	if v := r.example[reason]; v.Metric == "" && (reason == TooFarInFuture || reason == TooFarInPast) && v.Where != "" {
		what = v.Where
	}
	if n == 1 {
		return what
	}
	return what + "s"
}

// Log logs refusals at most once per interval, with what was refused
// since the last line: a client sending bad data on every request must
// not flood the log.
type Log struct {
	logger *slog.Logger
	msg    string
	every  time.Duration
	now    func() time.Time
	args   []any

	mu      sync.Mutex
	pending Refusals
	last    time.Time
}

// NewLog returns a Log writing msg with args at warning level at most
// once per every, by the clock now.
func NewLog(logger *slog.Logger, msg string, every time.Duration, now func() time.Time, args ...any) *Log {
	return &Log{logger: logger, msg: msg, every: every, now: now, args: args}
}

// Note records r; the first refusal is logged at once, later ones with
// the next refusal after the interval.
func (l *Log) Note(r Refusals) {
	if r.Points == 0 {
		return
	}
	l.mu.Lock()
	l.pending.Merge(r)
	now := l.now()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.mu.Unlock()
		return
	}
	p, since := l.pending, l.last
	l.pending, l.last = Refusals{}, now
	l.mu.Unlock()
	args := append(append([]any{}, l.args...), "points", p.Points, "reasons", p.String())
	if !since.IsZero() {
		args = append(args, "since", since)
	}
	l.logger.Warn(l.msg, args...)
}
