package embedded_test

import (
	"testing"

	"github.com/aiops-dev/aiops/internal/testutil"
	"github.com/aiops-dev/aiops/internal/testutil/storetest"
	"github.com/aiops-dev/aiops/storage/embedded"
)

func TestTraceQueries(t *testing.T) {
	storetest.CheckTraceQueries(t, storetest.Embedded(t, embedded.WithClock(testutil.NewClock(testutil.Epoch).Now)))
}

func TestLogQueries(t *testing.T) {
	storetest.CheckLogQueries(t, storetest.Embedded(t, embedded.WithClock(testutil.NewClock(testutil.Epoch).Now)))
}
