package clickhouse

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"hash/maphash"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// The span head.
//
// A trace read from ClickHouse costs two or three queries, each a round
// trip of 1.2–1.6 ms through clickhouse-go plus milliseconds of server
// time (docs/BENCHMARKS.md, issue 16). So a process that reads traces
// keeps the spans from head_start on in memory, grouped by trace, and
// answers a read whose data lies wholly in [head_start, ∞) without
// asking ClickHouse.
//
// It follows the spans table the way the sample head follows
// metric_samples: a sync lists the table's active parts and reads the
// rows from head_start on of the parts holding block numbers it has not
// read. A part merged away before the sync could confirm it read it makes
// the head incomplete, and reads ask ClickHouse until the next sync has
// read its successor. Partitions (days) that disappear were dropped by
// retention: head_start moves past them. The process's own spans enter as
// their insert commits; other writers' when a sync finds them, and syncs
// run at most every clickhouse.span_head_refresh (1 s by default), so a
// read costs no round trip: the bound on how stale a read may be, as
// Elasticsearch's refresh interval and Jaeger's own collectors (which
// batch spans for a second or more) set one.
//
// Memory is bounded by clickhouse.span_head_mib: past it, the oldest hour
// leaves and head_start moves to the next one. Each span is kept encoded
// (span.encode: ids in binary, repeated strings as numbers in a
// dictionary) in a block per trace and hour, and decoded when read; a
// search finds its spans through per-service lists sorted by start time,
// per hour.
//
// A trace may have spans both after and before head_start; the head then
// holds only some of them. To answer a read by trace id without a query,
// the head must know the trace has no span before head_start. It keeps a
// Bloom filter of the trace ids that have: loaded on the first read by
// trace id from trace_index (rows with start_min before head_start: a
// trace's index rows are committed before its spans), fed the traces of
// every hour it evicts, the older spans this process writes and those
// syncs find in new parts. A trace the filter may hold is read from
// ClickHouse; one it cannot hold is answered from the head, found or not.
//
// When everything fits at the first load, head_start is -∞ and no filter
// is needed. The head loads on the first trace read, so a process that
// only writes (an ingester) keeps nothing.

// spanRow is a span in the form of the spans table's columns.
type spanRow struct {
	traceID, spanID, parent, name, kind, service, scope string
	start, end                                          int64
	status, statusMsg                                   string
	attrKeys, attrVals, resKeys, resVals                []string
	details                                             string
	eventKeys, eventVals                                []string
}

const (
	nsPerHour = int64(time.Hour)
	// Rough costs of the head's structures besides their slices' contents:
	// a trace (struct, map slot, id), a chunk (struct, slot in its trace),
	// an hour's service list (map slot, slice header), a dictionary entry.
	spanTraceOverhead = 112
	spanChunkOverhead = 120
	spanListOverhead  = 64
	spanDictOverhead  = 64
	// spanRefSize is the size of a spanRef.
	spanRefSize = 24
	// spanHeadEstimate is what a span costs in the head, to choose
	// head_start before loading: aiops-bench traces' spans (four
	// attributes, two resource attributes) take 214 bytes
	// (docs/BENCHMARKS.md). Too low an estimate loads more and evicts the
	// oldest hours; too high a one would leave the budget unused, since
	// head_start only moves forward.
	spanHeadEstimate = 200
	// keySetMin is the spans of a chunk from which it keeps its keys in a
	// map as well: a replayed insert of a large trace then checks each
	// span in constant time.
	keySetMin = 64
)

// hourOfNs is the start of the hour holding ns.
func hourOfNs(ns int64) int64 { return floorDiv(ns, nsPerHour) * nsPerHour }

// spanDict numbers the strings that repeat across spans: names, kinds,
// services, scopes, statuses, attribute keys, resource attribute values.
type spanDict struct {
	ids  map[string]uint32
	strs []string
}

func (d *spanDict) id(s string) (uint32, int64) {
	if id, ok := d.ids[s]; ok {
		return id, 0
	}
	id := uint32(len(d.strs))
	d.ids[s] = id
	d.strs = append(d.strs, s)
	return id, int64(len(s)) + spanDictOverhead
}

// lookup is the number of s, or false when no span has it.
func (d *spanDict) lookup(s string) (uint32, bool) {
	id, ok := d.ids[s]
	return id, ok
}

