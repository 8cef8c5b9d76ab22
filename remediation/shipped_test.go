package remediation_test

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/aiops-dev/aiops/remediation"
	"github.com/aiops-dev/aiops/remediation/runbook"
	"github.com/aiops-dev/aiops/sim/simtest"
)

// TestShippedRunbooksLint: the runbooks in deploy/runbooks are lint-clean
// (as `aiops runbook lint` checks them, PromQL parsed as the query API
// parses it), and each alert trigger names an alert a shipped rule
// raises: a runbook tied to no rule never runs.
func TestShippedRunbooksLint(t *testing.T) {
	files, err := filepath.Glob("../deploy/runbooks/*.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped runbooks: %v", err)
	}
	p := parser.NewParser(parser.Options{EnableExperimentalFunctions: true})
	rbs, err := remediation.LoadRunbooks(files, runbook.ValidateOptions{Parser: p})
	if err != nil {
		t.Fatal(err)
	}
	alerts := map[string]bool{}
	for _, f := range simtest.RuleFiles(t, "..") {
		groups, errs := rulefmt.ParseFile(f, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
		if len(errs) > 0 {
			t.Fatalf("%s: %v", f, errs)
		}
		for _, g := range groups.Groups {
			for _, r := range g.Rules {
				if r.Alert != "" {
					alerts[r.Alert] = true
				}
			}
		}
	}
	byAlert := 0
	for _, rb := range rbs {
		if a := rb.Trigger.Alert; a != "" {
			byAlert++
			if !alerts[a] {
				t.Errorf("%s:%d: runbook %s is triggered by %s, which no shipped rule raises", rb.Source.File, rb.Source.Line, rb.Name, a)
			}
		}
	}
	if byAlert == 0 {
		t.Error("no shipped runbook is triggered by an alert")
	}
}
