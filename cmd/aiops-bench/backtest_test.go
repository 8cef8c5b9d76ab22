package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestBacktestForecastCommand(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"backtest", "forecast", "--seeds", "1", "--tsdb-dir", t.TempDir()}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"MdAPE_%", "all             aiops", "all             predict_linear", "sawtooth", "never_fills"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code := run(context.Background(), []string{"backtest", "forecast", "--seeds", "x"}, &stdout, &stderr); code == 0 {
		t.Error("a bad flag should fail")
	}
}
