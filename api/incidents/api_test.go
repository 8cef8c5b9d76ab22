package incidents

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/alerting/incident"
)

// TestOpenAPICoverage keeps the OpenAPI document true: every registered
// route is documented and every documented operation is registered
// (method and path, both directions); the document is valid OpenAPI 3.1;
// each operation is really served by this API (a JSON answer that fits
// the document, not the mux's fallback); and none takes a route of
// Prometheus's query API.
func TestOpenAPICoverage(t *testing.T) {
	e := newEnv(t, envOptions{})
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	r := e.do(http.MethodGet, "/api/v1/openapi.json", e.readTok, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /api/v1/openapi.json: %d %s", r.status, r.body)
	}
	r.decode(t, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	validatorMu.Lock()
	ok, errs := e.v.ValidateDocument()
	validatorMu.Unlock()
	if !ok {
		t.Fatalf("the document is not valid OpenAPI: %s", verrs(errs))
	}

	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			if method == "parameters" || method == "summary" || method == "description" {
				continue
			}
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	registered := map[string]bool{}
	for _, rt := range e.api.routes() {
		registered[rt.method+" "+rt.path] = true
	}
	for k := range registered {
		if !documented[k] {
			t.Errorf("route %s is not in the OpenAPI document", k)
		}
	}
	for k := range documented {
		if !registered[k] {
			t.Errorf("the OpenAPI document has %s, which is not served", k)
		}
	}

	// Each operation answers from its own handler: a JSON body that fits
	// the document, whatever the status (404 for the made-up ids).
	for k := range documented {
		method, path, _ := strings.Cut(k, " ")
		path = strings.ReplaceAll(path, "{id}", "made-up-id")
		var body any
		if method == http.MethodPost {
			body = map[string]any{}
		}
		r := e.do(method, path, e.writeTok, body)
		if r.header.Get("X-Handler") == "prometheus" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
			t.Errorf("%s %s is not served by this API: %d %q", method, path, r.status, r.body)
		}
		if r.status == http.StatusMethodNotAllowed || r.status == http.StatusInternalServerError {
			t.Errorf("%s %s: %d %s", method, path, r.status, r.body)
		}
	}

	// Prometheus's routes stay Prometheus's.
	prom := []string{"/api/v1/query", "/api/v1/query_range", "/api/v1/series", "/api/v1/labels", "/api/v1/label/job/values",
		"/api/v1/metadata", "/api/v1/rules", "/api/v1/alerts", "/api/v1/alertmanagers", "/api/v1/targets",
		"/api/v1/targets/metadata", "/api/v1/status/buildinfo", "/api/v1/status/tsdb", "/api/v1/format_query",
		"/api/v1/parse_query", "/api/v1/query_exemplars", "/api/v1/read", "/api/v1/write", "/api/v1/otlp/v1/metrics",
		"/api/v1/notifications", "/api/v1/features", "/api/v1/scrape_pools", "/api/v1/openapi.yaml",
		"/api/v1/admin/tsdb/snapshot", "/api/v1/search/metric_names", "/api/v1/query_cost"}
	for _, p := range prom {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			if r := e.do(method, p, e.writeTok, nil); r.header.Get("X-Handler") != "prometheus" {
				t.Errorf("%s %s was taken from Prometheus's API: %d %s", method, p, r.status, r.body)
			}
		}
	}
	// Wrong methods and unknown sub-paths answer in the API's format.
	e.do(http.MethodPost, "/api/v1/incidents", e.writeTok, nil).wantError(t, http.StatusMethodNotAllowed, "method_not_allowed", "")
	e.do(http.MethodGet, "/api/v1/incidents/x/nonsense", e.readTok, nil).wantError(t, http.StatusNotFound, "not_found", "")
}

func incidentByKey(t *testing.T, e *env, key string) incident.Incident {
	t.Helper()
	for _, inc := range mustList(e) {
		if inc.GroupKey == key {
			return inc
		}
	}
	t.Fatalf("no incident for group %s", key)
	return incident.Incident{}
}

func mustList(e *env) []incident.Incident {
	incs, _ := e.mgr.List(incident.Query{Limit: MaxLimit})
	return incs
}

var (
	apiErrors = model.LabelSet{"alertname": "HighErrorRate", "severity": "critical", "job": "api"}
	poolFull  = model.LabelSet{"alertname": "PoolFull", "severity": "warning", "service": "postgres"}
)

