package chserver

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startT starts a server that is closed when the test ends.
func startT(t *testing.T) *Server {
	t.Helper()
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func TestServerLifecycle(t *testing.T) {
	s := startT(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	out, err := s.Query(ctx, "SELECT 1 + 1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "2" {
		t.Fatalf("SELECT 1 + 1 = %q, want 2", out)
	}
	conn, err := net.DialTimeout("tcp", s.NativeAddr(), 5*time.Second)
	if err != nil {
		t.Fatalf("native port not listening: %v", err)
	}
	conn.Close()

	db, err := s.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "CREATE TABLE "+db+".t (x UInt64) ENGINE = MergeTree ORDER BY x"); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "INSERT INTO "+db+".t VALUES (7)"); err != nil {
		t.Fatal(err)
	}

	// A crash, then a restart on the same ports and data directory: the
	// data written before the crash is there again.
	pid := s.proc.cmd.Process.Pid
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Fatal("server still running after Kill")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("process %d still exists after Kill", pid)
	}
	if _, err := s.Query(ctx, "SELECT 1"); err == nil {
		t.Fatal("query succeeded on a killed server")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	out, err = s.Query(ctx, "SELECT sum(x) FROM "+db+".t")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != "7" {
		t.Fatalf("after restart sum = %q, want 7", out)
	}

	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if s.Running() {
		t.Fatal("server still running after Stop")
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	if !s.Running() {
		t.Fatal("server not running after Restart")
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	pid := s.proc.cmd.Process.Pid
	dir := s.Dir()
	s.Close()
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("process %d still exists after stop", pid)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("directory %s still exists after stop: %v", dir, err)
	}
}

func TestQueryErrorNamesTheProblem(t *testing.T) {
	s := startT(t)
	err := s.Exec(context.Background(), "SELECT no_such_column FROM system.one")
	if err == nil || !strings.Contains(err.Error(), "no_such_column") {
		t.Fatalf("want an error naming no_such_column, got %v", err)
	}
}

func TestMissingBinary(t *testing.T) {
	t.Setenv(EnvServerBinary, "/nonexistent/clickhouse-server")
	if _, err := Start(); err == nil {
		t.Fatal("Start succeeded with a missing binary")
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	// /bin/false exits at once: the error must say so rather than time out.
	t.Setenv(EnvServerBinary, "/bin/false")
	_, err := Start()
	if err == nil || !strings.Contains(err.Error(), "process exited") {
		t.Fatalf("want a 'process exited' error, got %v", err)
	}
}

func TestStaleDirectoriesRemoved(t *testing.T) {
	// A directory owned by a process that no longer exists.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale, err := os.MkdirTemp("", "chtest-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, ownerFile), []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	s := startT(t)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale directory %s kept: %v", stale, err)
	}
	if _, err := os.Stat(s.Dir()); err != nil {
		t.Errorf("own directory: %v", err)
	}
}

func TestStartCluster(t *testing.T) {
	servers, err := StartCluster("pair", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	ctx := context.Background()
	// A Distributed table over a table on each server: a row inserted on
	// each is read back through either.
	for i, s := range servers {
		if err := s.Exec(ctx, "CREATE TABLE default.l (x UInt32) ENGINE = MergeTree() ORDER BY x"); err != nil {
			t.Fatal(err)
		}
		if err := s.Exec(ctx, "CREATE TABLE default.d AS default.l ENGINE = Distributed(pair, default, l, x)"); err != nil {
			t.Fatal(err)
		}
		if err := s.Exec(ctx, fmt.Sprintf("INSERT INTO default.l VALUES (%d)", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range servers {
		out, err := s.Query(ctx, "SELECT sum(x), count() FROM default.d")
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(out); got != "3\t2" {
			t.Errorf("%s: sum and count through the cluster = %q, want 3 and 2", s.NativeAddr(), got)
		}
	}
}
