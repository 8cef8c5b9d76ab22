// Package truth is the simulator's ground truth: every step it judges the
// engine's health against its service levels from the requests it
// actually simulated, and it keeps a timeline of faults, control actions
// and health changes. Time to detect and time to recover are measured
// from this timeline, never from what a monitoring system reports.
package truth

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/aiops-dev/aiops/sim/chaos"
	"github.com/aiops-dev/aiops/sim/model"
)

// Levels are the service levels the engine is judged against.
type Levels struct {
	// APIP95 bounds the 95th percentile of api request durations.
	APIP95 chaos.Duration `yaml:"api_p95" json:"api_p95"`
	// ErrorRatio bounds the share of api requests answered with a 5xx.
	ErrorRatio float64 `yaml:"error_ratio" json:"error_ratio"`
	// QueueWait bounds how long the oldest job of any queue has waited:
	// every queue must be draining.
	QueueWait chaos.Duration `yaml:"queue_wait" json:"queue_wait"`
	// Window is the span of requests each judgement looks at.
	Window chaos.Duration `yaml:"window" json:"window"`
}

// DefaultLevels are the engine's service levels: p95 under 500 ms, under
// 1 % errors, no job waiting two minutes, judged over the last minute.
func DefaultLevels() Levels {
	return Levels{
		APIP95:     chaos.Duration(500 * time.Millisecond),
		ErrorRatio: 0.01,
		QueueWait:  chaos.Duration(2 * time.Minute),
		Window:     chaos.Duration(time.Minute),
	}
}

// Validate names the first bad key under prefix.
func (l Levels) Validate(prefix string) error {
	var errs []error
	if l.APIP95 <= 0 {
		errs = append(errs, fmt.Errorf("%sapi_p95: must be > 0, got %s", prefix, l.APIP95))
	}
	if !(l.ErrorRatio > 0 && l.ErrorRatio < 1) {
		errs = append(errs, fmt.Errorf("%serror_ratio: must be in (0, 1), got %v", prefix, l.ErrorRatio))
	}
	if l.QueueWait <= 0 {
		errs = append(errs, fmt.Errorf("%squeue_wait: must be > 0, got %s", prefix, l.QueueWait))
	}
	if l.Window <= 0 || time.Duration(l.Window) > time.Hour {
		errs = append(errs, fmt.Errorf("%swindow: must be in (0, 1h], got %s", prefix, l.Window))
	}
	return errors.Join(errs...)
}

// Check is one service level as judged at one step.
type Check struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Limit float64 `json:"limit"`
	OK    bool    `json:"ok"`
}

// Health is one judgement.
type Health struct {
	Healthy bool    `json:"healthy"`
	Checks  []Check `json:"checks"`
}

// Judge collects the api's requests step by step and judges health over
// the last Window.
type Judge struct {
	levels Levels
	steps  []stepStats // oldest first, covering at least Window
	cur    stepStats
}

// stepStats are one step's api requests: a histogram of durations on a
// log scale and the count of 5xx answers.
type stepStats struct {
	end           time.Time
	total, errors int
	buckets       [nBuckets]int
}

// Durations are bucketed at 2 % resolution from 1 ms to about 2 minutes.
const (
	nBuckets   = 600
	bucketBase = 0.001
	bucketGrow = 1.02
)

var logGrow = math.Log(bucketGrow)

func bucketOf(d float64) int {
	if d <= bucketBase {
		return 0
	}
	b := int(math.Log(d/bucketBase)/logGrow) + 1
	return min(b, nBuckets-1)
}

// bucketUpper is the upper edge of bucket b in seconds.
func bucketUpper(b int) float64 { return bucketBase * math.Pow(bucketGrow, float64(b)) }

// NewJudge returns a judge for the given levels.
func NewJudge(l Levels) *Judge { return &Judge{levels: l} }

// Request counts an api request; other services' requests are ignored.
func (j *Judge) Request(r *model.Request) {
	if r.Service.Name != model.API {
		return
	}
	j.cur.total++
	if r.Status >= 500 {
		j.cur.errors++
	}
	j.cur.buckets[bucketOf(r.Duration)]++
}

// Job is part of model.Sink; queues are judged from the model's state.
func (j *Judge) Job(*model.Job) {}

// Assess closes the step ending at m.Now() and judges health over the
// window that ends there.
func (j *Judge) Assess(m *model.System) Health {
	j.cur.end = m.Now()
	j.steps = append(j.steps, j.cur)
	j.cur = stepStats{}
	from := m.Now().Add(-time.Duration(j.levels.Window))
	// Keep the steps that end inside the window, and at least the last.
	k := 0
	for k < len(j.steps)-1 && !j.steps[k].end.After(from) {
		k++
	}
	j.steps = j.steps[k:]
	var total, errs int
	var hist [nBuckets]int
	for _, s := range j.steps {
		total += s.total
		errs += s.errors
		for b, n := range s.buckets {
			hist[b] += n
		}
	}
	var h Health
	p95 := 0.0
	if total > 0 {
		rank := int(math.Ceil(0.95 * float64(total)))
		seen := 0
		for b, n := range hist {
			seen += n
			if seen >= rank {
				p95 = bucketUpper(b)
				break
			}
		}
	}
	limit := time.Duration(j.levels.APIP95).Seconds()
	h.Checks = append(h.Checks, Check{Name: "api_p95_seconds", Value: round(p95), Limit: limit, OK: p95 < limit})
	ratio := 0.0
	if total > 0 {
		ratio = float64(errs) / float64(total)
	}
	h.Checks = append(h.Checks, Check{Name: "api_error_ratio", Value: round(ratio), Limit: j.levels.ErrorRatio, OK: ratio < j.levels.ErrorRatio})
	wait := time.Duration(j.levels.QueueWait).Seconds()
	for _, q := range m.Queues {
		h.Checks = append(h.Checks, Check{Name: "queue_wait_seconds{queue=" + q.Name + "}", Value: round(q.OldestAge), Limit: wait, OK: q.OldestAge < wait})
	}
	h.Healthy = true
	for _, c := range h.Checks {
		h.Healthy = h.Healthy && c.OK
	}
	return h
}

// round keeps four significant digits, so that the timeline reads well
// and compares equal across runs without float noise in the last bits.
func round(v float64) float64 {
	if v == 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return v
	}
	scale := math.Pow(10, 3-math.Floor(math.Log10(math.Abs(v))))
	return math.Round(v*scale) / scale
}