// spanChunk is the spans of one trace that start in one hour, encoded one
// after the other.
type spanChunk struct {
	tr    *headTrace
	hour  int64
	block []byte
	offs  []uint32 // where each span starts in block
	keys  []uint64 // each span's key (spanKey)
	set   map[uint64]struct{}
}

func (c *spanChunk) size() int64 {
	return spanChunkOverhead + int64(cap(c.block)) + 4*int64(cap(c.offs)) + 8*int64(cap(c.keys)) + 24*int64(len(c.set))
}

func (c *spanChunk) has(key uint64) bool {
	if c.set != nil {
		_, ok := c.set[key]
		return ok
	}
	return slices.Contains(c.keys, key)
}

func (c *spanChunk) span(i int32) []byte {
	end := len(c.block)
	if int(i)+1 < len(c.offs) {
		end = int(c.offs[i+1])
	}
	return c.block[c.offs[i]:end]
}

// headTrace is the spans of one trace in the head.
type headTrace struct {
	id     string
	chunks []*spanChunk // one per hour, in no order
}

// spanRef points at one span from a search list.
type spanRef struct {
	start int64
	c     *spanChunk
	i     int32
}

// headHour holds an hour's spans by service, each list sorted by start.
type headHour struct {
	services map[uint32][]spanRef
}

// spanHead is the in-memory copy of the spans from start on.
type spanHead struct {
	maxBytes int64
	seed     maphash.Seed

	mu sync.RWMutex
	// active is set when the first load has chosen start; until then
	// the head holds nothing.
	active bool
	// load is where the first load stands; reads ask ClickHouse until it
	// is done.
	load loadState
	// ready mirrors load == loadDone for the check every read makes,
	// which must not take mu exclusively: an exclusive lock per read waits
	// for every read in progress and holds off the next, so concurrent
	// readers went one at a time (eight clients' searches were 4× slower
	// each and fewer per second than one client's).
	ready atomic.Bool
	// complete is set while the head holds every span row from start on
	// of the parts the last sync saw.
	complete bool
	start    int64 // spans before it are not held
	traces   map[string]*headTrace
	hours    map[int64]*headHour
	dict     spanDict
	bytes    int64
	spans    int
	// old holds the traces with spans before start, once oldReady.
	// While oldLoading, such traces are also kept in oldPending, for the
	// filter being loaded.
	old                  *bloom
	oldReady, oldLoading bool
	oldPending           []string

	// gate runs the syncs; read and seenDays belong to them.
	gate     syncGate
	read     readBlocks[int] // shard → block numbers read
	seenDays map[int32]bool  // the days the last listing had
	// loadOld serialises loads of the old-trace filter.
	loadOld sync.Mutex
	// answered counts the reads the head answered.
	answered atomic.Int64
	// afterRead, when set (by tests), runs between a sync's read of new
	// parts and its second listing.
	afterRead func()
}

func newSpanHead(maxBytes int64, refresh time.Duration, now func() time.Time) *spanHead {
	return &spanHead{
		maxBytes: maxBytes,
		seed:     maphash.MakeSeed(),
		traces:   map[string]*headTrace{},
		hours:    map[int64]*headHour{},
		dict:     spanDict{ids: map[string]uint32{}},
		gate:     syncGate{refresh: refresh, now: now},
		read:     readBlocks[int]{},
	}
}

type loadState int

const (
	loadNone loadState = iota
	loadRunning
	loadDone
)

// beginLoad reports whether the head is loaded, and otherwise whether
// the caller is to start the load.
func (h *spanHead) beginLoad() (loaded, start bool) {
	if h.ready.Load() {
		return true, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch h.load {
	case loadDone:
		return true, false
	case loadNone:
		h.load = loadRunning
		return false, true
	}
	return false, false
}

// endLoad records how the first load ended: a failed one is tried again
// by the next read.
func (h *spanHead) endLoad(ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ok {
		h.load = loadDone
		h.ready.Store(true)
	} else {
		h.load = loadNone
	}
}

// loaded reports whether the first load is done.
func (h *spanHead) loaded() bool {
	return h.ready.Load()
}

// spanKey identifies a span row as the table's sort key does (within a
// trace): a row read again (from a merged part, or one this process
// wrote and a sync then found) is not held twice.
func (h *spanHead) spanKey(r *spanRow) uint64 {
	var m maphash.Hash
	m.SetSeed(h.seed)
	m.WriteString(r.spanID)
	m.WriteByte(0)
	m.WriteString(r.service)
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(r.start))
	m.Write(b[:])
	return m.Sum64()
}

