// Package clitest provides command line programs to tests: the real
// Prometheus, Alertmanager and Helm clients (promtool, amtool, helm) at
// the versions the modules pin, and aiops itself.
package clitest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Promtool returns a promtool binary: $PROMTOOL when set (the Makefile
// builds one), otherwise one built from the module go.mod pins.
func Promtool(t testing.TB) string {
	return tool(t, "PROMTOOL", "github.com/prometheus/prometheus/cmd/promtool")
}

// Amtool returns an amtool binary: $AMTOOL when set, otherwise one built
// from the module go.mod pins.
func Amtool(t testing.TB) string {
	return tool(t, "AMTOOL", "github.com/prometheus/alertmanager/cmd/amtool")
}

// Helm returns a helm binary: $HELM when set, otherwise one built from
// the tools/helm module, which keeps Helm's dependencies out of go.mod.
func Helm(t testing.TB) string {
	return toolIn(t, "HELM", "tools/helm", "helm.sh/helm/v4/cmd/helm")
}

// Aiops returns the aiops binary: $AIOPS_BIN when set, otherwise one
// built from ./cmd/aiops.
func Aiops(t testing.TB) string {
	return tool(t, "AIOPS_BIN", "github.com/aiops-dev/aiops/cmd/aiops")
}

// tool builds pkg into the test's temporary directory; the Go build cache
// makes every build after the first a link step.
func tool(t testing.TB, env, pkg string) string {
	t.Helper()
	return toolIn(t, env, ".", pkg)
}

// toolIn builds pkg from the module in dir, relative to the repository's
// root.
func toolIn(t testing.TB, env, dir, pkg string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", env, p, err)
		}
		return p
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = filepath.Join(root, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s (set %s to use a prebuilt one): %v\n%s", pkg, env, err, out)
	}
	return bin
}
