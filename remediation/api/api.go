// Package api serves the remediation REST API under /api/v1/: runbooks
// (list, get, validate, run), executions (list, get, approve, deny,
// cancel), the kill switch, refusals and the learning record, with its
// OpenAPI 3 document at /api/v1/remediation/openapi.json. See
// docs/REMEDIATION.md.
//
// Reading, executing and approving are separate scopes (api/auth): Scope
// says which one a request needs, and the integrator's access policy asks
// it first. The principal the auth middleware puts in the request context
// is who runs, approves, denies or cancels.
package api

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
	"strconv"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/api/auth"
	"github.com/aiops-dev/aiops/internal/restapi"
	"github.com/aiops-dev/aiops/remediation/action"
	"github.com/aiops-dev/aiops/remediation/engine"
	"github.com/aiops-dev/aiops/remediation/runbook"
)

// Prefix is where every route of this API lives.
const Prefix = "/api/v1"

// Engine is what the API needs of the remediation engine (*engine.Engine).
type Engine interface {
	Runbooks() []*runbook.Runbook
	Runbook(name string) (*runbook.Runbook, bool)
	List(f engine.Filter) []engine.Execution
	Get(ctx context.Context, id string) (engine.Execution, []engine.Event, error)
	Approve(ctx context.Context, id string, by engine.Principal, comment string) (engine.Execution, error)
	Deny(ctx context.Context, id string, by engine.Principal, reason string) (engine.Execution, error)
	Cancel(ctx context.Context, id string, by engine.Principal, reason string) (engine.Execution, error)
	RunManual(ctx context.Context, name string, target map[string]string, by string) (engine.Execution, error)
	DryRun(ctx context.Context, name string, target map[string]string) (engine.Plan, error)
	KillSwitch() engine.KillSwitch
	Engage(ctx context.Context, by engine.Principal, reason string) (engine.KillSwitch, error)
	Release(ctx context.Context, by engine.Principal, reason string) (engine.KillSwitch, error)
	Refusals(ctx context.Context, from time.Time, limit int) ([]engine.Refusal, error)
	Records() []engine.RecordOf
}

// Options are what the API serves from.
type Options struct {
	Engine Engine
	// Validate checks runbooks posted to /runbooks/validate; nil uses the
	// default options.
	Validate runbook.ValidateOptions
	Logger   *slog.Logger
	Now      func() time.Time
	// RecordTimeout bounds how long a request that changes something
	// (a run, an approval, the kill switch) waits for the store to
	// record it; the engine keeps retrying a failing store, and a caller
	// must not hang on a full disk. 0 means 30s.
	RecordTimeout time.Duration
}

// API is the handler.
type API struct {
	opts    Options
	logger  *slog.Logger
	mux     *restapi.Mux
	openapi restapi.OpenAPI
}

type route struct {
	method, path string
	scope        auth.Scope
	handle       func(w http.ResponseWriter, r *http.Request)
}

func (a *API) routes() []route {
	return []route{
		{http.MethodGet, "/api/v1/runbooks", auth.ScopeRead, a.listRunbooks},
		{http.MethodPost, "/api/v1/runbooks/validate", auth.ScopeRead, a.validate},
		{http.MethodGet, "/api/v1/runbooks/{name}", auth.ScopeRead, a.getRunbook},
		{http.MethodPost, "/api/v1/runbooks/{name}/run", auth.ScopeExecute, a.run},
		{http.MethodGet, "/api/v1/executions", auth.ScopeRead, a.listExecutions},
		{http.MethodGet, "/api/v1/executions/{id}", auth.ScopeRead, a.getExecution},
		{http.MethodPost, "/api/v1/executions/{id}/approve", auth.ScopeApprove, a.approve},
		{http.MethodPost, "/api/v1/executions/{id}/deny", auth.ScopeApprove, a.deny},
		{http.MethodPost, "/api/v1/executions/{id}/cancel", auth.ScopeExecute, a.cancel},
		{http.MethodGet, "/api/v1/remediation/kill_switch", auth.ScopeRead, a.getKill},
		{http.MethodPost, "/api/v1/remediation/kill_switch/engage", auth.ScopeExecute, a.engage},
		{http.MethodPost, "/api/v1/remediation/kill_switch/release", auth.ScopeAdmin, a.release},
		{http.MethodGet, "/api/v1/remediation/refusals", auth.ScopeRead, a.refusals},
		{http.MethodGet, "/api/v1/remediation/records", auth.ScopeRead, a.records},
		{http.MethodGet, "/api/v1/remediation/actions", auth.ScopeRead, a.actions},
		{http.MethodGet, "/api/v1/remediation/openapi.json", auth.ScopeRead, a.openapi.ServeHTTP},
	}
}

