package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/internal/chtest"
	"github.com/aiops-dev/aiops/internal/testutil"
)

// TestTokenCommandsOnClickHouse runs `aiops token create|list|revoke`
// against the ClickHouse store of a running server, by its config file
// as an operator would: the server takes the new token up, the list shows
// it, and after the revocation the server refuses it.
func TestTokenCommandsOnClickHouse(t *testing.T) {
	ch := chtest.Start(t)
	cfgPath := filepath.Join(t.TempDir(), "aiops.yaml")
	cfg := "storage:\n  backend: clickhouse\n  clickhouse:\n    database: " + ch.NewDatabase(t) + "\n    addresses: [" + ch.NativeAddr() + "]\n"
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDir := t.TempDir()
	ts := startServe(t, dataDir, "--config", cfgPath)

	aiops := func(args ...string) string {
		t.Helper()
		var stdout, stderr bytes.Buffer
		args = append(args, "--config", cfgPath)
		if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
			t.Fatalf("aiops %v: exit %d: %s", args, code, stderr.String())
		}
		return stdout.String()
	}
	out := aiops("token", "create", "--name", "grafana", "--scopes", "read")
	secret, rest, _ := strings.Cut(out, "\n")
	_, id, _ := strings.Cut(rest, "# id ")
	id, _, _ = strings.Cut(id, ",")
	if secret == "" || id == "" {
		t.Fatalf("token create printed %q", out)
	}
	testutil.WaitFor(t, "the server to accept the new token", 60*time.Second, func() bool {
		code, _ := ts.get(t, "/api/v1/query?query=up", secret)
		return code == http.StatusOK
	})
	if code, _ := ts.get(t, "/api/v1/rules", "not-a-token"); code != http.StatusUnauthorized {
		t.Errorf("an unknown token: %d, want 401", code)
	}
	if list := aiops("token", "list"); !strings.Contains(list, id) || !strings.Contains(list, "grafana") {
		t.Errorf("token list does not show %s (grafana):\n%s", id, list)
	}
	if got := aiops("token", "revoke", id); got != "revoked "+id+"\n" {
		t.Errorf("token revoke printed %q", got)
	}
	testutil.WaitFor(t, "the server to refuse the revoked token", 60*time.Second, func() bool {
		code, _ := ts.get(t, "/api/v1/query?query=up", secret)
		return code == http.StatusUnauthorized
	})
}
