// Package jaeger serves the spans aiops stores through Jaeger's HTTP query
// API, so that Jaeger's UI, Grafana's built-in Jaeger data source and
// anything else that speaks it read aiops unchanged:
//
//	GET /api/services
//	GET /api/services/{service}/operations
//	GET /api/operations?service=&spanKind=
//	GET /api/traces?service=&operation=&tags=&tag=&start=&end=&minDuration=&maxDuration=&limit=&traceID=
//	GET /api/traces/{traceID}?start=&end=
//	GET /api/dependencies?endTs=&lookback=&service=
//
// Answers have Jaeger's JSON shapes ({"data", "total", "limit", "offset",
// "errors"}); docs/TRACES.md says where aiops differs. Reads are bounded
// by Config: time range, traces and spans per answer, time and
// concurrency.
package jaeger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// Spans is what the API reads.
type Spans interface {
	QuerySpans(ctx context.Context, q storage.SpanQuery) ([]storage.Span, error)
	TraceIDs(ctx context.Context, q storage.SpanQuery) ([]string, error)
	Services(ctx context.Context) ([]string, error)
	Operations(ctx context.Context, service string) ([]storage.Operation, error)
	Dependencies(ctx context.Context, start, end time.Time) ([]storage.Dependency, error)
}

// Options are what New needs.
type Options struct {
	Config Config
	Spans  Spans
	Logger *slog.Logger
	// Now is the clock that default time ranges end at; time.Now if nil.
	Now func() time.Time
}

// API serves Jaeger's query API.
type API struct {
	cfg    Config
	spans  Spans
	logger *slog.Logger
	now    func() time.Time
	slots  chan struct{}
}

// Jaeger's defaults for requests that leave the time range out.
const (
	defaultSearchLookback     = 48 * time.Hour
	defaultDependencyLookback = 24 * time.Hour
	defaultLimit              = 100
)

