package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestHelpListsEveryCommand: the commands docs/BENCHMARKS.md names are
// all here, at the top level.
func TestHelpListsEveryCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--help: exit %d: %s", code, stderr.String())
	}
	for _, cmd := range []string{"ingest", "query", "alerting", "nab", "backtest forecast"} {
		if !strings.Contains(stdout.String(), "\n"+cmd+" ") {
			t.Errorf("--help does not list %q:\n%s", cmd, stdout.String())
		}
	}
	if code := run(context.Background(), []string{"bench", "ingest"}, &stdout, &stderr); code == 0 {
		t.Error(`the old "bench ingest" spelling was accepted`)
	}
}
