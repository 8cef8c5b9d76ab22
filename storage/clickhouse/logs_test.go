package clickhouse

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func TestLogs(t *testing.T) {
	s := openStore(t)
	records := []storage.LogRecord{
		{Timestamp: t0, ObservedTimestamp: t0.Add(time.Millisecond), TraceID: "aa", SpanID: "01", SeverityText: "INFO", SeverityNumber: 9,
			Body: "started", ServiceName: "api", ScopeName: "main", Attributes: map[string]string{"k": "v", "a": "b"},
			ResourceAttributes: map[string]string{"service.name": "api", "host": "h1"}},
		{Timestamp: t0.Add(time.Second), SeverityText: "ERROR", SeverityNumber: 17, Body: "failed: it's \\ broken", ServiceName: "api", TraceID: "aa"},
		{Timestamp: t0.Add(2 * time.Second), SeverityNumber: 13, Body: "slow", ServiceName: "worker", TraceID: "bb"},
		{Timestamp: t0.Add(2 * time.Second), SeverityNumber: 5, Body: "same time, other body", ServiceName: "worker"},
		{Timestamp: t0.Add(48 * time.Hour), SeverityNumber: 9, Body: "two days later", ServiceName: "api"},
	}
	if err := s.AppendLogs(ctx, records); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendLogs(ctx, nil); err != nil {
		t.Fatal(err)
	}
	all, err := s.QueryLogs(ctx, storage.LogQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(records) {
		t.Fatalf("got %d records", len(all))
	}
	// Newest first; the full record comes back.
	if all[0].Body != "two days later" || all[len(all)-1].Body != "started" {
		t.Errorf("order: %q ... %q", all[0].Body, all[len(all)-1].Body)
	}
	if !reflect.DeepEqual(all[len(all)-1], records[0]) {
		t.Errorf("round trip:\n got %+v\nwant %+v", all[len(all)-1], records[0])
	}
	if all[len(all)-2].Body != records[1].Body {
		t.Errorf("escaped body: %q", all[len(all)-2].Body)
	}
	for _, tc := range []struct {
		q    storage.LogQuery
		want []string
	}{
		{storage.LogQuery{ServiceName: "worker"}, []string{"same time, other body", "slow"}},
		{storage.LogQuery{TraceID: "aa"}, []string{"failed: it's \\ broken", "started"}},
		{storage.LogQuery{MinSeverity: 13}, []string{"slow", "failed: it's \\ broken"}},
		{storage.LogQuery{Start: t0.Add(time.Second), End: t0.Add(2 * time.Second)}, []string{"same time, other body", "slow", "failed: it's \\ broken"}},
		{storage.LogQuery{Start: t0.Add(time.Second + 1)}, []string{"two days later", "same time, other body", "slow"}},
		{storage.LogQuery{End: t0}, []string{"started"}},
		{storage.LogQuery{Limit: 2}, []string{"two days later", "same time, other body"}},
		{storage.LogQuery{ServiceName: "api", MinSeverity: 9, End: t0.Add(time.Hour), Limit: 1}, []string{"failed: it's \\ broken"}},
	} {
		got, err := s.QueryLogs(ctx, tc.q)
		if err != nil {
			t.Fatal(err)
		}
		var bodies []string
		for _, r := range got {
			bodies = append(bodies, r.Body)
		}
		// Records with the same timestamp are ordered by id, a digest:
		// compare those as a set.
		if !sameOrderedModuloTies(bodies, tc.want, got) {
			t.Errorf("%+v: got %q, want %q", tc.q, bodies, tc.want)
		}
	}
}

func sameOrderedModuloTies(got, want []string, recs []storage.LogRecord) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] == want[i] {
			continue
		}
		// Allow a swap with a neighbour of the same timestamp.
		if i+1 < len(got) && got[i] == want[i+1] && got[i+1] == want[i] && recs[i].Timestamp.Equal(recs[i+1].Timestamp) {
			continue
		}
		if i > 0 && got[i] == want[i-1] && got[i-1] == want[i] && recs[i].Timestamp.Equal(recs[i-1].Timestamp) {
			continue
		}
		return false
	}
	return true
}

func TestDefaultQueryLimit(t *testing.T) {
	s := openStore(t)
	n := storage.DefaultQueryLimit + 5
	records := make([]storage.LogRecord, n)
	for i := range records {
		records[i] = storage.LogRecord{Timestamp: t0.Add(time.Duration(i) * time.Millisecond), Body: fmt.Sprint(i)}
	}
	if err := s.AppendLogs(ctx, records); err != nil {
		t.Fatal(err)
	}
	got, err := s.QueryLogs(ctx, storage.LogQuery{})
	if err != nil || len(got) != storage.DefaultQueryLimit {
		t.Fatalf("Limit 0 returned %d records, %v; want %d", len(got), err, storage.DefaultQueryLimit)
	}
}

