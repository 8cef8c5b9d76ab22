package detect

import (
	"bytes"
	"encoding/gob"
	"fmt"
	"math"
	"time"
)

// stateVersion changes whenever the snapshot layout or the meaning of the
// state changes; an older snapshot is then refused rather than misread.
const stateVersion = 3

type trackState struct {
	Ring []float64 // oldest first
	Win  []float64
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
		NovelCount: d.fam.count, NovelTotal: d.fam.total,
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
	if st.Version != stateVersion {
		return nil, fmt.Errorf("restore detector: snapshot version %d, want %d", st.Version, stateVersion)
	}
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
	d.period, d.sinceSeasonal, d.hold, d.run = st.Period, st.SinceSeasonal, st.Hold, st.Run
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
	return d, nil
}

func trackStates(tracks []*track) []trackState {
	var out []trackState
	for _, t := range tracks {
		ts := trackState{Win: t.win.values()}
		for i := 0; i < t.n; i++ {
			ts.Ring = append(ts.Ring, t.ring[(t.next-t.n+i+2*t.span)%t.span])
		}
		out = append(out, ts)
	}
	return out
}

func restoreTracks(tracks []*track, states []trackState) error {
	for i, ts := range states {
		t := tracks[i]
		if len(ts.Ring) > t.span || len(ts.Win) > len(t.win.ring) {
			return fmt.Errorf("restore detector: track %d holds %d values and a window of %d, span is %d", i, len(ts.Ring), len(ts.Win), t.span)
		}
		for _, v := range ts.Ring {
			t.ring[t.next] = v
			t.next = (t.next + 1) % t.span
			t.n++
		}
		for _, v := range ts.Win {
			t.win.add(v)
		}
	}
	return nil
}

func (d *Detector) historyOnly() []float64 {
	h, _ := d.history()
	return h
}
