// Package logs serves the log records aiops stores at GET /api/v1/logs:
// a time range, service, minimum severity, body substring or regular
// expression, trace id and attribute equality, newest first, with a
// cursor. Each record that carries a trace id links to the trace in the
// Jaeger-compatible API. The OpenAPI 3 document is at
// /api/v1/logs/openapi.json; docs/TRACES.md describes the API for users.
package logs

import (
	"context"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/aiops-dev/aiops/internal/restapi"
	"github.com/aiops-dev/aiops/storage"
)

// Records is what the API reads.
type Records interface {
	QueryLogs(ctx context.Context, q storage.LogQuery) ([]storage.LogRecord, error)
}

// Options are what New needs.
type Options struct {
	Config  Config
	Records Records
	Logger  *slog.Logger
	// Now is the clock default time ranges end at; time.Now if nil.
	Now func() time.Time
}

// API serves the logs API.
type API struct {
	cfg     Config
	records Records
	logger  *slog.Logger
	now     func() time.Time
	slots   chan struct{}
	openapi restapi.OpenAPI
}

//go:embed openapi.yaml
var openapiYAML []byte

// Page sizes and the default range.
const (
	DefaultLimit = 100
	DefaultRange = time.Hour
)

// New checks the options and builds the API.
func New(o Options) (*API, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Records == nil {
		return nil, errors.New("logs api: no log store")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	doc, err := restapi.NewOpenAPI(openapiYAML)
	if err != nil {
		return nil, fmt.Errorf("logs api: %w", err)
	}
	return &API{cfg: o.Config, records: o.Records, logger: o.Logger, now: o.Now,
		slots: make(chan struct{}, o.Config.MaxConcurrency), openapi: doc}, nil
}

// Mount registers the routes on mux; they are more specific than the
// query API's "/api/v1/".
func (a *API) Mount(mux *http.ServeMux) {
	mux.HandleFunc("/api/v1/logs", a.serveLogs)
	mux.HandleFunc("/api/v1/logs/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			methodNotAllowed(w, r)
			return
		}
		a.openapi.ServeHTTP(w, r)
	})
	mux.HandleFunc("/api/v1/logs/", func(w http.ResponseWriter, r *http.Request) {
		restapi.WriteError(w, http.StatusNotFound, "not_found", "", "no such endpoint: "+r.URL.Path)
	})
}

// OpenAPI returns the OpenAPI 3 document as JSON.
func (a *API) OpenAPI() []byte { return slices.Clone([]byte(a.openapi)) }

// View is one record in the API's JSON.
type View struct {
	ID             string            `json:"id"`
	Time           time.Time         `json:"time"`
	ObservedTime   *time.Time        `json:"observed_time"`
	Severity       string            `json:"severity"`
	SeverityNumber int32             `json:"severity_number"`
	Body           string            `json:"body"`
	Service        string            `json:"service"`
	Scope          string            `json:"scope"`
	TraceID        string            `json:"trace_id"`
	SpanID         string            `json:"span_id"`
	Attributes     map[string]string `json:"attributes"`
	Resource       map[string]string `json:"resource"`
	// Trace is the path of the record's trace in the Jaeger-compatible
	// API; empty without a trace id.
	Trace string `json:"trace,omitempty"`
}

// Page is one answer.
type Page struct {
	Logs []View `json:"logs"`
	// NextCursor continues the listing; absent on the last page.
	NextCursor string `json:"next_cursor,omitempty"`
}

func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD")
	restapi.WriteError(w, http.StatusMethodNotAllowed, "method_not_allowed", "",
		fmt.Sprintf("%s is not allowed on %s; allowed: GET", r.Method, r.URL.Path))
}

// fieldError is a 400 naming the parameter at fault.
type fieldError struct{ field, msg string }

func (e *fieldError) Error() string { return e.field + ": " + e.msg }

