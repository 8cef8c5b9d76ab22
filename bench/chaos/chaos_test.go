package chaos

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func shipped(t *testing.T) Config {
	t.Helper()
	cfg := DefaultConfig()
	var err error
	if cfg.RuleFiles, err = filepath.Glob("../../deploy/rules/*.yml"); err != nil || len(cfg.RuleFiles) == 0 {
		t.Fatalf("no shipped rules: %v", err)
	}
	if cfg.RunbookFiles, err = filepath.Glob("../../deploy/runbooks/*.yml"); err != nil || len(cfg.RunbookFiles) == 0 {
		t.Fatalf("no shipped runbooks: %v", err)
	}
	cfg.DataDir = t.TempDir()
	cfg.Step = 15 * time.Second
	cfg.Runs = 1
	return cfg
}

// TestRun: a fault with a fix is auto-resolved by exactly its fix, one
// without is escalated within two minutes of its detection, the second
// run against the same aiops recovers no slower, a short baseline takes
// no action; the report says so in JSON and markdown.
func TestRun(t *testing.T) {
	cfg := shipped(t)
	cfg.Faults = []string{"bad_config", "worker_crash_loop"}
	cfg.Baseline = 15 * time.Minute
	cfg.Runs = 2
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Scenarios) != 4 || rep.Scenarios[0].Run != 1 || rep.Scenarios[3].Run != 2 {
		t.Fatalf("%d scenarios, want bad_config and worker_crash_loop twice", len(rep.Scenarios))
	}
	if len(rep.Runs) != 2 || !rep.NoSlower || rep.Runs[1].AutoResolved != 1 || rep.Runs[1].MedianRecoverSeconds > rep.Runs[0].MedianRecoverSeconds {
		t.Errorf("runs %+v, no slower %v %v", rep.Runs, rep.NoSlower, rep.Slower)
	}
	for _, r := range rep.Scenarios {
		switch r.Faults[0] {
		case "bad_config":
			if !r.Fixable || r.Outcome != AutoResolved || !r.Correct || r.Actions != 1 || r.RecoverSeconds == nil || r.DetectSeconds == nil {
				t.Errorf("bad_config: %+v", r)
			}
		case "worker_crash_loop":
			if r.Fixable || r.Outcome != Escalated || !r.Correct || r.Actions > 1 {
				t.Errorf("worker_crash_loop: %+v", r)
			}
		}
	}
	if b := rep.Baseline; b == nil || b.Actions != 0 || b.Seconds != 900 {
		t.Errorf("baseline %+v", b)
	}
	s := rep.Summary
	if s.AutoResolved != 1 || s.AutoResolvedShare != 1 || s.CorrectlyEscalated != 1 || s.ManualShare != 0.5 || s.MedianRecoverSeconds <= 0 {
		t.Errorf("summary %+v", s)
	}
	dir := t.TempDir()
	if err := rep.Write(dir, "aiops-bench chaos run"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Scenarios []map[string]any
		Baseline  map[string]any
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"name", "faults", "fixable", "outcome", "detect_seconds", "first_action_seconds", "recover_seconds", "actions"} {
		if _, ok := doc.Scenarios[0][k]; !ok {
			t.Errorf("report.json scenarios lack %q", k)
		}
	}
	if _, ok := doc.Baseline["actions"]; !ok {
		t.Error("report.json baseline lacks actions")
	}
	for _, name := range []string{"timeline-bad_config_api-1.png", "timeline-bad_config_api-1-run2.png"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() < 1000 {
			t.Errorf("timeline picture: %v", err)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	if !strings.Contains(string(md), "| 2 | bad_config/api-1 | true | auto_resolved | true |") || !strings.Contains(string(md), "recovered no slower than the first") {
		t.Errorf("report.md:\n%s", md)
	}
}

// TestLoadScenarios: scenario files are read strictly, naming the file
// and the field of a mistake.
func TestLoadScenarios(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("name: pair\nwithin: 20m\nfaults:\n  - {fault: llm_outage}\n  - {fault: cpu_hog, target: api-0, start: 1m}\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "b.yml"), []byte("scenarios:\n  - {name: one, faults: [{fault: redis_down}]}\n"), 0o600)
	scs, err := LoadScenarios(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(scs) != 2 || scs[0].Name != "pair" || len(scs[0].Faults) != 2 || scs[0].Within != 20*time.Minute || scs[1].Name != "one" {
		t.Errorf("scenarios %+v", scs)
	}
	os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("name: bad\nfaults: [{fault: meteor}]\n"), 0o600)
	if _, err := LoadScenarios(dir); err == nil || !strings.Contains(err.Error(), "c.yaml") || !strings.Contains(err.Error(), "faults[0].fault") {
		t.Errorf("unknown fault: %v", err)
	}
	if _, err := Run(context.Background(), Config{Step: time.Second, RuleFiles: []string{"x"}, RunbookFiles: []string{"y"}, Faults: []string{"meteor"}}); err == nil || !strings.Contains(err.Error(), "--faults") {
		t.Errorf("unknown --faults: %v", err)
	}
}

// TestCatalogue runs every scenario of the catalogue through the closed
// loop with the shipped rules and runbooks. A fault with a fix must be
// fixed by a runbook taking only the fix's actions, health must come
// back, and an incident must resolve itself as fixed by the run. A fault
// without a fix must be escalated, with at most one action; one alone
// within two minutes of its first alert.
func TestCatalogue(t *testing.T) {
	for _, sc := range Catalogue() {
		t.Run(sc.Name, func(t *testing.T) {
			t.Parallel()
			cfg := shipped(t)
			cfg.Scenarios = []Scenario{sc}
			cfg.Baseline = 0
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			r := rep.Scenarios[0]
			switch {
			case r.Fixable:
				if r.Outcome != AutoResolved || !r.ResolvedByRunbook {
					t.Errorf("outcome %s, resolved by the runbook %v; actions %v", r.Outcome, r.ResolvedByRunbook, r.ActionList)
				}
			case len(sc.Faults) == 1:
				if r.Outcome != Escalated || !r.Correct || r.Actions > 1 {
					t.Errorf("outcome %s (correct %v), %d actions %v; detected %s, escalated %s", r.Outcome, r.Correct, r.Actions, r.ActionList, opt(r.DetectSeconds), opt(r.EscalateSeconds))
				}
			default:
				if r.Outcome != Escalated || r.Actions > 1 {
					t.Errorf("outcome %s, %d actions %v", r.Outcome, r.Actions, r.ActionList)
				}
			}
			t.Logf("%s: %s, detected %s, first action %s, recovered %s, resolved %s, escalated %s; %v", r.Name, r.Outcome,
				opt(r.DetectSeconds), opt(r.FirstActionSeconds), opt(r.RecoverSeconds), opt(r.ResolvedSeconds), opt(r.EscalateSeconds), r.ActionList)
		})
	}
}
