// Package clitest provides command line programs to tests: the real
// Prometheus, Alertmanager and Helm clients (promtool, amtool, helm) at
// the versions the modules pin, the real Jaeger that the trace API is
// compared with, and aiops and aiops-bench themselves.
package clitest

import (
	"crypto/sha256"
	"encoding/hex"
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

// AiopsBench returns the aiops-bench binary: $AIOPS_BENCH_BIN when set,
// otherwise one built from ./cmd/aiops-bench.
func AiopsBench(t testing.TB) string {
	return tool(t, "AIOPS_BENCH_BIN", "github.com/aiops-dev/aiops/cmd/aiops-bench")
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
	root := moduleRoot(t)
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = filepath.Join(root, dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s (set %s to use a prebuilt one): %v\n%s", pkg, env, err, out)
	}
	return bin
}

func moduleRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// Jaeger returns a Jaeger v2 binary: $JAEGER when set (make tools builds
// one), otherwise one built from the tools/jaeger module, a module of its
// own so that Jaeger's dependencies stay out of aiops's go.mod.
//
// Jaeger is a large program: a cold build takes minutes. The binary is
// kept in the user's cache directory under the hash of tools/jaeger's
// go.sum, so it is built once per Jaeger version and machine.
func Jaeger(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("JAEGER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("JAEGER=%s: %v", p, err)
		}
		return p
	}
	dir := filepath.Join(moduleRoot(t), "tools", "jaeger")
	sum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(sum)
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	bin := filepath.Join(cache, "aiops-test", "jaeger-"+hex.EncodeToString(h[:8]))
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	// Built under a temporary name and renamed, so that packages testing
	// at once never run a half-written binary.
	tmp, err := os.CreateTemp(filepath.Dir(bin), "jaeger-build-*")
	if err != nil {
		t.Fatal(err)
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	t.Logf("building Jaeger into %s (once per version; set JAEGER to use a prebuilt one)", bin)
	cmd := exec.Command("go", "build", "-o", tmp.Name(), "github.com/jaegertracing/jaeger/cmd/jaeger")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build Jaeger in %s: %v\n%s", dir, err, out)
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		t.Fatal(err)
	}
	return bin
}
