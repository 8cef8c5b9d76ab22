package collector

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/aiops-dev/aiops/collector/internal/obs"
	"github.com/aiops-dev/aiops/internal/testutil"
)

// TestIngressOutcome checks how errors from further down the pipeline
// reach the client and the counters.
func TestIngressOutcome(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := obs.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	clock := testutil.NewClock(testutil.Epoch)
	in := &ingress{retryAfter: 3 * time.Second, metrics: m, signal: obs.SignalMetrics, now: clock.Now, health: &health{}}
	for _, tc := range []struct {
		err    error
		code   codes.Code
		reason string
		retry  bool
	}{
		{fmt.Errorf("enqueue: %w", exporterhelper.ErrQueueIsFull), codes.Unavailable, obs.ReasonQueueFull, true},
		{errors.New("data refused due to high memory usage"), codes.Unavailable, obs.ReasonMemoryLimit, true},
		{errors.New("kafka: connection refused"), codes.Unavailable, obs.ReasonUnavailable, true},
		{consumererror.NewPermanent(errors.New("bad data")), codes.InvalidArgument, obs.ReasonInvalid, false},
	} {
		got := in.outcome(7, tc.err)
		st, _ := status.FromError(got)
		if st.Code() != tc.code {
			t.Errorf("%v: code %s, want %s", tc.err, st.Code(), tc.code)
		}
		var retry *errdetails.RetryInfo
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok {
				retry = ri
			}
		}
		if tc.retry != (retry != nil) || (retry != nil && retry.GetRetryDelay().AsDuration() != 3*time.Second) {
			t.Errorf("%v: RetryInfo %v, want present=%v with 3s", tc.err, retry, tc.retry)
		}
		if n := metricValue(t, reg, "aiops_collector_refused_items_total", map[string]string{"reason": tc.reason}); n != 7 {
			t.Errorf("%v: refused{reason=%s} = %v, want 7", tc.err, tc.reason, n)
		}
	}
	if in.outcome(7, nil) != nil {
		t.Error("nil error changed")
	}
}
