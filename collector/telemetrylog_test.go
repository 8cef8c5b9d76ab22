package collector

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/aiops-dev/aiops/collector/internal/loglimit"
	"github.com/aiops-dev/aiops/internal/testutil"
)

// TestFrameworkLogIsLimited: the collector framework's warnings and
// errors reach the log once a minute per component and message, with a
// count of those left out. Found from outside: aiops serve on a full disk
// with eight OTLP clients retrying wrote 6,140 "Exporting failed.
// Rejecting data." error lines in 90 s, and a restart 1,442 "Failed
// retrieving item" warnings.
func TestFrameworkLogIsLimited(t *testing.T) {
	var buf bytes.Buffer
	clock := testutil.NewClock(testutil.Epoch)
	core := &slogCore{h: slog.NewTextHandler(&buf, nil), lim: loglimit.New(clock.Now)}
	logger := zap.New(core)
	logs, traces := logger.With(zap.String("otelcol.signal", "logs")), logger.With(zap.String("otelcol.signal", "traces"))
	for range 1000 {
		logs.Error("Exporting failed. Rejecting data.", zap.Error(errors.New("no space left on device")))
		traces.Error("Exporting failed. Rejecting data.", zap.Error(errors.New("no space left on device")))
		logs.Info("informational lines are not limited")
	}
	if got := strings.Count(buf.String(), "Rejecting data"); got != 2 {
		t.Errorf("%d error lines in a minute, want one per component:\n%.1000s", got, buf.String())
	}
	if got := strings.Count(buf.String(), "informational"); got != 1000 {
		t.Errorf("%d info lines, want 1000", got)
	}
	buf.Reset()
	clock.Add(time.Minute)
	logs.Error("Exporting failed. Rejecting data.", zap.Error(errors.New("no space left on device")))
	if !strings.Contains(buf.String(), "repeats_unlogged=999") {
		t.Errorf("the next line a minute on: %s", buf.String())
	}
}
