// Package chtest ties private ClickHouse servers (internal/chserver) to
// tests: a server started with Start is closed when its test ends, a
// database made with NewDatabase is dropped then, and failures fail the
// test.
//
// Start-up costs about a second on an idle machine and several on a busy
// one, so packages with many tests share one server through StartMain and
// give each test its own database with NewDatabase.
package chtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/internal/chserver"
)

// Server is a private clickhouse-server process; see chserver.Server for
// what it offers beyond the test helpers here.
type Server struct {
	*chserver.Server
}

// Start starts a server for one test and closes it, removing its
// directory, when the test ends. It fails the test when the server cannot
// start.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := chserver.Start()
	if err != nil {
		tb.Fatalf("chtest: %v", err)
	}
	tb.Cleanup(s.Close)
	return &Server{s}
}

// StartMain starts a server to be shared by the tests of a package from
// TestMain. The returned function stops the server and removes its
// directory; call it before os.Exit:
//
//	func TestMain(m *testing.M) {
//		srv, stop, err := chtest.StartMain()
//		if err != nil {
//			fmt.Fprintln(os.Stderr, err)
//			os.Exit(1)
//		}
//		shared = srv
//		code := m.Run()
//		stop()
//		os.Exit(code)
//	}
func StartMain() (*Server, func(), error) {
	s, err := chserver.Start()
	if err != nil {
		return nil, nil, err
	}
	return &Server{s}, s.Close, nil
}

// Restart starts the server again on the same ports and data directory,
// stopping it first if it is running. It fails the test when the server
// does not come back.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.Server.Restart(); err != nil {
		tb.Fatalf("chtest: restart: %v", err)
	}
}

// NewDatabase creates a database with a fresh name and drops it when the
// test ends (if the server is still running then).
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name, err := s.CreateDatabase(context.Background())
	if err != nil {
		tb.Fatalf("chtest: %v", err)
	}
	tb.Cleanup(func() {
		if s.Running() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = s.Exec(ctx, "DROP DATABASE IF EXISTS "+name)
		}
	})
	return name
}

// Lazy is a server shared by the tests of a package that starts on first
// use, for packages where only some tests need ClickHouse:
//
//	var clickHouse chtest.Lazy
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		clickHouse.Stop()
//		os.Exit(code)
//	}
//
// and clickHouse.Get(t) in the tests that need it.
type Lazy struct {
	once sync.Once
	srv  *Server
	err  error
}

// Get starts the server on first use and returns it; it fails the test
// when the server cannot start.
func (l *Lazy) Get(tb testing.TB) *Server {
	tb.Helper()
	l.once.Do(func() {
		s, err := chserver.Start()
		l.srv, l.err = &Server{s}, err
	})
	if l.err != nil {
		tb.Fatalf("chtest: %v", l.err)
	}
	return l.srv
}

// Stop stops the server, if Get started one, and removes its directory.
func (l *Lazy) Stop() {
	if l.srv != nil && l.srv.Server != nil {
		l.srv.Close()
	}
}

// StartCluster starts n servers that form the cluster name, one shard
// each (chserver.StartCluster), and closes them when the test ends.
func StartCluster(tb testing.TB, name string, n int) []*Server {
	tb.Helper()
	ss, err := chserver.StartCluster(name, n)
	if err != nil {
		tb.Fatalf("chtest: %v", err)
	}
	out := make([]*Server, len(ss))
	for i, s := range ss {
		tb.Cleanup(s.Close)
		out[i] = &Server{s}
	}
	return out
}
