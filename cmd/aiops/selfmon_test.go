package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/internal/testutil"
)

// TestServeMonitorsItself runs `aiops serve` with self_monitoring every
// second: its own metrics become queryable series of job "aiops" with the
// node as instance, and the OTLP ingest figures do not count them.
func TestServeMonitorsItself(t *testing.T) {
	cfgPath := filepath.Join(t.TempDir(), "aiops.yaml")
	if err := os.WriteFile(cfgPath, []byte("self_monitoring:\n  interval: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts := startServe(t, t.TempDir(), "--config", cfgPath)
	instance := selfInstance(ts.http)
	if !strings.HasSuffix(instance, ":"+ts.http[strings.LastIndex(ts.http, ":")+1:]) {
		t.Errorf("instance %q does not end in the HTTP port of %s", instance, ts.http)
	}
	sel := `{job="aiops",instance="` + instance + `"}`
	testutil.WaitFor(t, "the queue capacity of each signal to be stored", 60*time.Second, func() bool {
		return ts.query(t, "count(aiops_collector_queue_capacity_items"+sel+")") == "3"
	})
	testutil.WaitFor(t, "self-monitoring to count its own writes", 60*time.Second, func() bool {
		v := ts.query(t, "aiops_selfmon_samples_written_total"+sel)
		return v != "" && v != "0"
	})
	if got := ts.query(t, `sum(aiops_collector_received_items_total{job="aiops",signal="metrics"})`); got != "0" {
		t.Errorf("received metric points = %q, want 0: self-monitoring must not go through the collector", got)
	}
}
