package incidents

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/aiops-dev/aiops/analyzer/results"
	"github.com/aiops-dev/aiops/storage"
)

func anomaly(t *testing.T, service string, at time.Time, score float64) storage.Event {
	t.Helper()
	series := map[string]string{"__name__": "http_server_request_duration_seconds_p95", "job": service}
	exp := 0.2
	payload, err := json.Marshal(results.Anomaly{Series: series, Time: at, Score: score, Value: 3.5, Expected: &exp, Surprise: 5})
	if err != nil {
		t.Fatal(err)
	}
	return storage.Event{ID: fmt.Sprintf("anomaly-%s-%d", service, at.UnixNano()), Time: at, Kind: results.AnomalyKind,
		Subject: service, Labels: series, Payload: payload}
}

func TestAnomalies(t *testing.T) {
	e := newEnv(t, envOptions{})
	now := time.Now().UTC().Truncate(time.Second)
	var evs []storage.Event
	for i := range 30 {
		svc := "api"
		if i%3 == 0 {
			svc = "postgres"
		}
		evs = append(evs, anomaly(t, svc, now.Add(-time.Duration(30-i)*time.Minute), 0.6+float64(i)/100))
	}
	evs = append(evs, anomaly(t, "api", now.Add(-3*time.Hour), 1)) // outside the default hour
	if err := e.store.AppendEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	type page struct {
		Anomalies  []anomalyView `json:"anomalies"`
		NextCursor string        `json:"next_cursor"`
	}
	get := func(q string) page {
		var p page
		e.do(http.MethodGet, "/api/v1/anomalies?"+q, e.readTok, nil).decode(t, &p)
		return p
	}
	if p := get(""); len(p.Anomalies) != 30 || p.NextCursor != "" || p.Anomalies[0].Service != "postgres" || p.Anomalies[0].Expected == nil || p.Anomalies[0].Lower != nil {
		t.Fatalf("last hour: %d anomalies, first %+v", len(p.Anomalies), p.Anomalies[0])
	}
	if p := get("start=" + fmt.Sprint(now.Add(-4*time.Hour).Unix())); len(p.Anomalies) != 31 {
		t.Fatalf("four hours: %d", len(p.Anomalies))
	}
	if p := get("service=postgres"); len(p.Anomalies) != 10 {
		t.Fatalf("postgres: %d", len(p.Anomalies))
	}
	if p := get("min_score=0.85"); len(p.Anomalies) != 5 {
		t.Fatalf("min_score: %d", len(p.Anomalies))
	}
	if p := get("match[]=" + url.QueryEscape(`http_server_request_duration_seconds_p95{job="api"}`)); len(p.Anomalies) != 20 || p.Anomalies[0].Metric != "http_server_request_duration_seconds_p95" {
		t.Fatalf("selector: %d", len(p.Anomalies))
	}

	// Pages of 7 of the api anomalies: each once, in time order.
	seen := map[string]bool{}
	var last time.Time
	cursor, pages := "", 0
	for {
		q := "service=api&limit=7"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		p := get(q)
		pages++
		for _, a := range p.Anomalies {
			if seen[a.ID] || a.Time.Before(last) {
				t.Fatalf("page %d: %s repeated or out of order", pages, a.ID)
			}
			seen[a.ID], last = true, a.Time
		}
		if p.NextCursor == "" {
			break
		}
		cursor = p.NextCursor
	}
	if len(seen) != 20 || pages != 3 {
		t.Fatalf("%d anomalies in %d pages", len(seen), pages)
	}
	e.do(http.MethodGet, "/api/v1/anomalies?cursor="+encodeCursor("inc", now, "x"), e.readTok, nil).wantError(t, http.StatusBadRequest, "invalid", "cursor")
}

func TestForecasts(t *testing.T) {
	e := newEnv(t, envOptions{})
	now := time.Now()
	app := e.store.Appender(context.Background())
	add := func(name string, at time.Time, v float64, kv ...string) {
		if _, err := app.Append(0, labels.FromStrings(append([]string{"__name__", name}, kv...)...), at.UnixMilli(), v); err != nil {
			t.Fatal(err)
		}
	}
	pg := []string{"aiops_metric", "db_client_connection_count", "job", "postgres", "pool", "main"}
	disk := []string{"aiops_metric", "system_filesystem_usage_bytes", "job", "api"}
	old := []string{"aiops_metric", "system_filesystem_usage_bytes", "job", "batch"}
	add(results.ExhaustionMetric, now.Add(-6*time.Minute), 4000, pg...) // superseded
	add(results.ExhaustionMetric, now.Add(-time.Minute), 3600, pg...)
	add(results.ExhaustionLowerMetric, now.Add(-time.Minute), 1800, pg...)
	add(results.ExhaustionUpperMetric, now.Add(-time.Minute), 7200, pg...)
	add(results.ExhaustionMetric, now.Add(-2*time.Minute), math.Inf(1), disk...)
	add(results.ExhaustionLowerMetric, now.Add(-2*time.Minute), 86400, disk...)
	add(results.ExhaustionUpperMetric, now.Add(-2*time.Minute), math.Inf(1), disk...)
	add(results.ExhaustionMetric, now.Add(-2*time.Hour), 60, old...) // too old to show
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	type list struct {
		Time      time.Time      `json:"time"`
		Forecasts []forecastView `json:"forecasts"`
	}
	get := func(q string) list {
		var l list
		e.do(http.MethodGet, "/api/v1/forecasts?"+q, e.readTok, nil).decode(t, &l)
		return l
	}
	l := get("")
	if len(l.Forecasts) != 2 {
		t.Fatalf("forecasts: %+v", l.Forecasts)
	}
	f := l.Forecasts[0]
	if f.Service != "postgres" || f.Metric != "db_client_connection_count" || *f.Seconds != 3600 || *f.Lower != 1800 || *f.Upper != 7200 ||
		f.ExhaustsAt == nil || f.ExhaustsAt.Sub(now) < 58*time.Minute || f.ExhaustsAt.Sub(now) > time.Hour || f.Labels["pool"] != "main" {
		t.Errorf("postgres forecast %+v", f)
	}
	if g := l.Forecasts[1]; g.Service != "api" || g.Seconds != nil || g.ExhaustsAt != nil || *g.Lower != 86400 || g.Upper != nil {
		t.Errorf("api forecast %+v", g)
	}
	if l := get("within=2h"); len(l.Forecasts) != 1 || l.Forecasts[0].Service != "postgres" {
		t.Errorf("within 2h: %+v", l.Forecasts)
	}
	if l := get("service=api"); len(l.Forecasts) != 1 || l.Forecasts[0].Service != "api" {
		t.Errorf("service: %+v", l.Forecasts)
	}
	if l := get("match[]=" + url.QueryEscape(`{pool="main"}`)); len(l.Forecasts) != 1 {
		t.Errorf("selector: %+v", l.Forecasts)
	}
	if l := get("lookback=3h"); len(l.Forecasts) != 3 || l.Forecasts[0].Labels["job"] != "batch" {
		t.Errorf("lookback 3h: %+v", l.Forecasts)
	}
	if l := get("time=" + fmt.Sprint(now.Add(-5*time.Minute).Unix())); len(l.Forecasts) != 1 || *l.Forecasts[0].Seconds != 4000 {
		t.Errorf("five minutes ago: %+v", l.Forecasts)
	}
}
