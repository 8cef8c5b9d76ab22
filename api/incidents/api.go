// Package incidents serves the REST API for incident data under /api/v1/:
// incidents (list, get, timeline, acknowledge, resolve, assign, notes,
// escalate, root causes), alerts (of an incident, and current), silences,
// anomalies and capacity forecasts, with its OpenAPI 3 document at
// /api/v1/openapi.json. See docs/API.md.
//
// The paths sit beside Prometheus's query API under the same prefix and
// never take one of its routes. Authentication and scopes are the auth
// middleware's (GET needs read, POST write); the principal it puts in the
// request context is the actor of every change.
package incidents

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/prometheus/alertmanager/silence"

	"github.com/aiops-dev/aiops/alerting/alertmanager"
	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/internal/restapi"
	"github.com/aiops-dev/aiops/storage"
)

// Prefix is where every route of this API lives.
const Prefix = "/api/v1"

// Incidents is what the API needs of the incident manager
// (*incident.Manager).
type Incidents interface {
	List(q incident.Query) ([]incident.Incident, *incident.Cursor)
	Get(id string) (incident.Incident, error)
	Timeline(ctx context.Context, id string) ([]incident.Event, error)
	Acknowledge(ctx context.Context, id string, a incident.Action) (incident.Incident, error)
	Resolve(ctx context.Context, id string, a incident.Action) (incident.Incident, error)
	Assign(ctx context.Context, id, assignee string, a incident.Action) (incident.Incident, error)
	AddNote(ctx context.Context, id, text string, a incident.Action) (incident.Incident, error)
	Escalate(ctx context.Context, id string, a incident.Action) (incident.Incident, error)
	RefreshRootCauses(ctx context.Context, id string, a incident.Action) (incident.Incident, error)
}

// Alertmanager is what the API needs of the embedded Alertmanager
// (*alertmanager.Alertmanager, from alerting.Alerting.Alertmanager()).
type Alertmanager interface {
	ListAlerts(ctx context.Context, f alertmanager.AlertFilter) ([]alertmanager.AlertInfo, error)
}

// Silences is what the API needs to manage silences (*incident.Silencer).
type Silences interface {
	Silences(ctx context.Context, states ...silence.SilenceState) ([]incident.Silence, error)
	Silence(ctx context.Context, id string) (incident.Silence, error)
	CreateSilence(ctx context.Context, spec incident.SilenceSpec, actor string) (incident.Silence, error)
	ExpireSilence(ctx context.Context, id string) (incident.Silence, error)
}

// Options are what the API serves from.
type Options struct {
	// Incidents is required.
	Incidents Incidents
	// Alertmanager serves the alert routes and Silences the silence
	// routes; without them they answer 503.
	Alertmanager Alertmanager
	Silences     Silences
	// Events holds the analyzer's anomaly events; without it
	// /api/v1/anomalies answers 503.
	Events storage.EventStore
	// Queryable holds the forecast series; without it /api/v1/forecasts
	// answers 503.
	Queryable promstorage.Queryable
	Logger    *slog.Logger
	// Now is the clock for default time ranges; nil means time.Now.
	Now func() time.Time
}

// API is the handler.
type API struct {
	opts    Options
	logger  *slog.Logger
	now     func() time.Time
	mux     *restapi.Mux
	openapi restapi.OpenAPI
}

// route is one endpoint; routes() is the one list that both registers the
// handlers and is checked against the OpenAPI document.
type route struct {
	method, path string
	handle       func(w http.ResponseWriter, r *http.Request)
}

func (a *API) routes() []route {
	return []route{
		{http.MethodGet, "/api/v1/incidents", a.listIncidents},
		{http.MethodGet, "/api/v1/incidents/{id}", a.getIncident},
		{http.MethodGet, "/api/v1/incidents/{id}/timeline", a.timeline},
		{http.MethodGet, "/api/v1/incidents/{id}/alerts", a.incidentAlerts},
		{http.MethodPost, "/api/v1/incidents/{id}/acknowledge", a.acknowledge},
		{http.MethodPost, "/api/v1/incidents/{id}/resolve", a.resolve},
		{http.MethodPost, "/api/v1/incidents/{id}/assign", a.assign},
		{http.MethodPost, "/api/v1/incidents/{id}/notes", a.addNote},
		{http.MethodPost, "/api/v1/incidents/{id}/escalate", a.escalate},
		{http.MethodPost, "/api/v1/incidents/{id}/root_causes", a.refreshRootCauses},
		{http.MethodGet, "/api/v1/current_alerts", a.currentAlerts},
		{http.MethodGet, "/api/v1/silences", a.listSilences},
		{http.MethodPost, "/api/v1/silences", a.createSilence},
		{http.MethodGet, "/api/v1/silences/{id}", a.getSilence},
		{http.MethodPost, "/api/v1/silences/{id}/expire", a.expireSilence},
		{http.MethodGet, "/api/v1/anomalies", a.listAnomalies},
		{http.MethodGet, "/api/v1/forecasts", a.listForecasts},
		{http.MethodGet, "/api/v1/openapi.json", a.openapi.ServeHTTP},
	}
}

