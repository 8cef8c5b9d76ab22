package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// BootstrapToken is the admin token read from a file, for automation and
// for the first login before any API token exists. It is never stored in
// the event store.
type BootstrapToken struct {
	hash [32]byte
}

// LoadBootstrapToken reads the token from path. The file holds the token
// alone; surrounding whitespace is ignored. As ssh does with private keys,
// it refuses a file that users other than its owner may read or write:
// the token is an admin credential.
func LoadBootstrapToken(path string) (*BootstrapToken, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("admin token file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("admin token file %s: mode %04o lets other users read or change it; make it 0600 (chmod 600 %s; in Kubernetes, mount the secret with defaultMode: 0400)", path, perm, path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("admin token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return nil, fmt.Errorf("admin token file %s: token must be at least 16 characters", path)
	}
	return &BootstrapToken{hash: sha256.Sum256([]byte(tok))}, nil
}

// EnsureBootstrapToken loads the token at path, first writing a new random
// one there (mode 0600) when the file does not exist. created reports
// whether it wrote one.
func EnsureBootstrapToken(path string) (tok *BootstrapToken, created bool, err error) {
	tok, err = LoadBootstrapToken(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return tok, false, err
	}
	secret, err := randomString(20)
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, false, fmt.Errorf("admin token file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("admin token file: %w", err)
	}
	if _, err := f.WriteString("aiops_admin_" + secret + "\n"); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("admin token file: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("admin token file: %w", err)
	}
	tok, err = LoadBootstrapToken(path)
	return tok, err == nil, err
}

// Authenticate implements Authenticator.
func (t *BootstrapToken) Authenticate(_ context.Context, credential string) (Principal, error) {
	sum := sha256.Sum256([]byte(credential))
	if subtle.ConstantTimeCompare(sum[:], t.hash[:]) != 1 {
		return Principal{}, refuse(reasonNotMine, "not the bootstrap admin token")
	}
	return Principal{ID: "bootstrap-admin", Name: "bootstrap admin", Method: "bootstrap", Scopes: []Scope{ScopeAdmin}}, nil
}
