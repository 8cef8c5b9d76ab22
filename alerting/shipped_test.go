package alerting

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"

	"github.com/aiops-dev/aiops/alerting/alertmanager"
	"github.com/aiops-dev/aiops/alerting/ruler"
	"github.com/aiops-dev/aiops/internal/clitest"
)

// shippedRules are the rule files under deploy/rules, relative to this
// package.
func shippedRules(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "deploy", "rules", "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no shipped rule files found: %v", err)
	}
	return files
}

func run(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestShippedRulesPromtool runs the real promtool over the shipped rules:
// `check rules` on every file and the unit tests under deploy/rules/tests,
// which prove the alerts fire on the metric names they document.
func TestShippedRulesPromtool(t *testing.T) {
	bin := clitest.Promtool(t)
	files := shippedRules(t)
	out := run(t, bin, append([]string{"check", "rules", "--lint=all", "--lint-fatal"}, files...)...)
	if n := strings.Count(out, "SUCCESS"); n != len(files) {
		t.Fatalf("promtool check rules: %d successes for %d files:\n%s", n, len(files), out)
	}
	tests, err := filepath.Glob(filepath.Join("..", "deploy", "rules", "tests", "*.yml"))
	if err != nil || len(tests) == 0 {
		t.Fatalf("no rule unit tests found: %v", err)
	}
	out = run(t, bin, append([]string{"test", "rules"}, tests...)...)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
	// Every alert the files define is exercised by a unit test.
	var testText strings.Builder
	for _, f := range tests {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		testText.Write(b)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			name, ok := strings.CutPrefix(strings.TrimSpace(line), "- alert: ")
			if ok && !strings.Contains(testText.String(), "alertname: "+name+"\n") {
				t.Errorf("alert %s (%s) has no promtool unit test", name, f)
			}
		}
	}
}

// TestShippedRulesLoad loads the shipped rules the way aiops does, with
// the parser options of the query engine.
func TestShippedRulesLoad(t *testing.T) {
	p := parser.NewParser(parser.Options{EnableExperimentalFunctions: true})
	if err := ruler.CheckFiles(shippedRules(t), p); err != nil {
		t.Fatal(err)
	}
}

// TestShippedAlertmanagerConfig checks the example Alertmanager
// configuration with aiops's loader and with amtool check-config.
func TestShippedAlertmanagerConfig(t *testing.T) {
	file := filepath.Join("..", "deploy", "alertmanager", "alertmanager.yml")
	if _, err := alertmanager.LoadConfig(file); err != nil {
		t.Fatal(err)
	}
	out := run(t, clitest.Amtool(t), "check-config", file)
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("amtool check-config:\n%s", out)
	}
}
