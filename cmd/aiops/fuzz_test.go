package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecodeConfig feeds any text to the configuration loader, as a file
// an operator (or a config management tool gone wrong) writes: decoding
// and validating must not panic, and a value that does not decode is
// reported, never half applied silently.
func FuzzDecodeConfig(f *testing.F) {
	examples, _ := filepath.Glob("../../deploy/examples/*.yaml")
	for _, e := range examples {
		if b, err := os.ReadFile(e); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		"alerting:\n  evaluation_interval: often\n",
		"server:\n  http_adr: :9090\n",
		"role: [\n",
		"query:\n  max_depth: -1\n  timeout: 1x\n",
		"analyzer:\n  selectors:\n    - selector: 'up{'\n      seasonality: [1]\n",
		"a: &a [*a]\n",
		"server: {auth: {jwt: {jwks_url: 'ftp://x', refresh_interval: 1h}}}\n",
		"alerting:\n  external_labels: {\"\": x}\n  rule_files: ['[']\n",
		"storage:\n  clickhouse:\n    addresses: [1, 2]\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg := DefaultConfig()
		if err := decodeConfig(bytes.NewReader(b), &cfg); err != nil {
			return
		}
		cfg.Validate()
	})
}
