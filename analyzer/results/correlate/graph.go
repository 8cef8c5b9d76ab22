// Package correlate relates anomalies across services: it builds the
// service dependency graph from trace spans and ranks the services most
// likely to have caused a set of anomalies that overlap in time.
//
// It is part of the analyzer's results contract: StoreRanker ranks over
// the anomaly events the analyzer stored, so any process that reads the
// store (the incident manager, an API) ranks root causes without running
// or calling the analyzer.
package correlate

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// Edge is one caller → callee dependency seen in the window.
type Edge struct {
	Caller, Callee string
	// Calls and Errors count the calls and the failed ones.
	Calls, Errors int
	// CallRate is calls per second over the window; ErrorRate is
	// Errors/Calls.
	CallRate, ErrorRate float64
	// MeanDuration is the callee's mean time to answer, as the calls saw it.
	MeanDuration time.Duration
}

// Graph is the service dependency graph of a window.
type Graph struct {
	Start, End time.Time
	Services   []string // sorted
	Edges      []Edge   // sorted by caller, callee

	callees map[string][]string
	callers map[string][]string
	edge    map[[2]string]*Edge
}

// Edge returns the caller → callee edge, if any.
func (g *Graph) Edge(caller, callee string) (Edge, bool) {
	e, ok := g.edge[[2]string{caller, callee}]
	if !ok {
		return Edge{}, false
	}
	return *e, true
}

// Callees returns the services s calls, sorted.
func (g *Graph) Callees(s string) []string { return g.callees[s] }

// Callers returns the services calling s, sorted.
func (g *Graph) Callers(s string) []string { return g.callers[s] }

// dependsOn reports whether a reaches b by following calls.
func (g *Graph) dependsOn(a, b string) bool {
	seen := map[string]bool{a: true}
	stack := []string{a}
	for len(stack) > 0 {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, c := range g.callees[s] {
			if c == b {
				return true
			}
			if !seen[c] {
				seen[c] = true
				stack = append(stack, c)
			}
		}
	}
	return false
}

// spanPage is how many spans one query asks for; a full page splits the
// window in two, since SpanQuery has no cursor.
const spanPage = 10000

// BuildGraph reads the spans that started in [start, end] and derives who
// calls whom. A call is a span whose parent belongs to another service
// (the callee's server span under the caller's client span), or a client
// span naming a peer that has no spans of its own (a database, an LLM
// API), named by peer.service, db.system or server.address.
func BuildGraph(ctx context.Context, spans storage.SpanStore, start, end time.Time) (*Graph, error) {
	if end.Before(start) {
		return nil, fmt.Errorf("correlate: window ends (%v) before it starts (%v)", end, start)
	}
	all, err := readSpans(ctx, spans, start, end, spanPage)
	if err != nil {
		return nil, err
	}
	type key struct{ trace, span string }
	byID := make(map[key]*storage.Span, len(all))
	hasChildElsewhere := map[key]bool{}
	for i := range all {
		byID[key{all[i].TraceID, all[i].SpanID}] = &all[i]
	}
	type acc struct {
		calls, errors int
		dur           time.Duration
	}
	edges := map[[2]string]*acc{}
	services := map[string]bool{}
	add := func(caller, callee string, s *storage.Span) {
		if caller == "" || callee == "" || caller == callee {
			return
		}
		k := [2]string{caller, callee}
		a := edges[k]
		if a == nil {
			a = &acc{}
			edges[k] = a
		}
		a.calls++
		if s.StatusCode == "Error" {
			a.errors++
		}
		a.dur += s.EndTime.Sub(s.StartTime)
	}
	for i := range all {
		s := &all[i]
		services[s.ServiceName] = true
		if s.ParentSpanID == "" {
			continue
		}
		p, ok := byID[key{s.TraceID, s.ParentSpanID}]
		if !ok || p.ServiceName == s.ServiceName {
			continue
		}
		add(p.ServiceName, s.ServiceName, s)
		hasChildElsewhere[key{p.TraceID, p.SpanID}] = true
	}
	for i := range all {
		s := &all[i]
		if s.Kind != "Client" || hasChildElsewhere[key{s.TraceID, s.SpanID}] {
			continue
		}
		peer := peerOf(s)
		if peer == "" {
			continue
		}
		services[peer] = true
		add(s.ServiceName, peer, s)
	}
	g := &Graph{Start: start, End: end, callees: map[string][]string{}, callers: map[string][]string{}, edge: map[[2]string]*Edge{}}
	secs := end.Sub(start).Seconds()
	for k, a := range edges {
		e := Edge{Caller: k[0], Callee: k[1], Calls: a.calls, Errors: a.errors,
			ErrorRate: float64(a.errors) / float64(a.calls), MeanDuration: a.dur / time.Duration(a.calls)}
		if secs > 0 {
			e.CallRate = float64(a.calls) / secs
		}
		g.Edges = append(g.Edges, e)
	}
	sort.Slice(g.Edges, func(i, j int) bool {
		if g.Edges[i].Caller != g.Edges[j].Caller {
			return g.Edges[i].Caller < g.Edges[j].Caller
		}
		return g.Edges[i].Callee < g.Edges[j].Callee
	})
	// Edges are sorted by caller then callee, so both lists come out sorted.
	for i := range g.Edges {
		e := &g.Edges[i]
		g.edge[[2]string{e.Caller, e.Callee}] = e
		g.callees[e.Caller] = append(g.callees[e.Caller], e.Callee)
		g.callers[e.Callee] = append(g.callers[e.Callee], e.Caller)
	}
	for s := range services {
		if s != "" {
			g.Services = append(g.Services, s)
		}
	}
	sort.Strings(g.Services)
	return g, nil
}

func peerOf(s *storage.Span) string {
	for _, k := range []string{"peer.service", "db.system", "server.address", "net.peer.name"} {
		if v := s.Attributes[k]; v != "" {
			return v
		}
	}
	return ""
}

// readSpans reads every span in [start, end], halving the window whenever
// a page comes back full.
func readSpans(ctx context.Context, spans storage.SpanStore, start, end time.Time, page int) ([]storage.Span, error) {
	got, err := spans.QuerySpans(ctx, storage.SpanQuery{Start: start, End: end, Limit: page})
	if err != nil {
		return nil, fmt.Errorf("correlate: query spans: %w", err)
	}
	if len(got) < page || !end.After(start) {
		return got, nil
	}
	mid := start.Add(end.Sub(start) / 2)
	a, err := readSpans(ctx, spans, start, mid, page)
	if err != nil {
		return nil, err
	}
	b, err := readSpans(ctx, spans, mid.Add(time.Nanosecond), end, page)
	if err != nil {
		return nil, err
	}
	return append(a, b...), nil
}
