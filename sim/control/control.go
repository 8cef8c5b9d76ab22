// Package control is the simulator's control API: the operator's (and
// aiops's remediation engine's) way to restart, scale, trip breakers, set
// flags, roll back, manage volumes and rate limits, and the chaos API
// that injects faults. JSON over HTTP behind a bearer token; documented
// in openapi.yaml, which it serves at /openapi.yaml.
package control

import (
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/sim/chaos"
	"github.com/aiops-dev/aiops/sim/engine"
	"github.com/aiops-dev/aiops/sim/model"
	"github.com/aiops-dev/aiops/sim/truth"
)

// OpenAPI is the API's OpenAPI 3 document.
//
//go:embed openapi.yaml
var OpenAPI []byte

// Engine is what the API acts on; *engine.Engine implements it.
type Engine interface {
	State() engine.State
	RestartInstance(service, id string) (model.Outcome, error)
	RestartService(service string) (model.Outcome, error)
	Scale(service string, replicas int) (model.Outcome, error)
	Rollback(service string) (model.Outcome, error)
	SetBreaker(name string, open bool) (model.Outcome, error)
	SetFlag(name string, on bool) (model.Outcome, error)
	ExpandVolume(name string, add float64) (model.Outcome, error)
	CleanVolume(name string) (float64, error)
	SetRateLimit(service, route string, perClient float64) (model.Outcome, error)
	InjectFault(spec chaos.Spec) (chaos.Fault, error)
	StopFault(id string) (chaos.Fault, error)
	Faults() []chaos.Fault
	Fault(id string) (chaos.Fault, error)
	Timeline() truth.Timeline
}

// maxBody bounds a request body.
const maxBody = 64 << 10

// Route is one operation of the API.
type Route struct {
	Method, Path string
	// Public routes need no token.
	Public  bool
	handler func(w http.ResponseWriter, r *http.Request)
}

type api struct {
	e      Engine
	digest [sha256.Size]byte
	logger *slog.Logger
}

// Routes lists the API's operations, as registered by NewHandler.
func Routes() []Route { return (&api{}).routes() }

func (a *api) routes() []Route {
	return []Route{
		{Method: "GET", Path: "/healthz", Public: true, handler: func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) }},
		{Method: "GET", Path: "/openapi.yaml", Public: true, handler: a.openapi},
		{Method: "GET", Path: "/state", handler: a.state},
		{Method: "POST", Path: "/services/{service}/restart", handler: a.restartService},
		{Method: "POST", Path: "/services/{service}/instances/{instance}/restart", handler: a.restartInstance},
		{Method: "POST", Path: "/services/{service}/scale", handler: a.scale},
		{Method: "POST", Path: "/services/{service}/rollback", handler: a.rollback},
		{Method: "PUT", Path: "/services/{service}/rate-limit", handler: a.rateLimit},
		{Method: "POST", Path: "/breakers/{breaker}/trip", handler: a.breaker(true)},
		{Method: "POST", Path: "/breakers/{breaker}/reset", handler: a.breaker(false)},
		{Method: "PUT", Path: "/flags/{flag}", handler: a.flag},
		{Method: "POST", Path: "/volumes/{volume}/expand", handler: a.expand},
		{Method: "POST", Path: "/volumes/{volume}/clean", handler: a.clean},
		{Method: "GET", Path: "/chaos/catalogue", handler: a.catalogue},
		{Method: "POST", Path: "/chaos", handler: a.inject},
		{Method: "GET", Path: "/chaos", handler: a.faults},
		{Method: "GET", Path: "/chaos/{id}", handler: a.fault},
		{Method: "DELETE", Path: "/chaos/{id}", handler: a.stop},
		{Method: "GET", Path: "/timeline", handler: a.timeline},
	}
}

// NewHandler serves the API for e; every route but /healthz and
// /openapi.yaml needs "Authorization: Bearer <token>".
func NewHandler(e Engine, token string, logger *slog.Logger) (http.Handler, error) {
	if strings.TrimSpace(token) == "" {
		return nil, errors.New("control API token: must not be empty")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &api{e: e, digest: sha256.Sum256([]byte(token)), logger: logger}
	mux := http.NewServeMux()
	for _, rt := range a.routes() {
		h := rt.handler
		if !rt.Public {
			h = a.authorized(h)
		}
		mux.HandleFunc(rt.Method+" "+rt.Path, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "", fmt.Sprintf("no route %s %s; see /openapi.yaml", r.Method, r.URL.Path))
	})
	return mux, nil
}