//go:embed openapi.yaml
var openapiYAML []byte

// New builds the API.
func New(o Options) (*API, error) {
	if o.Engine == nil {
		return nil, errors.New("remediation api: Options.Engine is required")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	doc, err := restapi.NewOpenAPI(openapiYAML)
	if err != nil {
		return nil, fmt.Errorf("remediation api: %w", err)
	}
	a := &API{opts: o, logger: o.Logger, openapi: doc}
	var routes []restapi.Route
	for _, rt := range a.routes() {
		routes = append(routes, restapi.Route{Method: rt.method, Path: rt.path, Handle: rt.handle})
	}
	a.mux = restapi.NewMux(Prefix, routes)
	return a, nil
}

// Scope tells which scope a request to this API needs; ok is false for
// paths that are not this API's. Unknown sub-paths and wrong methods need
// read (they answer 404 or 405).
func (a *API) Scope(r *http.Request) (need auth.Scope, ok bool) {
	mine := false
	for _, rt := range a.routes() {
		if !restapi.PathMatches(rt.path, r.URL.Path) {
			continue
		}
		mine = true
		if rt.method == r.Method {
			return rt.scope, true
		}
	}
	if mine {
		return auth.ScopeRead, true
	}
	for _, p := range a.Patterns() {
		if r.URL.Path == p || strings.HasSuffix(p, "/") && strings.HasPrefix(r.URL.Path, p) {
			return auth.ScopeRead, true
		}
	}
	return "", false
}

// Patterns are the ServeMux patterns to mount Handler at: more specific
// than a "/api/v1/" catch-all, taking none of Prometheus's routes.
func (a *API) Patterns() []string { return a.mux.Patterns() }

// Mount registers the API on mux.
func (a *API) Mount(mux *http.ServeMux) { a.mux.Mount(mux) }

// Handler serves every route.
func (a *API) Handler() http.Handler { return a.mux }

// OpenAPI returns the OpenAPI 3 document as JSON.
func (a *API) OpenAPI() []byte { return slices.Clone([]byte(a.openapi)) }

// apiError is the error answer of a refused run: aiops's error format
// and the safety rail that refused it.
type apiError struct {
	restapi.Error
	// Rail names the safety rail that refused a run.
	Rail string `json:"rail,omitempty"`
}

type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func badField(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var (
		fe *fieldError
		re *engine.RefusedError
	)
	switch {
	case errors.As(err, &fe):
		restapi.WriteError(w, http.StatusBadRequest, "invalid", fe.field, fe.Error())
	case errors.As(err, &re):
		restapi.WriteJSON(w, http.StatusConflict, apiError{Error: restapi.Error{Status: "error", ErrorType: "refused", Error: err.Error()}, Rail: re.Rail})
	case errors.Is(err, engine.ErrNotFound):
		restapi.WriteError(w, http.StatusNotFound, "not_found", "", err.Error())
	case errors.Is(err, engine.ErrConflict):
		restapi.WriteError(w, http.StatusConflict, "conflict", "", err.Error())
	case errors.Is(err, engine.ErrForbidden):
		restapi.WriteError(w, http.StatusForbidden, "forbidden", "", err.Error())
	case errors.Is(err, engine.ErrInvalid):
		restapi.WriteError(w, http.StatusBadRequest, "invalid", "", err.Error())
	case errors.Is(err, engine.ErrNotLeader):
		restapi.WriteError(w, http.StatusServiceUnavailable, "unavailable", "", err.Error())
	case errors.Is(err, context.Canceled):
		restapi.WriteError(w, 499, "canceled", "", err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		// The store did not take the record in time: nothing was done.
		a.logger.Warn("Remediation request not recorded in time", "method", r.Method, "path", r.URL.Path, "err", err)
		restapi.WriteError(w, http.StatusServiceUnavailable, "unavailable", "", "the store did not record the request in time (a run never starts unrecorded); retry later: "+err.Error())
	default:
		a.logger.Error("Remediation API request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		restapi.WriteError(w, http.StatusInternalServerError, "internal", "", err.Error())
	}
}

// recording is the context of a request that changes something: the
// request's, bounded by Options.RecordTimeout.
func (a *API) recording(r *http.Request) (context.Context, context.CancelFunc) {
	d := a.opts.RecordTimeout
	if d <= 0 {
		d = 30 * time.Second
	}
	return context.WithTimeout(r.Context(), d)
}

// maxBody bounds a request body; a runbook file is the largest.
const maxBody = runbook.MaxFileBytes

func decodeBody(r *http.Request, v any) error {
	if r.Body == nil || r.ContentLength == 0 {
		return nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return badField("Content-Type", "must be application/json, got %q", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 64<<10))
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
			return badField("body", "larger than 64 KiB")
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return badField(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
		}
		return badField("body", "not a JSON object: %v", err)
	}
	if dec.More() {
		return badField("body", "trailing data after the JSON object")
	}
	return nil
}

func principal(r *http.Request) engine.Principal {
	p, _ := auth.PrincipalFrom(r.Context())
	return engine.Principal{ID: p.ID, Name: p.Name}
}

// runbookView is a runbook with its record.
type runbookView struct {
	*runbook.Runbook
	Records []engine.RecordOf `json:"records"`
}

func (a *API) view(rb *runbook.Runbook) runbookView {
	v := runbookView{Runbook: rb, Records: []engine.RecordOf{}}
	for _, r := range a.opts.Engine.Records() {
		if r.Runbook == rb.Name {
			v.Records = append(v.Records, r)
		}
	}
	return v
}

func (a *API) listRunbooks(w http.ResponseWriter, _ *http.Request) {
	out := []runbookView{}
	for _, rb := range a.opts.Engine.Runbooks() {
		out = append(out, a.view(rb))
	}
	restapi.WriteJSON(w, http.StatusOK, map[string]any{"runbooks": out})
}

func (a *API) getRunbook(w http.ResponseWriter, r *http.Request) {
	rb, ok := a.opts.Engine.Runbook(r.PathValue("name"))
	if !ok {
		restapi.WriteError(w, http.StatusNotFound, "not_found", "", "no runbook "+strconv.Quote(r.PathValue("name")))
		return
	}
	restapi.WriteJSON(w, http.StatusOK, a.view(rb))
}

// validate checks a runbook file sent as the body (YAML; JSON is YAML
// too). It never loads it: the runbooks aiops runs come from its files.
func (a *API) validate(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		a.fail(w, r, badField("body", "larger than %d bytes", maxBody))
		return
	}
	name := r.URL.Query().Get("file")
	if name == "" {
		name = "body"
	}
	rbs, probs := runbook.Parse(name, b)
	if len(probs) == 0 {
		probs = runbook.Validate(rbs, a.opts.Validate)
	}
	if probs == nil {
		probs = runbook.Problems{}
	}
	names := []string{}
	for _, rb := range rbs {
		names = append(names, rb.Name)
	}
	restapi.WriteJSON(w, http.StatusOK, map[string]any{"valid": len(probs) == 0, "runbooks": names, "problems": probs})
}

type runRequest struct {
	Target map[string]string `json:"target"`
	DryRun bool              `json:"dry_run"`
}

func (a *API) run(w http.ResponseWriter, r *http.Request) {
	var req runRequest
	if err := decodeBody(r, &req); err != nil {
		a.fail(w, r, err)
		return
	}
	if len(req.Target) == 0 {
		a.fail(w, r, badField("target", "required: the labels of what the run acts on"))
		return
	}
	name := r.PathValue("name")
	if req.DryRun {
		plan, err := a.opts.Engine.DryRun(r.Context(), name, req.Target)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		restapi.WriteJSON(w, http.StatusOK, map[string]any{"dry_run": true, "plan": plan})
		return
	}
	p := principal(r)
	ctx, cancel := a.recording(r)
	defer cancel()
	x, err := a.opts.Engine.RunManual(ctx, name, req.Target, p.String())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	restapi.WriteJSON(w, http.StatusCreated, x)
}

func (a *API) listExecutions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := engine.Filter{Runbook: q.Get("runbook"), IncidentID: q.Get("incident"), Limit: 100}
	for _, s := range q["state"] {
		for part := range strings.SplitSeq(s, ",") {
			st := engine.State(strings.TrimSpace(part))
			if !slices.Contains(states, st) {
				a.fail(w, r, badField("state", "unknown state %q", st))
				return
			}
			f.States = append(f.States, st)
		}
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			a.fail(w, r, badField("limit", "must be an integer in [1, 1000], got %q", l))
			return
		}
		f.Limit = n
	}
	xs := a.opts.Engine.List(f)
	if xs == nil {
		xs = []engine.Execution{}
	}
	restapi.WriteJSON(w, http.StatusOK, map[string]any{"executions": xs})
}

