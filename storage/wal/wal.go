// Package wal is a write-ahead log of opaque records: appended by any
// number of writers, read back in order by one reader that marks how far
// it has applied them, and removed once applied.
//
// It is the point of durability of a store whose backend wants few large
// writes (ClickHouse): a write is acknowledged once its record is in the
// log, and the reader drains the log to the backend in large batches.
//
// Records live in numbered segment files (00000001, 00000002, …), each a
// sequence of frames: a 4-byte little-endian length, a 4-byte CRC-32C of
// the payload, the payload. A segment is cut when it would grow past
// Options.SegmentBytes, and on every Open. The reader's mark is kept in
// the file "applied" as two fixed-size slots written in turn, so that
// saving it never allocates disk space (a full disk cannot keep the log
// from freeing itself) and a torn write of one slot leaves the other.
//
// A record is in the log once Append returns without error: it has been
// written to the operating system, which keeps it across a crash of the
// process; with Options.Sync it has also been fsynced, which keeps it
// across a crash of the machine (appends waiting together share one
// fsync). A write that fails (a full disk) is undone by truncating the
// segment back to its last whole record, so nothing after it can be
// cut away by a later repair; until that succeeds, every Append fails.
// A torn frame at the end of a segment, which only a crash mid-write
// leaves, was never acknowledged: readers stop at it.
package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"

	"github.com/aiops-dev/aiops/internal/atomicfile"
)

// Options configure a Log.
type Options struct {
	// Dir holds the segments and the reader's mark; Open creates it.
	Dir string
	// SegmentBytes is the size after which a new segment is started.
	// 0 means 64 MiB.
	SegmentBytes int64
	// Sync makes Append return only once its record is fsynced.
	Sync   bool
	Logger *slog.Logger
}

// MaxRecordBytes bounds one record.
const MaxRecordBytes = 1 << 30

