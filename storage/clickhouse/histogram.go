package clickhouse

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/prometheus/prometheus/model/histogram"
)

// Native histograms are stored in one String column in an encoding of our
// own: compact (varints for everything integral, int bucket counts kept as
// the deltas Prometheus already uses) and exact (floats as their IEEE-754
// bits, so a stale marker in Sum survives).
//
//	byte     format: 1 integer histogram, 2 float histogram
//	byte     counter reset hint
//	varint   schema
//	float64  zero threshold
//	count    zero count        (uvarint or float64)
//	count    count             (uvarint or float64)
//	float64  sum
//	spans    positive, negative: uvarint n, then n × (varint offset, uvarint length)
//	buckets  positive, negative: uvarint n, then n × (varint delta | float64)
//	floats   custom values: uvarint n, then n × float64
const (
	formatIntHistogram   = 1
	formatFloatHistogram = 2
)

func appendFloat(b []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
}

func appendSpans(b []byte, spans []histogram.Span) []byte {
	b = binary.AppendUvarint(b, uint64(len(spans)))
	for _, s := range spans {
		b = binary.AppendVarint(b, int64(s.Offset))
		b = binary.AppendUvarint(b, uint64(s.Length))
	}
	return b
}

func appendFloats(b []byte, fs []float64) []byte {
	b = binary.AppendUvarint(b, uint64(len(fs)))
	for _, f := range fs {
		b = appendFloat(b, f)
	}
	return b
}

// encodeHistogram appends the encoding of h to b.
func encodeHistogram(b []byte, h *histogram.Histogram) []byte {
	b = append(b, formatIntHistogram, byte(h.CounterResetHint))
	b = binary.AppendVarint(b, int64(h.Schema))
	b = appendFloat(b, h.ZeroThreshold)
	b = binary.AppendUvarint(b, h.ZeroCount)
	b = binary.AppendUvarint(b, h.Count)
	b = appendFloat(b, h.Sum)
	b = appendSpans(b, h.PositiveSpans)
	b = appendSpans(b, h.NegativeSpans)
	for _, bs := range [][]int64{h.PositiveBuckets, h.NegativeBuckets} {
		b = binary.AppendUvarint(b, uint64(len(bs)))
		for _, v := range bs {
			b = binary.AppendVarint(b, v)
		}
	}
	return appendFloats(b, h.CustomValues)
}

// encodeFloatHistogram appends the encoding of h to b.
func encodeFloatHistogram(b []byte, h *histogram.FloatHistogram) []byte {
	b = append(b, formatFloatHistogram, byte(h.CounterResetHint))
	b = binary.AppendVarint(b, int64(h.Schema))
	b = appendFloat(b, h.ZeroThreshold)
	b = appendFloat(b, h.ZeroCount)
	b = appendFloat(b, h.Count)
	b = appendFloat(b, h.Sum)
	b = appendSpans(b, h.PositiveSpans)
	b = appendSpans(b, h.NegativeSpans)
	b = appendFloats(b, h.PositiveBuckets)
	b = appendFloats(b, h.NegativeBuckets)
	return appendFloats(b, h.CustomValues)
}

var errShortHistogram = errors.New("truncated histogram encoding")

// histDecoder reads one encoded histogram; the first error sticks.
type histDecoder struct {
	b   []byte
	err error
}

func (d *histDecoder) byte() byte {
	if d.err != nil || len(d.b) < 1 {
		d.err = errShortHistogram
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *histDecoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShortHistogram
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *histDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShortHistogram
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *histDecoder) float() float64 {
	if d.err != nil || len(d.b) < 8 {
		d.err = errShortHistogram
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

// length reads a slice length and checks it against what is left, so a
// corrupt value cannot make us allocate gigabytes.
func (d *histDecoder) length(minElemSize int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minElemSize) {
		d.err = errShortHistogram
		return 0
	}
	return int(n)
}

func (d *histDecoder) spans(dst []histogram.Span) []histogram.Span {
	n := d.length(2)
	dst = dst[:0]
	for i := 0; i < n && d.err == nil; i++ {
		off := d.varint()
		l := d.uvarint()
		dst = append(dst, histogram.Span{Offset: int32(off), Length: uint32(l)})
	}
	if len(dst) == 0 {
		return nil
	}
	return dst
}

func (d *histDecoder) floats(dst []float64) []float64 {
	n := d.length(8)
	dst = dst[:0]
	for i := 0; i < n && d.err == nil; i++ {
		dst = append(dst, d.float())
	}
	if len(dst) == 0 {
		return nil
	}
	return dst
}

func (d *histDecoder) deltas(dst []int64) []int64 {
	n := d.length(1)
	dst = dst[:0]
	for i := 0; i < n && d.err == nil; i++ {
		dst = append(dst, d.varint())
	}
	if len(dst) == 0 {
		return nil
	}
	return dst
}

// histogramFormat returns the format byte of an encoded histogram.
func histogramFormat(b []byte) byte {
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// decodeHistogram decodes an integer histogram into h (reusing its slices).
func decodeHistogram(b []byte, h *histogram.Histogram) error {
	d := histDecoder{b: b}
	if f := d.byte(); d.err == nil && f != formatIntHistogram {
		return fmt.Errorf("histogram format %d is not an integer histogram", f)
	}
	h.CounterResetHint = histogram.CounterResetHint(d.byte())
	h.Schema = int32(d.varint())
	h.ZeroThreshold = d.float()
	h.ZeroCount = d.uvarint()
	h.Count = d.uvarint()
	h.Sum = d.float()
	h.PositiveSpans = d.spans(h.PositiveSpans)
	h.NegativeSpans = d.spans(h.NegativeSpans)
	h.PositiveBuckets = d.deltas(h.PositiveBuckets)
	h.NegativeBuckets = d.deltas(h.NegativeBuckets)
	h.CustomValues = d.floats(nil)
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes after histogram", len(d.b))
	}
	return d.err
}

// decodeFloatHistogram decodes either format into a float histogram.
func decodeFloatHistogram(b []byte, fh *histogram.FloatHistogram) error {
	if len(b) > 0 && b[0] == formatIntHistogram {
		var h histogram.Histogram
		if err := decodeHistogram(b, &h); err != nil {
			return err
		}
		h.ToFloat(fh)
		return nil
	}
	d := histDecoder{b: b}
	if f := d.byte(); d.err == nil && f != formatFloatHistogram {
		return fmt.Errorf("unknown histogram format %d", f)
	}
	fh.CounterResetHint = histogram.CounterResetHint(d.byte())
	fh.Schema = int32(d.varint())
	fh.ZeroThreshold = d.float()
	fh.ZeroCount = d.float()
	fh.Count = d.float()
	fh.Sum = d.float()
	fh.PositiveSpans = d.spans(fh.PositiveSpans)
	fh.NegativeSpans = d.spans(fh.NegativeSpans)
	fh.PositiveBuckets = d.floats(fh.PositiveBuckets)
	fh.NegativeBuckets = d.floats(fh.NegativeBuckets)
	fh.CustomValues = d.floats(nil)
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes after histogram", len(d.b))
	}
	return d.err
}