func TestSpans(t *testing.T) {
	s := openStore(t)
	spans := []storage.Span{
		{TraceID: "t1", SpanID: "s2", ParentSpanID: "s1", Name: "db", Kind: "Client", ServiceName: "api", ScopeName: "sql",
			StartTime: t0.Add(time.Millisecond), EndTime: t0.Add(5 * time.Millisecond), StatusCode: "Error", StatusMessage: "timeout",
			Attributes: map[string]string{"db.system": "postgresql"}, ResourceAttributes: map[string]string{"service.name": "api"}},
		{TraceID: "t1", SpanID: "s1", Name: "GET /", Kind: "Server", ServiceName: "api", StartTime: t0, EndTime: t0.Add(10 * time.Millisecond), StatusCode: "Ok"},
		{TraceID: "t2", SpanID: "s3", Name: "job", Kind: "Internal", ServiceName: "worker", StartTime: t0.Add(time.Second), EndTime: t0.Add(2 * time.Second), StatusCode: "Unset"},
		{TraceID: "t0", SpanID: "s9", Name: "tie", ServiceName: "worker", StartTime: t0.Add(time.Second)},
	}
	if err := s.AppendSpans(ctx, spans); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendSpans(ctx, []storage.Span{{Name: "no ids"}}); err == nil {
		t.Error("span without ids accepted")
	}
	ids := func(q storage.SpanQuery) []string {
		t.Helper()
		got, err := s.QuerySpans(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, sp := range got {
			out = append(out, sp.SpanID)
		}
		return out
	}
	// Ordered by start time, then trace and span id.
	if got := ids(storage.SpanQuery{}); !reflect.DeepEqual(got, []string{"s1", "s2", "s9", "s3"}) {
		t.Errorf("all spans: %v", got)
	}
	for _, tc := range []struct {
		q    storage.SpanQuery
		want []string
	}{
		{storage.SpanQuery{TraceID: "t1"}, []string{"s1", "s2"}},
		{storage.SpanQuery{ServiceName: "worker"}, []string{"s9", "s3"}},
		{storage.SpanQuery{Start: t0.Add(time.Millisecond), End: t0.Add(time.Second)}, []string{"s2", "s9", "s3"}},
		{storage.SpanQuery{End: t0}, []string{"s1"}},
		{storage.SpanQuery{Limit: 1, ServiceName: "api"}, []string{"s1"}},
	} {
		if got := ids(tc.q); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.q, got, tc.want)
		}
	}
	got, err := s.QuerySpans(ctx, storage.SpanQuery{TraceID: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got[1], spans[0]) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got[1], spans[0])
	}
}

func TestEvents(t *testing.T) {
	s := openStore(t)
	events := []storage.Event{
		{ID: "b", Time: t0, Kind: "incident.opened", Subject: "inc-1", Labels: map[string]string{"severity": "page"}, Payload: []byte(`{"x":1}`)},
		{ID: "a", Time: t0, Kind: "incident.acknowledged", Subject: "inc-1"},
		{ID: "c", Time: t0.Add(time.Minute), Kind: "anomaly", Subject: "fp-42", Payload: []byte{0, 1, 2, 255}},
		{ID: "d", Time: t0.Add(2 * time.Minute), Kind: "incident.resolved", Subject: "inc-1"},
	}
	if err := s.AppendEvents(ctx, events); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendEvents(ctx, []storage.Event{{Kind: "x"}}); err == nil {
		t.Error("event without id accepted")
	}
	ids := func(q storage.EventQuery) []string {
		t.Helper()
		got, err := s.QueryEvents(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range got {
			out = append(out, e.ID)
		}
		return out
	}
	for _, tc := range []struct {
		q    storage.EventQuery
		want []string
	}{
		{storage.EventQuery{}, []string{"a", "b", "c", "d"}},
		{storage.EventQuery{KindPrefix: "incident."}, []string{"a", "b", "d"}},
		{storage.EventQuery{Subject: "fp-42"}, []string{"c"}},
		{storage.EventQuery{Start: t0.Add(time.Second), End: t0.Add(time.Minute)}, []string{"c"}},
		{storage.EventQuery{AfterTime: t0, AfterID: "a"}, []string{"b", "c", "d"}},
		{storage.EventQuery{AfterTime: t0, AfterID: "b", Limit: 1}, []string{"c"}},
		{storage.EventQuery{KindPrefix: "incident.", Subject: "inc-1", Limit: 2}, []string{"a", "b"}},
	} {
		if got := ids(tc.q); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.q, got, tc.want)
		}
	}
	got, err := s.QueryEvents(ctx, storage.EventQuery{Subject: "inc-1", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got[1], events[0]) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got[1], events[0])
	}
	got, _ = s.QueryEvents(ctx, storage.EventQuery{Subject: "fp-42"})
	if string(got[0].Payload) != string(events[2].Payload) {
		t.Errorf("binary payload: %v", got[0].Payload)
	}
}
