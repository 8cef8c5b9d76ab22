package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// jaegerTrace is a trace in the Jaeger-compatible API's JSON.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		TraceID       string `json:"traceID"`
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		References    []struct {
			RefType string `json:"refType"`
			TraceID string `json:"traceID"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		StartTime int64      `json:"startTime"`
		Duration  int64      `json:"duration"`
		Tags      []keyValue `json:"tags"`
		Logs      []struct {
			Timestamp int64      `json:"timestamp"`
			Fields    []keyValue `json:"fields"`
		} `json:"logs"`
		ProcessID string `json:"processID"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string     `json:"serviceName"`
		Tags        []keyValue `json:"tags"`
	} `json:"processes"`
}

type keyValue struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// traces reads one trace into Grafana's trace frame (the shape its trace
// view reads: one row per span, times in milliseconds, tags, logs and
// references as JSON).
func (d *Datasource) traces(ctx context.Context, q Query) (data.Frames, error) {
	id := strings.TrimSpace(q.TraceID)
	if id == "" || len(id) > 32 || strings.Trim(strings.ToLower(id), "0123456789abcdef") != "" {
		return nil, &queryError{fmt.Sprintf("traceId must be 1 to 32 hex digits, got %q", q.TraceID)}
	}
	var res struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := d.client.get(ctx, "/api/traces/"+url.PathEscape(id), nil, &res); err != nil {
		return nil, err
	}
	var (
		traceIDs, spanIDs, parents, ops, services, kinds, statusMsgs []string
		serviceTags, tags, logs, refs                                []json.RawMessage
		starts, durations                                            []float64
		statuses                                                     []int64
	)
	for _, tr := range res.Data {
		for _, sp := range tr.Spans {
			parent := ""
			var other []map[string]string
			for _, r := range sp.References {
				if r.RefType == "CHILD_OF" && r.TraceID == sp.TraceID && parent == "" {
					parent = r.SpanID
					continue
				}
				other = append(other, map[string]string{"traceID": r.TraceID, "spanID": r.SpanID})
			}
			p := tr.Processes[sp.ProcessID]
			kind, status, msg := "", int64(0), ""
			var spanTags []keyValue
			for _, t := range sp.Tags {
				switch t.Key {
				case "span.kind":
					kind, _ = t.Value.(string)
				case "otel.status_code":
					switch t.Value {
					case "OK":
						status = 1
					case "ERROR":
						status = 2
					}
				case "otel.status_description":
					msg, _ = t.Value.(string)
				default:
					spanTags = append(spanTags, t)
				}
			}
			type log struct {
				Timestamp float64    `json:"timestamp"`
				Fields    []keyValue `json:"fields"`
			}
			spanLogs := []log{}
			for _, l := range sp.Logs {
				spanLogs = append(spanLogs, log{Timestamp: float64(l.Timestamp) / 1000, Fields: l.Fields})
			}
			traceIDs, spanIDs, parents = append(traceIDs, sp.TraceID), append(spanIDs, sp.SpanID), append(parents, parent)
			ops, services, kinds, statusMsgs = append(ops, sp.OperationName), append(services, p.ServiceName), append(kinds, kind), append(statusMsgs, msg)
			serviceTags, tags = append(serviceTags, mustJSON(orEmpty(p.Tags))), append(tags, mustJSON(orEmpty(spanTags)))
			logs, refs = append(logs, mustJSON(spanLogs)), append(refs, mustJSON(orEmptyRefs(other)))
			starts, durations = append(starts, float64(sp.StartTime)/1000), append(durations, float64(sp.Duration)/1000)
			statuses = append(statuses, status)
		}
	}
	f := data.NewFrame("trace",
		data.NewField("traceID", nil, nonNil(traceIDs)), data.NewField("spanID", nil, nonNil(spanIDs)),
		data.NewField("parentSpanID", nil, nonNil(parents)), data.NewField("operationName", nil, nonNil(ops)),
		data.NewField("serviceName", nil, nonNil(services)), data.NewField("serviceTags", nil, nonNilRaw(serviceTags)),
		data.NewField("startTime", nil, nonNilF(starts)), data.NewField("duration", nil, nonNilF(durations)),
		data.NewField("logs", nil, nonNilRaw(logs)), data.NewField("references", nil, nonNilRaw(refs)),
		data.NewField("tags", nil, nonNilRaw(tags)), data.NewField("kind", nil, nonNil(kinds)),
		data.NewField("statusCode", nil, nonNilI(statuses)), data.NewField("statusMessage", nil, nonNil(statusMsgs)))
	f.Meta = &data.FrameMeta{PreferredVisualization: data.VisTypeTrace}
	return data.Frames{f}, nil
}

func orEmpty(kvs []keyValue) []keyValue {
	if kvs == nil {
		return []keyValue{}
	}
	return kvs
}

func orEmptyRefs(r []map[string]string) []map[string]string {
	if r == nil {
		return []map[string]string{}
	}
	return r
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		// Values decoded from JSON always encode.
		panic(err)
	}
	return b
}

func nonNilRaw(s []json.RawMessage) []json.RawMessage {
	if s == nil {
		return []json.RawMessage{}
	}
	return s
}

func nonNilF(s []float64) []float64 {
	if s == nil {
		return []float64{}
	}
	return s
}

func nonNilI(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return s
}

// serviceGraph reads the calls between services in the range into
// Grafana's node graph frames: nodes with their incoming calls, edges
// with their call counts.
func (d *Datasource) serviceGraph(ctx context.Context, q Query, from, to time.Time) (data.Frames, error) {
	v := url.Values{"endTs": {fmt.Sprint(to.UnixMilli())}, "lookback": {fmt.Sprint(to.Sub(from).Milliseconds())}}
	setIf(v, "service", q.Service)
	var res struct {
		Data []struct {
			Parent    string `json:"parent"`
			Child     string `json:"child"`
			CallCount int64  `json:"callCount"`
		} `json:"data"`
	}
	if err := d.client.get(ctx, "/api/dependencies", v, &res); err != nil {
		return nil, err
	}
	calls := map[string]float64{}
	var order []string
	node := func(s string) {
		if _, ok := calls[s]; !ok {
			calls[s] = 0
			order = append(order, s)
		}
	}
	var edgeIDs, sources, targets []string
	var counts []float64
	for _, dep := range res.Data {
		node(dep.Parent)
		node(dep.Child)
		calls[dep.Child] += float64(dep.CallCount)
		edgeIDs = append(edgeIDs, dep.Parent+"->"+dep.Child)
		sources, targets, counts = append(sources, dep.Parent), append(targets, dep.Child), append(counts, float64(dep.CallCount))
	}
	mains := make([]float64, len(order))
	for i, s := range order {
		mains[i] = calls[s]
	}
	meta := &data.FrameMeta{PreferredVisualization: data.VisTypeNodeGraph}
	nodes := data.NewFrame("nodes", data.NewField("id", nil, nonNil(order)), data.NewField("title", nil, nonNil(slicesClone(order))),
		data.NewField("mainstat", nil, nonNilF(mains)).SetConfig(&data.FieldConfig{DisplayName: "calls in"}))
	nodes.Meta = meta
	edges := data.NewFrame("edges", data.NewField("id", nil, nonNil(edgeIDs)), data.NewField("source", nil, nonNil(sources)),
		data.NewField("target", nil, nonNil(targets)), data.NewField("mainstat", nil, nonNilF(counts)).SetConfig(&data.FieldConfig{DisplayName: "calls"}))
	edges.Meta = meta
	return data.Frames{nodes, edges}, nil
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