// activate sets start and makes the head take writes.
func (h *spanHead) activate(start int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.start, h.active = start, true
}

func (h *spanHead) isActive() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.active
}

// written adds the spans this process committed, once the head is active.
func (h *spanHead) written(rows []spanRow) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.active {
		h.addLocked(rows)
	}
}

// add adds rows read from the table.
func (h *spanHead) add(rows []spanRow) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.addLocked(rows)
}

func (h *spanHead) addLocked(rows []spanRow) {
	for i := range rows {
		r := &rows[i]
		if r.start < h.start {
			h.addOldLocked(r.traceID)
			continue
		}
		tr := h.traces[r.traceID]
		if tr == nil {
			tr = &headTrace{id: r.traceID}
			h.traces[r.traceID] = tr
			h.bytes += spanTraceOverhead + int64(len(r.traceID))
		}
		hour := hourOfNs(r.start)
		var c *spanChunk
		for _, x := range tr.chunks {
			if x.hour == hour {
				c = x
				break
			}
		}
		if c == nil {
			c = &spanChunk{tr: tr, hour: hour}
			tr.chunks = append(tr.chunks, c)
		}
		key := h.spanKey(r)
		if c.has(key) {
			continue
		}
		before := c.size()
		if len(c.offs) == 0 {
			before = 0 // a new chunk
		}
		c.offs = append(c.offs, uint32(len(c.block)))
		c.keys = append(c.keys, key)
		if c.set != nil {
			c.set[key] = struct{}{}
		} else if len(c.keys) >= keySetMin {
			c.set = make(map[uint64]struct{}, len(c.keys))
			for _, k := range c.keys {
				c.set[k] = struct{}{}
			}
		}
		c.block = h.encode(c.block, hour, r)
		h.bytes += c.size() - before
		h.spans++

		hr := h.hours[hour]
		if hr == nil {
			hr = &headHour{services: map[uint32][]spanRef{}}
			h.hours[hour] = hr
		}
		svc, grew := h.dict.id(r.service)
		h.bytes += grew
		list, ok := hr.services[svc]
		if !ok {
			h.bytes += spanListOverhead
		}
		oldCap := cap(list)
		ref := spanRef{start: r.start, c: c, i: int32(len(c.offs) - 1)}
		if n := len(list); n == 0 || list[n-1].start <= r.start {
			list = append(list, ref)
		} else {
			j := sort.Search(n, func(j int) bool { return list[j].start > r.start })
			list = slices.Insert(list, j, ref)
		}
		hr.services[svc] = list
		h.bytes += spanRefSize * int64(cap(list)-oldCap)
	}
	for h.bytes > h.maxBytes && len(h.hours) > 0 {
		oldest := int64(math.MaxInt64)
		for hour := range h.hours {
			oldest = min(oldest, hour)
		}
		h.evictLocked(oldest + nsPerHour)
	}
}

// evictBefore drops the spans before start and makes it the head's start.
func (h *spanHead) evictBefore(start int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.evictLocked(start)
}

func (h *spanHead) evictLocked(start int64) {
	if start <= h.start {
		return
	}
	h.start = start
	for hour, hr := range h.hours {
		if hour >= start {
			continue
		}
		for _, list := range hr.services {
			h.bytes -= spanListOverhead + spanRefSize*int64(cap(list))
			for _, ref := range list {
				c := ref.c
				if c.block == nil {
					continue // dropped already
				}
				tr := c.tr
				h.bytes -= c.size()
				h.spans -= len(c.offs)
				c.block, c.offs, c.keys, c.set = nil, nil, nil, nil
				tr.chunks = slices.DeleteFunc(tr.chunks, func(x *spanChunk) bool { return x == c })
				if len(tr.chunks) == 0 {
					delete(h.traces, tr.id)
					h.bytes -= spanTraceOverhead + int64(len(tr.id))
				}
				h.addOldLocked(tr.id)
			}
		}
		delete(h.hours, hour)
	}
}

