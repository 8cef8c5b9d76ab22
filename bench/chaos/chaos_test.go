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
	return cfg
}

// TestRun: a fault with a fix is auto-resolved by exactly its fix, one
// without is escalated within two minutes of its detection, a short
// baseline takes no action; the report says so in JSON and markdown.
func TestRun(t *testing.T) {
	cfg := shipped(t)
	cfg.Faults = []string{"bad_config", "worker_crash_loop"}
	cfg.Baseline = 15 * time.Minute
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Scenarios) != 2 {
		t.Fatalf("%d scenarios, want bad_config and worker_crash_loop", len(rep.Scenarios))
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
	if fi, err := os.Stat(filepath.Join(dir, "timeline-bad_config_api-1.png")); err != nil || fi.Size() < 1000 {
		t.Errorf("timeline picture: %v", err)
	}
	md, _ := os.ReadFile(filepath.Join(dir, "report.md"))
	if !strings.Contains(string(md), "| bad_config/api-1 | true | auto_resolved | true |") {
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
