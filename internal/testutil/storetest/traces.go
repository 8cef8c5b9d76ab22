package storetest

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/storage"
)

// TraceFixture is a set of traces laid out from testutil.Epoch: services
// calling each other, typed attributes, events, links, errors, durations
// from a millisecond to seconds.
func TraceFixture() []storage.Span {
	rng := rand.New(rand.NewPCG(7, 11))
	services := []string{"api", "auth", "worker", "db"}
	names := map[string][]string{
		"api":    {"GET /v1/sessions", "POST /v1/documents"},
		"auth":   {"POST /validate"},
		"worker": {"process documents"},
		"db":     {"SELECT sessions", "INSERT documents"},
	}
	var out []storage.Span
	for i := range 60 {
		trace := fmt.Sprintf("%032x", 0xabc000+i)
		start := testutil.Epoch.Add(time.Duration(i) * 10 * time.Second)
		root := storage.Span{
			TraceID: trace, SpanID: fmt.Sprintf("%016x", 0x1000+i*16), Name: names["api"][i%2], Kind: "Server",
			ServiceName: "api", ScopeName: "fastapi", ScopeVersion: "0.1.0",
			StartTime: start, EndTime: start.Add(time.Duration(5+rng.IntN(2000)) * time.Millisecond),
			StatusCode: "Unset",
			Attributes: map[string]string{
				"http.route": names["api"][i%2], "http.response.status_code": "200", "sampled": "true", "ratio": "0.25",
			},
			AttributeTypes:         map[string]storage.ValueType{"http.response.status_code": storage.TypeInt, "sampled": storage.TypeBool, "ratio": storage.TypeDouble},
			ResourceAttributes:     map[string]string{"service.name": "api", "host.name": fmt.Sprintf("node-%d", i%3), "k8s.pod.ordinal": fmt.Sprint(i % 3)},
			ResourceAttributeTypes: map[string]storage.ValueType{"k8s.pod.ordinal": storage.TypeInt},
		}
		if i%5 == 0 {
			root.StatusCode, root.StatusMessage = "Error", "upstream failed"
			root.Attributes["http.response.status_code"] = "502"
			root.Events = []storage.SpanEvent{{Time: start.Add(time.Millisecond), Name: "exception",
				Attributes: map[string]string{"exception.type": "TimeoutError", "attempt": "2"}, AttributeTypes: map[string]storage.ValueType{"attempt": storage.TypeInt}}}
		}
		if i%7 == 0 {
			root.TraceState = "vendor=a1"
			root.Links = []storage.SpanLink{{TraceID: fmt.Sprintf("%032x", 0xdef000+i), SpanID: "00000000000000aa",
				Attributes: map[string]string{"link.kind": "batch"}}}
		}
		out = append(out, root)
		parent := root
		for d, svc := range services[1:] {
			if i%3 == 0 && svc == "worker" {
				continue
			}
			s := storage.Span{
				TraceID: trace, SpanID: fmt.Sprintf("%016x", 0x1000+i*16+d+1), ParentSpanID: parent.SpanID,
				Name: names[svc][i%len(names[svc])], Kind: "Client", ServiceName: svc, ScopeName: svc + "-lib",
				StartTime: parent.StartTime.Add(time.Millisecond), EndTime: parent.StartTime.Add(time.Duration(2+d) * time.Millisecond),
				StatusCode:         "Ok",
				Attributes:         map[string]string{"peer.service": svc, "db.rows": fmt.Sprint(i)},
				AttributeTypes:     map[string]storage.ValueType{"db.rows": storage.TypeInt},
				ResourceAttributes: map[string]string{"service.name": svc},
			}
			if svc == "auth" {
				s.Kind = "Server"
			}
			out = append(out, s)
			parent = s
		}
	}
	return out
}

