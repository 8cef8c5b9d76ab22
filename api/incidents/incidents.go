package incidents

import (
	"context"
	"net/http"
	"time"

	"github.com/aiops-dev/aiops/alerting/alertmanager"
	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/api/auth"
	"github.com/aiops-dev/aiops/internal/restapi"
)

type incidentList struct {
	Incidents  []incident.Incident `json:"incidents"`
	NextCursor string              `json:"next_cursor,omitempty"`
}

func (a *API) listIncidents(w http.ResponseWriter, r *http.Request) {
	q, err := incidentQuery(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	incs, next := a.opts.Incidents.List(q)
	out := incidentList{Incidents: incs}
	if out.Incidents == nil {
		out.Incidents = []incident.Incident{}
	}
	if next != nil {
		out.NextCursor = encodeCursor("inc", next.OpenedAt, next.ID)
	}
	restapi.WriteJSON(w, http.StatusOK, out)
}

func incidentQuery(r *http.Request) (incident.Query, error) {
	var q incident.Query
	for _, s := range listParam(r, "status") {
		if !incident.ValidStatus(s) {
			return q, badField("status", "must be open, acknowledged or resolved, got %q", s)
		}
		q.Statuses = append(q.Statuses, incident.Status(s))
	}
	q.Services = listParam(r, "service")
	q.Severities = listParam(r, "severity")
	var err error
	if q.Start, err = parseTime("start", r.URL.Query().Get("start"), time.Time{}); err != nil {
		return q, err
	}
	if q.End, err = parseTime("end", r.URL.Query().Get("end"), time.Time{}); err != nil {
		return q, err
	}
	if !q.Start.IsZero() && !q.End.IsZero() && q.End.Before(q.Start) {
		return q, badField("end", "must not be before start")
	}
	if q.Selectors, err = parseSelectors(r, true); err != nil {
		return q, err
	}
	if q.Limit, err = parseLimit(r); err != nil {
		return q, err
	}
	if c := r.URL.Query().Get("cursor"); c != "" {
		t, id, err := decodeCursor("inc", c)
		if err != nil {
			return q, err
		}
		q.After = &incident.Cursor{OpenedAt: t, ID: id}
	}
	return q, nil
}

func (a *API) getIncident(w http.ResponseWriter, r *http.Request) {
	inc, err := a.opts.Incidents.Get(r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", etag(inc.Version))
	restapi.WriteJSON(w, http.StatusOK, inc)
}

type timeline struct {
	IncidentID string           `json:"incident_id"`
	Version    uint64           `json:"version"`
	Events     []incident.Event `json:"events"`
}

func (a *API) timeline(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	evs, err := a.opts.Incidents.Timeline(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := timeline{IncidentID: id, Events: evs}
	if out.Events == nil {
		out.Events = []incident.Event{}
	}
	if n := len(evs); n > 0 {
		out.Version = evs[n-1].Seq
	}
	restapi.WriteJSON(w, http.StatusOK, out)
}

// incidentAlert is an alert of an incident with what the Alertmanager
// says about it now; Alertmanager is null once it no longer has the alert.
type incidentAlert struct {
	incident.Alert
	Alertmanager *alertStatus `json:"alertmanager"`
}

type alertStatus struct {
	State       string   `json:"state"`
	SilencedBy  []string `json:"silenced_by"`
	InhibitedBy []string `json:"inhibited_by"`
	Receivers   []string `json:"receivers"`
}

func statusOf(ai alertmanager.AlertInfo) *alertStatus {
	s := &alertStatus{State: string(ai.Status.State), SilencedBy: ai.Status.SilencedBy, InhibitedBy: ai.Status.InhibitedBy, Receivers: ai.Receivers}
	if s.SilencedBy == nil {
		s.SilencedBy = []string{}
	}
	if s.InhibitedBy == nil {
		s.InhibitedBy = []string{}
	}
	if s.Receivers == nil {
		s.Receivers = []string{}
	}
	return s
}

func (a *API) incidentAlerts(w http.ResponseWriter, r *http.Request) {
	inc, err := a.opts.Incidents.Get(r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	live := map[string]alertmanager.AlertInfo{}
	if a.opts.Alertmanager != nil {
		infos, err := a.opts.Alertmanager.ListAlerts(r.Context(), alertmanager.AlertFilter{})
		if err != nil {
			a.fail(w, r, err)
			return
		}
		for _, ai := range infos {
			live[ai.Fingerprint().String()] = ai
		}
	}
	out := struct {
		IncidentID string          `json:"incident_id"`
		Alerts     []incidentAlert `json:"alerts"`
	}{IncidentID: inc.ID, Alerts: []incidentAlert{}}
	for _, al := range inc.Alerts {
		ia := incidentAlert{Alert: al}
		if ai, ok := live[al.Fingerprint]; ok {
			ia.Alertmanager = statusOf(ai)
		}
		out.Alerts = append(out.Alerts, ia)
	}
	restapi.WriteJSON(w, http.StatusOK, out)
}

// actor is who is acting: the credential the auth middleware accepted.
func actor(ctx context.Context) string {
	if p, ok := auth.PrincipalFrom(ctx); ok && p.ID != "" {
		return p.ID
	}
	return "anonymous"
}

type commentBody struct {
	Comment string `json:"comment"`
}

// act runs one change with the If-Match version and the actor, and
// answers with the incident and its new ETag.
func (a *API) act(w http.ResponseWriter, r *http.Request, comment string, do func(ctx context.Context, id string, act incident.Action) (incident.Incident, error)) {
	ifVersion, err := parseIfMatch(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	inc, err := do(r.Context(), r.PathValue("id"), incident.Action{Actor: actor(r.Context()), Comment: comment, IfVersion: ifVersion})
	if err != nil {
		if inc.ID != "" {
			w.Header().Set("ETag", etag(inc.Version))
		}
		a.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", etag(inc.Version))
	restapi.WriteJSON(w, http.StatusOK, inc)
}

func (a *API) commentAction(do func(ctx context.Context, id string, act incident.Action) (incident.Incident, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body commentBody
		if err := decodeBody(r, &body); err != nil {
			a.fail(w, r, err)
			return
		}
		a.act(w, r, body.Comment, do)
	}
}

func (a *API) acknowledge(w http.ResponseWriter, r *http.Request) {
	a.commentAction(a.opts.Incidents.Acknowledge)(w, r)
}

func (a *API) resolve(w http.ResponseWriter, r *http.Request) {
	a.commentAction(a.opts.Incidents.Resolve)(w, r)
}

func (a *API) escalate(w http.ResponseWriter, r *http.Request) {
	a.commentAction(a.opts.Incidents.Escalate)(w, r)
}

func (a *API) assign(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Assignee *string `json:"assignee"`
		Comment  string  `json:"comment"`
	}
	if err := decodeBody(r, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	if body.Assignee == nil {
		a.fail(w, r, badField("assignee", "required (an empty string unassigns)"))
		return
	}
	a.act(w, r, body.Comment, func(ctx context.Context, id string, act incident.Action) (incident.Incident, error) {
		return a.opts.Incidents.Assign(ctx, id, *body.Assignee, act)
	})
}

func (a *API) addNote(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Text string `json:"text"`
	}
	if err := decodeBody(r, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	a.act(w, r, "", func(ctx context.Context, id string, act incident.Action) (incident.Incident, error) {
		return a.opts.Incidents.AddNote(ctx, id, body.Text, act)
	})
}

func (a *API) refreshRootCauses(w http.ResponseWriter, r *http.Request) {
	if err := decodeBody(r, &struct{}{}); err != nil {
		a.fail(w, r, err)
		return
	}
	a.act(w, r, "", a.opts.Incidents.RefreshRootCauses)
}
