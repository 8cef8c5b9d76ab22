package embedded

import (
	"os"

	"golang.org/x/sys/unix"
)

// freeBytes is what an unprivileged writer may still write on dir's
// filesystem.
func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * st.Bsize, nil
}

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
