package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("role: collector\ncollector:\n  kafka:\n    brokers: [\"k:9092\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("role: ingester\nstorage:\n  backend: clickhouse\n  clickhouse:\n    batch_size: -1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"check", "config", good}, &stdout, &stderr); code != 0 {
		t.Fatalf("check config %s: exit %d: %s", good, code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "valid (role collector") {
		t.Errorf("stdout = %q", stdout.String())
	}
	stdout.Reset()
	stderr.Reset()
	if code := run(context.Background(), []string{"check", "config", good, bad}, &stdout, &stderr); code != 1 {
		t.Fatalf("check config with an invalid file: exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "bad.yaml") || !strings.Contains(stderr.String(), "clickhouse.batch_size") {
		t.Errorf("stderr does not name the file and key: %q", stderr.String())
	}
}

func TestCheckReady(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" || !ready {
			http.Error(w, "not ready: store opening", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"check", "ready", srv.URL + "/readyz"}, &stdout, &stderr); code != 0 {
		t.Fatalf("ready server: exit %d: %s", code, stderr.String())
	}
	ready = false
	stderr.Reset()
	if code := run(context.Background(), []string{"check", "ready", srv.URL + "/readyz"}, &stdout, &stderr); code != 1 {
		t.Fatalf("unready server: exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "503") || !strings.Contains(stderr.String(), "store opening") {
		t.Errorf("stderr = %q, want the status and the server's reason", stderr.String())
	}
	if code := run(context.Background(), []string{"check", "ready", "http://127.0.0.1:1/readyz", "--timeout", "1s"}, &stdout, &stderr); code != 1 {
		t.Errorf("nothing listening: exit %d, want 1", code)
	}
}
