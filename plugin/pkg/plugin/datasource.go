// Package plugin is the backend of the aiops Grafana data source. It
// reads aiops over its HTTP APIs only (the incidents REST API, the logs
// API, the Jaeger-compatible trace API and the Prometheus query API) and
// turns the answers into Grafana data frames: tables of incidents,
// forecasts and runbook runs, anomaly scores with their normal band as
// time series, log lines whose trace ids link to traces, trace frames,
// node-graph frames of the service graph, and incident annotations.
package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/grafana/grafana-plugin-sdk-go/backend"
	"github.com/grafana/grafana-plugin-sdk-go/backend/instancemgmt"
	"github.com/grafana/grafana-plugin-sdk-go/data"
)

// Query types, the queryType of a query.
const (
	QueryIncidents    = "incidents"
	QueryAnnotations  = "annotations"
	QueryAnomalies    = "anomalies"
	QueryForecasts    = "forecasts"
	QueryRunbooks     = "runbooks"
	QueryLogs         = "logs"
	QueryTraces       = "traces"
	QueryServiceGraph = "serviceGraph"
)

// Query is the JSON model of a query, as the query editor writes it. Each
// query type reads the fields that apply to it.
type Query struct {
	Service     string `json:"service"`
	Status      string `json:"status"`   // incidents: open, acknowledged, resolved
	Severity    string `json:"severity"` // incidents
	Runbook     string `json:"runbook"`  // runbooks: only this runbook's runs
	Selector    string `json:"selector"` // anomalies, forecasts: a series selector
	MinScore    string `json:"minScore"` // anomalies
	Contains    string `json:"contains"` // logs
	Regexp      string `json:"regexp"`   // logs
	MinSeverity string `json:"minSeverity"`
	TraceID     string `json:"traceId"` // logs, traces
	Limit       int    `json:"limit"`
}

// Datasource is one configured aiops data source.
type Datasource struct {
	settings Settings
	client   *client
	uid      string
}

// NewDatasource builds an instance from its settings; Grafana calls it
// when a data source is created or its settings change.
func NewDatasource(_ context.Context, s backend.DataSourceInstanceSettings) (instancemgmt.Instance, error) {
	set, err := LoadSettings(s)
	if err != nil {
		return nil, err
	}
	return &Datasource{
		settings: set,
		uid:      s.UID,
		client:   &client{base: set.URL, token: set.Token, http: &http.Client{Timeout: set.Timeout}},
	}, nil
}

// Dispose is called when the settings change; nothing is held open.
func (d *Datasource) Dispose() {}

// CheckHealth says whether aiops answers and takes the token, and what is
// wrong when not: unreachable, a refused token, a token without the read
// scope.
func (d *Datasource) CheckHealth(ctx context.Context, _ *backend.CheckHealthRequest) (*backend.CheckHealthResult, error) {
	var page struct {
		Incidents []json.RawMessage `json:"incidents"`
	}
	err := d.client.get(ctx, "/api/v1/incidents", url.Values{"limit": {"1"}}, &page)
	fail := func(msg string) (*backend.CheckHealthResult, error) {
		return &backend.CheckHealthResult{Status: backend.HealthStatusError, Message: msg}, nil
	}
	var (
		se *statusError
		ne net.Error
		oe *net.OpError
	)
	switch {
	case err == nil:
		return &backend.CheckHealthResult{Status: backend.HealthStatusOk, Message: "aiops answers at " + d.settings.URL.String()}, nil
	case d.settings.Token == "" && isStatus(err, http.StatusUnauthorized):
		return fail("aiops asks for a token: set one (aiops token create --name grafana --scopes read) in the data source's Token field")
	case isStatus(err, http.StatusUnauthorized):
		return fail("aiops refused the token (401): it is unknown, revoked or expired")
	case isStatus(err, http.StatusForbidden):
		return fail("the token lacks the read scope (403): create one with aiops token create --name grafana --scopes read")
	case errors.As(err, &se):
		return fail(fmt.Sprintf("aiops answered %d to %s: %s", se.Status, se.Path, se.Msg))
	case errors.As(err, &oe), errors.As(err, &ne):
		return fail(fmt.Sprintf("aiops is unreachable at %s: %v", d.settings.URL, err))
	default:
		return fail(fmt.Sprintf("aiops at %s: %v", d.settings.URL, err))
	}
}

// QueryData answers each query of the request on its own: one failing
// query does not fail the others.
func (d *Datasource) QueryData(ctx context.Context, req *backend.QueryDataRequest) (*backend.QueryDataResponse, error) {
	res := backend.NewQueryDataResponse()
	for _, q := range req.Queries {
		frames, err := d.query(ctx, q)
		if err != nil {
			res.Responses[q.RefID] = errorResponse(err)
			continue
		}
		res.Responses[q.RefID] = backend.DataResponse{Frames: frames}
	}
	return res, nil
}

// errorResponse says whose fault a failed query is: the query's (400,
// the plugin's source), aiops's refusal (its status) or aiops being
// unreachable or failing (502).
func errorResponse(err error) backend.DataResponse {
	var se *statusError
	switch {
	case isQueryError(err):
		return backend.ErrDataResponseWithSource(backend.StatusBadRequest, backend.ErrorSourcePlugin, err.Error())
	case errors.As(err, &se) && se.Status < 500:
		return backend.ErrDataResponseWithSource(backend.Status(se.Status), backend.ErrorSourceDownstream, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return backend.ErrDataResponseWithSource(backend.StatusTimeout, backend.ErrorSourceDownstream, err.Error())
	}
	return backend.ErrDataResponseWithSource(backend.StatusBadGateway, backend.ErrorSourceDownstream, err.Error())
}

// queryError is a query the plugin cannot run as written.
type queryError struct{ msg string }

func (e *queryError) Error() string { return e.msg }

func isQueryError(err error) bool {
	var qe *queryError
	return errors.As(err, &qe)
}

func (d *Datasource) query(ctx context.Context, dq backend.DataQuery) (data.Frames, error) {
	var q Query
	if len(dq.JSON) > 0 {
		if err := json.Unmarshal(dq.JSON, &q); err != nil {
			return nil, &queryError{fmt.Sprintf("the query is not valid JSON: %v", err)}
		}
	}
	if q.Limit < 0 {
		return nil, &queryError{fmt.Sprintf("limit must be >= 0, got %d", q.Limit)}
	}
	from, to := dq.TimeRange.From.UTC(), dq.TimeRange.To.UTC()
	switch dq.QueryType {
	case QueryIncidents, "":
		return d.incidents(ctx, q, from, to)
	case QueryAnnotations:
		return d.annotations(ctx, q, from, to)
	case QueryRunbooks:
		return d.runbooks(ctx, q, from, to)
	case QueryAnomalies:
		return d.anomalies(ctx, q, from, to)
	case QueryForecasts:
		return d.forecasts(ctx, q, to)
	case QueryLogs:
		return d.logs(ctx, q, from, to)
	case QueryTraces:
		return d.traces(ctx, q)
	case QueryServiceGraph:
		return d.serviceGraph(ctx, q, from, to)
	}
	return nil, &queryError{fmt.Sprintf("unknown query type %q; want one of incidents, annotations, runbooks, anomalies, forecasts, logs, traces, serviceGraph", dq.QueryType)}
}

func rfc3339(t time.Time) string { return t.Format(time.RFC3339Nano) }

func setIf(v url.Values, k, s string) {
	if s != "" {
		v.Set(k, s)
	}
}

func limitOr(n, def int) string {
	if n == 0 {
		n = def
	}
	return strconv.Itoa(n)
}
