package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// incident is what the plugin reads of an incident (GET /api/v1/incidents).
type incident struct {
	ID           string     `json:"id"`
	Status       string     `json:"status"`
	Title        string     `json:"title"`
	Summary      string     `json:"summary"`
	Severity     string     `json:"severity"`
	Service      string     `json:"service"`
	OpenedAt     time.Time  `json:"opened_at"`
	ResolvedAt   *time.Time `json:"resolved_at"`
	Assignee     string     `json:"assignee"`
	FiringAlerts int64      `json:"firing_alerts"`
	Runbooks     []struct {
		RunID      string     `json:"run_id"`
		Runbook    string     `json:"runbook"`
		StartedAt  *time.Time `json:"started_at"`
		FinishedAt *time.Time `json:"finished_at"`
		Outcome    string     `json:"outcome"`
		Message    string     `json:"message"`
	} `json:"runbooks"`
}

// listIncidents reads the incidents opened in [from, to], following the
// cursor up to limit.
func (d *Datasource) listIncidents(ctx context.Context, q Query, from, to time.Time) ([]incident, error) {
	limit, _ := strconv.Atoi(limitOr(q.Limit, 500))
	v := url.Values{"start": {rfc3339(from)}, "end": {rfc3339(to)}}
	setIf(v, "service", q.Service)
	setIf(v, "status", q.Status)
	setIf(v, "severity", q.Severity)
	var out []incident
	for len(out) < limit {
		v.Set("limit", strconv.Itoa(min(limit-len(out), 1000)))
		var page struct {
			Incidents  []incident `json:"incidents"`
			NextCursor string     `json:"next_cursor"`
		}
		if err := d.client.get(ctx, "/api/v1/incidents", v, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Incidents...)
		if page.NextCursor == "" {
			break
		}
		v.Set("cursor", page.NextCursor)
	}
	return out, nil
}

func (d *Datasource) incidents(ctx context.Context, q Query, from, to time.Time) (data.Frames, error) {
	incs, err := d.listIncidents(ctx, q, from, to)
	if err != nil {
		return nil, err
	}
	n := len(incs)
	ids, titles, statuses, sevs, services, assignees := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	opened, resolved := make([]time.Time, n), make([]*time.Time, n)
	firing := make([]int64, n)
	for i, inc := range incs {
		ids[i], titles[i], statuses[i], sevs[i], services[i], assignees[i] = inc.ID, inc.Title, inc.Status, inc.Severity, inc.Service, inc.Assignee
		opened[i], resolved[i], firing[i] = inc.OpenedAt, inc.ResolvedAt, inc.FiringAlerts
	}
	idField := data.NewField("id", nil, ids).SetConfig(&data.FieldConfig{Links: []data.DataLink{{
		Title: "Open in aiops", TargetBlank: true, URL: d.settings.URL.String() + "/api/v1/incidents/${__value.raw}",
	}}})
	f := data.NewFrame("incidents", idField,
		data.NewField("title", nil, titles), data.NewField("status", nil, statuses), data.NewField("severity", nil, sevs),
		data.NewField("service", nil, services), data.NewField("opened", nil, opened), data.NewField("resolved", nil, resolved),
		data.NewField("firing alerts", nil, firing), data.NewField("assignee", nil, assignees))
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable}
	return data.Frames{f}, nil
}

// annotations are incidents as Grafana annotations: a region from opening
// to resolution (to now while open).
func (d *Datasource) annotations(ctx context.Context, q Query, from, to time.Time) (data.Frames, error) {
	incs, err := d.listIncidents(ctx, q, from, to)
	if err != nil {
		return nil, err
	}
	n := len(incs)
	times, ends := make([]time.Time, n), make([]time.Time, n)
	titles, texts, tags := make([]string, n), make([]string, n), make([]string, n)
	for i, inc := range incs {
		times[i], ends[i] = inc.OpenedAt, to
		if inc.ResolvedAt != nil {
			ends[i] = *inc.ResolvedAt
		}
		titles[i] = inc.Title
		texts[i] = fmt.Sprintf("%s · %s · %s", inc.Severity, inc.Status, inc.Summary)
		tags[i] = strings.Join([]string{"aiops", inc.Severity, inc.Service}, ",")
	}
	return data.Frames{data.NewFrame("incidents",
		data.NewField("time", nil, times), data.NewField("timeEnd", nil, ends),
		data.NewField("title", nil, titles), data.NewField("text", nil, texts), data.NewField("tags", nil, tags))}, nil
}

