package alertmanager

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/prometheus/common/model"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/marker"
	"github.com/prometheus/alertmanager/pkg/labels"
)

// AlertFilter selects alerts for ListAlerts.
type AlertFilter struct {
	// Matchers must all match the alert's labels.
	Matchers []*labels.Matcher
	// ExcludeActive, ExcludeSilenced and ExcludeInhibited leave out alerts
	// in that state, like the v2 API's active, silenced and inhibited
	// parameters set to false.
	ExcludeActive, ExcludeSilenced, ExcludeInhibited bool
}

// AlertInfo is one alert with what the pipeline decides about it now.
type AlertInfo struct {
	*alert.Alert
	Status alert.AlertStatus
	// Receivers are the receivers of the routes the alert matches.
	Receivers []string
}

// ListAlerts returns the alerts that have not resolved, ordered by
// fingerprint, with their silenced/inhibited status, as GET /api/v2/alerts
// reports them.
func (am *Alertmanager) ListAlerts(ctx context.Context, f AlertFilter) ([]AlertInfo, error) {
	routes, inhibitor := am.route.Load(), am.inhibitor.Load()
	it := am.alerts.GetPending()
	defer it.Close()
	now := time.Now()
	var out []AlertInfo
	for a := range it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		al := a.Data
		if al.Resolved() && !al.EndsAt.After(now) {
			continue
		}
		if !matches(f.Matchers, al.Labels) {
			continue
		}
		st := &statusMarker{}
		mctx := marker.WithContext(ctx, st)
		inhibitor.Mutes(mctx, al.LabelSet())
		am.silencer.Mutes(mctx, al.LabelSet())
		status := st.status()
		switch {
		case f.ExcludeActive && status.State == alert.AlertStateActive,
			f.ExcludeSilenced && len(status.SilencedBy) > 0,
			f.ExcludeInhibited && len(status.InhibitedBy) > 0:
			continue
		}
		var receivers []string
		for _, r := range routes.Match(al.Labels) {
			receivers = append(receivers, r.RouteOpts.Receiver)
		}
		out = append(out, AlertInfo{Alert: al, Status: status, Receivers: receivers})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("alertmanager: list alerts: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Fingerprint() < out[j].Fingerprint() })
	return out, nil
}

func matches(ms []*labels.Matcher, ls model.LabelSet) bool {
	for _, m := range ms {
		if !m.Matches(string(ls[model.LabelName(m.Name)])) {
			return false
		}
	}
	return true
}

// statusMarker records what the silencer and inhibitor say about the one
// alert they are asked about; they report it only through a marker in the
// context.
type statusMarker struct {
	seen                    bool
	silencedBy, inhibitedBy []string
}

func (m *statusMarker) SetSilenced(_ model.Fingerprint, ids []string) {
	m.seen, m.silencedBy = true, ids
}

func (m *statusMarker) SetInhibited(_ model.Fingerprint, ids []string) {
	m.seen, m.inhibitedBy = true, ids
}

func (m *statusMarker) Status(model.Fingerprint) alert.AlertStatus { return m.status() }

func (m *statusMarker) Delete(...model.Fingerprint) { *m = statusMarker{} }

func (m *statusMarker) status() alert.AlertStatus {
	s := alert.AlertStatus{State: alert.AlertStateUnprocessed, SilencedBy: []string{}, InhibitedBy: []string{}}
	if !m.seen {
		return s
	}
	s.State = alert.AlertStateActive
	if len(m.silencedBy) > 0 {
		s.SilencedBy = m.silencedBy
		s.State = alert.AlertStateSuppressed
	}
	if len(m.inhibitedBy) > 0 {
		s.InhibitedBy = m.inhibitedBy
		s.State = alert.AlertStateSuppressed
	}
	return s
}

var _ marker.AlertMarker = (*statusMarker)(nil)