const (
	frameHeader         = 8
	defaultSegmentBytes = 64 << 20
	appliedFile         = "applied"
	slotBytes           = 32
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("wal: closed")

// Position is a place in the log: a segment and a byte offset in it.
type Position struct {
	Segment int
	Offset  int64
}

// Before reports whether p comes before q.
func (p Position) Before(q Position) bool {
	return p.Segment < q.Segment || p.Segment == q.Segment && p.Offset < q.Offset
}

func (p Position) String() string { return fmt.Sprintf("%d:%d", p.Segment, p.Offset) }

// Log is an open write-ahead log. It is safe for concurrent use, except
// that Read and MarkApplied, the reader's side, must be called by one
// goroutine at a time.
type Log struct {
	dir    string
	opts   Options
	logger *slog.Logger

	mu      sync.Mutex
	seg     *os.File
	end     Position // after the last whole record
	broken  error    // a failed write not yet undone
	closed  bool
	sizes   map[int]int64 // the length of every segment not yet removed
	applied Position
	slot    int    // the slot of "applied" written last
	markSeq uint64 // sequence number of the last mark written
	frame   []byte
	// changed is closed and replaced whenever end or applied moves.
	changed chan struct{}

	// syncMu orders fsyncs; unsynced holds segments cut since the last
	// one, kept open until they are synced.
	syncMu   sync.Mutex
	synced   Position
	unsynced []*os.File

	// The reader's open segment.
	rseg  int
	rfile *os.File
	rbuf  []byte

	marks *os.File
}

// Open opens the log in opts.Dir, creating it if needed. Segments the
// reader has applied wholly are removed, and a new segment is started.
func Open(opts Options) (*Log, error) {
	if opts.Dir == "" {
		return nil, errors.New("wal: no directory")
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = defaultSegmentBytes
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	l := &Log{dir: opts.Dir, opts: opts, logger: opts.Logger, sizes: map[int]int64{}, changed: make(chan struct{})}
	if err := l.openMarks(); err != nil {
		return nil, err
	}
	segs, err := l.segments()
	if err != nil {
		l.marks.Close()
		return nil, err
	}
	last := 0
	for _, n := range segs {
		if n < l.applied.Segment {
			if err := os.Remove(l.segPath(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
				l.logger.Warn("Removing an applied write-ahead log segment failed", "segment", n, "err", err)
			}
			continue
		}
		fi, err := os.Stat(l.segPath(n))
		if err != nil {
			l.marks.Close()
			return nil, fmt.Errorf("wal: %w", err)
		}
		l.sizes[n] = fi.Size()
		last = n
	}
	if last > 0 {
		if err := l.repairTail(last); err != nil {
			l.marks.Close()
			return nil, err
		}
	}
	next := max(last, l.applied.Segment) + 1
	if err := l.cut(next); err != nil {
		l.marks.Close()
		return nil, err
	}
	l.synced = l.end
	return l, nil
}

// segments lists the segment numbers in the directory, ascending.
func (l *Log) segments() ([]int, error) {
	entries, err := os.ReadDir(l.dir)
	if err != nil {
		return nil, fmt.Errorf("wal: %w", err)
	}
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil || n <= 0 || len(e.Name()) != 8 {
			continue
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

func (l *Log) segPath(n int) string { return filepath.Join(l.dir, fmt.Sprintf("%08d", n)) }

// repairTail cuts a torn frame off the end of the last segment, which
// only a crash in the middle of a write leaves. Truncating never needs
// free space.
func (l *Log) repairTail(n int) error {
	f, err := os.OpenFile(l.segPath(n), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	defer f.Close()
	valid, err := validLength(f, l.sizes[n])
	if err != nil {
		return fmt.Errorf("wal: segment %d: %w", n, err)
	}
	if valid == l.sizes[n] {
		return nil
	}
	l.logger.Warn("Cutting a torn record off the write-ahead log; it was never acknowledged",
		"segment", n, "offset", valid, "bytes", l.sizes[n]-valid)
	if err := f.Truncate(valid); err != nil {
		return fmt.Errorf("wal: segment %d: repair: %w", n, err)
	}
	l.sizes[n] = valid
	return nil
}

// validLength is the length of the whole frames at the start of f.
func validLength(f *os.File, size int64) (int64, error) {
	var off int64
	var hdr [frameHeader]byte
	var buf []byte
	for off+frameHeader <= size {
		if _, err := f.ReadAt(hdr[:], off); err != nil {
			return 0, err
		}
		n := int64(binary.LittleEndian.Uint32(hdr[:4]))
		if n > MaxRecordBytes || off+frameHeader+n > size {
			break
		}
		buf = slices.Grow(buf[:0], int(n))[:n]
		if _, err := f.ReadAt(buf, off+frameHeader); err != nil {
			return 0, err
		}
		if crc32.Checksum(buf, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
			break
		}
		off += frameHeader + n
	}
	return off, nil
}

// cut starts segment n. Callers hold mu, or are Open.
func (l *Log) cut(n int) error {
	f, err := os.OpenFile(l.segPath(n), os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("wal: start segment %d: %w", n, err)
	}
	if old := l.seg; old != nil {
		if l.opts.Sync {
			l.unsynced = append(l.unsynced, old)
		} else {
			old.Close()
		}
	}
	l.seg = f
	l.end = Position{Segment: n}
	l.sizes[n] = 0
	if l.opts.Sync {
		// The new file's directory entry must survive a machine crash
		// too, or its records would vanish with it.
		if err := atomicfile.SyncDir(l.dir); err != nil {
			return fmt.Errorf("wal: start segment %d: %w", n, err)
		}
	}
	return nil
}

// Append writes rec as the next record. When it returns nil the record
// is in the log (see the package comment for what survives what). When
// it fails, the record is not in the log, and neither is any later one
// until an Append succeeds again.
func (l *Log) Append(rec []byte) (Position, error) {
	if len(rec) > MaxRecordBytes {
		return Position{}, fmt.Errorf("wal: record of %d bytes is over the limit of %d", len(rec), MaxRecordBytes)
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return Position{}, ErrClosed
	}
	if err := l.mend(); err != nil {
		l.mu.Unlock()
		return Position{}, err
	}
	size := int64(frameHeader + len(rec))
	if l.end.Offset > 0 && l.end.Offset+size > l.opts.SegmentBytes {
		if err := l.cut(l.end.Segment + 1); err != nil {
			l.mu.Unlock()
			return Position{}, err
		}
	}
	l.frame = slices.Grow(l.frame[:0], int(size))[:frameHeader]
	binary.LittleEndian.PutUint32(l.frame[:4], uint32(len(rec)))
	binary.LittleEndian.PutUint32(l.frame[4:], crc32.Checksum(rec, castagnoli))
	l.frame = append(l.frame, rec...)
	if _, err := l.seg.Write(l.frame); err != nil {
		l.broken = err
		mendErr := l.mend()
		l.mu.Unlock()
		if mendErr != nil {
			return Position{}, fmt.Errorf("wal: append: %w (and undoing it failed: %w)", err, mendErr)
		}
		return Position{}, fmt.Errorf("wal: append: %w", err)
	}
	l.end.Offset += size
	l.sizes[l.end.Segment] = l.end.Offset
	end := l.end
	l.notify()
	if len(l.frame) > 1<<20 {
		l.frame = nil // do not keep a rare huge record's buffer
	}
	l.mu.Unlock()
	if l.opts.Sync {
		if err := l.sync(end); err != nil {
			return Position{}, err
		}
	}
	return end, nil
}

// mend undoes a failed write: the segment is truncated back to its last
// whole record (which needs no free space), or, if that fails, a new
// segment is started after it. Callers hold mu.
func (l *Log) mend() error {
	if l.broken == nil {
		return nil
	}
	if err := l.seg.Truncate(l.end.Offset); err == nil {
		l.broken = nil
		return nil
	}
	// Readers stop at the torn frame the failed write left.
	if err := l.cut(l.end.Segment + 1); err != nil {
		return fmt.Errorf("wal: log is not whole after a failed write (%w), and a new segment could not be started: %w", l.broken, err)
	}
	l.broken = nil
	return nil
}

// sync makes every record up to end durable, with one fsync for all the
// appends waiting.
func (l *Log) sync(end Position) error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if !l.synced.Before(end) {
		return nil
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	cur, target := l.seg, l.end
	old := l.unsynced
	l.unsynced = nil
	l.mu.Unlock()
	for _, f := range old {
		err := f.Sync()
		f.Close()
		if err != nil {
			return fmt.Errorf("wal: fsync: %w", err)
		}
	}
	if err := cur.Sync(); err != nil {
		return fmt.Errorf("wal: fsync: %w", err)
	}
	l.synced = target
	return nil
}

// notify wakes whoever waits for the log to change. Callers hold mu.
func (l *Log) notify() {
	close(l.changed)
	l.changed = make(chan struct{})
}

// State is where the log stands.
type State struct {
	// End is after the last record; Applied is the reader's mark.
	End, Applied Position
	// Pending is the bytes of records appended and not yet applied.
	Pending int64
	// Changed is closed when End or Applied next moves.
	Changed <-chan struct{}
}

// State returns where the log stands.
func (l *Log) State() State {
	l.mu.Lock()
	defer l.mu.Unlock()
	var pending int64
	for n, size := range l.sizes {
		switch {
		case n > l.applied.Segment:
			pending += size
		case n == l.applied.Segment:
			pending += max(size-l.applied.Offset, 0)
		}
	}
	return State{End: l.end, Applied: l.applied, Pending: pending, Changed: l.changed}
}

// Read calls fn with each record from pos on, in order, until it has
// read maxBytes (at least one record) or reached the end, and returns
// the position after the last record it read. The slice fn gets is
// reused after fn returns. If fn fails, Read stops and returns the
// position of that record with the error.
func (l *Log) Read(pos Position, maxBytes int64, fn func(rec []byte) error) (Position, error) {
	st := l.State()
	var read int64
	for pos.Before(st.End) && (read == 0 || read < maxBytes) {
		l.mu.Lock()
		size, ok := l.sizes[pos.Segment]
		l.mu.Unlock()
		if !ok || pos.Offset >= size {
			if pos.Segment >= st.End.Segment {
				break
			}
			pos = Position{Segment: pos.Segment + 1}
			continue
		}
		if err := l.openReader(pos.Segment); err != nil {
			return pos, err
		}
		var hdr [frameHeader]byte
		n := int64(-1)
		if pos.Offset+frameHeader <= size {
			if _, err := l.rfile.ReadAt(hdr[:], pos.Offset); err != nil {
				return pos, fmt.Errorf("wal: read segment %d: %w", pos.Segment, err)
			}
			n = int64(binary.LittleEndian.Uint32(hdr[:4]))
		}
		if n < 0 || n > MaxRecordBytes || pos.Offset+frameHeader+n > size {
			l.skipRest(pos, size, "a torn record")
			pos = Position{Segment: pos.Segment + 1}
			continue
		}
		l.rbuf = slices.Grow(l.rbuf[:0], int(n))[:n]
		if _, err := l.rfile.ReadAt(l.rbuf, pos.Offset+frameHeader); err != nil && !errors.Is(err, io.EOF) {
			return pos, fmt.Errorf("wal: read segment %d: %w", pos.Segment, err)
		}
		if crc32.Checksum(l.rbuf, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
			l.skipRest(pos, size, "a record whose checksum does not match")
			pos = Position{Segment: pos.Segment + 1}
			continue
		}
		if err := fn(l.rbuf); err != nil {
			return pos, err
		}
		pos.Offset += frameHeader + n
		read += frameHeader + n
	}
	if cap(l.rbuf) > 16<<20 {
		l.rbuf = nil
	}
	return pos, nil
}

// skipRest reports that a segment's records end early. Only a write that
// failed, or a crash during one, leaves a bad frame, and only at the end
// of a segment; anything else is damage to the disk.
func (l *Log) skipRest(pos Position, size int64, what string) {
	l.logger.Warn("Write-ahead log segment ends in "+what+"; it was never acknowledged, skipping to the next segment",
		"segment", pos.Segment, "offset", pos.Offset, "bytes_skipped", size-pos.Offset)
}

func (l *Log) openReader(n int) error {
	if l.rfile != nil && l.rseg == n {
		return nil
	}
	if l.rfile != nil {
		l.rfile.Close()
		l.rfile = nil
	}
	f, err := os.Open(l.segPath(n))
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	l.rfile, l.rseg = f, n
	return nil
}

// MarkApplied records that every record before pos has been applied:
// they are not read again after a restart, and segments wholly before
// pos are removed. It needs no free disk space.
func (l *Log) MarkApplied(pos Position) error {
	l.mu.Lock()
	if pos.Before(l.applied) {
		l.mu.Unlock()
		return fmt.Errorf("wal: mark %s is before the current one, %s", pos, l.applied)
	}
	if l.end.Before(pos) {
		l.mu.Unlock()
		return fmt.Errorf("wal: mark %s is after the end, %s", pos, l.end)
	}
	err := l.writeMark(pos)
	if err == nil {
		l.applied = pos
		l.notify()
	}
	if err == nil && pos == l.end && l.end.Offset >= l.opts.SegmentBytes/16 && l.broken == nil {
		// Everything is applied: start a new segment, so that the
		// space of this one comes back now rather than when it is full.
		// On a full disk that is the space appends wait for.
		if cutErr := l.cut(l.end.Segment + 1); cutErr == nil {
			l.applied = l.end
			if err = l.writeMark(l.applied); err != nil {
				l.applied = pos
			}
		}
	}
	var remove []int
	for n := range l.sizes {
		if n < l.applied.Segment {
			remove = append(remove, n)
			delete(l.sizes, n)
		}
	}
	l.mu.Unlock()
	if err != nil {
		return err
	}
	for _, n := range remove {
		if l.rfile != nil && l.rseg == n {
			l.rfile.Close()
			l.rfile = nil
		}
		if err := os.Remove(l.segPath(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.logger.Warn("Removing an applied write-ahead log segment failed", "segment", n, "err", err)
		}
	}
	return nil
}

// openMarks opens "applied", creating it with both slots empty, and
// reads the newest valid slot.
func (l *Log) openMarks() error {
	path := filepath.Join(l.dir, appliedFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		// Written in full under a temporary name first, so that the file
		// always has both slots allocated.
		if err := atomicfile.Write(path, make([]byte, 2*slotBytes), 0o600); err != nil {
			return fmt.Errorf("wal: create %s: %w", appliedFile, err)
		}
		f, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return fmt.Errorf("wal: %w", err)
	}
	var buf [2 * slotBytes]byte
	if _, err := f.ReadAt(buf[:], 0); err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return fmt.Errorf("wal: read %s: %w", appliedFile, err)
	}
	l.marks = f
	for i := range 2 {
		seq, pos, ok := decodeSlot(buf[i*slotBytes : (i+1)*slotBytes])
		if ok && seq > l.markSeq {
			l.markSeq, l.applied, l.slot = seq, pos, i
		}
	}
	return nil
}

// A slot is seq (8 bytes), segment (8), offset (8), CRC-32C of those (4).
func decodeSlot(b []byte) (uint64, Position, bool) {
	if crc32.Checksum(b[:24], castagnoli) != binary.LittleEndian.Uint32(b[24:28]) {
		return 0, Position{}, false
	}
	seq := binary.LittleEndian.Uint64(b)
	if seq == 0 {
		return 0, Position{}, false
	}
	return seq, Position{Segment: int(binary.LittleEndian.Uint64(b[8:])), Offset: int64(binary.LittleEndian.Uint64(b[16:]))}, true
}

// writeMark writes pos into the slot not written last, so that a torn
// write leaves the previous mark. Callers hold mu.
func (l *Log) writeMark(pos Position) error {
	var b [slotBytes]byte
	seq := l.markSeq + 1
	binary.LittleEndian.PutUint64(b[:], seq)
	binary.LittleEndian.PutUint64(b[8:], uint64(pos.Segment))
	binary.LittleEndian.PutUint64(b[16:], uint64(pos.Offset))
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
	slot := 1 - l.slot
	if _, err := l.marks.WriteAt(b[:], int64(slot*slotBytes)); err != nil {
		return fmt.Errorf("wal: write %s: %w", appliedFile, err)
	}
	if l.opts.Sync {
		if err := l.marks.Sync(); err != nil {
			return fmt.Errorf("wal: fsync %s: %w", appliedFile, err)
		}
	}
	l.slot, l.markSeq = slot, seq
	return nil
}

// Close closes the log; records not applied stay for the next Open.
func (l *Log) Close() error {
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	var errs []error
	for _, f := range l.unsynced {
		if l.opts.Sync {
			errs = append(errs, f.Sync())
		}
		errs = append(errs, f.Close())
	}
	l.unsynced = nil
	if l.opts.Sync {
		errs = append(errs, l.seg.Sync())
	}
	errs = append(errs, l.seg.Close(), l.marks.Close())
	if l.rfile != nil {
		errs = append(errs, l.rfile.Close())
	}
	l.notify()
	return errors.Join(errs...)
}
