package clickhouse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/metadata"
)

// A write-ahead log record is one committed batch, in the order the
// drain inserts it: the series rows the batch adds, its float samples,
// its histogram samples and its metadata changes. Numbers are
// little-endian fixed width in the sample columns (they are most of the
// bytes, and copying them is cheaper than varint coding) and uvarints
// elsewhere.
const walRecordV1 = 1

var errShortRecord = errors.New("record ends early")

// encodeBatch appends b's record to buf. metaTime stamps the metadata
// changes (metric_metadata.updated_at) with the commit's time, not the
// drain's.
func encodeBatch(buf []byte, b *batch, metaTime int64) []byte {
	buf = append(buf, walRecordV1)
	buf = binary.AppendUvarint(buf, uint64(len(b.newSeries)))
	for _, p := range b.newSeries {
		buf = binary.LittleEndian.AppendUint64(buf, p.key.fp)
		buf = binary.AppendVarint(buf, int64(p.key.day))
		buf = append(buf, p.key.kind)
		buf = binary.AppendUvarint(buf, uint64(p.ls.Len()))
		p.ls.Range(func(l labels.Label) {
			buf = appendString(buf, l.Name)
			buf = appendString(buf, l.Value)
		})
	}

	n := len(b.fps)
	buf = binary.AppendUvarint(buf, uint64(n))
	if n > 0 {
		for _, fp := range b.fps {
			buf = binary.LittleEndian.AppendUint64(buf, fp)
		}
		for _, t := range b.ts {
			buf = binary.LittleEndian.AppendUint64(buf, uint64(t))
		}
		for _, v := range b.vals {
			buf = binary.LittleEndian.AppendUint64(buf, math.Float64bits(v))
		}
		// Start timestamps are rare (cumulative OTLP sums); a batch
		// without any spends one byte on them.
		hasST := false
		for _, st := range b.sts {
			if st != 0 {
				hasST = true
				break
			}
		}
		if hasST {
			buf = append(buf, 1)
			for _, st := range b.sts {
				buf = binary.LittleEndian.AppendUint64(buf, uint64(st))
			}
		} else {
			buf = append(buf, 0)
		}
	}

	buf = binary.AppendUvarint(buf, uint64(len(b.hfps)))
	for i := range b.hfps {
		buf = binary.LittleEndian.AppendUint64(buf, b.hfps[i])
		buf = binary.AppendVarint(buf, b.hts[i])
		buf = binary.AppendVarint(buf, b.hsts[i])
		buf = appendString(buf, b.hdata[i])
	}

	buf = binary.AppendUvarint(buf, uint64(len(b.meta.pending)))
	if len(b.meta.pending) > 0 {
		buf = binary.AppendVarint(buf, metaTime)
		for family, md := range b.meta.pending {
			buf = appendString(buf, family)
			buf = appendString(buf, string(md.Type))
			buf = appendString(buf, md.Unit)
			buf = appendString(buf, md.Help)
		}
	}
	return buf
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// decodeBatch appends the record's rows to b, so that a drain can merge
// many records into one insert. Metadata of a later record replaces that
// of an earlier one for the same family. On error b may hold part of the
// record.
func decodeBatch(rec []byte, b *batch) error {
	d := recordDecoder{buf: rec}
	if v := d.byte(); v != walRecordV1 {
		if d.err != nil {
			return d.err
		}
		return fmt.Errorf("unknown record version %d", v)
	}
	nSeries := d.count(8 + 1 + 1 + 1)
	var lb labels.ScratchBuilder
	for range nSeries {
		var p pendingSeries
		p.key.fp = d.uint64()
		p.key.day = int32(d.varint())
		p.key.kind = d.byte()
		nl := d.count(2)
		lb.Reset()
		for range nl {
			name := d.string()
			lb.Add(name, d.string())
		}
		if d.err != nil {
			return d.err
		}
		p.ls = lb.Labels()
		b.newSeries = append(b.newSeries, p)
	}

	n := d.count(8 * 3)
	if n > 0 {
		for range n {
			b.fps = append(b.fps, d.uint64())
		}
		for range n {
			b.ts = append(b.ts, int64(d.uint64()))
		}
		for range n {
			b.vals = append(b.vals, math.Float64frombits(d.uint64()))
		}
		if d.byte() == 1 {
			for range n {
				b.sts = append(b.sts, int64(d.uint64()))
			}
		} else {
			b.sts = append(b.sts, make([]int64, n)...)
		}
	}

	nh := d.count(8 + 1 + 1 + 1)
	for range nh {
		b.hfps = append(b.hfps, d.uint64())
		b.hts = append(b.hts, d.varint())
		b.hsts = append(b.hsts, d.varint())
		b.hdata = append(b.hdata, d.string())
	}

	nm := d.count(4)
	if nm > 0 {
		b.metaTime = d.varint()
		if b.meta.pending == nil {
			b.meta.pending = map[string]metadata.Metadata{}
		}
		for range nm {
			family := d.string()
			md := metadata.Metadata{Type: model.MetricType(d.string()), Unit: d.string(), Help: d.string()}
			b.meta.pending[family] = md
		}
	}
	if d.err == nil && len(d.buf) > 0 {
		return fmt.Errorf("%d bytes after the record", len(d.buf))
	}
	return d.err
}

// recordDecoder reads a record; after the first error every read returns
// zero and err keeps that error.
type recordDecoder struct {
	buf []byte
	err error
}

func (d *recordDecoder) fail() {
	if d.err == nil {
		d.err = errShortRecord
	}
	d.buf = nil
}

func (d *recordDecoder) byte() byte {
	if len(d.buf) < 1 {
		d.fail()
		return 0
	}
	v := d.buf[0]
	d.buf = d.buf[1:]
	return v
}

func (d *recordDecoder) uint64() uint64 {
	if len(d.buf) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.buf)
	d.buf = d.buf[8:]
	return v
}

func (d *recordDecoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.buf)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

func (d *recordDecoder) varint() int64 {
	v, n := binary.Varint(d.buf)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.buf = d.buf[n:]
	return v
}

// count reads an element count, refusing one that the rest of the record
// cannot hold at minBytes each, so that a damaged count cannot make the
// decoder allocate without bound.
func (d *recordDecoder) count(minBytes int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.buf)/minBytes) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *recordDecoder) string() string {
	n := d.uvarint()
	if d.err != nil || n > uint64(len(d.buf)) {
		d.fail()
		return ""
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s
}
