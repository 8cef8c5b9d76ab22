package detect

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"math"
	"time"
)

// stateVersion changes whenever the snapshot layout or the meaning of the
// state changes. Restore migrates the versions it knows (see migrate) and
// refuses others rather than misread them.
const stateVersion = 6

// oldestState is the oldest snapshot version Restore migrates.
const oldestState = 3

type trackState struct {
	Ring []float64 // oldest first
	// Caps holds each residual's familiarity bound, beside Ring (+Inf:
	// none). Version 4.
	Caps []float64
	Win  []float64
	// The tail's memory (track.exN, exS, exS2: above, below). Version 5.
	ExN, ExS, ExS2 [2]float64
}

type state struct {
	Version       int
	Config        Config
	N             int
	LastT         int64 // UnixNano, valid when N > 0
	Step          int64
	Deltas        []float64
	Hist          []float64 // oldest first
	Period        int
	SinceSeasonal int
	Values        []float64
	Residuals     []float64
	Tracks        []trackState
	Hold          float64
	Run           float64
	Records       recordsState
	LogResiduals  []float64
	LogTracks     []trackState
	NovelCount    float64
	NovelTotal    float64
	SinceSearch   int // version 4
	// The sustained track (version 6): its span's residuals oldest first,
	// the blocks' statistics oldest first and the period its residuals
	// were taken with.
	Sustained sustainedState
}

type sustainedState struct {
	Win    []float64
	Blocks []float64
	Period int
}

type recordsState struct {
	Set          bool
	Exp          int
	Lo, Hi       int64
	Count, Total float64
}

// MarshalBinary snapshots the detector so that a restarted process
// resumes where it stopped instead of learning the series again.
func (d *Detector) MarshalBinary() ([]byte, error) {
	st := state{
		Version: stateVersion, Config: d.cfg, N: d.n, Step: int64(d.step),
		Deltas: d.deltas.values(), Hist: d.historyOnly(), Period: d.period,
		SinceSeasonal: d.sinceSeasonal, Values: d.values.values(),
		Residuals: d.residuals.values(), Hold: d.hold, Run: d.run,
		Records:      recordsState{Set: d.rec.set, Exp: d.rec.exp, Lo: d.rec.lo, Hi: d.rec.hi, Count: d.rec.count, Total: d.rec.total},
		LogResiduals: d.logResiduals.values(), Tracks: trackStates(d.tracks), LogTracks: trackStates(d.logTracks),
		NovelCount: d.fam.count, NovelTotal: d.fam.total, SinceSearch: d.sinceSearch,
	}
	if d.long.span > 0 {
		st.Sustained = sustainedState{Win: d.long.win.values(), Blocks: d.long.blocks, Period: d.long.period}
	}
	if d.n > 0 {
		st.LastT = d.lastT.UnixNano()
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&st); err != nil {
		return nil, fmt.Errorf("snapshot detector: %w", err)
	}
	return buf.Bytes(), nil
}

// Restore rebuilds a detector from MarshalBinary's output.
func Restore(b []byte) (*Detector, error) {
	var st state
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&st); err != nil {
		return nil, fmt.Errorf("restore detector: %w", err)
	}
	if st.Version < oldestState || st.Version > stateVersion {
		return nil, fmt.Errorf("restore detector: snapshot version %d, want %d to %d", st.Version, oldestState, stateVersion)
	}
	rebuild := st.Version < 6
	migrate(&st)
	d := New(st.Config)
	if len(st.Tracks) != len(d.tracks) || len(st.LogTracks) != len(d.logTracks) || len(st.Hist) > len(d.hist) {
		return nil, fmt.Errorf("restore detector: snapshot does not fit the configuration")
	}
	d.n = st.N
	if st.N > 0 {
		d.lastT = time.Unix(0, st.LastT)
	}
	d.step = time.Duration(st.Step)
	for _, v := range st.Deltas {
		d.deltas.add(v)
	}
	for _, v := range st.Hist {
		d.hist[d.histNext] = v
		d.histNext = (d.histNext + 1) % len(d.hist)
		d.histLen++
		d.fam.replace(math.NaN(), v)
	}
	d.period, d.sinceSeasonal, d.sinceSearch, d.hold, d.run = st.Period, st.SinceSeasonal, st.SinceSearch, st.Hold, st.Run
	d.fam.count, d.fam.total = st.NovelCount, st.NovelTotal
	for _, v := range st.LogResiduals {
		d.logResiduals.add(v)
	}
	r := st.Records
	d.rec.set, d.rec.exp, d.rec.lo, d.rec.hi, d.rec.count, d.rec.total = r.Set, r.Exp, r.Lo, r.Hi, r.Count, r.Total
	for _, v := range st.Values {
		d.values.add(v)
	}
	for _, v := range st.Residuals {
		d.residuals.add(v)
	}
	if err := restoreTracks(d.tracks, st.Tracks); err != nil {
		return nil, err
	}
	if err := restoreTracks(d.logTracks, st.LogTracks); err != nil {
		return nil, err
	}
	if rebuild {
		d.rebuildSustained(st.Hist)
		return d, nil
	}
	ss := st.Sustained
	if ss.Win != nil {
		d.long.reset(sustainedSpan(d.cfg.History), d.cfg.History)
		d.long.period = ss.Period
		if len(ss.Win) > d.long.span || len(ss.Blocks) > d.long.max {
			return nil, fmt.Errorf("restore detector: sustained track holds %d values and %d blocks, span is %d", len(ss.Win), len(ss.Blocks), d.long.span)
		}
		for _, v := range ss.Win {
			d.long.win.add(v)
		}
		d.long.blocks = append(d.long.blocks, ss.Blocks...)
	}
	return d, nil
}

