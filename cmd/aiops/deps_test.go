package main

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/aiops-dev/aiops/"

// harnessPackages hold test helpers, test servers, benchmarks and
// evaluations. The aiops binary must link none of them; aiops-bench and
// the tests do.
var harnessPackages = []string{
	module + "internal/testutil",
	module + "internal/chtest",
	module + "internal/chserver",
	module + "internal/clitest",
	module + "internal/freeport",
	module + "internal/nabdata",
	module + "internal/slackstandin",
	module + "bench",
	module + "cmd/aiops-bench",
}

// testCodeImporters are the library packages through which the testing
// and net/http/httptest packages still reach the binary: helpers their
// authors keep in non-test files (tsdb/testutil.go, api/v2/testing.go,
// the collector service's test factories, which use testify). The linker
// keeps little more than the two packages' init functions. A new entry
// needs a reason here.
var testCodeImporters = []string{
	"github.com/prometheus/prometheus/",
	"github.com/prometheus/alertmanager/",
	"github.com/stretchr/testify/",
	"go.opentelemetry.io/collector/",
}

// TestBinaryLinksNoTestCode lists what `go build ./cmd/aiops` links and
// fails on any harness package of ours, on any package of ours that
// imports testing or net/http/httptest, and on a library not known to
// bring them.
func TestBinaryLinksNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}} {{join .Imports " "}}`, ".").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	pkgs := 0
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		pkgs++
		pkg, imports := fields[0], fields[1:]
		for _, h := range harnessPackages {
			if pkg == h || strings.HasPrefix(pkg, h+"/") {
				t.Errorf("the aiops binary links the harness package %s", pkg)
			}
		}
		for _, imp := range imports {
			if imp != "testing" && imp != "net/http/httptest" {
				continue
			}
			switch {
			case strings.HasPrefix(pkg, module):
				t.Errorf("%s imports %s", pkg, imp)
			case !hasAnyPrefix(pkg, testCodeImporters):
				t.Errorf("library package %s imports %s; if that cannot be avoided, add it to testCodeImporters with the reason", pkg, imp)
			}
		}
	}
	// An empty or broken listing must not pass.
	if pkgs < 100 {
		t.Fatalf("go list named only %d packages:\n%s", pkgs, out)
	}
}

func hasAnyPrefix(s string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// TestReadersUseTheAnalyzerContract: alerting and the APIs read what the
// analyzer writes through its contract package, analyzer/results, never
// through the analyzer itself or its internals (DESIGN.md: data flows one
// way; a contract package between producer and readers).
func TestReadersUseTheAnalyzerContract(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-test", "../../alerting/...", "../../api/...").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	contract := module + "analyzer/results"
	n := 0
	for line := range strings.Lines(string(out)) {
		pkg := strings.TrimSpace(line)
		n++
		if pkg == module+"analyzer" || strings.HasPrefix(pkg, module+"analyzer/") && pkg != contract && !strings.HasPrefix(pkg, contract+"/") {
			t.Errorf("alerting or api depends on %s; readers use %s", pkg, contract)
		}
	}
	if n < 100 {
		t.Fatalf("go list named only %d packages:\n%s", n, out)
	}
}
