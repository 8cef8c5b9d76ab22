package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunbookLintAndTest: `aiops runbook lint` passes the shipped
// runbooks and reports a bad one as file:line:col with exit 1; `aiops
// runbook test` shows which runbooks an alert triggers, their targets and
// their steps rendered, running nothing.
func TestRunbookLintAndTest(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yml")
	os.WriteFile(bad, []byte(`runbooks:
  - name: bad
    trigger: {alert: HighErrorRate}
    target: {service: '{{ $labels.job }}'}
    steps:
      - action: workflow.restart_service
        params: {service: '{{ $target.service }}'}
        colour: blue
`), 0o600)
	alert := filepath.Join(dir, "alert.json")
	os.WriteFile(alert, []byte(`{"labels": {"alertname": "HighErrorRate", "job": "api", "severity": "critical"}}`), 0o600)

	aiops := func(args ...string) (int, string) {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, &out, &errOut)
		return code, out.String() + errOut.String()
	}
	if code, out := aiops("runbook", "lint", "../../deploy/runbooks/*.yml"); code != 0 || !strings.Contains(out, "runbooks OK") {
		t.Errorf("lint of the shipped runbooks: exit %d\n%s", code, out)
	}
	code, out := aiops("runbook", "lint", bad)
	if code != 1 || !strings.Contains(out, bad+":8:9:") || !strings.Contains(out, "unknown_key") {
		t.Errorf("lint of a bad runbook: exit %d\n%s", code, out)
	}
	code, out = aiops("runbook", "test", "../../deploy/runbooks/workflow-engine.yml", "--alert", alert, "--at", "2026-03-10T10:00:00Z")
	for _, want := range []string{
		"runbook rollback-failing-deploy",
		"target: service=api",
		`step 1 "roll back": workflow.rollback map[service:api]`,
		"verify for 1m within 8m",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("runbook test: exit %d, want %q in\n%s", code, want, out)
		}
	}
	if code, _ := aiops("runbook", "test", bad, "--alert", alert); code != 1 {
		t.Errorf("runbook test of a bad file: exit %d, want 1", code)
	}
}
