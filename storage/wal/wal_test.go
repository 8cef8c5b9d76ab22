package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

func open(t *testing.T, dir string, mutate ...func(*Options)) *Log {
	t.Helper()
	opts := Options{Dir: dir, SegmentBytes: 4096}
	for _, m := range mutate {
		m(&opts)
	}
	l, err := Open(opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func record(writer, i int) []byte {
	return fmt.Appendf(nil, "w%d-r%d-%s", writer, i, bytes.Repeat([]byte{'x'}, i%300))
}

// readAll reads every record from pos to the end.
func readAll(t *testing.T, l *Log, pos Position) ([]string, Position) {
	t.Helper()
	var out []string
	for {
		next, err := l.Read(pos, 1000, func(rec []byte) error {
			out = append(out, string(rec))
			return nil
		})
		if err != nil {
			t.Fatalf("read from %s: %v", pos, err)
		}
		if next == pos {
			return out, pos
		}
		pos = next
	}
}

// TestAppendReadMarkReopen: records of concurrent writers come back whole
// and in each writer's order, across many segments; what is marked
// applied is neither read again after a reopen nor kept on disk, and
// what is not is read again.
func TestAppendReadMarkReopen(t *testing.T) {
	for _, fsync := range []bool{false, true} {
		t.Run(fmt.Sprintf("sync=%v", fsync), func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir, func(o *Options) { o.Sync = fsync })
			const writers, per = 4, 200
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range per {
						if _, err := l.Append(record(w, i)); err != nil {
							t.Errorf("append: %v", err)
							return
						}
					}
				})
			}
			wg.Wait()
			got, end := readAll(t, l, l.State().Applied)
			checkOrder(t, got, writers, per)
			if st := l.State(); st.End != end || st.Pending == 0 {
				t.Fatalf("read to %s, state %+v", end, st)
			}

			// Mark half applied, reopen: only the other half comes back.
			half := Position{}
			n := 0
			pos := l.State().Applied
			for n < len(got)/2 {
				next, err := l.Read(pos, 1, func([]byte) error { n++; return nil })
				if err != nil {
					t.Fatal(err)
				}
				pos = next
			}
			half = pos
			if err := l.MarkApplied(half); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			l2 := open(t, dir)
			rest, _ := readAll(t, l2, l2.State().Applied)
			if len(rest) != len(got)-n || rest[0] != got[n] || rest[len(rest)-1] != got[len(got)-1] {
				t.Fatalf("after reopen read %d records from %q, want %d from %q", len(rest), rest[0], len(got)-n, got[n])
			}
			segs, _ := l2.segments()
			if segs[0] != half.Segment {
				t.Fatalf("segments %v kept; those before %d are applied", segs, half.Segment)
			}

			// Everything applied: only the new empty segment is left.
			if err := l2.MarkApplied(l2.State().End); err != nil {
				t.Fatal(err)
			}
			if st := l2.State(); st.Pending != 0 {
				t.Fatalf("pending %d after marking the end", st.Pending)
			}
			if segs, _ := l2.segments(); len(segs) != 1 {
				t.Fatalf("segments %v left after everything was applied", segs)
			}
		})
	}
}

func checkOrder(t *testing.T, got []string, writers, per int) {
	t.Helper()
	if len(got) != writers*per {
		t.Fatalf("read %d records, want %d", len(got), writers*per)
	}
	next := make([]int, writers)
	for _, r := range got {
		var w, i int
		if _, err := fmt.Sscanf(r, "w%d-r%d-", &w, &i); err != nil {
			t.Fatalf("record %q: %v", r, err)
		}
		if i != next[w] || r != string(record(w, i)) {
			t.Fatalf("writer %d: got record %d (%d bytes), want %d", w, i, len(r), next[w])
		}
		next[w]++
	}
}

// TestTornTail: a crash in the middle of a write leaves part of a frame
// at the end of the last segment; Open cuts it off, and records written
// after it are read normally.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, func(o *Options) { o.SegmentBytes = 1 << 20 })
	for i := range 10 {
		if _, err := l.Append(record(0, i)); err != nil {
			t.Fatal(err)
		}
	}
	seg := l.State().End.Segment
	l.Close()
	// A frame header promising 100 bytes, then 10 of them.
	f, err := os.OpenFile(l.segPath(seg), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var hdr [frameHeader]byte
	binary.LittleEndian.PutUint32(hdr[:], 100)
	f.Write(append(hdr[:], make([]byte, 10)...))
	f.Close()

	l2 := open(t, dir)
	fi, _ := os.Stat(l2.segPath(seg))
	if want := l2.sizes[seg]; fi.Size() != want {
		t.Fatalf("segment is %d bytes after repair, want %d", fi.Size(), want)
	}
	if _, err := l2.Append(record(0, 10)); err != nil {
		t.Fatal(err)
	}
	got, _ := readAll(t, l2, Position{})
	checkOrder(t, got, 1, 11)
}

