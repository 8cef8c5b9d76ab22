package walmend

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/prometheus/prometheus/tsdb/wlog"
	"github.com/prometheus/prometheus/util/compression"

	"github.com/aiops-dev/aiops/internal/testutil"
)

// fragment encodes one fragment as the TSDB's log writes it.
func fragment(typ byte, payload []byte) []byte {
	b := make([]byte, headerSize, headerSize+len(payload))
	b[0] = typ
	binary.BigEndian.PutUint16(b[1:], uint16(len(payload)))
	binary.BigEndian.PutUint32(b[3:], crc32.Checksum(payload, castagnoli))
	return append(b, payload...)
}

// readAll reads every record of dir with the TSDB's own reader.
func readAll(t *testing.T, dir string) ([][]byte, error) {
	t.Helper()
	r, err := wlog.NewSegmentsReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rd := wlog.NewReader(r)
	var out [][]byte
	for rd.Next() {
		out = append(out, slices.Clone(rd.Record()))
	}
	return out, rd.Err()
}

// TestMendRemovesTornRecords writes a log with the TSDB's writer, adds
// what failed writes leave (a record torn in the middle of a segment,
// followed by a whole one, and a record cut short at its end), and
// checks that the TSDB's reader fails on it before Mend and reads every
// whole record after, and that a damaged record is left alone.
func TestMendRemovesTornRecords(t *testing.T) {
	dir := t.TempDir()
	w, err := wlog.NewSize(nil, nil, dir, 8*pageSize, compression.None)
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	for i, n := range []int{100, 80_000, 300} {
		rec := bytes.Repeat([]byte{byte('a' + i)}, n)
		if err := w.Log(rec); err != nil {
			t.Fatal(err)
		}
		want = append(want, rec)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(dir, "00000000")
	fi, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size()%pageSize != 0 {
		t.Fatalf("segment of %d bytes does not end at a page", fi.Size())
	}

	// A record torn after its first two pages, a whole record after it,
	// then a record whose last write was cut short.
	var tail []byte
	tail = append(tail, fragment(typFirst, bytes.Repeat([]byte{'t'}, pageSize-headerSize))...)
	tail = append(tail, fragment(typMiddle, bytes.Repeat([]byte{'t'}, pageSize-headerSize))...)
	whole := bytes.Repeat([]byte{'w'}, 500)
	tail = append(tail, fragment(typFull, whole)...)
	tail = append(tail, make([]byte, pageSize-len(fragment(typFull, whole)))...)
	tail = append(tail, fragment(typFirst, bytes.Repeat([]byte{'u'}, pageSize-headerSize))[:1000]...)
	f, err := os.OpenFile(seg, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(tail); err != nil {
		t.Fatal(err)
	}
	f.Close()
	want = append(want, whole)

	if _, err := readAll(t, dir); err == nil {
		t.Fatal("the TSDB's reader read the torn log without error; the test builds the wrong log")
	}
	rep, err := Mend(dir, testutil.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Zeroed != 1 || rep.Truncated != 1 {
		t.Errorf("Mend = %+v, want one record overwritten and one truncated", rep)
	}
	got, err := readAll(t, dir)
	if err != nil {
		t.Fatalf("reading the mended log: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d records after Mend, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("record %d differs after Mend", i)
		}
	}

	// Mending again changes nothing.
	if rep, err := Mend(dir, testutil.Discard()); err != nil || rep != (Report{}) {
		t.Errorf("second Mend = %+v, %v; want nothing to do", rep, err)
	}

	// Damage (a bad checksum) is not a torn record: left for the TSDB.
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[headerSize+10] ^= 0xff
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if rep, err := Mend(dir, testutil.Discard()); err != nil || rep != (Report{}) {
		t.Errorf("Mend of a damaged log = %+v, %v; want it left alone", rep, err)
	}
	after, _ := os.ReadFile(seg)
	if !bytes.Equal(after, b) {
		t.Error("Mend changed a damaged log")
	}
}

// TestMendWithoutLog is a no-op on a directory that does not exist (a
// TSDB without an out-of-order log).
func TestMendWithoutLog(t *testing.T) {
	rep, err := Mend(filepath.Join(t.TempDir(), "wbl"), testutil.Discard())
	if err != nil || rep != (Report{}) {
		t.Fatalf("Mend = %+v, %v", rep, err)
	}
}