// runbooks lists the runbook runs of the incidents opened in the range,
// of one runbook when the query names it.
func (d *Datasource) runbooks(ctx context.Context, q Query, from, to time.Time) (data.Frames, error) {
	incs, err := d.listIncidents(ctx, q, from, to)
	if err != nil {
		return nil, err
	}
	var (
		incIDs, runIDs, books, outcomes, msgs []string
		started, finished                     []*time.Time
	)
	for _, inc := range incs {
		for _, r := range inc.Runbooks {
			if q.Runbook != "" && r.Runbook != q.Runbook {
				continue
			}
			incIDs, runIDs, books = append(incIDs, inc.ID), append(runIDs, r.RunID), append(books, r.Runbook)
			outcomes, msgs = append(outcomes, r.Outcome), append(msgs, r.Message)
			started, finished = append(started, r.StartedAt), append(finished, r.FinishedAt)
		}
	}
	f := data.NewFrame("runbook runs",
		data.NewField("incident", nil, nonNil(incIDs)), data.NewField("run", nil, nonNil(runIDs)), data.NewField("runbook", nil, nonNil(books)),
		data.NewField("started", nil, nonNilT(started)), data.NewField("finished", nil, nonNilT(finished)),
		data.NewField("outcome", nil, nonNil(outcomes)), data.NewField("message", nil, nonNil(msgs)))
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable}
	return data.Frames{f}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilT(s []*time.Time) []*time.Time {
	if s == nil {
		return []*time.Time{}
	}
	return s
}

// matrix is a Prometheus range query result.
type matrix []struct {
	Metric map[string]string `json:"metric"`
	Values [][2]any          `json:"values"`
}

// anomalies are the anomaly scores of the series the selector picks, as
// time series, and the normal band (expected value, lower and upper
// bounds) and the observed value at each recorded anomaly.
func (d *Datasource) anomalies(ctx context.Context, q Query, from, to time.Time) (data.Frames, error) {
	sel := q.Selector
	if sel == "" {
		sel = "{}"
	}
	if !strings.HasPrefix(sel, "{") {
		return nil, &queryError{fmt.Sprintf("selector must be a label selector such as {aiops_metric=\"http_server_request_duration_seconds\"}, got %q", sel)}
	}
	score := "aiops_anomaly_score" + sel
	if q.Service != "" {
		score = fmt.Sprintf(`aiops_anomaly_score{service_name=%q}`, q.Service)
		if sel != "{}" {
			score = "aiops_anomaly_score" + strings.TrimSuffix(sel, "}") + fmt.Sprintf(`,service_name=%q}`, q.Service)
		}
	}
	step := max(to.Sub(from)/500, time.Second)
	var res struct {
		Data struct {
			Result matrix `json:"result"`
		} `json:"data"`
	}
	v := url.Values{"query": {score}, "start": {rfc3339(from)}, "end": {rfc3339(to)}, "step": {strconv.FormatFloat(step.Seconds(), 'f', -1, 64)}}
	if err := d.client.get(ctx, "/api/v1/query_range", v, &res); err != nil {
		return nil, err
	}
	var frames data.Frames
	for _, s := range res.Data.Result {
		times, vals := make([]time.Time, 0, len(s.Values)), make([]float64, 0, len(s.Values))
		for _, p := range s.Values {
			ts, _ := p[0].(float64)
			str, _ := p[1].(string)
			f, err := strconv.ParseFloat(str, 64)
			if err != nil {
				continue
			}
			times, vals = append(times, time.UnixMilli(int64(ts*1000)).UTC()), append(vals, f)
		}
		frames = append(frames, data.NewFrame("score",
			data.NewField("time", nil, times), data.NewField("score", data.Labels(s.Metric), vals)))
	}

	av := url.Values{"start": {rfc3339(from)}, "end": {rfc3339(to)}, "limit": {limitOr(q.Limit, 1000)}}
	setIf(av, "service", q.Service)
	setIf(av, "min_score", q.MinScore)
	if sel != "{}" {
		av.Set("match[]", sel)
	}
	var page struct {
		Anomalies []struct {
			Time     time.Time         `json:"time"`
			Series   map[string]string `json:"series"`
			Score    float64           `json:"score"`
			Value    float64           `json:"value"`
			Expected *float64          `json:"expected"`
			Lower    *float64          `json:"lower"`
			Upper    *float64          `json:"upper"`
		} `json:"anomalies"`
	}
	if err := d.client.get(ctx, "/api/v1/anomalies", av, &page); err != nil {
		return nil, err
	}
	type band struct {
		labels                 data.Labels
		times                  []time.Time
		values                 []float64
		expected, lower, upper []*float64
	}
	bands := map[string]*band{}
	for _, a := range page.Anomalies {
		key := data.Labels(a.Series).String()
		b := bands[key]
		if b == nil {
			b = &band{labels: data.Labels(a.Series)}
			bands[key] = b
		}
		b.times, b.values = append(b.times, a.Time), append(b.values, a.Value)
		b.expected, b.lower, b.upper = append(b.expected, a.Expected), append(b.lower, a.Lower), append(b.upper, a.Upper)
	}
	for _, key := range slices.Sorted(maps.Keys(bands)) {
		b := bands[key]
		// Anomalies come newest first; time series go oldest first.
		slices.Reverse(b.times)
		slices.Reverse(b.values)
		slices.Reverse(b.expected)
		slices.Reverse(b.lower)
		slices.Reverse(b.upper)
		frames = append(frames, data.NewFrame("anomalies", data.NewField("time", nil, b.times),
			data.NewField("value", b.labels, b.values), data.NewField("expected", b.labels, b.expected),
			data.NewField("lower", b.labels, b.lower), data.NewField("upper", b.labels, b.upper)))
	}
	if frames == nil {
		frames = data.Frames{data.NewFrame("score", data.NewField("time", nil, []time.Time{}), data.NewField("score", nil, []float64{}))}
	}
	return frames, nil
}