// TestDamagedSegment: a record whose checksum does not match ends its
// segment for the reader, who goes on with the next one.
func TestDamagedSegment(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, func(o *Options) { o.SegmentBytes = 1 << 20 })
	l.Append([]byte("first"))
	p, _ := l.Append([]byte("second"))
	l.Append([]byte("third"))
	seg := p.Segment
	l.Close()
	l = open(t, dir)
	l.Append([]byte("fourth"))
	// Flip a byte of "second"'s payload.
	f, err := os.OpenFile(l.segPath(seg), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	off := int64(frameHeader + len("first") + frameHeader)
	f.WriteAt([]byte{'S'}, off)
	f.Close()
	got, _ := readAll(t, l, Position{})
	if want := []string{"first", "fourth"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("read %q, want %q", got, want)
	}
}

// TestMarkSurvivesTornSlot: the mark is written to alternate slots, so a
// torn write of one leaves the previous mark.
func TestMarkSurvivesTornSlot(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir, func(o *Options) { o.SegmentBytes = 1 << 20 })
	p1, _ := l.Append([]byte("a"))
	p2, _ := l.Append([]byte("b"))
	l.Append([]byte("c"))
	if err := l.MarkApplied(p1); err != nil {
		t.Fatal(err)
	}
	if err := l.MarkApplied(p2); err != nil {
		t.Fatal(err)
	}
	slot := l.slot
	l.Close()
	f, err := os.OpenFile(filepath.Join(dir, appliedFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte{0xff, 0xff}, int64(slot*slotBytes+10))
	f.Close()
	l2 := open(t, dir)
	if got := l2.State().Applied; got != p1 {
		t.Fatalf("mark after a torn slot: %s, want the previous one, %s", got, p1)
	}
	got, _ := readAll(t, l2, l2.State().Applied)
	if fmt.Sprint(got) != "[b c]" {
		t.Fatalf("read %q", got)
	}
}

// TestDiskFull runs the log on a tmpfs of 512 KiB: an append the disk
// cannot hold fails and leaves nothing behind; once another file frees
// space, appends succeed again in the same segment; every append that
// succeeded is read back, before and after a reopen, in order; reopening
// a full disk needs no space, and marking records applied frees it.
func TestDiskFull(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount a 512 KiB tmpfs (the test needs root, as CI runs): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mnt, "wal")
	l := open(t, dir, func(o *Options) { o.SegmentBytes = 1 << 20 })

	var acked []string
	fill := func(tag string) error {
		for i := 0; ; i++ {
			// Sizes that straddle pages, so that failed writes are
			// partial.
			rec := fmt.Appendf(nil, "%s%05d-%s", tag, i, bytes.Repeat([]byte{'p'}, 1000+i*37%5000))
			if _, err := l.Append(rec); err != nil {
				return err
			}
			acked = append(acked, string(rec))
		}
	}
	if err := fill("a"); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v, want ENOSPC", err)
	}
	// Failing again changes nothing.
	if _, err := l.Append(bytes.Repeat([]byte{'q'}, 100_000)); err == nil {
		t.Fatal("a 100 kB record fit on a full disk")
	}
	// check reads what is not applied yet: all that was acknowledged
	// since the last mark.
	check := func(when string) {
		t.Helper()
		got, _ := readAll(t, l, l.State().Applied)
		if fmt.Sprint(got) != fmt.Sprint(acked) {
			t.Fatalf("%s: read %d records, %d were acknowledged", when, len(got), len(acked))
		}
	}
	check("on the full disk")

	// Space comes back: appends go on in the same segment.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	seg := l.State().End.Segment
	if err := fill("b"); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v, want ENOSPC", err)
	}
	if l.State().End.Segment != seg {
		t.Fatalf("appends moved from segment %d to %d", seg, l.State().End.Segment)
	}
	check("after space came back")

	// Applying everything gives the space back at once, without a
	// reopen: the log moves to a new segment.
	if err := l.MarkApplied(l.State().End); err != nil {
		t.Fatalf("mark applied on a full disk: %v", err)
	}
	big := bytes.Repeat([]byte{'r'}, 100_000)
	if _, err := l.Append(big); err != nil {
		t.Fatalf("append after everything was applied: %v", err)
	}
	acked = []string{string(big)}
	if err := fill("c"); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("append on a full disk: %v, want ENOSPC", err)
	}
	check("after space came back twice")

	// Reopening on the full disk needs no space.
	if err := l.Close(); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	l = open(t, dir)
	check("after reopening")

	// Applying frees whole segments, after which appends succeed again.
	if err := l.MarkApplied(l.State().End); err != nil {
		t.Fatalf("mark applied on a full disk: %v", err)
	}
	if _, err := l.Append([]byte("after")); err != nil {
		t.Fatalf("append after space was freed: %v", err)
	}
	got, _ := readAll(t, l, l.State().Applied)
	if fmt.Sprint(got) != "[after]" {
		t.Fatalf("read %q", got)
	}
}