// migrate brings an older snapshot to the current layout.
//
// Version 5 → 6: the sustained track is new. For a seasonal series
// Restore rebuilds it from the seasonal history the snapshot holds
// (rebuildSustained): the residuals the detector had over the history,
// with the period it holds now, clipped to the residual window's tails as
// they are now, in blocks that end where a detector that never stopped
// ended them (exactly so when the stream had no gaps), from where the
// history holds three cycles. Without a period it starts empty and judges
// once it has three blocks (192 points).
//
// Version 4 → 5: the longer tracks remember their tails' excesses, which
// version 4 did not keep. They start empty: the tails' shape is then the
// exponential (ξ = 0) as in version 4, and moves to the series' own as
// excesses come (half of the way, for a 98% tail, after a few hundred
// points; the memory is that of the history). Each longer track's scale
// is at least its window's spread, which the snapshot holds. So a
// migrated detector scores as version 5 does for the window, and its
// tails' shapes differ from a detector that never stopped until the
// history has passed.
//
// Version 3 → 4: the tracks remember each residual's familiarity bound,
// which version 3 did not keep. The residuals in a track's span (at most
// sixteen points) get no bound (+Inf): for those points the longer
// tracks judge a spike as version 3 did, and from the next span on as
// version 4 does. The period search counter starts at zero: the next
// search for a longer period is a search interval away. Everything else
// means what it meant.
func migrate(st *state) {
	if st.Version == 3 {
		for _, tracks := range [][]trackState{st.Tracks, st.LogTracks} {
			for i := range tracks {
				tracks[i].Caps = make([]float64, len(tracks[i].Ring))
				for j := range tracks[i].Caps {
					tracks[i].Caps[j] = math.Inf(1)
				}
			}
		}
		st.SinceSearch = 0
		st.Version = 4
	}
	if st.Version == 4 {
		// The zero value of the tails' memory is an empty one.
		st.Version = 5
	}
	if st.Version == 5 {
		// Restore rebuilds the sustained track.
		st.Version = 6
	}
}

func trackStates(tracks []*track) []trackState {
	var out []trackState
	for _, t := range tracks {
		ts := trackState{Win: t.win.values(), ExN: t.exN, ExS: t.exS, ExS2: t.exS2}
		for i := 0; i < t.n; i++ {
			k := (t.next - t.n + i + 2*t.span) % t.span
			ts.Ring = append(ts.Ring, t.ring[k])
			ts.Caps = append(ts.Caps, t.caps[k])
		}
		out = append(out, ts)
	}
	return out
}

func restoreTracks(tracks []*track, states []trackState) error {
	for i, ts := range states {
		t := tracks[i]
		if len(ts.Ring) > t.span || len(ts.Win) > len(t.win.ring) || len(ts.Caps) != len(ts.Ring) {
			return fmt.Errorf("restore detector: track %d holds %d values, %d bounds and a window of %d, span is %d", i, len(ts.Ring), len(ts.Caps), len(ts.Win), t.span)
		}
		for j, v := range ts.Ring {
			t.caps[t.next] = ts.Caps[j]
			t.ring[t.next] = v
			t.next = (t.next + 1) % t.span
			t.n++
		}
		for _, v := range ts.Win {
			t.win.add(v)
		}
		t.exN, t.exS, t.exS2 = ts.ExN, ts.ExS, ts.ExS2
	}
	return nil
}

func (d *Detector) historyOnly() []float64 {
	h, _ := d.history()
	return h
}