//go:embed openapi.yaml
var openapiYAML []byte

// New builds the API.
func New(o Options) (*API, error) {
	if o.Incidents == nil {
		return nil, errors.New("incidents api: Options.Incidents is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	doc, err := restapi.NewOpenAPI(openapiYAML)
	if err != nil {
		return nil, fmt.Errorf("incidents api: %w", err)
	}
	a := &API{opts: o, logger: o.Logger, now: o.Now, openapi: doc}
	var routes []restapi.Route
	for _, rt := range a.routes() {
		routes = append(routes, restapi.Route{Method: rt.method, Path: rt.path, Handle: rt.handle})
	}
	a.mux = restapi.NewMux(Prefix, routes)
	return a, nil
}

// Handler serves every route of the API.
func (a *API) Handler() http.Handler { return a.mux }

// Patterns are the ServeMux patterns to mount Handler at, one exact and
// one subtree pattern per top-level path ("/api/v1/incidents" and
// "/api/v1/incidents/"). They are more specific than a "/api/v1/"
// catch-all for Prometheus's query API, and take none of its routes.
func (a *API) Patterns() []string { return a.mux.Patterns() }

// Mount registers Handler on mux at every pattern of Patterns.
func (a *API) Mount(mux *http.ServeMux) { a.mux.Mount(mux) }

// OpenAPI returns the OpenAPI 3 document as JSON.
func (a *API) OpenAPI() []byte { return slices.Clone([]byte(a.openapi)) }

// fieldError is a 400 naming the parameter, header or body field at fault.
type fieldError struct {
	field, msg string
}

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func badField(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

// fail writes err with the status its kind calls for.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var fe *fieldError
	switch {
	case errors.As(err, &fe):
		restapi.WriteError(w, http.StatusBadRequest, "invalid", fe.field, fe.Error())
	case errors.Is(err, incident.ErrInvalid):
		field, _, _ := strings.Cut(strings.TrimPrefix(err.Error(), incident.ErrInvalid.Error()+": "), ":")
		restapi.WriteError(w, http.StatusBadRequest, "invalid", field, err.Error())
	case errors.Is(err, incident.ErrNotFound), errors.Is(err, silence.ErrNotFound):
		restapi.WriteError(w, http.StatusNotFound, "not_found", "", err.Error())
	case errors.Is(err, incident.ErrStale):
		restapi.WriteError(w, http.StatusConflict, "stale", "If-Match", err.Error())
	case errors.Is(err, incident.ErrResolved):
		restapi.WriteError(w, http.StatusConflict, "conflict", "", err.Error())
	case errors.Is(err, errUnavailable), errors.Is(err, storage.ErrUnavailable), errors.Is(err, incident.ErrNoRootCauser):
		restapi.WriteError(w, http.StatusServiceUnavailable, "unavailable", "", err.Error())
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads the answer.
		restapi.WriteError(w, 499, "canceled", "", err.Error())
	default:
		a.logger.Error("Incidents API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		restapi.WriteError(w, http.StatusInternalServerError, "internal", "", err.Error())
	}
}

var errUnavailable = errors.New("not available in this process")

// maxBody bounds a request body; a note is the largest thing sent.
const maxBody = 64 << 10

// decodeBody reads a JSON object into v, refusing unknown fields and
// trailing data with a 400 that names the field. An empty body is an
// empty object.
func decodeBody(r *http.Request, v any) error {
	if r.Body == nil || r.ContentLength == 0 {
		return nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return badField("Content-Type", "must be application/json, got %q", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var (
			typeErr *json.UnmarshalTypeError
			maxErr  *http.MaxBytesError
		)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.As(err, &typeErr):
			return badField(typeErr.Field, "must be a %s", typeErr.Type)
		case errors.As(err, &maxErr):
			return badField("body", "larger than %d bytes", maxBody)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return badField(name, "unknown field")
		}
		return badField("body", "not a JSON object: %v", err)
	}
	if dec.More() {
		return badField("body", "trailing data after the JSON object")
	}
	return nil
}
