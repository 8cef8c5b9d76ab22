package runbook

import (
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"
	"time"
)

type fieldErr struct {
	field, msg string
}

func (e *fieldErr) Error() string { return e.field + ": " + e.msg }

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// Weekly reports whether the window repeats every week (Days set).
func (w Window) Weekly() bool { return len(w.Days) > 0 }

// Validate checks the window's fields, naming the one at fault.
func (w Window) Validate() error {
	if !w.Weekly() {
		start, err := time.Parse(time.RFC3339, w.Start)
		if err != nil {
			return &fieldErr{"start", fmt.Sprintf("a one-off window starts at an RFC 3339 time, got %q (a weekly window names days)", w.Start)}
		}
		end, err := time.Parse(time.RFC3339, w.End)
		if err != nil {
			return &fieldErr{"end", fmt.Sprintf("must be an RFC 3339 time, got %q", w.End)}
		}
		if !end.After(start) {
			return &fieldErr{"end", "must be after start"}
		}
		if w.Duration != 0 || w.TimeZone != "" {
			return &fieldErr{"duration", "a one-off window has start and end; duration and time_zone are for weekly ones"}
		}
		return nil
	}
	for _, d := range w.Days {
		if _, ok := weekdays[strings.ToLower(d)]; !ok {
			return &fieldErr{"days", fmt.Sprintf("%q is not a day; use mon, tue, wed, thu, fri, sat, sun", d)}
		}
	}
	if _, err := time.Parse("15:04", w.Start); err != nil {
		return &fieldErr{"start", fmt.Sprintf("a weekly window starts at a time of day (HH:MM), got %q", w.Start)}
	}
	if w.End != "" {
		return &fieldErr{"end", "a weekly window has a duration, not an end"}
	}
	if w.Duration <= 0 || time.Duration(w.Duration) > 7*24*time.Hour {
		return &fieldErr{"duration", fmt.Sprintf("must be in (0, 7d], got %s", w.Duration)}
	}
	if _, err := w.location(); err != nil {
		return &fieldErr{"time_zone", err.Error()}
	}
	return nil
}

func (w Window) location() (*time.Location, error) {
	if w.TimeZone == "" {
		return time.UTC, nil
	}
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q", w.TimeZone)
	}
	return loc, nil
}

// Contains reports whether t falls in the window. An invalid window
// contains nothing (Validate refuses it first).
func (w Window) Contains(t time.Time) bool {
	if !w.Weekly() {
		start, err1 := time.Parse(time.RFC3339, w.Start)
		end, err2 := time.Parse(time.RFC3339, w.End)
		return err1 == nil && err2 == nil && !t.Before(start) && t.Before(end)
	}
	loc, err := w.location()
	if err != nil {
		return false
	}
	tod, err := time.Parse("15:04", w.Start)
	if err != nil {
		return false
	}
	local := t.In(loc)
	// A window that started up to 7 days ago may still be open: look at
	// the starts on each of the last eight days, by the wall clock of the
	// zone (so a window keeps its time of day across daylight saving).
	for back := range 8 {
		day := local.AddDate(0, 0, -back)
		if !w.onDay(day.Weekday()) {
			continue
		}
		start := time.Date(day.Year(), day.Month(), day.Day(), tod.Hour(), tod.Minute(), 0, 0, loc)
		if !t.Before(start) && t.Before(start.Add(time.Duration(w.Duration))) {
			return true
		}
	}
	return false
}

func (w Window) onDay(d time.Weekday) bool {
	for _, s := range w.Days {
		if weekdays[strings.ToLower(s)] == d {
			return true
		}
	}
	return false
}

// InMaintenance returns the first of the windows that contains t.
func InMaintenance(ws []Window, t time.Time) (Window, bool) {
	for _, w := range ws {
		if w.Contains(t) {
			return w, true
		}
	}
	return Window{}, false
}

func mapsKeys[M ~map[K]V, K comparable, V any](m M) iter.Seq[K] { return maps.Keys(m) }

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
