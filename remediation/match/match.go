// Package match decides which runbooks apply to a signal (a firing
// alert, a condition's series, an opening incident) and in which order
// to try them: the one with the better record first.
package match

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/matcher/parse"
	amlabels "github.com/prometheus/alertmanager/pkg/labels"

	"github.com/aiops-dev/aiops/remediation/runbook"
)

// Signal is what may trigger runbooks.
type Signal struct {
	// Kind is runbook.TriggerAlert, TriggerCondition or TriggerIncident.
	Kind string
	// Name is the alert's name (alerts), or the runbook whose condition
	// holds (conditions).
	Name string
	// Labels are the alert's labels, the condition series' labels, or the
	// incident's group labels.
	Labels map[string]string
	// Severity is the incident's severity (incidents).
	Severity string
}

// Set is a set of runbooks with their matchers compiled.
type Set struct {
	entries []entry
}

type entry struct {
	rb       *runbook.Runbook
	matchers amlabels.Matchers
}

// New compiles the runbooks' matchers. Runbooks are expected to be
// validated; a bad matcher is an error all the same.
func New(rbs []*runbook.Runbook) (*Set, error) {
	s := &Set{}
	for _, rb := range rbs {
		e := entry{rb: rb}
		for i, m := range rb.Trigger.Matchers {
			pm, err := parse.Matcher(m)
			if err != nil {
				return nil, fmt.Errorf("runbook %s: trigger.matchers[%d]: %w", rb.Name, i, err)
			}
			e.matchers = append(e.matchers, pm)
		}
		s.entries = append(s.entries, e)
	}
	return s, nil
}

// Match returns the runbooks whose trigger matches the signal, in the
// order they were given.
func (s *Set) Match(sig Signal) []*runbook.Runbook {
	var out []*runbook.Runbook
	for _, e := range s.entries {
		t := e.rb.Trigger
		switch sig.Kind {
		case runbook.TriggerAlert:
			if t.Alert == "" || t.Alert != sig.Name {
				continue
			}
		case runbook.TriggerCondition:
			if t.Kind() != runbook.TriggerCondition || e.rb.Name != sig.Name {
				continue
			}
		case runbook.TriggerIncident:
			if t.Incident == nil || !slices.ContainsFunc(t.Incident.Severities, func(s string) bool { return strings.EqualFold(s, sig.Severity) }) {
				continue
			}
		default:
			continue
		}
		if matchAll(e.matchers, sig.Labels) {
			out = append(out, e.rb)
		}
	}
	return out
}

func matchAll(ms amlabels.Matchers, ls map[string]string) bool {
	for _, m := range ms {
		if !m.Matches(ls[m.Name]) {
			return false
		}
	}
	return true
}

// Record is what is known of a runbook's runs for one alert name.
type Record struct {
	Attempts  int
	Successes int
	// MedianRecover is the median time from a run's start to its
	// verification holding, over its successes; 0 when none.
	MedianRecover time.Duration
}

// Score is the success ratio with one success and one failure assumed
// beforehand (Laplace's rule): an untried runbook scores 0.5, one that
// worked 9 times out of 10 0.83, one that failed 3 times out of 3 0.2.
func (r Record) Score() float64 {
	return float64(r.Successes+1) / float64(r.Attempts+2)
}

// Records looks records up.
type Records interface {
	Record(runbook, alertname string) Record
}

// Rank orders candidates best record first: higher score, then faster
// median recovery (untried last among equals), then name.
func Rank(cands []*runbook.Runbook, alertname string, recs Records) []*runbook.Runbook {
	out := slices.Clone(cands)
	if recs == nil {
		return out
	}
	rec := make(map[string]Record, len(out))
	for _, rb := range out {
		rec[rb.Name] = recs.Record(rb.Name, alertname)
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := rec[out[i].Name], rec[out[j].Name]
		if sa, sb := a.Score(), b.Score(); sa != sb {
			return sa > sb
		}
		if a.MedianRecover != b.MedianRecover {
			switch {
			case a.MedianRecover == 0:
				return false
			case b.MedianRecover == 0:
				return true
			}
			return a.MedianRecover < b.MedianRecover
		}
		return out[i].Name < out[j].Name
	})
	return out
}
