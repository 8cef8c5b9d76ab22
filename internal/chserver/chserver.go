// Package chserver starts a private ClickHouse server: for tests (through
// internal/chtest, which ties servers to a testing.TB) and for the
// benchmarks of aiops-bench.
//
// Every server gets its own temporary directory (configuration, data, logs)
// and its own free TCP ports on 127.0.0.1, so it never depends on, or
// disturbs, a ClickHouse that happens to run on the machine. The server runs
// as a child process in its own process group; the group is killed by
// Close, and the kernel kills it if the starting process dies first, so no
// stale clickhouse-server outlives its user.
//
// Start-up costs about a second on an idle machine and several on a busy
// one, so users with many tests share one server and give each test its own
// database with CreateDatabase.
package chserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// EnvServerBinary names an environment variable that, when set, overrides
// where the clickhouse-server binary is looked for.
const EnvServerBinary = "AIOPS_CLICKHOUSE_SERVER"

const (
	// startTimeout bounds how long a server may take to answer /ping. Two
	// shared cores under a parallel `make test` can be slow; a healthy
	// 18.16 server answers in well under a second when idle.
	startTimeout = 90 * time.Second
	// stopTimeout bounds a graceful shutdown before the group is killed.
	stopTimeout = 30 * time.Second
)

// Server is one private clickhouse-server process.
type Server struct {
	binary   string
	dir      string
	httpPort int
	tcpPort  int

	mu   sync.Mutex
	proc *process // nil while stopped

	dbSeq atomic.Uint64
}

// process is one run of clickhouse-server; a Server has a new one after
// every Restart.
type process struct {
	cmd    *exec.Cmd
	output *bytes.Buffer // stdout+stderr; guarded by outMu
	outMu  *sync.Mutex
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, valid after done is closed
}

// Start starts a server and waits until it answers. Close stops it for
// good and removes its directory.
func Start() (*Server, error) {
	s, err := start()
	if err != nil {
		return nil, fmt.Errorf("chserver: %w", err)
	}
	return s, nil
}

// FindServer returns the path of the clickhouse-server binary.
func FindServer() (string, error) {
	if p := os.Getenv(EnvServerBinary); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvServerBinary, p, err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("clickhouse-server not found: run `make test` (it installs Debian's clickhouse-server) or apt-get install -y clickhouse-server clickhouse-client")
}

func start() (*Server, error) {
	bin, err := FindServer()
	if err != nil {
		return nil, err
	}
	// A port picked free can be taken by another process before the server
	// binds it; a few fresh attempts make that race harmless.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		s, err := tryStart(bin)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "Address already in use") {
			break
		}
	}
	return nil, lastErr
}

// ownerFile, in a server directory, holds the pid of the process that
// owns the server.
const ownerFile = "owner.pid"

// removeStaleDirs deletes the directories of servers whose owning process
// died without cleaning up (a timeout panic, SIGKILL). Their servers died
// with them (Pdeathsig); only the files are left.
func removeStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "chtest-*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being set up
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(dir)
		}
	}
}

func tryStart(bin string) (*Server, error) {
	removeStaleDirs()
	dir, err := os.MkdirTemp("", "chtest-")
	if err != nil {
		return nil, fmt.Errorf("create server directory: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("create server directory: %w", err)
	}
	ports, err := freePorts(2)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{binary: bin, dir: dir, httpPort: ports[0], tcpPort: ports[1]}
	if err := s.writeConfig(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := s.launch(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// freePorts asks the kernel for n distinct free ports on 127.0.0.1. All
// listeners stay open until every port is known so the kernel cannot hand
// out the same one twice.
func freePorts(n int) ([]int, error) {
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// NativeAddr is host:port of the native protocol (clickhouse-go's default).
func (s *Server) NativeAddr() string { return "127.0.0.1:" + strconv.Itoa(s.tcpPort) }

// HTTPAddr is host:port of the HTTP interface.
func (s *Server) HTTPAddr() string { return "127.0.0.1:" + strconv.Itoa(s.httpPort) }

// Dir is the server's directory: config.xml, users.xml, data/ and log/.
func (s *Server) Dir() string { return s.dir }

// Running reports whether the server process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// Stop shuts the server down gracefully (SIGTERM), killing its process
// group if it does not exit within stopTimeout. Stopping a stopped server
// does nothing. The directory stays, so Restart brings the data back.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(syscall.SIGTERM)
}

// Kill ends the server abruptly (SIGKILL to its process group), as a crash
// or a lost machine would, for fault tests.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(syscall.SIGKILL)
}

// Restart starts the server again on the same ports and data directory,
// stopping it first if it is running, and waits until it answers.
func (s *Server) Restart() error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.launch()
}

func (s *Server) stopLocked(sig syscall.Signal) error {
	p := s.proc
	if p == nil {
		return nil
	}
	s.proc = nil
	if p.exited() {
		return nil
	}
	pgid := p.cmd.Process.Pid
	// The negative pid addresses the whole process group.
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal clickhouse-server (pid %d): %w", pgid, err)
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
	// Threads or helpers left in the group after the main process exited
	// must not survive either.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return nil
}

// Close stops the server for good (SIGKILL: the data is thrown away) and
// removes its directory.
func (s *Server) Close() {
	s.mu.Lock()
	_ = s.stopLocked(syscall.SIGKILL)
	s.mu.Unlock()
	os.RemoveAll(s.dir)
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// launch starts clickhouse-server and waits until it answers /ping.
func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.exited() {
		return errors.New("server already running")
	}
	cmd := exec.Command(s.binary, "--config-file="+filepath.Join(s.dir, "config.xml"))
	cmd.Dir = s.dir
	p := &process{cmd: cmd, output: new(bytes.Buffer), outMu: new(sync.Mutex), done: make(chan struct{})}
	w := &lockedWriter{mu: p.outMu, w: p.output}
	cmd.Stdout = w
	cmd.Stderr = w
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Own process group, so that one signal reaches everything the
		// server runs, and terminal signals aimed at `go test` do not.
		Setpgid: true,
		// If the owning process dies without cleaning up (timeout panic,
		// SIGKILL), the kernel kills the server too.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.binary, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.proc = p

	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := s.waitReady(ctx, p); err != nil {
		_ = s.stopLocked(syscall.SIGKILL)
		return fmt.Errorf("clickhouse-server (%s, http %d, tcp %d) did not start: %w\n%s",
			s.binary, s.httpPort, s.tcpPort, err, s.logTail(p))
	}
	return nil
}

func (s *Server) waitReady(ctx context.Context, p *process) error {
	client := &http.Client{Timeout: 2 * time.Second}
	pingURL := "http://" + s.HTTPAddr() + "/ping"
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, pingURL, nil)
		resp, err := client.Do(req)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "Ok." {
				return nil
			}
			lastErr = fmt.Errorf("GET /ping: %s %q", resp.Status, body)
		} else {
			lastErr = err
		}
		select {
		case <-p.done:
			return fmt.Errorf("process exited: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("no answer to /ping after %s: %v", startTimeout, lastErr)
		case <-tick.C:
		}
	}
}

