// Package nabdata finds the NAB development split (../shared/nab beside
// the repository) for tests.
package nabdata

import (
	"os"
	"path/filepath"
	"testing"
)

// Env names a directory holding the split, for checkouts whose parent
// has no shared/ directory.
const Env = "AIOPS_NAB_DIR"

// Dir returns the split's directory: $AIOPS_NAB_DIR, or shared/nab beside
// the repository that holds the calling test. It fails the test, naming
// where it looked, when there is none: the analyzer's tests are measured
// on this data and must not pass without it.
func Dir(t testing.TB) string {
	t.Helper()
	var tried []string
	if d := os.Getenv(Env); d != "" {
		tried = append(tried, d)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// A test runs in its package's directory; walk up to the module root.
	for dir := wd; ; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			tried = append(tried, filepath.Join(filepath.Dir(dir), "shared", "nab"))
			break
		}
		if filepath.Dir(dir) == dir {
			break
		}
	}
	for _, d := range tried {
		if _, err := os.Stat(filepath.Join(d, "windows.json")); err == nil {
			return d
		}
	}
	t.Fatalf("the NAB development split (windows.json, data/) is needed; looked in %q; set %s to its directory", tried, Env)
	return ""
}
