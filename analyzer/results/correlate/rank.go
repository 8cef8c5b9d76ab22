package correlate

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Anomaly is what ranking needs to know about one anomaly.
type Anomaly struct {
	Service string
	// Series names the anomalous series, for the reasons given.
	Series string
	Onset  time.Time
	Score  float64
}

// Cause is one candidate root cause.
type Cause struct {
	Service string
	// Score orders the candidates; it is in [0, 1] but only its order is
	// meaningful.
	Score float64
	// Onset is the service's earliest anomaly.
	Onset     time.Time
	Anomalies int
	Reasons   []string
}

// Weights of the evidence; they sum to 1. Propagation along the call
// graph is the strongest evidence that a service is a cause rather than a
// victim; onset order is next, because effects follow causes but clocks
// and evaluation intervals blur it; failing calls into the service and the
// strength of its anomalies break ties.
const (
	wExplains = 0.45
	wEarly    = 0.3
	wErrors   = 0.15
	wScore    = 0.1
	// victimPenalty is subtracted when the service depends on another
	// anomalous service whose trouble began no later than its own.
	victimPenalty = 0.5
)

// RankRootCauses orders the services with anomalies by how likely each is
// to have caused the others. A service ranks high when it began first,
// when services that depend on it (directly or not) are anomalous too — a
// failure travels from a dependency to its callers — and when calls into
// it fail. A service ranks low when it itself depends on a service whose
// anomaly began no later: it is then more likely a victim. g may be nil
// (no traces): then onset and strength alone decide.
func RankRootCauses(g *Graph, anomalies []Anomaly) []Cause {
	type info struct {
		onset time.Time
		n     int
		score float64
		first string
	}
	by := map[string]*info{}
	for _, a := range anomalies {
		if a.Service == "" {
			continue
		}
		in := by[a.Service]
		if in == nil {
			in = &info{onset: a.Onset, first: a.Series}
			by[a.Service] = in
		}
		in.n++
		in.score = math.Max(in.score, a.Score)
		if a.Onset.Before(in.onset) {
			in.onset, in.first = a.Onset, a.Series
		}
	}
	if len(by) == 0 {
		return nil
	}
	minOn, maxOn := time.Time{}, time.Time{}
	for _, in := range by {
		if minOn.IsZero() || in.onset.Before(minOn) {
			minOn = in.onset
		}
		if in.onset.After(maxOn) {
			maxOn = in.onset
		}
	}
	spread := maxOn.Sub(minOn)
	var out []Cause
	for s, in := range by {
		c := Cause{Service: s, Onset: in.onset, Anomalies: in.n}
		early := 1.0
		if spread > 0 {
			early = 1 - float64(in.onset.Sub(minOn))/float64(spread)
		}
		if in.onset.Equal(minOn) {
			c.Reasons = append(c.Reasons, fmt.Sprintf("earliest onset (%s, %s)", in.onset.UTC().Format(time.RFC3339), in.first))
		} else {
			c.Reasons = append(c.Reasons, fmt.Sprintf("onset %v after the first anomaly", in.onset.Sub(minOn)))
		}
		var explains, errs float64
		victim := false
		if g != nil && len(by) > 1 {
			var dependents []string
			for o, oin := range by {
				if o == s {
					continue
				}
				if g.dependsOn(o, s) {
					dependents = append(dependents, o)
				}
				if g.dependsOn(s, o) && !oin.onset.After(in.onset) {
					victim = true
					c.Reasons = append(c.Reasons, fmt.Sprintf("depends on %s, anomalous since %v earlier or at the same time", o, in.onset.Sub(oin.onset)))
				}
			}
			sort.Strings(dependents)
			explains = float64(len(dependents)) / float64(len(by)-1)
			if len(dependents) > 0 {
				c.Reasons = append(c.Reasons, fmt.Sprintf("anomalous services depend on it: %v", dependents))
			}
			for _, caller := range g.Callers(s) {
				if e, ok := g.Edge(caller, s); ok && e.ErrorRate > errs {
					errs = e.ErrorRate
				}
			}
			if errs > 0 {
				c.Reasons = append(c.Reasons, fmt.Sprintf("%.0f%% of calls into it fail", 100*errs))
			}
		}
		c.Score = wExplains*explains + wEarly*early + wErrors*errs + wScore*in.score
		if victim {
			c.Score -= victimPenalty
		}
		c.Score = math.Max(0, math.Min(1, c.Score))
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Score != out[j].Score {
			return out[i].Score > out[j].Score
		}
		if !out[i].Onset.Equal(out[j].Onset) {
			return out[i].Onset.Before(out[j].Onset)
		}
		return out[i].Service < out[j].Service
	})
	return out
}