// TestIncidentRoutes goes through every incident route: list with
// filters, get with its ETag, timeline, alerts, and each action with
// If-Match, 404 and 409.
func TestIncidentRoutes(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.group("g-api", mkAlert(apiErrors, time.Now().Add(-time.Minute), time.Time{}))
	e.group("g-pool", mkAlert(poolFull, time.Now().Add(-time.Minute), time.Time{}))
	api, pool := incidentByKey(t, e, "g-api"), incidentByKey(t, e, "g-pool")

	var list incidentList
	e.do(http.MethodGet, "/api/v1/incidents", e.readTok, nil).decode(t, &list)
	if len(list.Incidents) != 2 || list.Incidents[0].ID != pool.ID || list.NextCursor != "" {
		t.Fatalf("list: %+v", list)
	}
	for q, want := range map[string][]string{
		"status=open":                            {pool.ID, api.ID},
		"status=resolved":                        {},
		"service=api":                            {api.ID},
		"severity=warning,critical":              {pool.ID, api.ID},
		"severity=critical":                      {api.ID},
		"match[]=" + url.QueryEscape(`PoolFull`): {pool.ID},
		"match[]=" + url.QueryEscape(`{job="api"}`) + "&match[]=" + url.QueryEscape(`{service=~"post.*"}`): {pool.ID, api.ID},
		"end=" + url.QueryEscape(time.Now().Add(-time.Hour).Format(time.RFC3339)):                          {},
		"start=" + fmt.Sprint(time.Now().Add(-time.Hour).Unix()):                                           {pool.ID, api.ID},
	} {
		var l incidentList
		e.do(http.MethodGet, "/api/v1/incidents?"+q, e.readTok, nil).decode(t, &l)
		var got []string
		for _, inc := range l.Incidents {
			got = append(got, inc.ID)
		}
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Errorf("?%s: %v, want %v", q, got, want)
		}
	}

	r := e.do(http.MethodGet, "/api/v1/incidents/"+api.ID, e.readTok, nil)
	var inc incident.Incident
	r.decode(t, &inc)
	if r.header.Get("ETag") != `"2"` || inc.Version != 2 || inc.Service != "api" || inc.Severity != "critical" ||
		len(inc.Links) != 1 || inc.Links[0].Expr != "rate(errors[5m]) > 1" {
		t.Fatalf("get: %s %+v", r.header.Get("ETag"), inc)
	}
	e.do(http.MethodGet, "/api/v1/incidents/inc-nope", e.readTok, nil).wantError(t, http.StatusNotFound, "not_found", "")
	e.do(http.MethodPost, "/api/v1/incidents/inc-nope/acknowledge", e.writeTok, nil).wantError(t, http.StatusNotFound, "not_found", "")

	// A stale If-Match is refused with the current ETag; the right one
	// goes through and the actor is the token.
	r = e.do(http.MethodPost, "/api/v1/incidents/"+api.ID+"/acknowledge", e.writeTok, map[string]string{"comment": "mine"}, "If-Match", `"1"`)
	r.wantError(t, http.StatusConflict, "stale", "If-Match")
	if r.header.Get("ETag") != `"2"` {
		t.Errorf("409 ETag %q", r.header.Get("ETag"))
	}
	r = e.do(http.MethodPost, "/api/v1/incidents/"+api.ID+"/acknowledge", e.writeTok, map[string]string{"comment": "mine"}, "If-Match", `"2"`)
	r.decode(t, &inc)
	if r.status != http.StatusOK || inc.Status != incident.StatusAcknowledged || inc.AcknowledgedBy != e.writeID || r.header.Get("ETag") != `"3"` {
		t.Fatalf("acknowledge: %d %s %+v", r.status, r.header.Get("ETag"), inc)
	}
	e.do(http.MethodPost, "/api/v1/incidents/"+api.ID+"/assign", e.writeTok, map[string]string{"assignee": "alice"}).decode(t, &inc)
	e.do(http.MethodPost, "/api/v1/incidents/"+api.ID+"/notes", e.writeTok, map[string]string{"text": "rolled back deploy 42"}).decode(t, &inc)
	e.do(http.MethodPost, "/api/v1/incidents/"+api.ID+"/escalate", e.writeTok, nil).decode(t, &inc)
	e.do(http.MethodPost, "/api/v1/incidents/"+api.ID+"/root_causes", e.writeTok, nil).decode(t, &inc)
	if inc.Assignee != "alice" || inc.Notes != 1 || inc.EscalationLevel != 1 || inc.RootCauses == nil || inc.Version != 7 {
		t.Fatalf("after assign, note, escalate, refresh: %+v", inc)
	}
	r = e.do(http.MethodPost, "/api/v1/incidents/"+api.ID+"/resolve", e.writeTok, map[string]string{"comment": "fixed"}, "If-Match", `W/"7"`)
	r.decode(t, &inc)
	if inc.Status != incident.StatusResolved || inc.ResolvedBy != e.writeID {
		t.Fatalf("resolve: %+v", inc)
	}
	// Resolving again changes nothing; acknowledging is refused.
	if r := e.do(http.MethodPost, "/api/v1/incidents/"+api.ID+"/resolve", e.writeTok, nil); r.status != 200 || r.header.Get("ETag") != `"8"` {
		t.Errorf("resolve twice: %d %s", r.status, r.header.Get("ETag"))
	}
	e.do(http.MethodPost, "/api/v1/incidents/"+api.ID+"/acknowledge", e.writeTok, nil).wantError(t, http.StatusConflict, "conflict", "")

	var tl timeline
	e.do(http.MethodGet, "/api/v1/incidents/"+api.ID+"/timeline", e.readTok, nil).decode(t, &tl)
	var types []string
	for _, ev := range tl.Events {
		types = append(types, string(ev.Type))
	}
	want := []string{"opened", "alert_firing", "acknowledged", "assigned", "note", "escalated", "root_causes", "resolved"}
	if !slices.Equal(types, want) || tl.Version != 8 || tl.Events[4].Comment != "rolled back deploy 42" || tl.Events[7].Actor != e.writeID {
		t.Fatalf("timeline %v (version %d)", types, tl.Version)
	}

	var al struct {
		Alerts []incidentAlert `json:"alerts"`
	}
	e.do(http.MethodGet, "/api/v1/incidents/"+pool.ID+"/alerts", e.readTok, nil).decode(t, &al)
	if len(al.Alerts) != 1 || al.Alerts[0].Labels["alertname"] != "PoolFull" || al.Alerts[0].Alertmanager != nil {
		t.Fatalf("alerts of the incident (not in the Alertmanager): %+v", al)
	}
	if err := e.am.Put(context.Background(), mkAlert(poolFull, time.Now().Add(-time.Minute), time.Time{})); err != nil {
		t.Fatal(err)
	}
	e.do(http.MethodGet, "/api/v1/incidents/"+pool.ID+"/alerts", e.readTok, nil).decode(t, &al)
	if al.Alerts[0].Alertmanager == nil || al.Alerts[0].Alertmanager.Receivers[0] != "default" {
		t.Fatalf("alerts of the incident with the Alertmanager's view: %+v", al.Alerts[0].Alertmanager)
	}
}