// logTail returns the end of the server's output and log files, which is
// where ClickHouse explains why it did not start.
func (s *Server) logTail(p *process) string {
	var b strings.Builder
	p.outMu.Lock()
	out := p.output.String()
	p.outMu.Unlock()
	if out = strings.TrimSpace(out); out != "" {
		fmt.Fprintf(&b, "--- clickhouse-server output ---\n%s\n", tail(out, 4096))
	}
	for _, name := range []string{"server.err.log", "server.log"} {
		data, err := os.ReadFile(filepath.Join(s.dir, "log", name))
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		fmt.Fprintf(&b, "--- %s (tail) ---\n%s\n", name, tail(string(data), 4096))
	}
	if b.Len() == 0 {
		return "(the server wrote no output or log)"
	}
	return b.String()
}

// LogTail returns the end of the server's logs, for failure messages.
func (s *Server) LogTail() string {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		p = &process{output: new(bytes.Buffer), outMu: new(sync.Mutex)}
	}
	return s.logTail(p)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[len(s)-n:]
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return "…\n" + s
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// CreateDatabase creates a database with a fresh name; dropping it is the
// caller's to do.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	name := fmt.Sprintf("test_%d_%d", time.Now().UnixNano(), s.dbSeq.Add(1))
	if err := s.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	return name, nil
}

// Exec runs one statement through the HTTP interface as the default user.
// It is meant for set-up and assertions, not for the code under test,
// which speaks the native protocol.
func (s *Server) Exec(ctx context.Context, query string) error {
	_, err := s.Query(ctx, query)
	return err
}

// Query runs one statement through the HTTP interface and returns its
// output in ClickHouse's default TabSeparated format.
func (s *Server) Query(ctx context.Context, query string) (string, error) {
	u := "http://" + s.HTTPAddr() + "/?" + url.Values{"user": {"default"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(query))
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("query %q: %w", abbreviate(query), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("query %q: read answer: %w", abbreviate(query), err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("query %q: %s: %s", abbreviate(query), resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

func abbreviate(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	if len(q) > 200 {
		return q[:200] + "…"
	}
	return q
}

func (s *Server) writeConfig() error {
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			return fmt.Errorf("create server directory: %w", err)
		}
	}
	config := fmt.Sprintf(configXML, s.dir, s.httpPort, s.tcpPort)
	if err := os.WriteFile(filepath.Join(s.dir, "config.xml"), []byte(config), 0o644); err != nil {
		return fmt.Errorf("write config.xml: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "users.xml"), []byte(usersXML), 0o644); err != nil {
		return fmt.Errorf("write users.xml: %w", err)
	}
	return nil
}

// configXML is the smallest configuration that 18.16 through current
// releases accept. The root element is <yandex>, which every release reads
// (newer ones also accept <clickhouse>). No interserver_http_port: without
// it the server opens no replication port. Caches are small because test
// servers hold little data and many may run at once.
const configXML = `<?xml version="1.0"?>
<yandex>
    <logger>
        <level>information</level>
        <log>%[1]s/log/server.log</log>
        <errorlog>%[1]s/log/server.err.log</errorlog>
        <size>50M</size>
        <count>1</count>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <http_port>%[2]d</http_port>
    <tcp_port>%[3]d</tcp_port>
    <path>%[1]s/data/</path>
    <tmp_path>%[1]s/tmp/</tmp_path>
    <user_files_path>%[1]s/user_files/</user_files_path>
    <format_schema_path>%[1]s/format_schemas/</format_schema_path>
    <users_config>%[1]s/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <max_concurrent_queries>200</max_concurrent_queries>
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
</yandex>
`

const usersXML = `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
                <ip>::1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
`
