package incidents

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/prometheus/alertmanager/silence"

	"github.com/aiops-dev/aiops/alerting/alertmanager"
	"github.com/aiops-dev/aiops/alerting/incident"
	"github.com/aiops-dev/aiops/internal/restapi"
)

// currentAlert is an alert the Alertmanager holds now.
type currentAlert struct {
	Fingerprint  string            `json:"fingerprint"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"starts_at"`
	EndsAt       time.Time         `json:"ends_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
	GeneratorURL string            `json:"generator_url,omitempty"`
	alertStatus
	// IncidentID names the unresolved incident the alert fires in, if any.
	IncidentID string `json:"incident_id,omitempty"`
}

func (a *API) currentAlerts(w http.ResponseWriter, r *http.Request) {
	if a.opts.Alertmanager == nil {
		a.fail(w, r, fmt.Errorf("alerts: %w (no Alertmanager)", errUnavailable))
		return
	}
	sels, err := parseSelectors(r, true)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var f alertmanager.AlertFilter
	for _, p := range []struct {
		name string
		dst  *bool
	}{{"active", &f.ExcludeActive}, {"silenced", &f.ExcludeSilenced}, {"inhibited", &f.ExcludeInhibited}} {
		include, err := boolParam(r, p.name, true)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		*p.dst = !include
	}
	infos, err := a.opts.Alertmanager.ListAlerts(r.Context(), f)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	firingIn := a.firingIncidents()
	out := struct {
		Alerts []currentAlert `json:"alerts"`
	}{Alerts: []currentAlert{}}
	for _, ai := range infos {
		ls := map[string]string{}
		for k, v := range ai.Labels {
			ls[string(k)] = string(v)
		}
		if !anySelector(sels, ls) {
			continue
		}
		ann := map[string]string{}
		for k, v := range ai.Annotations {
			ann[string(k)] = string(v)
		}
		fp := ai.Fingerprint().String()
		out.Alerts = append(out.Alerts, currentAlert{
			Fingerprint: fp, Labels: ls, Annotations: ann,
			StartsAt: ai.StartsAt.UTC(), EndsAt: ai.EndsAt.UTC(), UpdatedAt: ai.UpdatedAt.UTC(),
			GeneratorURL: ai.GeneratorURL, alertStatus: *statusOf(ai), IncidentID: firingIn[fp],
		})
	}
	restapi.WriteJSON(w, http.StatusOK, out)
}

// firingIncidents maps the fingerprint of every alert firing in an
// unresolved incident to the newest such incident.
func (a *API) firingIncidents() map[string]string {
	out := map[string]string{}
	q := incident.Query{Statuses: []incident.Status{incident.StatusOpen, incident.StatusAcknowledged}, Limit: MaxLimit}
	for {
		incs, next := a.opts.Incidents.List(q)
		for _, inc := range incs {
			for _, al := range inc.Alerts {
				if _, seen := out[al.Fingerprint]; !seen && al.Status == incident.AlertFiring {
					out[al.Fingerprint] = inc.ID
				}
			}
		}
		if next == nil {
			return out
		}
		q.After = next
	}
}

func anySelector(sels [][]*labels.Matcher, ls map[string]string) bool {
	if len(sels) == 0 {
		return true
	}
	for _, sel := range sels {
		ok := true
		for _, m := range sel {
			if !m.Matches(ls[m.Name]) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

func (a *API) silences() (Silences, error) {
	if a.opts.Silences == nil {
		return nil, fmt.Errorf("silences: %w (no Alertmanager)", errUnavailable)
	}
	return a.opts.Silences, nil
}

func (a *API) listSilences(w http.ResponseWriter, r *http.Request) {
	sils, err := a.silences()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var states []silence.SilenceState
	for _, s := range listParam(r, "state") {
		states = append(states, silence.SilenceState(s))
	}
	found, err := sils.Silences(r.Context(), states...)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	restapi.WriteJSON(w, http.StatusOK, struct {
		Silences []incident.Silence `json:"silences"`
	}{Silences: found})
}

func (a *API) getSilence(w http.ResponseWriter, r *http.Request) {
	sils, err := a.silences()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	sil, err := sils.Silence(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	restapi.WriteJSON(w, http.StatusOK, sil)
}

type silenceBody struct {
	Matchers string `json:"matchers"`
	StartsAt string `json:"starts_at"`
	EndsAt   string `json:"ends_at"`
	Duration string `json:"duration"`
	Comment  string `json:"comment"`
}

func (a *API) createSilence(w http.ResponseWriter, r *http.Request) {
	sils, err := a.silences()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var body silenceBody
	if err := decodeBody(r, &body); err != nil {
		a.fail(w, r, err)
		return
	}
	spec, err := silenceSpec(body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	sil, err := sils.CreateSilence(r.Context(), spec, actor(r.Context()))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Location", Prefix+"/silences/"+sil.ID)
	restapi.WriteJSON(w, http.StatusCreated, sil)
}

// silenceSpec parses a silence body; what is valid is the service's to
// decide.
func silenceSpec(b silenceBody) (incident.SilenceSpec, error) {
	spec := incident.SilenceSpec{Comment: b.Comment}
	if strings.TrimSpace(b.Matchers) != "" {
		ms, err := selectorParser.ParseMetricSelector(b.Matchers)
		if err != nil {
			return spec, badField("matchers", "%v", err)
		}
		spec.Matchers = ms
	}
	var err error
	if spec.StartsAt, err = parseTime("starts_at", b.StartsAt, time.Time{}); err != nil {
		return spec, err
	}
	if spec.EndsAt, err = parseTime("ends_at", b.EndsAt, time.Time{}); err != nil {
		return spec, err
	}
	if b.Duration != "" {
		if spec.Duration, err = parseDuration("duration", b.Duration, 0); err != nil {
			return spec, err
		}
		if spec.Duration <= 0 {
			return spec, badField("duration", "must be > 0")
		}
	}
	return spec, nil
}

func (a *API) expireSilence(w http.ResponseWriter, r *http.Request) {
	sils, err := a.silences()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := decodeBody(r, &struct{}{}); err != nil {
		a.fail(w, r, err)
		return
	}
	sil, err := sils.ExpireSilence(r.Context(), r.PathValue("id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	restapi.WriteJSON(w, http.StatusOK, sil)
}
