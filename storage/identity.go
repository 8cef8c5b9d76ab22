package storage

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"maps"
	"slices"
)

// ID returns the identity of a log record: a digest of everything it
// carries. Log records have no id of their own, yet a replay after a
// failure must not store one twice, so every backend keys them by this.
func (r *LogRecord) ID() string {
	d := digest{h: sha256.New()}
	d.int(r.Timestamp.UnixNano())
	d.int(r.ObservedTimestamp.UnixNano())
	d.int(int64(r.SeverityNumber))
	for _, s := range []string{r.TraceID, r.SpanID, r.SeverityText, r.Body, r.ServiceName, r.ScopeName} {
		d.string(s)
	}
	d.labels(r.Attributes)
	d.labels(r.ResourceAttributes)
	return hex.EncodeToString(d.h.Sum(nil)[:16])
}

// digest feeds values into a hash unambiguously: every variable-length
// value is length-prefixed, so ("ab","c") and ("a","bc") differ.
type digest struct {
	h   hash.Hash
	buf [8]byte
}

func (d *digest) int(v int64) {
	binary.LittleEndian.PutUint64(d.buf[:], uint64(v))
	d.h.Write(d.buf[:])
}

func (d *digest) string(s string) {
	d.int(int64(len(s)))
	d.h.Write([]byte(s))
}

func (d *digest) labels(m map[string]string) {
	d.int(int64(len(m)))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		d.string(k)
		d.string(m[k])
	}
}
