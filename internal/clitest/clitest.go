// Package clitest provides the real Prometheus and Alertmanager command
// line clients (promtool, amtool) to tests, at the versions go.mod pins.
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

// tool builds pkg into the test's temporary directory; the Go build cache
// makes every build after the first a link step.
func tool(t testing.TB, env, pkg string) string {
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
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s (set %s to use a prebuilt one): %v\n%s", pkg, env, err, out)
	}
	return bin
}