// addOldLocked records that a trace has spans before start.
func (h *spanHead) addOldLocked(id string) {
	if h.oldLoading {
		h.oldPending = append(h.oldPending, id)
	}
	if !h.oldReady {
		// The filter loaded later finds the trace in trace_index.
		return
	}
	h.old.add(maphash.String(h.seed, id))
	if h.old.full() {
		// Past its capacity the filter answers "maybe" too often: load
		// a larger one on the next read by id.
		h.bytes -= h.old.size()
		h.old, h.oldReady = nil, false
	}
}

// setOld installs a filter loaded from the traces ids (and those added
// meanwhile).
func (h *spanHead) setOld(ids []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ids = append(ids, h.oldPending...)
	b := newBloom(max(2*len(ids), 1<<16))
	for _, id := range ids {
		b.add(maphash.String(h.seed, id))
	}
	if h.old != nil {
		h.bytes -= h.old.size()
	}
	h.old, h.oldReady, h.oldLoading, h.oldPending = b, true, false, nil
	h.bytes += b.size()
}

// startOldLoad begins a load of the old-trace filter and returns the
// start its query must use; false when the filter is ready already.
func (h *spanHead) startOldLoad() (start int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.oldReady {
		return 0, false
	}
	h.oldLoading, h.oldPending = true, nil
	return h.start, true
}

func (h *spanHead) abortOldLoad() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.oldLoading, h.oldPending = false, nil
}

func (h *spanHead) setComplete(ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.complete = ok
}

// stats reports the spans held, the bytes they are counted at and
// head_start.
func (h *spanHead) stats() (spans int, bytes, start int64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.spans, h.bytes, h.start
}

// The encoding of a span in a chunk:
//
//	span id, parent id      id (appendID)
//	name, kind, service,    uvarint dictionary numbers
//	  scope
//	start                   uvarint ns after the chunk's hour
//	duration                varint ns (end - start)
//	status                  uvarint dictionary number
//	status message          string (uvarint length, bytes)
//	attributes              uvarint n, n × (uvarint key number, string value)
//	resource attributes     uvarint n, n × (uvarint key number, uvarint value number)
//	event attributes        uvarint n, n × (uvarint key number, string value)
//	details                 string
func (h *spanHead) encode(b []byte, hour int64, r *spanRow) []byte {
	b = appendID(b, r.spanID)
	b = appendID(b, r.parent)
	for _, s := range []string{r.name, r.kind, r.service, r.scope} {
		b = h.appendDict(b, s)
	}
	b = binary.AppendUvarint(b, uint64(r.start-hour))
	b = binary.AppendVarint(b, r.end-r.start)
	b = h.appendDict(b, r.status)
	b = appendStr(b, r.statusMsg)
	b = h.appendPairs(b, r.attrKeys, r.attrVals, false)
	b = h.appendPairs(b, r.resKeys, r.resVals, true)
	b = h.appendPairs(b, r.eventKeys, r.eventVals, false)
	return appendStr(b, r.details)
}

func (h *spanHead) appendDict(b []byte, s string) []byte {
	id, grew := h.dict.id(s)
	h.bytes += grew
	return binary.AppendUvarint(b, uint64(id))
}

