package alertmanager

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/aiops-dev/aiops/internal/atomicfile"
)

// maxMessageBytes is the largest message Alertmanager's snapshots can be
// read back with (protodelim's default limit, which silence.New and
// nflog.New use): one silence, or one notification log entry.
const maxMessageBytes = 4 << 20

// StateError is an error reading or writing the state kept in
// Options.DataDir (silences, notification log, alerts), as opposed to the
// configuration.
type StateError struct {
	File string
	Err  error
}

func (e *StateError) Error() string { return e.File + ": " + e.Err.Error() }
func (e *StateError) Unwrap() error { return e.Err }

// snapshotFile keeps a state on disk as a snapshot file, written whole
// and replaced atomically (temporary file, fsync, rename, fsync of the
// directory), so that a crash leaves the previous snapshot or the new one.
//
// Save returns once a snapshot taken after it was called is on disk: a
// change made before Save is durable when it returns. Saves that wait
// together share one write, so that a burst of changes costs a few
// writes, not one each.
type snapshotFile struct {
	path   string
	logger *slog.Logger
	// write writes the whole state.
	write func(io.Writer) (int64, error)
	// delimited says that the snapshot is a sequence of length-delimited
	// protobuf messages, each of which must stay under maxMessageBytes to
	// be read back.
	delimited bool

	mu      sync.Mutex
	cond    *sync.Cond
	started uint64 // snapshots begun
	done    uint64 // the latest snapshot finished
	running bool
	size    int64
	err     error // of the latest snapshot finished
}

func newSnapshotFile(path string, delimited bool, write func(io.Writer) (int64, error), logger *slog.Logger) *snapshotFile {
	f := &snapshotFile{path: path, write: write, delimited: delimited, logger: logger}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// Save writes a snapshot that includes every change made before it was
// called and returns its size.
func (f *snapshotFile) Save() (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	// The snapshot running now may have been taken before the caller's
	// change: wait for one that starts from here on.
	want := f.started + 1
	for f.done < want {
		if f.running {
			f.cond.Wait()
			continue
		}
		f.running = true
		f.started++
		gen := f.started
		f.mu.Unlock()
		size, err := f.writeFile()
		f.mu.Lock()
		f.running = false
		f.done, f.size, f.err = gen, size, err
		f.cond.Broadcast()
	}
	return f.size, f.err
}

func (f *snapshotFile) writeFile() (int64, error) {
	var buf bytes.Buffer
	if _, err := f.write(&buf); err != nil {
		return 0, &StateError{File: f.path, Err: fmt.Errorf("snapshot: %w", err)}
	}
	data := buf.Bytes()
	if f.delimited {
		var dropped int
		data, dropped = keepReadable(data)
		if dropped > 0 {
			f.logger.Error("Left entries out of a snapshot: each is larger than can be read back", "file", f.path, "entries", dropped, "limit_bytes", maxMessageBytes)
		}
	}
	if err := atomicfile.Write(f.path, data, 0o600); err != nil {
		return 0, &StateError{File: f.path, Err: err}
	}
	return int64(len(data)), nil
}

// keepReadable returns the length-delimited messages of data that are
// no larger than maxMessageBytes, and how many it left out. Anything
// after a malformed length is left out too.
func keepReadable(data []byte) ([]byte, int) {
	out := data[:0:0]
	dropped := 0
	for len(data) > 0 {
		n, l := protowire.ConsumeVarint(data)
		if l < 0 || uint64(len(data)-l) < n {
			dropped++
			break
		}
		end := l + int(n)
		if n <= maxMessageBytes {
			out = append(out, data[:end]...)
		} else {
			dropped++
		}
		data = data[end:]
	}
	return out, dropped
}

// loadReadable reads a snapshot of length-delimited messages, leaving out
// those too large to be read back (an older aiops wrote them): the rest
// of the state still loads. A missing file is an empty state (nil).
func loadReadable(path string, logger *slog.Logger) (io.Reader, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, &StateError{File: path, Err: err}
	}
	kept, dropped := keepReadable(data)
	if dropped > 0 {
		logger.Error("Left entries of a snapshot out: each is larger than can be read", "file", path, "entries", dropped, "limit_bytes", maxMessageBytes)
	}
	return bytes.NewReader(kept), nil
}
