package nab

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aiops-dev/aiops/internal/nabdata"
)

// TestReferenceScores reproduces the published scores of the reference
// detectors on the development split from their result files.
func TestReferenceScores(t *testing.T) {
	sharedNAB := nabdata.Dir(t)
	windows, err := LoadWindows(filepath.Join(sharedNAB, "windows.json"))
	if err != nil {
		t.Fatal(err)
	}
	profiles, err := LoadProfiles(filepath.Join(sharedNAB, "profiles.json"))
	if err != nil {
		t.Fatal(err)
	}
	names, err := DataFiles(sharedNAB)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][3]float64{
		"numenta":          {75.5187, 70.6820, 78.9916},
		"windowedGaussian": {41.4243, 26.4769, 48.4495},
		"bayesChangePt":    {37.2448, 17.4892, 49.8298},
	}
	for det, w := range want {
		var files []FileScores
		for _, name := range names {
			dir, file := filepath.Split(name)
			path := filepath.Join(sharedNAB, "results", det, dir, det+"_"+file)
			ts, sc, err := ReadScores(path)
			if err != nil {
				t.Fatal(err)
			}
			files = append(files, FileScores{Name: name, Times: ts, Scores: sc})
		}
		res, err := Score(files, windows, profiles)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if math.Abs(r.Normalized-w[i]) > 1e-4 {
				t.Errorf("%s %s: got %.6f, want %.4f (threshold %v, tp %d fp %d fn %d)", det, r.Profile, r.Normalized, w[i], r.Threshold, r.TP, r.FP, r.FN)
			}
		}
	}
	// The null detector scores 0 by construction.
	var files []FileScores
	for _, name := range names {
		s, err := ReadSeries(filepath.Join(sharedNAB, "data", name))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, FileScores{Name: name, Times: s.Times, Scores: make([]float64, len(s.Times))})
	}
	res, err := Score(files, windows, Profiles)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Normalized != 0 {
			t.Errorf("null detector %s: got %v, want 0", r.Profile, r.Normalized)
		}
	}
}

func TestScoreRejectsUnknownFile(t *testing.T) {
	_, err := Score([]FileScores{{Name: "x/y.csv"}}, map[string][]Window{}, Profiles)
	if err == nil || !strings.Contains(err.Error(), "x/y.csv") {
		t.Fatalf("want an error naming the file, got %v", err)
	}
}

// TestScoreAtMatchesSweep checks that scoring at the threshold the sweep
// chose gives the sweep's result, on a reference detector's files.
func TestScoreAtMatchesSweep(t *testing.T) {
	sharedNAB := nabdata.Dir(t)
	windows, err := LoadWindows(filepath.Join(sharedNAB, "windows.json"))
	if err != nil {
		t.Fatal(err)
	}
	names, err := DataFiles(sharedNAB)
	if err != nil {
		t.Fatal(err)
	}
	var files []FileScores
	for _, name := range names {
		dir, file := filepath.Split(name)
		ts, sc, err := ReadScores(filepath.Join(sharedNAB, "results", "numenta", dir, "numenta_"+file))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, FileScores{Name: name, Times: ts, Scores: sc})
	}
	res, err := Score(files, windows, Profiles)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		at, err := ScoreAt(files, windows, Profiles[i], r.Threshold)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(at.Raw-r.Raw) > 1e-9 || at.TP != r.TP || at.FP != r.FP || at.FN != r.FN {
			t.Errorf("%s: ScoreAt(%v) = %+v, sweep %+v", r.Profile, r.Threshold, at, r)
		}
		// A higher threshold cannot detect more.
		hi, err := ScoreAt(files, windows, Profiles[i], r.Threshold+0.01)
		if err != nil {
			t.Fatal(err)
		}
		if hi.TP+hi.FP > at.TP+at.FP || hi.Raw > r.Raw+1e-9 {
			t.Errorf("%s: at %v: %+v, at the sweep's threshold %+v", r.Profile, r.Threshold+0.01, hi, r)
		}
	}
}