// TestValidationErrors: bad parameters, headers and bodies are 400s that
// name the field.
func TestValidationErrors(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.group("g", mkAlert(apiErrors, time.Now(), time.Time{}))
	id := incidentByKey(t, e, "g").ID
	ack := "/api/v1/incidents/" + id + "/acknowledge"
	for _, c := range []struct {
		method, path string
		body         any
		hdr          []string
		field        string
	}{
		{"GET", "/api/v1/incidents?status=closed", nil, nil, "status"},
		{"GET", "/api/v1/incidents?limit=0", nil, nil, "limit"},
		{"GET", "/api/v1/incidents?limit=5000", nil, nil, "limit"},
		{"GET", "/api/v1/incidents?start=yesterday", nil, nil, "start"},
		{"GET", "/api/v1/incidents?start=2025-03-02T00:00:00Z&end=2025-03-01T00:00:00Z", nil, nil, "end"},
		{"GET", "/api/v1/incidents?match[]=" + url.QueryEscape(`{job=~"(api"}`), nil, nil, "match[]"},
		{"GET", "/api/v1/incidents?cursor=bm9wZQ", nil, nil, "cursor"},
		{"POST", ack, map[string]any{"coment": "typo"}, nil, "coment"},
		{"POST", ack, map[string]any{"comment": 42}, nil, "comment"},
		{"POST", ack, map[string]any{"comment": strings.Repeat("x", 5000)}, nil, "comment"},
		{"POST", ack, `{"comment": "a"} {}`, nil, "body"},
		{"POST", ack, `not json`, nil, "body"},
		{"POST", ack, nil, []string{"If-Match", "yesterday"}, "If-Match"},
		{"POST", "/api/v1/incidents/" + id + "/assign", map[string]any{}, nil, "assignee"},
		{"POST", "/api/v1/incidents/" + id + "/notes", map[string]any{"text": "  "}, nil, "text"},
		{"POST", "/api/v1/incidents/" + id + "/notes", map[string]any{"text": strings.Repeat("x", incident.MaxNoteBytes+1)}, nil, "text"},
		{"POST", "/api/v1/silences", map[string]any{"comment": "x", "duration": "1h"}, nil, "matchers"},
		{"POST", "/api/v1/silences", map[string]any{"matchers": `{job=`, "comment": "x", "duration": "1h"}, nil, "matchers"},
		{"POST", "/api/v1/silences", map[string]any{"matchers": `{job=~".*"}`, "comment": "x", "duration": "1h"}, nil, "matchers"},
		{"POST", "/api/v1/silences", map[string]any{"matchers": `{job="api"}`, "duration": "1h"}, nil, "comment"},
		{"POST", "/api/v1/silences", map[string]any{"matchers": `{job="api"}`, "comment": "x"}, nil, "ends_at"},
		{"POST", "/api/v1/silences", map[string]any{"matchers": `{job="api"}`, "comment": "x", "duration": "soon"}, nil, "duration"},
		{"POST", "/api/v1/silences", map[string]any{"matchers": `{job="api"}`, "comment": "x", "duration": "1h", "ends_at": "2030-01-01T00:00:00Z"}, nil, "duration"},
		{"POST", "/api/v1/silences", map[string]any{"matchers": `{job="api"}`, "comment": "x", "ends_at": "2001-01-01T00:00:00Z"}, nil, "ends_at"},
		{"GET", "/api/v1/silences?state=sleeping", nil, nil, "state"},
		{"GET", "/api/v1/current_alerts?silenced=maybe", nil, nil, "silenced"},
		{"GET", "/api/v1/anomalies?min_score=2", nil, nil, "min_score"},
		{"GET", "/api/v1/anomalies?end=0&start=100", nil, nil, "end"},
		{"GET", "/api/v1/forecasts?within=soon", nil, nil, "within"},
		{"GET", "/api/v1/forecasts?match[]=" + url.QueryEscape(`aiops_capacity_exhaustion_seconds`), nil, nil, "match[]"},
	} {
		t.Run(c.method+" "+c.path+" "+c.field, func(t *testing.T) {
			e.t = t
			r := e.do(c.method, c.path, e.writeTok, c.body, c.hdr...)
			r.wantError(t, http.StatusBadRequest, "invalid", c.field)
		})
	}
	e.t = t
	// Nothing refused changed the incident.
	if inc, _ := e.mgr.Get(id); inc.Version != 2 {
		t.Errorf("refused requests changed the incident: version %d", inc.Version)
	}
}