// New checks the options and builds the API.
func New(o Options) (*API, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Spans == nil {
		return nil, errors.New("jaeger: no span store")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &API{cfg: o.Config, spans: o.Spans, logger: o.Logger, now: o.Now, slots: make(chan struct{}, o.Config.MaxConcurrency)}, nil
}

// Mount registers the routes on mux.
func (a *API) Mount(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/services", a.wrap(a.services))
	mux.HandleFunc("GET /api/services/{service}/operations", a.wrap(a.operationNames))
	mux.HandleFunc("GET /api/operations", a.wrap(a.operations))
	mux.HandleFunc("GET /api/traces", a.wrap(a.search))
	mux.HandleFunc("GET /api/traces/{traceID}", a.wrap(a.trace))
	mux.HandleFunc("GET /api/dependencies", a.wrap(a.dependencies))
}

// apiError is an answer with a status other than 200.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &apiError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// wrap bounds a handler's time and concurrency and writes its answer or
// error in Jaeger's shape.
func (a *API) wrap(h func(ctx context.Context, r *http.Request) (*response, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Duration(a.cfg.Timeout))
		defer cancel()
		var (
			res *response
			err error
		)
		select {
		case a.slots <- struct{}{}:
			res, err = h(ctx, r)
			<-a.slots
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(res); err != nil {
			a.logger.Debug("Writing a Jaeger API answer failed", "path", r.URL.Path, "err", err)
		}
	}
}

func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := http.StatusInternalServerError, err.Error()
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		status = ae.status
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		status, msg = http.StatusServiceUnavailable, fmt.Sprintf("query timed out after %s (traces.timeout)", a.cfg.Timeout)
	case errors.Is(err, storage.ErrUnavailable):
		status = http.StatusServiceUnavailable
	}
	if status >= 500 {
		a.logger.Warn("Jaeger API request failed", "path", r.URL.Path, "err", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(response{Errors: []responseError{{Code: status, Msg: msg}}})
}

func (a *API) services(ctx context.Context, _ *http.Request) (*response, error) {
	names, err := a.spans.Services(ctx)
	if err != nil {
		return nil, err
	}
	return &response{Data: names, Total: len(names)}, nil
}

func (a *API) operationNames(ctx context.Context, r *http.Request) (*response, error) {
	ops, err := a.spans.Operations(ctx, r.PathValue("service"))
	if err != nil {
		return nil, err
	}
	// Jaeger answers null, not [], for a service without operations.
	var names []string
	for _, op := range ops {
		names = append(names, op.Name)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	return &response{Data: names, Total: len(names)}, nil
}

// spanKinds maps Jaeger's span kinds to the stores'.
var spanKinds = map[string]string{
	"unspecified": "Unspecified", "internal": "Internal", "server": "Server",
	"client": "Client", "producer": "Producer", "consumer": "Consumer",
}

func jaegerKind(kind string) string {
	if k := strings.ToLower(kind); k != "unspecified" {
		return k
	}
	return ""
}

func (a *API) operations(ctx context.Context, r *http.Request) (*response, error) {
	service := r.FormValue("service")
	if service == "" {
		return nil, badRequest("parameter 'service' is required")
	}
	kind := r.FormValue("spanKind")
	if _, ok := spanKinds[kind]; kind != "" && !ok {
		return nil, badRequest("unable to parse param 'spanKind': unsupported span kind: '%s'", kind)
	}
	ops, err := a.spans.Operations(ctx, service)
	if err != nil {
		return nil, err
	}
	out := []Operation{}
	for _, op := range ops {
		if k := jaegerKind(op.Kind); kind == "" || k == kind || (kind == "unspecified" && k == "") {
			out = append(out, Operation{Name: op.Name, SpanKind: k})
		}
	}
	return &response{Data: out, Total: len(out)}, nil
}

// timeParam reads an integer time in units since the epoch.
func timeParam(r *http.Request, name string, unit time.Duration, def time.Time) (time.Time, error) {
	v := r.FormValue(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, badRequest("unable to parse param '%s': %v", name, err)
	}
	if n < 0 || n > math64(unit) {
		return time.Time{}, badRequest("unable to parse param '%s': %d is out of range", name, n)
	}
	return time.Unix(0, 0).Add(time.Duration(n) * unit).UTC(), nil
}

// math64 is the largest count of unit that fits a time.Duration.
func math64(unit time.Duration) int64 { return int64(1<<63-1) / int64(unit) }

func durationParam(r *http.Request, name string) (time.Duration, error) {
	v := r.FormValue(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, badRequest("unable to parse param '%s': %q is not a duration such as 1.2s or 100ms", name, v)
	}
	return d, nil
}

// tags reads Jaeger's tag filters: tag=key:value (repeated) and
// tags={"key":"value"} (JSON).
func tags(r *http.Request) (map[string]string, error) {
	out := map[string]string{}
	for _, t := range r.Form["tag"] {
		k, v, ok := strings.Cut(t, ":")
		if !ok {
			return nil, badRequest("malformed 'tag' parameter, expecting key:value, received: %s", t)
		}
		out[k] = v
	}
	for _, t := range r.Form["tags"] {
		var m map[string]string
		if err := json.Unmarshal([]byte(t), &m); err != nil {
			return nil, badRequest("malformed 'tags' parameter, cannot unmarshal JSON: %v", err)
		}
		for k, v := range m {
			out[k] = v
		}
	}
	return out, nil
}

func (a *API) search(ctx context.Context, r *http.Request) (*response, error) {
	if err := r.ParseForm(); err != nil {
		return nil, badRequest("%v", err)
	}
	if len(r.Form["traceID"]) > 0 {
		return a.tracesByID(ctx, r)
	}
	now := a.now()
	end, err := timeParam(r, "end", time.Microsecond, now)
	if err != nil {
		return nil, err
	}
	start, err := timeParam(r, "start", time.Microsecond, end.Add(-defaultSearchLookback))
	if err != nil {
		return nil, err
	}
	if err := a.checkRange(start, end, "start", "end"); err != nil {
		return nil, err
	}
	q := storage.SpanQuery{Start: start, End: end, ServiceName: r.FormValue("service"), Name: r.FormValue("operation")}
	if q.ServiceName == "" {
		return nil, badRequest("parameter 'service' is required")
	}
	if q.MinDuration, err = durationParam(r, "minDuration"); err != nil {
		return nil, err
	}
	if q.MaxDuration, err = durationParam(r, "maxDuration"); err != nil {
		return nil, err
	}
	if q.MinDuration > 0 && q.MaxDuration > 0 && q.MaxDuration < q.MinDuration {
		return nil, badRequest("'maxDuration' should be greater than 'minDuration'")
	}
	if q.Attributes, err = tags(r); err != nil {
		return nil, err
	}
	// Jaeger's `error` tag asks for the span status.
	switch q.Attributes["error"] {
	case "true":
		q.StatusCode = "Error"
		delete(q.Attributes, "error")
	case "false":
		q.StatusCode = "Ok"
		delete(q.Attributes, "error")
	}
	q.Limit = defaultLimit
	if v := r.FormValue("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, badRequest("unable to parse param 'limit': %q is not a count", v)
		}
		if n > a.cfg.MaxTraces {
			return nil, badRequest("parameter 'limit' is %d, more than the %d traces an answer may hold (traces.max_traces)", n, a.cfg.MaxTraces)
		}
		if n > 0 {
			q.Limit = n
		}
	}
	ids, err := a.spans.TraceIDs(ctx, q)
	if err != nil {
		return nil, err
	}
	traces, err := a.readTraces(ctx, ids, time.Time{}, time.Time{})
	if err != nil {
		return nil, err
	}
	return &response{Data: traces}, nil
}

// tracesByID answers a search for given trace ids: the traces found, and
// an error entry for each that is not.
func (a *API) tracesByID(ctx context.Context, r *http.Request) (*response, error) {
	var ids []string
	for _, s := range r.Form["traceID"] {
		id, err := parseTraceID(s)
		if err != nil {
			return nil, badRequest("cannot parse traceID param: %v", err)
		}
		ids = append(ids, id)
	}
	if len(ids) > a.cfg.MaxTraces {
		return nil, badRequest("%d trace ids, more than the %d traces an answer may hold (traces.max_traces)", len(ids), a.cfg.MaxTraces)
	}
	start, end, err := a.optionalRange(r)
	if err != nil {
		return nil, err
	}
	traces, err := a.readTraces(ctx, ids, start, end)
	if err != nil {
		return nil, err
	}
	res := &response{Data: traces}
	found := map[string]bool{}
	for _, t := range traces {
		found[t.TraceID] = true
	}
	for _, id := range ids {
		if j := jaegerTraceID(id); !found[j] {
			res.Errors = append(res.Errors, responseError{Msg: "trace not found", TraceID: j})
			found[j] = true
		}
	}
	return res, nil
}

func (a *API) optionalRange(r *http.Request) (start, end time.Time, err error) {
	if start, err = timeParam(r, "start", time.Microsecond, time.Time{}); err != nil {
		return
	}
	end, err = timeParam(r, "end", time.Microsecond, time.Time{})
	return
}

func (a *API) trace(ctx context.Context, r *http.Request) (*response, error) {
	id, err := parseTraceID(r.PathValue("traceID"))
	if err != nil {
		return nil, badRequest("%v", err)
	}
	start, end, err := a.optionalRange(r)
	if err != nil {
		return nil, err
	}
	traces, err := a.readTraces(ctx, []string{id}, start, end)
	if err != nil {
		return nil, err
	}
	if len(traces) == 0 {
		return nil, &apiError{status: http.StatusNotFound, msg: "trace not found"}
	}
	return &response{Data: traces}, nil
}

// readTraces reads the spans of the traces, at most MaxSpans of them.
func (a *API) readTraces(ctx context.Context, ids []string, start, end time.Time) ([]Trace, error) {
	if len(ids) == 0 {
		return []Trace{}, nil
	}
	spans, err := a.spans.QuerySpans(ctx, storage.SpanQuery{TraceIDs: ids, Start: start, End: end, Limit: a.cfg.MaxSpans + 1})
	if err != nil {
		return nil, err
	}
	truncated := ""
	if len(spans) > a.cfg.MaxSpans {
		spans = spans[:a.cfg.MaxSpans]
		truncated = fmt.Sprintf("aiops: the answer holds the first %d spans (traces.max_spans); this trace may have more", a.cfg.MaxSpans)
	}
	return toTraces(ids, spans, truncated), nil
}

func (a *API) checkRange(start, end time.Time, startName, endName string) error {
	if end.Before(start) {
		return badRequest("'%s' (%s) is before '%s' (%s)", endName, end.Format(time.RFC3339Nano), startName, start.Format(time.RFC3339Nano))
	}
	if d := end.Sub(start); d > time.Duration(a.cfg.MaxRange) {
		return badRequest("the time range is %s, longer than the %s allowed (traces.max_range)", d, a.cfg.MaxRange)
	}
	return nil
}

func (a *API) dependencies(ctx context.Context, r *http.Request) (*response, error) {
	end, err := timeParam(r, "endTs", time.Millisecond, a.now())
	if err != nil {
		return nil, err
	}
	lookback := defaultDependencyLookback
	if v := r.FormValue("lookback"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > math64(time.Millisecond) {
			return nil, badRequest("unable to parse param 'lookback': %q is not a count of milliseconds", v)
		}
		lookback = time.Duration(n) * time.Millisecond
	}
	start := end.Add(-lookback)
	if err := a.checkRange(start, end, "endTs - lookback", "endTs"); err != nil {
		return nil, err
	}
	deps, err := a.spans.Dependencies(ctx, start, end)
	if err != nil {
		return nil, err
	}
	service := r.FormValue("service")
	out := []Dependency{}
	for _, d := range deps {
		if service == "" || d.Parent == service || d.Child == service {
			out = append(out, Dependency{Parent: d.Parent, Child: d.Child, CallCount: d.Calls})
		}
	}
	return &response{Data: out}, nil
}
