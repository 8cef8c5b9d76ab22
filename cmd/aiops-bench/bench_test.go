package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"testing"
)

// TestBenchIngestCommand runs a small `aiops-bench ingest` into both stores
// (a private ClickHouse it starts itself) and checks that every run lost
// nothing and that ClickHouse reports bytes per stored sample.
func TestBenchIngestCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"ingest", "--store", "embedded", "--store", "clickhouse", "--points", "20000", "--series", "500", "--runs", "1", "--dir", t.TempDir()}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, stderr.String(), stdout.String())
	}
	// STORE RUN POINTS/S ACKED/S POINTS/CPU-S INSERTS/S LOST REFUSED MAX-HEAP BYTES/SAMPLE
	row := regexp.MustCompile(`(?m)^(embedded|clickhouse)\s+1\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s*$`)
	rows := row.FindAllStringSubmatch(stdout.String(), -1)
	if len(rows) != 2 {
		t.Fatalf("want one run row per store, got %d in:\n%s", len(rows), stdout.String())
	}
	for _, r := range rows {
		if r[6] != "0" {
			t.Errorf("%s lost %s points", r[1], r[6])
		}
		if acked, _ := strconv.Atoi(r[3]); acked <= 0 {
			t.Errorf("%s: acknowledged points/s %s", r[1], r[3])
		}
		if r[1] == "clickhouse" {
			if ins, err := strconv.ParseFloat(r[5], 64); err != nil || ins <= 0 {
				t.Errorf("clickhouse inserts/s %q, want a measured figure", r[5])
			}
		}
		if pps, _ := strconv.Atoi(r[2]); pps <= 0 {
			t.Errorf("%s: points/s %s", r[1], r[2])
		}
		bps, err := strconv.ParseFloat(r[9], 64)
		switch r[1] {
		case "clickhouse":
			// Compressed samples take a few bytes each; anything far
			// outside that means the measurement read the wrong parts.
			if err != nil || bps < 0.5 || bps > 64 {
				t.Errorf("clickhouse bytes/sample %q, want a measured figure between 0.5 and 64", r[9])
			}
		case "embedded":
			if r[9] != "-" {
				t.Errorf("embedded bytes/sample %q, want -", r[9])
			}
		}
	}
}
