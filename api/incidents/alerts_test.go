package incidents

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/alerting/incident"
)

// TestSilencesAndCurrentAlerts creates a silence through the API, sees it
// mute the matching current alert, lists, gets and expires it, through
// the embedded Alertmanager's own silences.
func TestSilencesAndCurrentAlerts(t *testing.T) {
	e := newEnv(t, envOptions{})
	ctx := context.Background()
	start := time.Now().Add(-time.Minute)
	if err := e.am.Put(ctx, mkAlert(apiErrors, start, time.Time{}), mkAlert(poolFull, start, time.Time{})); err != nil {
		t.Fatal(err)
	}
	e.group("g-api", mkAlert(apiErrors, start, time.Time{}))
	apiInc := incidentByKey(t, e, "g-api")

	var cur struct {
		Alerts []currentAlert `json:"alerts"`
	}
	e.do(http.MethodGet, "/api/v1/current_alerts", e.readTok, nil).decode(t, &cur)
	if len(cur.Alerts) != 2 {
		t.Fatalf("current alerts: %+v", cur)
	}
	for _, a := range cur.Alerts {
		wantInc := ""
		if a.Labels["alertname"] == "HighErrorRate" {
			wantInc = apiInc.ID
		}
		if a.State != "active" || a.IncidentID != wantInc || len(a.Receivers) != 1 {
			t.Errorf("current alert %+v", a)
		}
	}

	r := e.do(http.MethodPost, "/api/v1/silences", e.writeTok, map[string]string{
		"matchers": `HighErrorRate{job=~"api|web"}`, "duration": "2h", "comment": "deploying the fix",
	})
	var sil incident.Silence
	r.decode(t, &sil)
	if r.status != http.StatusCreated || sil.State != "active" || sil.CreatedBy != e.writeID ||
		sil.Matchers != `{alertname="HighErrorRate", job=~"api|web"}` || r.header.Get("Location") != "/api/v1/silences/"+sil.ID {
		t.Fatalf("create: %d %+v %s", r.status, sil, r.header.Get("Location"))
	}
	if d := sil.EndsAt.Sub(sil.StartsAt); d < 2*time.Hour-time.Second || d > 2*time.Hour+time.Second {
		t.Errorf("silence lasts %s", d)
	}
	// The silence mutes the API alert only.
	e.do(http.MethodGet, "/api/v1/current_alerts?silenced=false", e.readTok, nil).decode(t, &cur)
	if len(cur.Alerts) != 1 || cur.Alerts[0].Labels["alertname"] != "PoolFull" {
		t.Fatalf("unsilenced alerts: %+v", cur.Alerts)
	}
	e.do(http.MethodGet, "/api/v1/current_alerts?active=false", e.readTok, nil).decode(t, &cur)
	if len(cur.Alerts) != 1 || cur.Alerts[0].State != "suppressed" || len(cur.Alerts[0].SilencedBy) != 1 || cur.Alerts[0].SilencedBy[0] != sil.ID {
		t.Fatalf("silenced alerts: %+v", cur.Alerts)
	}
	e.do(http.MethodGet, "/api/v1/current_alerts?match[]="+url.QueryEscape(`{service="postgres"}`), e.readTok, nil).decode(t, &cur)
	if len(cur.Alerts) != 1 || cur.Alerts[0].Labels["alertname"] != "PoolFull" {
		t.Fatalf("matched alerts: %+v", cur.Alerts)
	}

	var list struct {
		Silences []incident.Silence `json:"silences"`
	}
	e.do(http.MethodGet, "/api/v1/silences?state=active", e.readTok, nil).decode(t, &list)
	if len(list.Silences) != 1 || list.Silences[0].ID != sil.ID {
		t.Fatalf("active silences: %+v", list)
	}
	var got incident.Silence
	e.do(http.MethodGet, "/api/v1/silences/"+sil.ID, e.readTok, nil).decode(t, &got)
	if got.ID != sil.ID || got.Comment != "deploying the fix" {
		t.Fatalf("get: %+v", got)
	}
	e.do(http.MethodGet, "/api/v1/silences/no-such-silence", e.readTok, nil).wantError(t, http.StatusNotFound, "not_found", "")
	e.do(http.MethodPost, "/api/v1/silences/no-such-silence/expire", e.writeTok, nil).wantError(t, http.StatusNotFound, "not_found", "")

	r = e.do(http.MethodPost, "/api/v1/silences/"+sil.ID+"/expire", e.writeTok, nil)
	r.decode(t, &got)
	if r.status != http.StatusOK || got.State != "expired" {
		t.Fatalf("expire: %d %+v", r.status, got)
	}
	if r := e.do(http.MethodPost, "/api/v1/silences/"+sil.ID+"/expire", e.writeTok, nil); r.status != http.StatusOK {
		t.Errorf("expiring twice: %d %s", r.status, r.body)
	}
	e.do(http.MethodGet, "/api/v1/silences?state=active,pending", e.readTok, nil).decode(t, &list)
	if len(list.Silences) != 0 {
		t.Fatalf("active after expiry: %+v", list)
	}
	e.do(http.MethodGet, "/api/v1/current_alerts?silenced=false", e.readTok, nil).decode(t, &cur)
	if len(cur.Alerts) != 2 {
		t.Fatalf("after expiry: %+v", cur.Alerts)
	}

	// The service silences an incident's alerts; the timeline shows it
	// (and is still what the OpenAPI document says).
	if _, _, err := e.silencer.SilenceIncident(ctx, apiInc.ID, incident.SilenceSpec{Duration: time.Hour},
		incident.Action{Actor: "slack:U123", Comment: "looking into it"}); err != nil {
		t.Fatal(err)
	}
	var tl timeline
	e.do(http.MethodGet, "/api/v1/incidents/"+apiInc.ID+"/timeline", e.readTok, nil).decode(t, &tl)
	if last := tl.Events[len(tl.Events)-1]; last.Type != incident.EventSilenced || last.Silence == nil {
		t.Fatalf("timeline ends with %+v", last)
	}
	e.do(http.MethodGet, "/api/v1/current_alerts?silenced=false", e.readTok, nil).decode(t, &cur)
	if len(cur.Alerts) != 1 || cur.Alerts[0].Labels["alertname"] != "PoolFull" {
		t.Fatalf("alerts not silenced after the incident's silence: %+v", cur.Alerts)
	}

	// A pending silence: starts in an hour.
	r = e.do(http.MethodPost, "/api/v1/silences", e.writeTok, map[string]string{
		"matchers": `{service="postgres"}`, "starts_at": time.Now().Add(time.Hour).Format(time.RFC3339),
		"ends_at": time.Now().Add(3 * time.Hour).Format(time.RFC3339), "comment": "maintenance window",
	})
	r.decode(t, &got)
	if got.State != "pending" {
		t.Fatalf("pending silence: %d %+v", r.status, got)
	}
}

