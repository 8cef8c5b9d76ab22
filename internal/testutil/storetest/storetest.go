// Package storetest opens the stores tests run on. It is apart from
// package testutil because it imports the stores, which testutil must
// not: the stores' own tests use testutil.
package storetest

import (
	"path/filepath"
	"testing"

	"github.com/aiops-dev/aiops/storage/embedded"
)

// Embedded opens an embedded store with the default settings in a fresh
// directory and closes it when the test ends.
func Embedded(t testing.TB, opts ...embedded.Option) *embedded.Store {
	t.Helper()
	return EmbeddedIn(t, t.TempDir(), opts...)
}

// EmbeddedIn is Embedded in dir, for tests that reopen a store.
func EmbeddedIn(t testing.TB, dir string, opts ...embedded.Option) *embedded.Store {
	t.Helper()
	cfg := embedded.DefaultConfig()
	cfg.DataDir = dir
	return EmbeddedWith(t, cfg, opts...)
}

// EmbeddedWith opens an embedded store with cfg (in a fresh directory
// when cfg.DataDir is empty) and closes it when the test ends. Closing it
// earlier, to reopen it, is fine: Close may be called again. A relative
// cfg.DataDir (embedded.DefaultConfig's) fails the test: it would put the
// store in the package's source directory, shared by every test.
func EmbeddedWith(t testing.TB, cfg embedded.Config, opts ...embedded.Option) *embedded.Store {
	t.Helper()
	switch {
	case cfg.DataDir == "":
		cfg.DataDir = t.TempDir()
	case !filepath.IsAbs(cfg.DataDir):
		t.Fatalf("storetest: data dir %q is relative; use a t.TempDir() or leave it empty", cfg.DataDir)
	}
	s, err := embedded.Open(cfg, nil, nil, opts...)
	if err != nil {
		t.Fatalf("open embedded store: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close embedded store: %v", err)
		}
	})
	return s
}