// TestPaginationStable pages through the incidents while others are
// being opened: every incident that existed before the first page is seen
// exactly once, and no page repeats one.
func TestPaginationStable(t *testing.T) {
	e := newEnv(t, envOptions{})
	const before = 120
	for i := range before {
		e.group(fmt.Sprintf("g%03d", i), mkAlert(model.LabelSet{"alertname": model.LabelValue(fmt.Sprintf("A%03d", i)), "job": "api"}, time.Now(), time.Time{}))
	}
	existing := map[string]bool{}
	for _, inc := range mustList(e) {
		existing[inc.ID] = true
	}
	if len(existing) != before {
		t.Fatalf("%d incidents", len(existing))
	}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	added := 0
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil && i < 500; i++ {
			ls := model.LabelSet{"alertname": model.LabelValue(fmt.Sprintf("New%03d", i)), "job": "api"}
			e.group(fmt.Sprintf("new%03d", i), mkAlert(ls, time.Now(), time.Time{}))
			added++
		}
	}()
	seen := map[string]int{}
	cursor := ""
	pages := 0
	for {
		path := "/api/v1/incidents?limit=7&service=api"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		var l incidentList
		e.do(http.MethodGet, path, e.readTok, nil).decode(t, &l)
		for _, inc := range l.Incidents {
			seen[inc.ID]++
		}
		pages++
		if l.NextCursor == "" {
			break
		}
		cursor = l.NextCursor
		time.Sleep(time.Millisecond) // let the writer interleave
	}
	stop()
	wg.Wait()
	for id := range existing {
		if seen[id] != 1 {
			t.Errorf("incident %s seen %d times", id, seen[id])
		}
	}
	for id, n := range seen {
		if n > 1 {
			t.Errorf("incident %s seen %d times", id, n)
		}
	}
	if added == 0 || pages < before/7 {
		t.Fatalf("no concurrent inserts (%d) or too few pages (%d)", added, pages)
	}
	t.Logf("%d pages; %d incidents added while paging, %d of them seen", pages, added, len(seen)-before)
}

