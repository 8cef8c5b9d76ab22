// Package walmend makes a Prometheus TSDB write-ahead log (its wal/ and
// wbl/ directories) whole again after writes that failed, without
// needing free disk space, before the TSDB opens it.
//
// Why: a record that spans pages is written a page at a time. When one of
// those writes fails (a full disk), the TSDB's log keeps the pages it
// wrote and goes on with the next record on the next page, leaving the
// record torn: its first fragments, then a new record. The commit that
// wrote it failed, so it was never acknowledged. But when the TSDB opens
// the log, a torn record is corruption, and its repair drops the torn
// record and every segment after it, that is everything acknowledged
// after the failed write; the repair also rewrites the segment, which
// needs free space that a full disk does not have.
//
// Mend finds torn records and removes them in place: the fragments of a
// torn record that another record follows are overwritten with zeros,
// which the log's readers take as page padding (a torn record's fragments
// always run to the end of their last page), and a torn record at the end
// of a segment is truncated away. Neither allocates disk space. Anything
// else that does not parse (damage to the disk) is left for the TSDB's
// own repair.
//
// The format is Prometheus's (tsdb/wlog): 32 KiB pages holding fragments
// with a 7-byte header (type, big-endian uint16 length, big-endian
// CRC-32C of the payload); a record is one "full" fragment or a "first",
// any "middle" and a "last"; a zero type byte pads the rest of a page.
package walmend

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
)

const (
	pageSize   = 32 * 1024
	headerSize = 7

	typPageTerm = 0
	typFull     = 1
	typFirst    = 2
	typMiddle   = 3
	typLast     = 4
	typMask     = 7 // the upper bits flag compression
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Report says what Mend changed.
type Report struct {
	// Zeroed counts torn records overwritten with padding, Truncated
	// those cut off the end of a segment; Bytes is what they held.
	Zeroed, Truncated int
	Bytes             int64
}

// Mend mends the segments in dir, a TSDB's wal or wbl directory; a
// directory that does not exist has nothing to mend.
func Mend(dir string, logger *slog.Logger) (Report, error) {
	var rep Report
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return rep, nil
	}
	if err != nil {
		return rep, fmt.Errorf("walmend: %w", err)
	}
	var segs []int
	for _, e := range entries {
		if n, err := strconv.Atoi(e.Name()); err == nil && e.Type().IsRegular() && n >= 0 {
			segs = append(segs, n)
		}
	}
	slices.Sort(segs)
	for _, n := range segs {
		path := filepath.Join(dir, fmt.Sprintf("%08d", n))
		r, err := mendSegment(path)
		if err != nil {
			return rep, fmt.Errorf("walmend: segment %s: %w", path, err)
		}
		if r.Zeroed+r.Truncated > 0 {
			logger.Warn("Removed records torn by failed writes from the TSDB's write-ahead log; their commits had failed",
				"segment", path, "overwritten", r.Zeroed, "truncated", r.Truncated, "bytes", r.Bytes)
		}
		rep.Zeroed += r.Zeroed
		rep.Truncated += r.Truncated
		rep.Bytes += r.Bytes
	}
	return rep, nil
}

// span is a torn record: the byte range of its fragments.
type span struct{ start, end int64 }

func mendSegment(path string) (Report, error) {
	var rep Report
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return rep, err
	}
	defer f.Close()
	torn, tail, err := scan(f)
	if err != nil {
		return rep, err
	}
	for _, s := range torn {
		if err := zero(f, s); err != nil {
			return rep, err
		}
		rep.Zeroed++
		rep.Bytes += s.end - s.start
	}
	if tail != nil {
		if err := f.Truncate(tail.start); err != nil {
			return rep, err
		}
		rep.Truncated++
		rep.Bytes += tail.end - tail.start
	}
	if len(torn) > 0 || tail != nil {
		if err := f.Sync(); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// scan reads a segment page by page and returns its torn records: those
// another record follows, each ending at a page boundary, and the one at
// the end (also a fragment cut short by the end of the file), if any.
// It stops at the first thing that is not a torn record (a bad checksum,
// a fragment out of sequence): that is the TSDB's to repair.
func scan(f *os.File) (torn []span, tail *span, err error) {
	page := make([]byte, pageSize)
	pending := int64(-1) // start of the record being read
	var off int64
	for {
		n, err := io.ReadFull(f, page)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, err
		}
		p := page[:n]
		for i := 0; i < len(p); {
			at := off + int64(i)
			if p[i] == typPageTerm {
				for _, b := range p[i:] {
					if b != 0 {
						return torn, nil, nil // not padding: damage
					}
				}
				break
			}
			if i+headerSize > len(p) {
				if n < pageSize {
					// The file ends inside a header.
					return torn, tailFrom(pending, at, off+int64(n)), nil
				}
				return torn, nil, nil // a header across pages: damage
			}
			typ := p[i] & typMask
			length := int(binary.BigEndian.Uint16(p[i+1:]))
			sum := binary.BigEndian.Uint32(p[i+3:])
			end := i + headerSize + length
			if end > len(p) {
				if n < pageSize && end <= pageSize {
					// The file ends inside this fragment.
					return torn, tailFrom(pending, at, off+int64(n)), nil
				}
				return torn, nil, nil
			}
			if crc32.Checksum(p[i+headerSize:end], castagnoli) != sum {
				return torn, nil, nil
			}
			switch typ {
			case typFull, typFirst:
				if pending >= 0 {
					// A new record where the last one should have
					// continued: the last one is torn, and, as a first
					// fragment fills its page, ends at this page's start.
					if at%pageSize != 0 {
						return torn, nil, nil
					}
					torn = append(torn, span{pending, at})
					pending = -1
				}
				if typ == typFirst {
					pending = at
				}
			case typMiddle:
				if pending < 0 {
					return torn, nil, nil
				}
			case typLast:
				if pending < 0 {
					return torn, nil, nil
				}
				pending = -1
			default:
				return torn, nil, nil
			}
			i = end
		}
		off += int64(n)
		if n < pageSize {
			break
		}
	}
	return torn, tailFrom(pending, off, off), nil
}

// tailFrom is the torn tail of a segment of size bytes whose last
// fragment starts at at, with pending the start of an unfinished record.
func tailFrom(pending, at, size int64) *span {
	switch {
	case pending >= 0:
		return &span{pending, size}
	case at < size:
		return &span{at, size}
	}
	return nil
}

func zero(f *os.File, s span) error {
	buf := make([]byte, min(s.end-s.start, pageSize))
	for off := s.start; off < s.end; off += int64(len(buf)) {
		n := min(int64(len(buf)), s.end-off)
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return err
		}
	}
	return nil
}
