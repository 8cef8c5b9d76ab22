package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/internal/testutil"
)

func serveWithConfig(t *testing.T, yaml string) *testServer {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "aiops.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return startServe(t, t.TempDir(), "--config", cfg)
}

// TestIdleKeepAliveConnectionsAreClosed: a client that keeps its
// connection open without sending anything loses it after idle_timeout.
func TestIdleKeepAliveConnectionsAreClosed(t *testing.T) {
	ts := serveWithConfig(t, "server:\n  idle_timeout: 1s\n")
	conn, err := net.Dial("tcp", ts.http)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: aiops\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("/healthz: %d, close=%v; want 200 on a connection kept alive", resp.StatusCode, resp.Close)
	}
	// Far longer than idle_timeout: the server must close first.
	conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("idle keep-alive connection: read gave %v, want EOF (closed by the server)", err)
	}
}

var openConns = regexp.MustCompile(`(?m)^aiops_http_open_connections (\d+)$`)

// TestConnectionFloodSparesEstablishedClients: connections beyond
// max_connections are not taken in, and a client already connected keeps
// being answered, probes and queries alike.
func TestConnectionFloodSparesEstablishedClients(t *testing.T) {
	const limit = 8
	ts := serveWithConfig(t, "server:\n  max_connections: "+strconv.Itoa(limit)+"\n  read_header_timeout: 5m\n")

	reused := false
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	get := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+ts.http+path, nil)
		req.Header.Set("Authorization", "Bearer "+ts.token)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
		}))
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz before the flood: %d", code)
	}

	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	for range 5 * limit {
		c, err := net.DialTimeout("tcp", ts.http, 10*time.Second)
		if err != nil {
			break // the kernel's backlog is full: also beyond the cap
		}
		flood = append(flood, c)
	}
	var open int
	testutil.WaitFor(t, "the listener full", 30*time.Second, func() bool {
		_, metrics := get("/metrics")
		m := openConns.FindStringSubmatch(metrics)
		if m == nil {
			t.Fatalf("no aiops_http_open_connections in /metrics")
		}
		open, _ = strconv.Atoi(m[1])
		return open >= limit
	})
	if open > limit {
		t.Errorf("%d connections open, max_connections is %d", open, limit)
	}
	for _, path := range []string{"/healthz", "/readyz", "/api/v1/query?query=vector(1)"} {
		if code, body := get(path); code != http.StatusOK || !reused {
			t.Errorf("established client, %s during the flood: %d (connection reused: %v) %.200s", path, code, reused, body)
		}
	}
}