func (h *spanHead) appendPairs(b []byte, keys, vals []string, dictVals bool) []byte {
	n := min(len(keys), len(vals))
	b = binary.AppendUvarint(b, uint64(n))
	for i := range n {
		b = h.appendDict(b, keys[i])
		if dictVals {
			b = h.appendDict(b, vals[i])
		} else {
			b = appendStr(b, vals[i])
		}
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendID writes lower-case hex ids in binary (half the bytes), others
// as they are; the length's low bit tells which.
func appendID(b []byte, s string) []byte {
	if len(s)%2 == 0 && isLowerHex(s) {
		b = binary.AppendUvarint(b, uint64(len(s)/2)<<1|1)
		b, _ = hex.AppendDecode(b, []byte(s)) // s is hex
		return b
	}
	b = binary.AppendUvarint(b, uint64(len(s))<<1)
	return append(b, s...)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// spanView is a decoded span whose strings still point into the block.
type spanView struct {
	spanID, parent                     idView
	name, kind, service, scope, status uint32
	start, end                         int64
	statusMsg, details                 []byte
	attrs, res, events                 []pairView
}

type idView struct {
	b   []byte
	hex bool
}

func (v idView) String() string {
	if v.hex {
		return hex.EncodeToString(v.b)
	}
	return string(v.b)
}

type pairView struct {
	key, valID uint32
	val        []byte // unless the value is a dictionary number
}

// spanDecoder reads the encoding with the WAL record's decoder; a
// malformed block (which the head never writes) reads as zeros.
type spanDecoder struct{ recordDecoder }

// bytes reads the next n bytes, in place.
func (d *spanDecoder) bytes(n uint64) []byte {
	if n > uint64(len(d.buf)) {
		d.fail()
		return nil
	}
	v := d.buf[:n]
	d.buf = d.buf[n:]
	return v
}

func (d *spanDecoder) id() idView {
	n := d.uvarint()
	return idView{b: d.bytes(n >> 1), hex: n&1 == 1}
}

func (d *spanDecoder) pairs(dst []pairView, dictVals bool) []pairView {
	dst = dst[:0]
	n := d.uvarint()
	for range n {
		if d.err != nil {
			break
		}
		p := pairView{key: uint32(d.uvarint())}
		if dictVals {
			p.valID = uint32(d.uvarint())
		} else {
			p.val = d.bytes(d.uvarint())
		}
		dst = append(dst, p)
	}
	return dst
}

// decode reads span i of c into v, reusing v's slices.
func (c *spanChunk) decode(i int32, v *spanView) {
	d := spanDecoder{recordDecoder{buf: c.span(i)}}
	v.spanID, v.parent = d.id(), d.id()
	v.name, v.kind = uint32(d.uvarint()), uint32(d.uvarint())
	v.service, v.scope = uint32(d.uvarint()), uint32(d.uvarint())
	v.start = c.hour + int64(d.uvarint())
	v.end = v.start + d.varint()
	v.status = uint32(d.uvarint())
	v.statusMsg = d.bytes(d.uvarint())
	v.attrs = d.pairs(v.attrs, false)
	v.res = d.pairs(v.res, true)
	v.events = d.pairs(v.events, false)
	v.details = d.bytes(d.uvarint())
}

// spanIDOf decodes the id of span i of c alone.
func (c *spanChunk) spanIDOf(i int32) string {
	d := spanDecoder{recordDecoder{buf: c.span(i)}}
	return d.id().String()
}

// toSpan builds the span as QuerySpans's read from ClickHouse does.
func (h *spanHead) toSpan(traceID string, v *spanView) (storage.Span, error) {
	str := func(id uint32) string { return h.dict.strs[id] }
	sp := storage.Span{
		TraceID: traceID, SpanID: v.spanID.String(), ParentSpanID: v.parent.String(),
		Name: str(v.name), Kind: str(v.kind), ServiceName: str(v.service), ScopeName: str(v.scope),
		StartTime: storage.FromUnixNano(v.start), EndTime: storage.FromUnixNano(v.end),
		StatusCode: str(v.status), StatusMessage: string(v.statusMsg),
	}
	if len(v.attrs) > 0 {
		sp.Attributes = make(map[string]string, len(v.attrs))
		for _, p := range v.attrs {
			sp.Attributes[str(p.key)] = string(p.val)
		}
	}
	if len(v.res) > 0 {
		sp.ResourceAttributes = make(map[string]string, len(v.res))
		for _, p := range v.res {
			sp.ResourceAttributes[str(p.key)] = str(p.valID)
		}
	}
	err := storage.DecodeSpanDetails(string(v.details), &sp)
	return sp, err
}

// spanFilter is a SpanQuery in the head's terms.
type spanFilter struct {
	lo, hi int64
	// service, name and status are dictionary numbers, or -1 for any.
	service, name, status int64
	minDur, maxDur        int64
	attrs                 []attrCond
	// none is set when no span can match (a string no span has).
	none bool
}

type attrCond struct {
	key uint32
	val string
}

// needsView reports whether the filter looks at more than the service
// and start time.
func (f *spanFilter) needsView() bool {
	return f.name >= 0 || f.status >= 0 || f.minDur > 0 || f.maxDur > 0 || len(f.attrs) > 0
}

func (h *spanHead) filter(q storage.SpanQuery) spanFilter {
	f := spanFilter{lo: math.MinInt64, hi: math.MaxInt64, minDur: int64(q.MinDuration), maxDur: int64(q.MaxDuration)}
	if !q.Start.IsZero() {
		f.lo = q.Start.UnixNano()
	}
	if !q.End.IsZero() {
		f.hi = q.End.UnixNano()
	}
	num := func(s string) int64 {
		if s == "" {
			return -1
		}
		id, ok := h.dict.lookup(s)
		if !ok {
			f.none = true
		}
		return int64(id)
	}
	f.service, f.name, f.status = num(q.ServiceName), num(q.Name), num(q.StatusCode)
	for k, v := range q.Attributes {
		id, ok := h.dict.lookup(k)
		if !ok {
			f.none = true
		}
		f.attrs = append(f.attrs, attrCond{id, v})
	}
	return f
}

// matches checks what the search lists do not: name, status, duration,
// attributes, and the service when the span was found by trace id.
func (h *spanHead) matches(f *spanFilter, v *spanView) bool {
	if (f.service >= 0 && int64(v.service) != f.service) || (f.name >= 0 && int64(v.name) != f.name) ||
		(f.status >= 0 && int64(v.status) != f.status) {
		return false
	}
	d := v.end - v.start
	if (f.minDur > 0 && d < f.minDur) || (f.maxDur > 0 && d > f.maxDur) {
		return false
	}
	for _, a := range f.attrs {
		if !hasPair(v.attrs, a) && !hasPair(v.events, a) && !h.hasDictPair(v.res, a) {
			return false
		}
	}
	return true
}

func hasPair(ps []pairView, a attrCond) bool {
	for _, p := range ps {
		if p.key == a.key && string(p.val) == a.val {
			return true
		}
	}
	return false
}

func (h *spanHead) hasDictPair(ps []pairView, a attrCond) bool {
	for _, p := range ps {
		if p.key == a.key && h.dict.strs[p.valID] == a.val {
			return true
		}
	}
	return false
}

// headAnswer is what the head says about a query.
type headAnswer int

const (
	headNo      headAnswer = iota // ask ClickHouse
	headYes                       // the head holds the answer
	headNeedOld                   // load the old-trace filter first
)

// coversLocked decides whether the head holds every span q can match.
func (h *spanHead) coversLocked(q storage.SpanQuery, ids []string) headAnswer {
	if !h.active || !h.complete {
		return headNo
	}
	lo := int64(math.MinInt64)
	if !q.Start.IsZero() {
		lo = q.Start.UnixNano()
	}
	if lo >= h.start {
		return headYes
	}
	if len(ids) == 0 {
		return headNo
	}
	if !h.oldReady {
		return headNeedOld
	}
	for _, id := range ids {
		if h.old.has(maphash.String(h.seed, id)) {
			return headNo
		}
	}
	return headYes
}

// each calls f with every span matching q, under the read lock; v is
// nil unless the filter needed it (f may decode itself).
func (h *spanHead) each(q storage.SpanQuery, ids []string, f func(tr *headTrace, c *spanChunk, i int32, start int64, v *spanView)) {
	flt := h.filter(q)
	if flt.none {
		return
	}
	var v spanView
	if ids != nil {
		for _, id := range ids {
			tr := h.traces[id]
			if tr == nil {
				continue
			}
			for _, c := range tr.chunks {
				if c.hour+nsPerHour <= flt.lo || c.hour > flt.hi {
					continue
				}
				for i := range int32(len(c.offs)) {
					c.decode(i, &v)
					if v.start < flt.lo || v.start > flt.hi || !h.matches(&flt, &v) {
						continue
					}
					f(tr, c, i, v.start, &v)
				}
			}
		}
		return
	}
	view := flt.needsView()
	visit := func(list []spanRef) {
		i := sort.Search(len(list), func(i int) bool { return list[i].start >= flt.lo })
		for ; i < len(list) && list[i].start <= flt.hi; i++ {
			r := list[i]
			if view {
				r.c.decode(r.i, &v)
				if !h.matches(&flt, &v) {
					continue
				}
				f(r.c.tr, r.c, r.i, r.start, &v)
				continue
			}
			f(r.c.tr, r.c, r.i, r.start, nil)
		}
	}
	for hour, hr := range h.hours {
		if hour+nsPerHour <= flt.lo || hour > flt.hi {
			continue
		}
		if flt.service >= 0 {
			visit(hr.services[uint32(flt.service)])
			continue
		}
		for _, list := range hr.services {
			visit(list)
		}
	}
}

// traceIDs answers TraceIDs from the head; ok is headNo or headNeedOld
// when it cannot.
func (h *spanHead) traceIDs(q storage.SpanQuery, ids []string) ([]string, headAnswer) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if a := h.coversLocked(q, ids); a != headYes {
		return nil, a
	}
	last := map[*headTrace]int64{}
	h.each(q, ids, func(tr *headTrace, _ *spanChunk, _ int32, start int64, _ *spanView) {
		if t, ok := last[tr]; !ok || start > t {
			last[tr] = start
		}
	})
	type hit struct {
		id   string
		last int64
	}
	hits := make([]hit, 0, len(last))
	for tr, t := range last {
		hits = append(hits, hit{tr.id, t})
	}
	slices.SortFunc(hits, func(a, b hit) int {
		if c := cmp.Compare(b.last, a.last); c != 0 {
			return c
		}
		return cmp.Compare(a.id, b.id)
	})
	n := min(len(hits), storage.QueryLimit(q.Limit))
	var out []string
	for _, x := range hits[:n] {
		out = append(out, x.id)
	}
	return out, headYes
}

// querySpans answers QuerySpans from the head.
func (h *spanHead) querySpans(q storage.SpanQuery, ids []string) ([]storage.Span, headAnswer, error) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if a := h.coversLocked(q, ids); a != headYes {
		return nil, a, nil
	}
	type hit struct {
		start         int64
		trace, spanID string
		c             *spanChunk
		i             int32
	}
	var hits []hit
	h.each(q, ids, func(tr *headTrace, c *spanChunk, i int32, start int64, v *spanView) {
		id := ""
		if v != nil {
			id = v.spanID.String()
		} else {
			id = c.spanIDOf(i)
		}
		hits = append(hits, hit{start, tr.id, id, c, i})
	})
	// ORDER BY start_time, trace_id, span_id LIMIT 1 BY trace_id, span_id
	slices.SortStableFunc(hits, func(a, b hit) int {
		if c := cmp.Compare(a.start, b.start); c != 0 {
			return c
		}
		if c := cmp.Compare(a.trace, b.trace); c != 0 {
			return c
		}
		return cmp.Compare(a.spanID, b.spanID)
	})
	limit := storage.QueryLimit(q.Limit)
	type spanOf struct{ trace, span string }
	seen := map[spanOf]bool{}
	var (
		out []storage.Span
		v   spanView
	)
	for _, x := range hits {
		if len(out) == limit {
			break
		}
		k := spanOf{x.trace, x.spanID}
		if seen[k] {
			continue
		}
		seen[k] = true
		x.c.decode(x.i, &v)
		sp, err := h.toSpan(x.trace, &v)
		if err != nil {
			return nil, headYes, err
		}
		out = append(out, sp)
	}
	return out, headYes, nil
}

// bloom is a Bloom filter of 64-bit hashes, sized for capacity entries
// at about 1% false positives (10 bits and 7 probes per entry).
type bloom struct {
	bits        []uint64
	n, capacity int
}

func newBloom(capacity int) *bloom {
	words := (capacity*10 + 63) / 64
	return &bloom{bits: make([]uint64, words), capacity: capacity}
}

const bloomProbes = 7

// add adds h; adding it again does not count.
func (b *bloom) add(h uint64) {
	if b.has(h) {
		return
	}
	m := uint64(len(b.bits) * 64)
	h1, h2 := h, h>>32|1
	for i := range uint64(bloomProbes) {
		x := (h1 + i*h2) % m
		b.bits[x/64] |= 1 << (x % 64)
	}
	b.n++
}

func (b *bloom) has(h uint64) bool {
	m := uint64(len(b.bits) * 64)
	h1, h2 := h, h>>32|1
	for i := range uint64(bloomProbes) {
		x := (h1 + i*h2) % m
		if b.bits[x/64]&(1<<(x%64)) == 0 {
			return false
		}
	}
	return true
}

func (b *bloom) full() bool  { return b.n > b.capacity }
func (b *bloom) size() int64 { return 8 * int64(len(b.bits)) }