// authorized checks the bearer token. Tokens are compared as SHA-256
// digests in constant time, so neither their content nor their length
// shows in the timing.
func (a *api) authorized(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		d := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		if !ok || subtle.ConstantTimeCompare(d[:], a.digest[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="workflow-sim"`)
			writeError(w, http.StatusUnauthorized, "", "missing or invalid bearer token")
			return
		}
		h(w, r)
	}
}

type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, field, msg string) {
	writeJSON(w, code, errorBody{Error: msg, Field: field})
}

// fail answers an engine error with its status: 404 for unknown targets,
// 400 naming the parameter, 409 for a conflict.
func fail(w http.ResponseWriter, err error) {
	var e *engine.Error
	if !errors.As(err, &e) {
		writeError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	switch e.Code {
	case engine.NotFound:
		writeError(w, http.StatusNotFound, "", e.Error())
	case engine.Invalid:
		writeError(w, http.StatusBadRequest, e.Field, e.Error())
	case engine.Conflict:
		writeError(w, http.StatusConflict, "", e.Error())
	default:
		writeError(w, http.StatusInternalServerError, "", e.Error())
	}
}

// decode reads a JSON body strictly into v; on failure it answers 400
// naming the offending field and returns false.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("body: more than one JSON value")
	}
	if err == nil {
		return true
	}
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	var maxErr *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF):
		writeError(w, http.StatusBadRequest, "body", "body: must be a JSON object")
	case errors.As(err, &typeErr):
		field := typeErr.Field
		writeError(w, http.StatusBadRequest, field, fmt.Sprintf("%s: must be %s, got %s", field, jsonType(typeErr.Type.Kind().String()), typeErr.Value))
	case errors.As(err, &syntaxErr):
		writeError(w, http.StatusBadRequest, "body", fmt.Sprintf("body: invalid JSON at byte %d: %v", syntaxErr.Offset, err))
	case errors.As(err, &maxErr):
		writeError(w, http.StatusRequestEntityTooLarge, "body", fmt.Sprintf("body: larger than %d bytes", maxBody))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		writeError(w, http.StatusBadRequest, field, fmt.Sprintf("%s: unknown field", field))
	default:
		// Fields with their own decoding (durations) name themselves.
		field, _, _ := strings.Cut(err.Error(), ":")
		writeError(w, http.StatusBadRequest, field, err.Error())
	}
	return false
}

func jsonType(kind string) string {
	switch kind {
	case "int", "int64", "float64", "uint64":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	}
	return kind
}

// result is the answer to a control action.
type result struct {
	Action  chaos.Action `json:"action"`
	Outcome string       `json:"outcome"`
}

func (a *api) answer(w http.ResponseWriter, act chaos.Action, out model.Outcome, err error) {
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, result{Action: act, Outcome: string(out)})
}

func (a *api) openapi(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(OpenAPI)
}

func (a *api) state(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, a.e.State()) }

func (a *api) restartService(w http.ResponseWriter, r *http.Request) {
	svc := r.PathValue("service")
	out, err := a.e.RestartService(svc)
	a.answer(w, chaos.Action{Action: chaos.ActRestartService, Target: svc}, out, err)
}

func (a *api) restartInstance(w http.ResponseWriter, r *http.Request) {
	svc, id := r.PathValue("service"), r.PathValue("instance")
	out, err := a.e.RestartInstance(svc, id)
	a.answer(w, chaos.Action{Action: chaos.ActRestartInstance, Target: svc + "/" + id}, out, err)
}

func (a *api) scale(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Replicas *int `json:"replicas"`
	}
	if !decode(w, r, &body) {
		return
	}
	if body.Replicas == nil {
		writeError(w, http.StatusBadRequest, "replicas", "replicas: must be set")
		return
	}
	svc := r.PathValue("service")
	out, err := a.e.Scale(svc, *body.Replicas)
	a.answer(w, chaos.Action{Action: chaos.ActScale, Target: svc, Params: map[string]string{"replicas": fmt.Sprint(*body.Replicas)}}, out, err)
}

func (a *api) rollback(w http.ResponseWriter, r *http.Request) {
	svc := r.PathValue("service")
	out, err := a.e.Rollback(svc)
	a.answer(w, chaos.Action{Action: chaos.ActRollback, Target: svc}, out, err)
}

func (a *api) rateLimit(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Route        *string  `json:"route"`
		PerClientRPS *float64 `json:"per_client_rps"`
	}
	if !decode(w, r, &body) {
		return
	}
	switch {
	case body.Route == nil || *body.Route == "":
		writeError(w, http.StatusBadRequest, "route", `route: must be set, e.g. "POST /v1/auth/login"`)
		return
	case body.PerClientRPS == nil:
		writeError(w, http.StatusBadRequest, "per_client_rps", "per_client_rps: must be set (0 removes the limit)")
		return
	}
	svc := r.PathValue("service")
	out, err := a.e.SetRateLimit(svc, *body.Route, *body.PerClientRPS)
	a.answer(w, chaos.Action{Action: chaos.ActSetRateLimit, Target: svc,
		Params: map[string]string{"route": *body.Route, "per_client_rps": fmt.Sprint(*body.PerClientRPS)}}, out, err)
}

func (a *api) breaker(open bool) http.HandlerFunc {
	act := chaos.ActResetBreaker
	if open {
		act = chaos.ActTripBreaker
	}
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("breaker")
		out, err := a.e.SetBreaker(name, open)
		a.answer(w, chaos.Action{Action: act, Target: name}, out, err)
	}
}

func (a *api) flag(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	if !decode(w, r, &body) {
		return
	}
	if body.Enabled == nil {
		writeError(w, http.StatusBadRequest, "enabled", "enabled: must be set")
		return
	}
	name := r.PathValue("flag")
	out, err := a.e.SetFlag(name, *body.Enabled)
	a.answer(w, chaos.Action{Action: chaos.ActSetFlag, Target: name, Params: map[string]string{"enabled": fmt.Sprint(*body.Enabled)}}, out, err)
}

func (a *api) expand(w http.ResponseWriter, r *http.Request) {
	var body struct {
		AddBytes *float64 `json:"add_bytes"`
	}
	if !decode(w, r, &body) {
		return
	}
	if body.AddBytes == nil {
		writeError(w, http.StatusBadRequest, "add_bytes", "add_bytes: must be set")
		return
	}
	name := r.PathValue("volume")
	out, err := a.e.ExpandVolume(name, *body.AddBytes)
	a.answer(w, chaos.Action{Action: chaos.ActExpandVolume, Target: name, Params: map[string]string{"add_bytes": fmt.Sprint(*body.AddBytes)}}, out, err)
}

func (a *api) clean(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("volume")
	freed, err := a.e.CleanVolume(name)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		result
		FreedBytes int64 `json:"freed_bytes"`
	}{result{Action: chaos.Action{Action: chaos.ActCleanVolume, Target: name}, Outcome: outcomeOfClean(freed)}, int64(freed)})
}

func outcomeOfClean(freed float64) string {
	if freed > 0 {
		return string(model.Changed)
	}
	return string(model.Unchanged)
}

func (a *api) catalogue(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, chaos.Catalogue()) }

func (a *api) inject(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Fault     string   `json:"fault"`
		Target    string   `json:"target"`
		Intensity *float64 `json:"intensity"`
		Start     string   `json:"start"`
		Duration  string   `json:"duration"`
	}
	if !decode(w, r, &body) {
		return
	}
	spec := chaos.Spec{Fault: body.Fault, Target: body.Target, Intensity: body.Intensity}
	for _, d := range []struct {
		field, value string
		dst          *chaos.Duration
	}{{"start", body.Start, &spec.Start}, {"duration", body.Duration, &spec.Duration}} {
		if d.value == "" {
			continue
		}
		v, err := time.ParseDuration(d.value)
		if err != nil {
			writeError(w, http.StatusBadRequest, d.field, fmt.Sprintf("%s: want a duration such as \"90s\", got %q", d.field, d.value))
			return
		}
		*d.dst = chaos.Duration(v)
	}
	f, err := a.e.InjectFault(spec)
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, f)
}

func (a *api) faults(w http.ResponseWriter, _ *http.Request) {
	fs := a.e.Faults()
	if fs == nil {
		fs = []chaos.Fault{}
	}
	writeJSON(w, 200, fs)
}

func (a *api) fault(w http.ResponseWriter, r *http.Request) {
	f, err := a.e.Fault(r.PathValue("id"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, 200, f)
}

func (a *api) stop(w http.ResponseWriter, r *http.Request) {
	f, err := a.e.StopFault(r.PathValue("id"))
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, 200, f)
}

func (a *api) timeline(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, a.e.Timeline()) }