func badField(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

// severities are the OpenTelemetry severity ranges by their short names.
var severities = map[string]int32{"trace": 1, "debug": 5, "info": 9, "warn": 13, "warning": 13, "error": 17, "fatal": 21}

func parseTime(field, s string, def time.Time) (time.Time, error) {
	if s == "" {
		return def, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && math.Abs(f) < 1e11 {
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
	}
	return time.Time{}, badField(field, "must be an RFC 3339 time or Unix seconds, got %q", s)
}

// query turns the request's parameters into a store query.
func (a *API) query(r *http.Request) (storage.LogQuery, error) {
	p := r.URL.Query()
	var q storage.LogQuery
	end, err := parseTime("end", p.Get("end"), a.now())
	if err != nil {
		return q, err
	}
	start, err := parseTime("start", p.Get("start"), end.Add(-DefaultRange))
	if err != nil {
		return q, err
	}
	if end.Before(start) {
		return q, badField("end", "must not be before start")
	}
	if d := end.Sub(start); d > time.Duration(a.cfg.MaxRange) {
		return q, badField("start", "the range is %s, longer than the %s allowed (logs.max_range)", d, a.cfg.MaxRange)
	}
	q.Start, q.End = start, end
	q.ServiceName = p.Get("service")
	if s := p.Get("min_severity"); s != "" {
		if n, ok := severities[strings.ToLower(s)]; ok {
			q.MinSeverity = n
		} else if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= 24 {
			q.MinSeverity = int32(n)
		} else {
			return q, badField("min_severity", "must be trace, debug, info, warn, error, fatal or a number from 1 to 24, got %q", s)
		}
	}
	q.BodyContains = p.Get("contains")
	if s := p.Get("regexp"); s != "" {
		if _, err := regexp.Compile(s); err != nil {
			return q, badField("regexp", "%v", err)
		}
		q.BodyRegexp = s
	}
	if s := p.Get("trace_id"); s != "" {
		id := strings.ToLower(s)
		if len(id) > 32 || strings.Trim(id, "0123456789abcdef") != "" {
			return q, badField("trace_id", "must be up to 32 hex digits, got %q", s)
		}
		q.TraceID = strings.Repeat("0", 32-len(id)) + id
	}
	for _, s := range p["attribute"] {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return q, badField("attribute", "must be key=value, got %q", s)
		}
		if q.Attributes == nil {
			q.Attributes = map[string]string{}
		}
		if old, dup := q.Attributes[k]; dup && old != v {
			return q, badField("attribute", "%s is given twice with different values", k)
		}
		q.Attributes[k] = v
	}
	q.Limit = DefaultLimit
	if s := p.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > a.cfg.MaxLimit {
			return q, badField("limit", "must be an integer from 1 to %d (logs.max_limit), got %q", a.cfg.MaxLimit, s)
		}
		q.Limit = n
	}
	if c := p.Get("cursor"); c != "" {
		if q.BeforeTime, q.BeforeID, err = decodeCursor(c); err != nil {
			return q, err
		}
	}
	return q, nil
}

func (a *API) serveLogs(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r)
		return
	}
	q, err := a.query(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(a.cfg.Timeout))
	defer cancel()
	select {
	case a.slots <- struct{}{}:
		defer func() { <-a.slots }()
	case <-ctx.Done():
		a.fail(w, r, ctx.Err())
		return
	}
	limit := q.Limit
	q.Limit++ // one more tells whether there is a next page
	recs, err := a.records.QueryLogs(ctx, q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	page := Page{Logs: make([]View, 0, min(len(recs), limit))}
	if len(recs) > limit {
		recs = recs[:limit]
		last := recs[limit-1]
		page.NextCursor = encodeCursor(last.Timestamp, last.ID())
	}
	for i := range recs {
		page.Logs = append(page.Logs, view(&recs[i]))
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(page)
}

func view(r *storage.LogRecord) View {
	v := View{
		ID: r.ID(), Time: r.Timestamp, Severity: r.SeverityText, SeverityNumber: r.SeverityNumber,
		Body: r.Body, Service: r.ServiceName, Scope: r.ScopeName, TraceID: r.TraceID, SpanID: r.SpanID,
		Attributes: r.Attributes, Resource: r.ResourceAttributes,
	}
	if !r.ObservedTimestamp.IsZero() {
		t := r.ObservedTimestamp
		v.ObservedTime = &t
	}
	if v.Attributes == nil {
		v.Attributes = map[string]string{}
	}
	if v.Resource == nil {
		v.Resource = map[string]string{}
	}
	if r.TraceID != "" {
		v.Trace = "/api/traces/" + r.TraceID
	}
	return v
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var fe *fieldError
	switch {
	case errors.As(err, &fe):
		restapi.WriteError(w, http.StatusBadRequest, "invalid", fe.field, fe.Error())
	case errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		restapi.WriteError(w, http.StatusServiceUnavailable, "timeout", "", fmt.Sprintf("query timed out after %s (logs.timeout)", a.cfg.Timeout))
	case errors.Is(err, storage.ErrUnavailable):
		restapi.WriteError(w, http.StatusServiceUnavailable, "unavailable", "", err.Error())
	case errors.Is(err, context.Canceled):
		restapi.WriteError(w, 499, "canceled", "", err.Error())
	default:
		a.logger.Error("Logs API request failed", "path", r.URL.Path, "err", err)
		restapi.WriteError(w, http.StatusInternalServerError, "internal", "", err.Error())
	}
}

// Cursors are opaque to clients: a version tag, the last record's time
// and id, base64url encoded.
func encodeCursor(t time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("log1:" + strconv.FormatInt(t.UnixNano(), 10) + ":" + id))
}

func decodeCursor(s string) (time.Time, string, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		if rest, ok := strings.CutPrefix(string(raw), "log1:"); ok {
			ts, id, ok := strings.Cut(rest, ":")
			if n, err := strconv.ParseInt(ts, 10, 64); ok && err == nil && id != "" {
				return time.Unix(0, n).UTC(), id, nil
			}
		}
	}
	return time.Time{}, "", badField("cursor", "not a cursor this endpoint returned")
}
