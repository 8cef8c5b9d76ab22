// Package freeport hands tests loopback addresses that nothing listens on.
package freeport

import (
	"net"
	"sync"
	"testing"
)

// handedOut holds the addresses Addr returned in this process: the kernel
// may offer a port again once its probe listener is closed, and two
// components of one test must not get the same one.
var handedOut sync.Map

// Addr returns a free 127.0.0.1:port, different from every address it
// returned before in this process.
func Addr(t testing.TB) string {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		addr := l.Addr().String()
		l.Close()
		if _, dup := handedOut.LoadOrStore(addr, true); !dup {
			return addr
		}
	}
}