var states = []engine.State{engine.StatePendingApproval, engine.StateRunning, engine.StateVerifying, engine.StateRollingBack,
	engine.StateSucceeded, engine.StateRolledBack, engine.StateEscalated, engine.StateCancelled, engine.StateDenied, engine.StateShadowed}

func (a *API) getExecution(w http.ResponseWriter, r *http.Request) {
	x, evs, err := a.opts.Engine.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	restapi.WriteJSON(w, http.StatusOK, map[string]any{"execution": x, "events": evs})
}

type decision struct {
	Comment string `json:"comment"`
	Reason  string `json:"reason"`
}

func (a *API) approve(w http.ResponseWriter, r *http.Request) {
	a.decide(w, r, func(ctx context.Context, id string, p engine.Principal, d decision) (engine.Execution, error) {
		return a.opts.Engine.Approve(ctx, id, p, d.Comment)
	})
}

func (a *API) deny(w http.ResponseWriter, r *http.Request) {
	a.decide(w, r, func(ctx context.Context, id string, p engine.Principal, d decision) (engine.Execution, error) {
		return a.opts.Engine.Deny(ctx, id, p, d.Reason)
	})
}

func (a *API) cancel(w http.ResponseWriter, r *http.Request) {
	a.decide(w, r, func(ctx context.Context, id string, p engine.Principal, d decision) (engine.Execution, error) {
		return a.opts.Engine.Cancel(ctx, id, p, d.Reason)
	})
}

