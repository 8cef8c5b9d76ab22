package ingest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
)

// TestPromCount reads a query result the way Prometheus's HTTP API
// returns it, and its errors.
func TestPromCount(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("query") {
		case "ok":
			w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"1000000"]}]}}`))
		case "none":
			w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[]}}`))
		default:
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"status":"error","error":"parse error"}`))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	if n, err := promCount(ctx, srv.URL, "ok"); err != nil || n != 1_000_000 {
		t.Errorf("ok: %d, %v", n, err)
	}
	if n, err := promCount(ctx, srv.URL, "none"); err != nil || n != 0 {
		t.Errorf("none: %d, %v", n, err)
	}
	if _, err := promCount(ctx, srv.URL, "bad"); err == nil {
		t.Error("an error answer read as a count")
	}
}

// TestChildCPU reads a process's CPU time from /proc.
func TestChildCPU(t *testing.T) {
	x := 0
	for i := range 300_000_000 {
		x += i
	}
	if got := childCPU(os.Getpid()); got <= 0 || x == 0 {
		t.Fatalf("CPU of this process after a busy loop: %v", got)
	}
}