// TestAuth wraps the API in the auth middleware: no token 401, a read
// token reads but may not change (403), a write token changes.
func TestAuth(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.group("g", mkAlert(apiErrors, time.Now(), time.Time{}))
	id := incidentByKey(t, e, "g").ID
	r := e.do(http.MethodGet, "/api/v1/incidents", "", nil)
	r.wantError(t, http.StatusUnauthorized, "unauthorized", "")
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
	}
	e.do(http.MethodGet, "/api/v1/openapi.json", "", nil).wantError(t, http.StatusUnauthorized, "unauthorized", "")
	e.do(http.MethodGet, "/api/v1/incidents", "aiops_wrong_token", nil).wantError(t, http.StatusUnauthorized, "unauthorized", "")
	if r := e.do(http.MethodGet, "/api/v1/incidents/"+id, e.readTok, nil); r.status != http.StatusOK {
		t.Fatalf("read token GET: %d", r.status)
	}
	for _, p := range []string{"acknowledge", "resolve", "notes", "assign", "escalate", "root_causes"} {
		e.do(http.MethodPost, "/api/v1/incidents/"+id+"/"+p, e.readTok, map[string]string{}).wantError(t, http.StatusForbidden, "forbidden", "")
	}
	e.do(http.MethodPost, "/api/v1/silences", e.readTok, map[string]string{}).wantError(t, http.StatusForbidden, "forbidden", "")
	if inc, _ := e.mgr.Get(id); inc.Version != 2 {
		t.Fatalf("a read token changed the incident: %+v", inc)
	}
	if r := e.do(http.MethodPost, "/api/v1/incidents/"+id+"/acknowledge", e.writeTok, nil); r.status != http.StatusOK {
		t.Fatalf("write token POST: %d %s", r.status, r.body)
	}
}

// TestMountWithoutAuth: the handler alone (no middleware) records the
// actor as anonymous, and Patterns cover every route.
func TestMountWithoutAuth(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.group("g", mkAlert(apiErrors, time.Now(), time.Time{}))
	id := incidentByKey(t, e, "g").ID
	srv := httptest.NewServer(e.api.Handler())
	t.Cleanup(srv.Close)
	res, err := http.Post(srv.URL+"/api/v1/incidents/"+id+"/acknowledge", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if inc, _ := e.mgr.Get(id); res.StatusCode != 200 || inc.AcknowledgedBy != "anonymous" {
		t.Fatalf("%d %+v", res.StatusCode, inc)
	}
	pats := e.api.Patterns()
	sort.Strings(pats)
	want := []string{"/api/v1/anomalies", "/api/v1/anomalies/", "/api/v1/current_alerts", "/api/v1/current_alerts/", "/api/v1/forecasts", "/api/v1/forecasts/",
		"/api/v1/incidents", "/api/v1/incidents/", "/api/v1/openapi.json", "/api/v1/silences", "/api/v1/silences/"}
	if !slices.Equal(pats, want) {
		t.Errorf("patterns %v", pats)
	}
}

// TestValidatorCatchesDrift makes sure the document check above can fail:
// a response with a field the schema does not have, or missing one it
// requires, is refused.
func TestValidatorCatchesDrift(t *testing.T) {
	e := newEnv(t, envOptions{})
	req := httptest.NewRequest(http.MethodGet, "/api/v1/incidents/inc-1", nil)
	for _, body := range []string{
		`{"id": "inc-1"}`, // required fields missing
		`{"incidents": [], "surprise": true}`,
	} {
		res := &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(body)), Request: req}
		validatorMu.Lock()
		ok, _ := e.v.ValidateHttpResponse(req, res)
		validatorMu.Unlock()
		if ok {
			t.Errorf("response %s passed validation", body)
		}
	}
}
