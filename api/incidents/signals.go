package incidents

import (
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/aiops-dev/aiops/analyzer/results"
	"github.com/aiops-dev/aiops/internal/restapi"
	"github.com/aiops-dev/aiops/storage"
)

type anomalyView struct {
	ID      string            `json:"id"`
	Time    time.Time         `json:"time"`
	Series  map[string]string `json:"series"`
	Metric  string            `json:"metric"`
	Service string            `json:"service"`
	Score   float64           `json:"score"`
	Value   float64           `json:"value"`
	// Expected, Lower and Upper are the detector's prediction and normal
	// range; null when it had none.
	Expected *float64 `json:"expected"`
	Lower    *float64 `json:"lower"`
	Upper    *float64 `json:"upper"`
	Surprise float64  `json:"surprise"`
}

// DefaultAnomalyRange is how far back /api/v1/anomalies looks without a
// start.
const DefaultAnomalyRange = time.Hour

func (a *API) listAnomalies(w http.ResponseWriter, r *http.Request) {
	if a.opts.Events == nil {
		a.fail(w, r, fmt.Errorf("anomalies: %w (no event store)", errUnavailable))
		return
	}
	now := a.now()
	end, err := parseTime("end", r.URL.Query().Get("end"), now)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	start, err := parseTime("start", r.URL.Query().Get("start"), end.Add(-DefaultAnomalyRange))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if end.Before(start) {
		a.fail(w, r, badField("end", "must not be before start"))
		return
	}
	minScore := 0.0
	if s := r.URL.Query().Get("min_score"); s != "" {
		if minScore, err = strconv.ParseFloat(s, 64); err != nil || minScore < 0 || minScore > 1 {
			a.fail(w, r, badField("min_score", "must be a number from 0 to 1, got %q", s))
			return
		}
	}
	services := listParam(r, "service")
	sels, err := parseSelectors(r, false)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	limit, err := parseLimit(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q := storage.EventQuery{KindPrefix: results.AnomalyKind, Start: start, End: end, Limit: max(limit+1, 200)}
	if c := r.URL.Query().Get("cursor"); c != "" {
		if q.AfterTime, q.AfterID, err = decodeCursor("anm", c); err != nil {
			a.fail(w, r, err)
			return
		}
	}
	// Collect one more than a page, to know whether another follows.
	var out []anomalyView
scan:
	for {
		evs, err := a.opts.Events.QueryEvents(r.Context(), q)
		if err != nil {
			a.fail(w, r, fmt.Errorf("read anomalies: %w", err))
			return
		}
		for _, ev := range evs {
			if ev.Kind != results.AnomalyKind {
				continue
			}
			an, err := results.DecodeAnomaly(ev)
			if err != nil {
				a.logger.Warn("Skipping undecodable anomaly event", "err", err)
				continue
			}
			svc := results.ServiceOf(an.Series)
			if an.Score < minScore || len(services) > 0 && !contains(services, svc) || !anySelector(sels, an.Series) {
				continue
			}
			out = append(out, anomalyView{
				ID: ev.ID, Time: ev.Time.UTC(), Series: an.Series, Metric: an.Series[labels.MetricName], Service: svc,
				Score: an.Score, Value: an.Value, Expected: an.Expected, Lower: an.Lower, Upper: an.Upper, Surprise: an.Surprise,
			})
			if len(out) > limit {
				break scan
			}
		}
		if len(evs) < q.Limit {
			break
		}
		last := evs[len(evs)-1]
		q.AfterTime, q.AfterID = last.Time, last.ID
	}
	resp := struct {
		Anomalies  []anomalyView `json:"anomalies"`
		NextCursor string        `json:"next_cursor,omitempty"`
	}{Anomalies: []anomalyView{}}
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		resp.NextCursor = encodeCursor("anm", last.Time, last.ID)
	}
	resp.Anomalies = append(resp.Anomalies, out...)
	restapi.WriteJSON(w, http.StatusOK, resp)
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

type forecastView struct {
	// Labels are the forecast series' labels without the metric name;
	// aiops_metric names the usage series forecast.
	Labels  map[string]string `json:"labels"`
	Metric  string            `json:"metric"`
	Service string            `json:"service"`
	// Seconds until the capacity is reached, with its lower and upper
	// bound; null means not within the forecast's horizon.
	Seconds *float64 `json:"seconds"`
	Lower   *float64 `json:"lower"`
	Upper   *float64 `json:"upper"`
	// ExhaustsAt is EvaluatedAt + Seconds.
	ExhaustsAt  *time.Time `json:"exhausts_at"`
	EvaluatedAt time.Time  `json:"evaluated_at"`
}

// DefaultForecastLookback is how old the newest forecast sample of a
// series may be and still be shown: three of the analyzer's default
// forecast intervals.
const DefaultForecastLookback = 15 * time.Minute

func (a *API) listForecasts(w http.ResponseWriter, r *http.Request) {
	if a.opts.Queryable == nil {
		a.fail(w, r, fmt.Errorf("forecasts: %w (no series store)", errUnavailable))
		return
	}
	at, err := parseTime("time", r.URL.Query().Get("time"), a.now())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	lookback, err := parseDuration("lookback", r.URL.Query().Get("lookback"), DefaultForecastLookback)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if lookback <= 0 {
		a.fail(w, r, badField("lookback", "must be > 0"))
		return
	}
	within, err := parseDuration("within", r.URL.Query().Get("within"), 0)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	services := listParam(r, "service")
	sels, err := parseSelectors(r, false)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	for _, sel := range sels {
		for _, m := range sel {
			if m.Name == labels.MetricName {
				a.fail(w, r, badField("match[]", "select forecasts by their labels (aiops_metric names the usage metric), not by metric name"))
				return
			}
		}
	}
	fs, err := results.ReadForecasts(r.Context(), a.opts.Queryable, at, lookback, sels...)
	if err != nil {
		a.fail(w, r, fmt.Errorf("forecasts: %w", err))
		return
	}
	out := []forecastView{}
	for _, f := range fs {
		ls := f.Labels.Map()
		fv := forecastView{Labels: ls, Metric: ls[results.MetricLabel], Service: results.ServiceOf(ls),
			Seconds: finite(f.Seconds), Lower: finite(f.Lower), Upper: finite(f.Upper), EvaluatedAt: f.EvaluatedAt}
		if len(services) > 0 && !contains(services, fv.Service) {
			continue
		}
		if fv.Seconds != nil {
			t := fv.EvaluatedAt.Add(time.Duration(*fv.Seconds * float64(time.Second)))
			fv.ExhaustsAt = &t
		}
		if within > 0 && (fv.Seconds == nil || *fv.Seconds > within.Seconds()) {
			continue
		}
		out = append(out, fv)
	}
	// Soonest exhaustion first; those not exhausting last; ties keep
	// ReadForecasts' order, by labels.
	sort.SliceStable(out, func(i, j int) bool { return secondsOrInf(out[i].Seconds) < secondsOrInf(out[j].Seconds) })
	restapi.WriteJSON(w, http.StatusOK, struct {
		Time      time.Time      `json:"time"`
		Forecasts []forecastView `json:"forecasts"`
	}{Time: at.UTC(), Forecasts: out})
}

func finite(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

func secondsOrInf(p *float64) float64 {
	if p == nil {
		return math.Inf(1)
	}
	return *p
}
