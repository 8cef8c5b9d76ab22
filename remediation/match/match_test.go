package match

import (
	"testing"
	"time"

	"github.com/aiops-dev/aiops/remediation/runbook"
)

type records map[string]Record

func (r records) Record(rb, alert string) Record { return r[rb+"/"+alert] }

func names(rbs []*runbook.Runbook) []string {
	out := make([]string, len(rbs))
	for i, rb := range rbs {
		out[i] = rb.Name
	}
	return out
}

func TestMatchAndRank(t *testing.T) {
	rbs := []*runbook.Runbook{
		{Name: "restart", Trigger: runbook.Trigger{Alert: "HighErrorRate", Matchers: []string{`job="api"`}}},
		{Name: "rollback", Trigger: runbook.Trigger{Alert: "HighErrorRate", Matchers: []string{`job=~"api|auth"`, `severity!="info"`}}},
		{Name: "clean", Trigger: runbook.Trigger{Alert: "DiskAlmostFull"}},
		{Name: "page-db", Trigger: runbook.Trigger{Incident: &runbook.IncidentTrigger{Severities: []string{"critical"}}, Matchers: []string{`service="postgres"`}}},
		{Name: "forecast", Trigger: runbook.Trigger{Forecast: &runbook.ForecastTrigger{Metric: "x", Within: 1}}},
		{Name: "by-hand", Trigger: runbook.Trigger{Manual: true}},
	}
	s, err := New(rbs)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sig  Signal
		want []string
	}{
		{Signal{Kind: runbook.TriggerAlert, Name: "HighErrorRate", Labels: map[string]string{"job": "api", "severity": "critical"}}, []string{"restart", "rollback"}},
		{Signal{Kind: runbook.TriggerAlert, Name: "HighErrorRate", Labels: map[string]string{"job": "auth"}}, []string{"rollback"}},
		{Signal{Kind: runbook.TriggerAlert, Name: "HighErrorRate", Labels: map[string]string{"job": "api", "severity": "info"}}, []string{"restart"}},
		{Signal{Kind: runbook.TriggerAlert, Name: "SlowResponses", Labels: map[string]string{"job": "api"}}, nil},
		{Signal{Kind: runbook.TriggerIncident, Severity: "Critical", Labels: map[string]string{"service": "postgres"}}, []string{"page-db"}},
		{Signal{Kind: runbook.TriggerIncident, Severity: "warning", Labels: map[string]string{"service": "postgres"}}, nil},
		{Signal{Kind: runbook.TriggerCondition, Name: "forecast"}, []string{"forecast"}},
		{Signal{Kind: runbook.TriggerCondition, Name: "by-hand"}, nil},
	} {
		got := names(s.Match(c.sig))
		if len(got) != len(c.want) || (len(got) > 0 && got[0] != c.want[0]) || len(got) == 2 && got[1] != c.want[1] {
			t.Errorf("%+v: %v, want %v", c.sig, got, c.want)
		}
	}

	cands := s.Match(Signal{Kind: runbook.TriggerAlert, Name: "HighErrorRate", Labels: map[string]string{"job": "api"}})
	// Untried: by name.
	if got := names(Rank(cands, "HighErrorRate", records{})); got[0] != "restart" {
		t.Errorf("untried: %v", got)
	}
	// rollback worked 4 times out of 4, restart 1 out of 5.
	recs := records{
		"restart/HighErrorRate":  {Attempts: 5, Successes: 1, MedianRecover: time.Minute},
		"rollback/HighErrorRate": {Attempts: 4, Successes: 4, MedianRecover: 3 * time.Minute},
	}
	if got := names(Rank(cands, "HighErrorRate", recs)); got[0] != "rollback" {
		t.Errorf("better record: %v", got)
	}
	// Same ratio: the faster one.
	recs = records{
		"restart/HighErrorRate":  {Attempts: 2, Successes: 2, MedianRecover: 4 * time.Minute},
		"rollback/HighErrorRate": {Attempts: 2, Successes: 2, MedianRecover: time.Minute},
	}
	if got := names(Rank(cands, "HighErrorRate", recs)); got[0] != "rollback" {
		t.Errorf("faster: %v", got)
	}
	// The record is per alert: another alert knows nothing yet.
	if got := names(Rank(cands, "OtherAlert", recs)); got[0] != "restart" {
		t.Errorf("per alert: %v", got)
	}
	if _, err := New([]*runbook.Runbook{{Name: "bad", Trigger: runbook.Trigger{Alert: "A", Matchers: []string{"job=~("}}}}); err == nil {
		t.Error("a bad matcher compiles")
	}
}