// CheckTraceQueries stores the trace fixture in s (twice, as a replay
// would) and checks every span query, trace search, service and
// operation listing and the dependencies against the same filters
// applied to the fixture in Go.
func CheckTraceQueries(t *testing.T, s storage.Store) {
	t.Helper()
	ctx := context.Background()
	spans := TraceFixture()
	for _, batch := range [][]storage.Span{spans[:70], spans[50:], spans[:10]} {
		if err := s.AppendSpans(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}

	// Every span comes back whole, by trace id.
	byTrace := map[string][]storage.Span{}
	for _, sp := range spans {
		byTrace[sp.TraceID] = append(byTrace[sp.TraceID], sp)
	}
	for _, ids := range [][]string{{spans[0].TraceID}, {spans[0].TraceID, spans[len(spans)-1].TraceID, "ffffffffffffffffffffffffffffffff"}} {
		got, err := s.QuerySpans(ctx, storage.SpanQuery{TraceIDs: ids, Limit: 10000})
		if err != nil {
			t.Fatal(err)
		}
		var want []storage.Span
		for _, id := range ids {
			want = append(want, byTrace[id]...)
		}
		sortSpans(want)
		if !reflect.DeepEqual(normalize(got), normalize(want)) {
			t.Errorf("spans of %v:\n got %+v\nwant %+v", ids, got, want)
		}
	}
	if got, err := s.QuerySpans(ctx, storage.SpanQuery{TraceID: "0000000000000000000000000000dead"}); err != nil || len(got) != 0 {
		t.Errorf("unknown trace: %v, %v", got, err)
	}

	ms := time.Millisecond
	queries := []storage.SpanQuery{
		{ServiceName: "api", Limit: 20},
		{ServiceName: "api", Limit: 1000},
		{ServiceName: "api", Name: "POST /v1/documents", Limit: 1000},
		{ServiceName: "api", MinDuration: 500 * ms, MaxDuration: 1500 * ms, Limit: 1000},
		{ServiceName: "api", StatusCode: "Error", Limit: 1000},
		{ServiceName: "api", Attributes: map[string]string{"http.response.status_code": "502"}, Limit: 1000},
		{ServiceName: "api", Attributes: map[string]string{"host.name": "node-1", "sampled": "true"}, Limit: 1000},
		{ServiceName: "api", Attributes: map[string]string{"exception.type": "TimeoutError"}, Limit: 1000},
		{ServiceName: "api", Attributes: map[string]string{"exception.type": "nope"}, Limit: 1000},
		{ServiceName: "db", Start: testutil.Epoch.Add(100 * time.Second), End: testutil.Epoch.Add(300 * time.Second), Limit: 1000},
		{Start: testutil.Epoch.Add(100 * time.Second), End: testutil.Epoch.Add(300 * time.Second), Limit: 5},
		{ServiceName: "worker", TraceIDs: []string{spans[0].TraceID, byTrace[fmt.Sprintf("%032x", 0xabc000+1)][0].TraceID}, Limit: 1000},
	}
	empty := 0
	for _, q := range queries {
		if len(traceIDs(spans, q)) == 0 {
			empty++
		}
		got, err := s.TraceIDs(ctx, q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		if want := traceIDs(spans, q); !slices.Equal(got, want) {
			t.Errorf("TraceIDs(%+v):\n got %v\nwant %v", q, got, want)
		}
		q.Limit = 10000
		gotSpans, err := s.QuerySpans(ctx, q)
		if err != nil {
			t.Fatalf("%+v: %v", q, err)
		}
		var want []storage.Span
		for _, sp := range spans {
			if matches(q, &sp) {
				want = append(want, sp)
			}
		}
		sortSpans(want)
		if !reflect.DeepEqual(normalize(gotSpans), normalize(want)) {
			t.Errorf("QuerySpans(%+v): got %d spans, want %d", q, len(gotSpans), len(want))
		}
	}

	if empty > 1 {
		t.Errorf("%d queries find nothing in the fixture; only one should", empty)
	}

	services, err := s.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"api", "auth", "db", "worker"}; !slices.Equal(services, want) {
		t.Errorf("services: got %v, want %v", services, want)
	}
	ops, err := s.Operations(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	if want := []storage.Operation{{Name: "INSERT documents", Kind: "Client"}, {Name: "SELECT sessions", Kind: "Client"}}; !slices.Equal(ops, want) {
		t.Errorf("operations of db: got %v, want %v", ops, want)
	}
	if ops, err := s.Operations(ctx, "nobody"); err != nil || len(ops) != 0 {
		t.Errorf("operations of an unknown service: %v, %v", ops, err)
	}

	start, end := testutil.Epoch.Add(95*time.Second), testutil.Epoch.Add(400*time.Second)
	deps, err := s.Dependencies(ctx, start, end)
	if err != nil {
		t.Fatal(err)
	}
	if want := dependencies(spans, start, end); !slices.Equal(deps, want) {
		t.Errorf("dependencies: got %v, want %v", deps, want)
	}
}

// traceIDs is the reference of SpanStore.TraceIDs.
func traceIDs(spans []storage.Span, q storage.SpanQuery) []string {
	last := map[string]time.Time{}
	for i := range spans {
		sp := &spans[i]
		if matches(q, sp) && sp.StartTime.After(last[sp.TraceID]) {
			last[sp.TraceID] = sp.StartTime
		}
	}
	ids := slices.Collect(maps.Keys(last))
	sort.Slice(ids, func(i, j int) bool {
		if !last[ids[i]].Equal(last[ids[j]]) {
			return last[ids[i]].After(last[ids[j]])
		}
		return ids[i] < ids[j]
	})
	return ids[:min(len(ids), storage.QueryLimit(q.Limit))]
}

// matches is the reference of SpanQuery's filters.
func matches(q storage.SpanQuery, sp *storage.Span) bool {
	ids := q.TraceIDs
	if q.TraceID != "" {
		ids = append(slices.Clip(ids), q.TraceID)
	}
	d := sp.EndTime.Sub(sp.StartTime)
	switch {
	case !q.Start.IsZero() && sp.StartTime.Before(q.Start), !q.End.IsZero() && sp.StartTime.After(q.End),
		q.ServiceName != "" && sp.ServiceName != q.ServiceName,
		len(ids) > 0 && !slices.Contains(ids, sp.TraceID),
		q.Name != "" && sp.Name != q.Name,
		q.StatusCode != "" && sp.StatusCode != q.StatusCode,
		q.MinDuration > 0 && d < q.MinDuration, q.MaxDuration > 0 && d > q.MaxDuration:
		return false
	}
	for k, v := range q.Attributes {
		found := sp.Attributes[k] == v && hasKey(sp.Attributes, k) || sp.ResourceAttributes[k] == v && hasKey(sp.ResourceAttributes, k)
		for _, e := range sp.Events {
			found = found || e.Attributes[k] == v && hasKey(e.Attributes, k)
		}
		if !found {
			return false
		}
	}
	return true
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

// dependencies is the reference of SpanStore.Dependencies.
func dependencies(spans []storage.Span, start, end time.Time) []storage.Dependency {
	in := func(sp *storage.Span) bool { return !sp.StartTime.Before(start) && !sp.StartTime.After(end) }
	byID := map[[2]string]*storage.Span{}
	for i := range spans {
		byID[[2]string{spans[i].TraceID, spans[i].SpanID}] = &spans[i]
	}
	counts := map[[2]string]int64{}
	for i := range spans {
		c := &spans[i]
		p, ok := byID[[2]string{c.TraceID, c.ParentSpanID}]
		if c.ParentSpanID == "" || !ok || !in(c) || !in(p) {
			continue
		}
		counts[[2]string{p.ServiceName, c.ServiceName}]++
	}
	out := []storage.Dependency{}
	for k, n := range counts {
		out = append(out, storage.Dependency{Parent: k[0], Child: k[1], Calls: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Parent != out[j].Parent {
			return out[i].Parent < out[j].Parent
		}
		return out[i].Child < out[j].Child
	})
	return out
}

func sortSpans(s []storage.Span) {
	sort.Slice(s, func(i, j int) bool {
		a, b := s[i], s[j]
		if !a.StartTime.Equal(b.StartTime) {
			return a.StartTime.Before(b.StartTime)
		}
		if a.TraceID != b.TraceID {
			return a.TraceID < b.TraceID
		}
		return a.SpanID < b.SpanID
	})
}

// normalize makes spans comparable with DeepEqual: times in UTC, empty
// maps and slices nil.
func normalize(spans []storage.Span) []storage.Span {
	out := make([]storage.Span, len(spans))
	for i, sp := range spans {
		sp.StartTime, sp.EndTime = sp.StartTime.UTC(), sp.EndTime.UTC()
		sp.Attributes, sp.ResourceAttributes = nilIfEmpty(sp.Attributes), nilIfEmpty(sp.ResourceAttributes)
		if len(sp.AttributeTypes) == 0 {
			sp.AttributeTypes = nil
		}
		if len(sp.ResourceAttributeTypes) == 0 {
			sp.ResourceAttributeTypes = nil
		}
		if len(sp.Events) == 0 {
			sp.Events = nil
		}
		for j := range sp.Events {
			sp.Events[j].Time = sp.Events[j].Time.UTC()
		}
		if len(sp.Links) == 0 {
			sp.Links = nil
		}
		out[i] = sp
	}
	return out
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// LogFixture is a set of log records laid out from testutil.Epoch.
func LogFixture() []storage.LogRecord {
	var out []storage.LogRecord
	sev := []struct {
		text string
		num  int32
	}{{"DEBUG", 5}, {"INFO", 9}, {"WARN", 13}, {"ERROR", 17}}
	for i := range 120 {
		s := sev[i%4]
		r := storage.LogRecord{
			// Pairs of records share a timestamp, so that paging must
			// order ties.
			Timestamp:    testutil.Epoch.Add(time.Duration(i/2) * time.Second),
			SeverityText: s.text, SeverityNumber: s.num,
			Body:               fmt.Sprintf("request %d finished with status %d", i, []int{200, 404, 500}[i%3]),
			ServiceName:        []string{"api", "worker"}[i%2],
			Attributes:         map[string]string{"http.route": []string{"/a", "/b", "/c"}[i%3]},
			ResourceAttributes: map[string]string{"host.name": fmt.Sprintf("node-%d", i%4)},
		}
		if i%3 == 0 {
			r.TraceID, r.SpanID = fmt.Sprintf("%032x", 0xabc000+i), fmt.Sprintf("%016x", i)
		}
		out = append(out, r)
	}
	return out
}

// CheckLogQueries stores the log fixture in s and checks the log query's
// filters and its cursor against the same filters applied in Go: paging
// with every page size visits every matching record once, in order.
func CheckLogQueries(t *testing.T, s storage.Store) {
	t.Helper()
	ctx := context.Background()
	logs := LogFixture()
	if err := s.AppendLogs(ctx, logs); err != nil {
		t.Fatal(err)
	}
	queries := []storage.LogQuery{
		{},
		{ServiceName: "worker", MinSeverity: 13},
		{BodyContains: "status 500"},
		{BodyContains: "STATUS"},
		{BodyRegexp: `request \d*7 finished`},
		{BodyRegexp: `^request 1\d? `},
		{Attributes: map[string]string{"http.route": "/b", "host.name": "node-1"}},
		{Attributes: map[string]string{"http.route": "/b", "host.name": "node-2"}},
		{TraceID: logs[3].TraceID},
		{Start: testutil.Epoch.Add(10 * time.Second), End: testutil.Epoch.Add(20 * time.Second), ServiceName: "api"},
	}
	for _, q := range queries {
		want := referenceLogs(logs, q)
		if len(want) == 0 && q.Attributes["host.name"] != "node-2" && q.BodyContains != "STATUS" {
			t.Errorf("%+v finds nothing in the fixture", q)
		}
		for _, page := range []int{1000, 7, 1} {
			var got []storage.LogRecord
			pq := q
			pq.Limit = page
			for n := 0; ; n++ {
				if n > len(logs)+1 {
					t.Fatalf("%+v: paging by %d does not end", q, page)
				}
				recs, err := s.QueryLogs(ctx, pq)
				if err != nil {
					t.Fatalf("%+v: %v", q, err)
				}
				got = append(got, recs...)
				if len(recs) < page {
					break
				}
				last := recs[len(recs)-1]
				pq.BeforeTime, pq.BeforeID = last.Timestamp, last.ID()
			}
			if g, w := logKeys(got), logKeys(want); !slices.Equal(g, w) {
				t.Errorf("%+v by pages of %d:\n got %v\nwant %v", q, page, g, w)
			}
		}
	}
	if _, err := s.QueryLogs(ctx, storage.LogQuery{BodyRegexp: "(unclosed"}); err == nil || !strings.Contains(err.Error(), "regexp") {
		t.Errorf("a bad regexp: got %v, want an error naming the regexp", err)
	}
}

func referenceLogs(logs []storage.LogRecord, q storage.LogQuery) []storage.LogRecord {
	var re *regexp.Regexp
	if q.BodyRegexp != "" {
		re = regexp.MustCompile(q.BodyRegexp)
	}
	var out []storage.LogRecord
	for _, r := range logs {
		switch {
		case !q.Start.IsZero() && r.Timestamp.Before(q.Start), !q.End.IsZero() && r.Timestamp.After(q.End),
			q.ServiceName != "" && r.ServiceName != q.ServiceName, q.TraceID != "" && r.TraceID != q.TraceID,
			r.SeverityNumber < q.MinSeverity, q.BodyContains != "" && !strings.Contains(r.Body, q.BodyContains),
			re != nil && !re.MatchString(r.Body):
			continue
		}
		ok := true
		for k, v := range q.Attributes {
			ok = ok && (r.Attributes[k] == v || r.ResourceAttributes[k] == v)
		}
		if ok {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Timestamp.Equal(out[j].Timestamp) {
			return out[i].Timestamp.After(out[j].Timestamp)
		}
		return out[i].ID() < out[j].ID()
	})
	return out
}

func logKeys(logs []storage.LogRecord) []string {
	out := make([]string, len(logs))
	for i, r := range logs {
		out[i] = r.Body
	}
	return out
}