func (a *API) decide(w http.ResponseWriter, r *http.Request, f func(context.Context, string, engine.Principal, decision) (engine.Execution, error)) {
	var d decision
	if err := decodeBody(r, &d); err != nil {
		a.fail(w, r, err)
		return
	}
	ctx, cancel := a.recording(r)
	defer cancel()
	x, err := f(ctx, r.PathValue("id"), principal(r), d)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	restapi.WriteJSON(w, http.StatusOK, x)
}

func (a *API) getKill(w http.ResponseWriter, _ *http.Request) {
	restapi.WriteJSON(w, http.StatusOK, a.opts.Engine.KillSwitch())
}

func (a *API) engage(w http.ResponseWriter, r *http.Request) {
	var d decision
	if err := decodeBody(r, &d); err != nil {
		a.fail(w, r, err)
		return
	}
	if strings.TrimSpace(d.Reason) == "" {
		a.fail(w, r, badField("reason", "required: say why remediation stops"))
		return
	}
	ctx, cancel := a.recording(r)
	defer cancel()
	k, err := a.opts.Engine.Engage(ctx, principal(r), d.Reason)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	restapi.WriteJSON(w, http.StatusOK, k)
}

func (a *API) release(w http.ResponseWriter, r *http.Request) {
	var d decision
	if err := decodeBody(r, &d); err != nil {
		a.fail(w, r, err)
		return
	}
	ctx, cancel := a.recording(r)
	defer cancel()
	k, err := a.opts.Engine.Release(ctx, principal(r), d.Reason)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	restapi.WriteJSON(w, http.StatusOK, k)
}

func (a *API) refusals(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from := a.opts.Now().Add(-24 * time.Hour)
	if s := q.Get("since"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			a.fail(w, r, badField("since", "must be a positive duration such as 1h, got %q", s))
			return
		}
		from = a.opts.Now().Add(-d)
	}
	limit := 100
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			a.fail(w, r, badField("limit", "must be an integer in [1, 1000], got %q", l))
			return
		}
		limit = n
	}
	rs, err := a.opts.Engine.Refusals(r.Context(), from, limit)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if rs == nil {
		rs = []engine.Refusal{}
	}
	restapi.WriteJSON(w, http.StatusOK, map[string]any{"refusals": rs})
}

func (a *API) records(w http.ResponseWriter, _ *http.Request) {
	recs := a.opts.Engine.Records()
	if recs == nil {
		recs = []engine.RecordOf{}
	}
	restapi.WriteJSON(w, http.StatusOK, map[string]any{"records": recs})
}

func (a *API) actions(w http.ResponseWriter, _ *http.Request) {
	var out []action.Spec
	for _, n := range action.Names() {
		out = append(out, action.Catalogue()[n])
	}
	restapi.WriteJSON(w, http.StatusOK, map[string]any{"actions": out})
}
