package analyzer

import (
	"bytes"
	"encoding/gob"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/prometheus/prometheus/model/labels"

	"github.com/aiops-dev/aiops/analyzer/detect"
	"github.com/aiops-dev/aiops/internal/atomicfile"
)

// stateFile is the snapshot's name inside Config.StateDir.
const stateFile = "analyzer.state"

const snapshotVersion = 1

type snapshot struct {
	Version int
	Series  []seriesSnapshot
}

type seriesSnapshot struct {
	Labels    []string // name, value, name, value, ...
	Watermark int64
	Selector  int
	Detector  []byte
}

// SaveState writes every series' detector and watermark to StateDir,
// atomically (temporary file, fsync, rename). Without StateDir it does
// nothing.
func (a *Analyzer) SaveState() error {
	if a.cfg.StateDir == "" {
		return nil
	}
	a.mu.Lock()
	snap := snapshot{Version: snapshotVersion}
	for _, sts := range a.series {
		for _, st := range sts {
			b, err := st.det.MarshalBinary()
			if err != nil {
				a.mu.Unlock()
				return err
			}
			var ls []string
			st.lset.Range(func(l labels.Label) { ls = append(ls, l.Name, l.Value) })
			snap.Series = append(snap.Series, seriesSnapshot{Labels: ls, Watermark: st.watermark, Selector: st.selector, Detector: b})
		}
	}
	a.mu.Unlock()
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(&snap); err != nil {
		return fmt.Errorf("encode analyzer state: %w", err)
	}
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("analyzer.state_dir: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(a.cfg.StateDir, stateFile), buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("write analyzer state: %w", err)
	}
	return nil
}

// LoadState replaces the in-memory state with the snapshot in StateDir. A
// missing snapshot is not an error (first start).
func (a *Analyzer) LoadState() error {
	if a.cfg.StateDir == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(a.cfg.StateDir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read analyzer state: %w", err)
	}
	var snap snapshot
	if err := gob.NewDecoder(bytes.NewReader(b)).Decode(&snap); err != nil {
		return fmt.Errorf("decode analyzer state: %w", err)
	}
	if snap.Version != snapshotVersion {
		return fmt.Errorf("analyzer state version %d, want %d", snap.Version, snapshotVersion)
	}
	series := map[uint64][]*seriesState{}
	n := 0
	for i, s := range snap.Series {
		if len(s.Labels)%2 != 0 || s.Selector < 0 || s.Selector >= len(a.cfg.Selectors) {
			continue // from a different configuration
		}
		det, err := detect.Restore(s.Detector)
		if err != nil {
			return fmt.Errorf("analyzer state series %d: %w", i, err)
		}
		lset := labels.FromStrings(s.Labels...)
		st := &seriesState{lset: lset, det: det, watermark: s.Watermark, selector: s.Selector}
		if st.watermark == 0 {
			st.watermark = math.MinInt64
		}
		h := lset.Hash()
		series[h] = append(series[h], st)
		n++
	}
	a.mu.Lock()
	a.series, a.count = series, n
	a.m.series.Set(float64(n))
	a.mu.Unlock()
	return nil
}
