package embedded

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aiops-dev/aiops/internal/diskspace"
)

// ReserveFile is the file under the data dir that holds disk space back
// for the store's own needs (see diskSpace).
const ReserveFile = "disk.reserve"

// spaceCheckInterval is how long a free-space reading is trusted.
const spaceCheckInterval = 100 * time.Millisecond

// diskSpace keeps the store from filling its disk.
//
// Writes are refused (with storage.ErrUnavailable, so that clients and
// the collector's queue retry) while less than size bytes are free. That
// keeps the TSDB's own writes that nobody waits for — head chunks it
// moves to disk, the last page of its log on close, compactions — from
// meeting a full disk, where the TSDB panics (head chunks) or tears its
// log. Another program may still fill the disk; for that, a reserve file
// of size bytes is kept beside the data, and given back when a write
// fails, so that the store can close and reopen cleanly, and when the
// store opens, so that a restart needs no free space. Writes resume once
// the reserve is back and size bytes are free besides. The reserve is
// also given back when something else takes the last free space.
type diskSpace struct {
	dir  string
	path string
	size int64 // 0: no reserve, no check

	mu       sync.Mutex
	checked  time.Time
	free     int64
	reserved bool
	err      error
}

func newDiskSpace(dir string, size int64) *diskSpace {
	return &diskSpace{dir: dir, path: filepath.Join(dir, ReserveFile), size: size}
}

// release removes the reserve file, giving its space to whatever needs it
// now.
func (d *diskSpace) release() {
	if d.size == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := os.Remove(d.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return
	}
	d.reserved = false
	d.checked = time.Time{}
}

// check returns nil while writes may go on, else why not.
func (d *diskSpace) check() error {
	if d.size == 0 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if now.Sub(d.checked) < spaceCheckInterval {
		return d.err
	}
	d.checked = now
	free, err := diskspace.Free(d.dir)
	if err != nil {
		// Unknown: do not refuse on a guess.
		d.err = nil
		return nil
	}
	if d.reserved && free < minOpenBytes {
		// Something else (the collector's queue, another program) took
		// the rest of the disk: give the TSDB room for the writes it
		// does by itself (head chunks, compactions), where a full disk
		// makes it panic.
		if err := os.Remove(d.path); err == nil || errors.Is(err, os.ErrNotExist) {
			d.reserved = false
			free += d.size
		}
	}
	if !d.reserved && free >= 2*d.size {
		if err := reserve(d.path, d.size); err == nil {
			d.reserved = true
			free -= d.size
		} else {
			os.Remove(d.path)
		}
	}
	d.free = free
	switch {
	case !d.reserved:
		d.err = fmt.Errorf("disk almost full: %d MiB free in %s, writes resume at %d MiB (twice storage.embedded.disk_reserve_mib)",
			free>>20, d.dir, 2*d.size>>20)
	case free < d.size:
		d.err = fmt.Errorf("disk almost full: %d MiB free in %s, below storage.embedded.disk_reserve_mib (%d MiB)",
			free>>20, d.dir, d.size>>20)
	default:
		d.err = nil
	}
	return d.err
}