// forecasts are the capacity forecasts at the end of the range: time to
// exhaustion with its bounds.
func (d *Datasource) forecasts(ctx context.Context, q Query, at time.Time) (data.Frames, error) {
	v := url.Values{"time": {rfc3339(at)}}
	setIf(v, "service", q.Service)
	if q.Selector != "" {
		v.Set("match[]", q.Selector)
	}
	var page struct {
		Forecasts []struct {
			Labels     map[string]string `json:"labels"`
			Metric     string            `json:"metric"`
			Service    string            `json:"service"`
			Seconds    *float64          `json:"seconds"`
			Lower      *float64          `json:"lower"`
			Upper      *float64          `json:"upper"`
			ExhaustsAt *time.Time        `json:"exhausts_at"`
		} `json:"forecasts"`
	}
	if err := d.client.get(ctx, "/api/v1/forecasts", v, &page); err != nil {
		return nil, err
	}
	n := len(page.Forecasts)
	metrics, services, labels := make([]string, n), make([]string, n), make([]string, n)
	secs, lower, upper := make([]*float64, n), make([]*float64, n), make([]*float64, n)
	at2 := make([]*time.Time, n)
	for i, f := range page.Forecasts {
		metrics[i], services[i], labels[i] = f.Metric, f.Service, data.Labels(f.Labels).String()
		secs[i], lower[i], upper[i], at2[i] = f.Seconds, f.Lower, f.Upper, f.ExhaustsAt
	}
	secField := data.NewField("time to exhaustion", nil, secs).SetConfig(&data.FieldConfig{Unit: "s"})
	fr := data.NewFrame("forecasts", data.NewField("metric", nil, metrics), data.NewField("service", nil, services),
		data.NewField("series", nil, labels), secField,
		data.NewField("lower", nil, lower).SetConfig(&data.FieldConfig{Unit: "s"}),
		data.NewField("upper", nil, upper).SetConfig(&data.FieldConfig{Unit: "s"}),
		data.NewField("exhausts at", nil, at2))
	fr.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTable}
	return data.Frames{fr}, nil
}

// logs are log lines in Grafana's log frame; a line's trace id links to
// the trace through this data source.
func (d *Datasource) logs(ctx context.Context, q Query, from, to time.Time) (data.Frames, error) {
	v := url.Values{"start": {rfc3339(from)}, "end": {rfc3339(to)}, "limit": {limitOr(q.Limit, 1000)}}
	setIf(v, "service", q.Service)
	setIf(v, "contains", q.Contains)
	setIf(v, "regexp", q.Regexp)
	setIf(v, "min_severity", q.MinSeverity)
	setIf(v, "trace_id", q.TraceID)
	var page struct {
		Logs []struct {
			ID         string            `json:"id"`
			Time       time.Time         `json:"time"`
			Severity   string            `json:"severity"`
			Body       string            `json:"body"`
			Service    string            `json:"service"`
			TraceID    string            `json:"trace_id"`
			SpanID     string            `json:"span_id"`
			Attributes map[string]string `json:"attributes"`
			Resource   map[string]string `json:"resource"`
		} `json:"logs"`
	}
	if err := d.client.get(ctx, "/api/v1/logs", v, &page); err != nil {
		return nil, err
	}
	n := len(page.Logs)
	times, bodies, sevs, ids, traces := make([]time.Time, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	labels := make([]json.RawMessage, n)
	for i, l := range page.Logs {
		times[i], bodies[i], sevs[i], ids[i], traces[i] = l.Time, l.Body, strings.ToLower(l.Severity), l.ID, l.TraceID
		all := map[string]string{"service": l.Service}
		maps.Copy(all, l.Resource)
		maps.Copy(all, l.Attributes)
		if l.SpanID != "" {
			all["span_id"] = l.SpanID
		}
		labels[i], _ = json.Marshal(all)
	}
	traceField := data.NewField("traceID", nil, traces).SetConfig(&data.FieldConfig{Links: []data.DataLink{{
		Title: "Trace",
		Internal: &data.InternalDataLink{DatasourceUID: d.uid, DatasourceName: "aiops",
			Query: map[string]any{"queryType": QueryTraces, "traceId": "${__value.raw}"}},
	}}})
	f := data.NewFrame("logs", data.NewField("timestamp", nil, times), data.NewField("body", nil, bodies),
		data.NewField("severity", nil, sevs), data.NewField("id", nil, ids), data.NewField("labels", nil, labels), traceField)
	f.Meta = &data.FrameMeta{Type: data.FrameTypeLogLines, TypeVersion: data.FrameTypeVersion{0, 0}, PreferredVisualization: data.VisTypeLogs}
	return data.Frames{f}, nil
}
