package embedded

import (
	"os"

	"golang.org/x/sys/unix"
)

// reserve allocates a file of size bytes at path (without writing them),
// or leaves an existing one.
func reserve(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