// TestUnavailableParts: without an Alertmanager, an event store or a
// series store, the routes that need them answer 503.
func TestUnavailableParts(t *testing.T) {
	e := newEnv(t, envOptions{})
	api, err := New(Options{Incidents: e.mgr})
	if err != nil {
		t.Fatal(err)
	}
	e.api = api
	e.srv = httptest.NewServer(api.Handler())
	t.Cleanup(e.srv.Close)
	for _, p := range []string{"/api/v1/current_alerts", "/api/v1/silences", "/api/v1/silences/x", "/api/v1/anomalies", "/api/v1/forecasts"} {
		e.do(http.MethodGet, p, e.readTok, nil).wantError(t, http.StatusServiceUnavailable, "unavailable", "")
	}
	e.do(http.MethodPost, "/api/v1/silences", e.writeTok, map[string]string{"matchers": `{a="b"}`}).wantError(t, http.StatusServiceUnavailable, "unavailable", "")
	e.group("g", mkAlert(model.LabelSet{"alertname": "X"}, time.Now(), time.Time{}))
	e.do(http.MethodGet, "/api/v1/incidents/"+incidentByKey(t, e, "g").ID+"/alerts", e.readTok, nil)
	if _, err := New(Options{}); err == nil {
		t.Error("New without Incidents")
	}
}
