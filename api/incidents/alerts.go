package incidents

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/prometheus/alertmanager/silence"
	"github.com/prometheus/alertmanager/silence/silencepb"

	"github.com/aiops-dev/aiops/alerting/alertmanager"
	"github.com/aiops-dev/aiops/alerting/incident"
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
	writeJSON(w, http.StatusOK, out)
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

// silenceView is a silence as this API shows it: matchers in Prometheus
// selector syntax, the form POST /api/v1/silences takes.
type silenceView struct {
	ID       string `json:"id"`
	Matchers string `json:"matchers"`
	// MatcherSets lists every matcher set when a silence (created through
	// another API) has several; any of them silences.
	MatcherSets []string  `json:"matcher_sets"`
	StartsAt    time.Time `json:"starts_at"`
	EndsAt      time.Time `json:"ends_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	CreatedBy   string    `json:"created_by"`
	Comment     string    `json:"comment"`
	State       string    `json:"state"`
}

var matchTypes = map[silencepb.Matcher_Type]labels.MatchType{
	silencepb.Matcher_EQUAL: labels.MatchEqual, silencepb.Matcher_NOT_EQUAL: labels.MatchNotEqual,
	silencepb.Matcher_REGEXP: labels.MatchRegexp, silencepb.Matcher_NOT_REGEXP: labels.MatchNotRegexp,
}

func viewSilence(s *silencepb.Silence, now time.Time) silenceView {
	v := silenceView{
		ID: s.Id, MatcherSets: []string{}, StartsAt: s.StartsAt.AsTime().UTC(), EndsAt: s.EndsAt.AsTime().UTC(),
		UpdatedAt: s.UpdatedAt.AsTime().UTC(), CreatedBy: s.CreatedBy, Comment: s.Comment,
		State: string(silence.StateFromProtoAt(s, now)),
	}
	sets := s.MatcherSets
	if len(sets) == 0 && len(s.Matchers) > 0 {
		sets = []*silencepb.MatcherSet{{Matchers: s.Matchers}}
	}
	for _, set := range sets {
		parts := make([]string, 0, len(set.Matchers))
		for _, m := range set.Matchers {
			parts = append(parts, (&labels.Matcher{Type: matchTypes[m.Type], Name: m.Name, Value: m.Pattern}).String())
		}
		v.MatcherSets = append(v.MatcherSets, "{"+strings.Join(parts, ", ")+"}")
	}
	if len(v.MatcherSets) > 0 {
		v.Matchers = v.MatcherSets[0]
	}
	return v
}

func (a *API) silences() (*silence.Silences, error) {
	if a.opts.Alertmanager == nil {
		return nil, fmt.Errorf("silences: %w (no Alertmanager)", errUnavailable)
	}
	return a.opts.Alertmanager.Silences(), nil
}

func (a *API) listSilences(w http.ResponseWriter, r *http.Request) {
	sils, err := a.silences()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var params []silence.QueryParam
	if states := listParam(r, "state"); len(states) > 0 {
		var ss []silence.SilenceState
		for _, s := range states {
			switch st := silence.SilenceState(s); st {
			case silence.SilenceStateActive, silence.SilenceStatePending, silence.SilenceStateExpired:
				ss = append(ss, st)
			default:
				a.fail(w, r, badField("state", "must be active, pending or expired, got %q", s))
				return
			}
		}
		params = append(params, silence.QState(ss...))
	}
	now := a.now()
	found, _, err := sils.QueryAt(r.Context(), now, params...)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	out := struct {
		Silences []silenceView `json:"silences"`
	}{Silences: []silenceView{}}
	for _, s := range found {
		out.Silences = append(out.Silences, viewSilence(s, now))
	}
	// Newest change first, then by id, so the order is stable.
	sort.Slice(out.Silences, func(i, j int) bool {
		x, y := out.Silences[i], out.Silences[j]
		if !x.UpdatedAt.Equal(y.UpdatedAt) {
			return x.UpdatedAt.After(y.UpdatedAt)
		}
		return x.ID < y.ID
	})
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getSilence(w http.ResponseWriter, r *http.Request) {
	sils, err := a.silences()
	if err != nil {
		a.fail(w, r, err)
		return
	}
	now := a.now()
	found, _, err := sils.QueryAt(r.Context(), now, silence.QIDs(r.PathValue("id")))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if len(found) == 0 {
		a.fail(w, r, fmt.Errorf("silence %s: %w", r.PathValue("id"), silence.ErrNotFound))
		return
	}
	writeJSON(w, http.StatusOK, viewSilence(found[0], now))
}

type silenceBody struct {
	Matchers string `json:"matchers"`
	StartsAt string `json:"starts_at"`
	EndsAt   string `json:"ends_at"`
	Duration string `json:"duration"`
	Comment  string `json:"comment"`
}

var pbTypes = map[labels.MatchType]silencepb.Matcher_Type{
	labels.MatchEqual: silencepb.Matcher_EQUAL, labels.MatchNotEqual: silencepb.Matcher_NOT_EQUAL,
	labels.MatchRegexp: silencepb.Matcher_REGEXP, labels.MatchNotRegexp: silencepb.Matcher_NOT_REGEXP,
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
	sil, err := a.silenceFromBody(r, body)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if err := sils.Set(r.Context(), sil); err != nil {
		if strings.HasPrefix(err.Error(), "invalid silence") {
			a.fail(w, r, badField("matchers", "%v", err))
			return
		}
		a.fail(w, r, fmt.Errorf("create silence: %w", err))
		return
	}
	found, _, err := sils.QueryAt(r.Context(), a.now(), silence.QIDs(sil.Id))
	if err != nil || len(found) == 0 {
		a.fail(w, r, errors.Join(errors.New("silence created but not found"), err))
		return
	}
	w.Header().Set("Location", Prefix+"/silences/"+sil.Id)
	writeJSON(w, http.StatusCreated, viewSilence(found[0], a.now()))
}

func (a *API) silenceFromBody(r *http.Request, b silenceBody) (*silencepb.Silence, error) {
	if strings.TrimSpace(b.Matchers) == "" {
		return nil, badField("matchers", `required: a selector such as {alertname="HighErrorRate", job="api"}`)
	}
	ms, err := selectorParser.ParseMetricSelector(b.Matchers)
	if err != nil {
		return nil, badField("matchers", "%v", err)
	}
	if strings.TrimSpace(b.Comment) == "" {
		return nil, badField("comment", "required: say why alerts are silenced")
	}
	if len(b.Comment) > maxComment {
		return nil, badField("comment", "longer than %d bytes", maxComment)
	}
	now := a.now()
	start, err := parseTime("starts_at", b.StartsAt, now)
	if err != nil {
		return nil, err
	}
	var end time.Time
	switch {
	case b.EndsAt != "" && b.Duration != "":
		return nil, badField("duration", "give ends_at or duration, not both")
	case b.EndsAt != "":
		if end, err = parseTime("ends_at", b.EndsAt, time.Time{}); err != nil {
			return nil, err
		}
	case b.Duration != "":
		d, err := parseDuration("duration", b.Duration, 0)
		if err != nil {
			return nil, err
		}
		if d <= 0 {
			return nil, badField("duration", "must be > 0")
		}
		end = start.Add(d)
	default:
		return nil, badField("ends_at", "required: give ends_at or duration")
	}
	if !end.After(start) {
		return nil, badField("ends_at", "must be after starts_at (%s)", start.Format(time.RFC3339))
	}
	if !end.After(now) {
		return nil, badField("ends_at", "must be in the future")
	}
	// A metric name stands for the alertname; sorted by name, the same
	// silence reads the same however it was written.
	for _, m := range ms {
		if m.Name == labels.MetricName {
			m.Name = "alertname"
		}
	}
	sort.SliceStable(ms, func(i, j int) bool { return ms[i].Name < ms[j].Name })
	set := &silencepb.MatcherSet{}
	for _, m := range ms {
		set.Matchers = append(set.Matchers, &silencepb.Matcher{Type: pbTypes[m.Type], Name: m.Name, Pattern: m.Value})
	}
	return &silencepb.Silence{
		MatcherSets: []*silencepb.MatcherSet{set},
		StartsAt:    timestamppb.New(start), EndsAt: timestamppb.New(end),
		CreatedBy: actor(r.Context()), Comment: b.Comment,
	}, nil
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
	id := r.PathValue("id")
	if err := sils.Expire(r.Context(), id); err != nil {
		a.fail(w, r, fmt.Errorf("silence %s: %w", id, err))
		return
	}
	now := a.now()
	found, _, err := sils.QueryAt(r.Context(), now, silence.QIDs(id))
	if err != nil || len(found) == 0 {
		a.fail(w, r, errors.Join(fmt.Errorf("silence %s expired but not found", id), err))
		return
	}
	writeJSON(w, http.StatusOK, viewSilence(found[0], now))
}
