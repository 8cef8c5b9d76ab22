package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aiops-dev/aiops/internal/clitest"
)

// TestChaosRun: `aiops chaos run` runs the closed-loop harness (the real
// aiops-bench) with its flags: one fault, one run, no baseline, the
// shipped rules and runbooks; the report says the fault was healed.
// Without aiops-bench it says where it looked.
func TestChaosRun(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	var stdout, stderr strings.Builder
	args := []string{"chaos", "run", "--bench", clitest.AiopsBench(t), "--faults", "bad_config", "--runs", "1", "--baseline", "0", "--step", "15s",
		"--rules", filepath.Join(root, "deploy/rules/*.yml"), "--runbooks", filepath.Join(root, "deploy/runbooks/*.yml"), "--out", out}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout.String(), stderr.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Scenarios []struct {
			Name, Outcome string
			Run           int
		}
		Baseline *struct{}
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Scenarios) != 1 || rep.Scenarios[0].Outcome != "auto_resolved" || rep.Scenarios[0].Run != 1 || rep.Baseline != nil {
		t.Errorf("report %s\nstdout %s", b, stdout.String())
	}

	stderr.Reset()
	t.Setenv("PATH", t.TempDir())
	if code := run(context.Background(), []string{"chaos", "run", "--out", out}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "aiops-bench is neither next to aiops nor on $PATH") {
		t.Errorf("without aiops-bench: exit %d, %s", code, stderr.String())
	}
}
