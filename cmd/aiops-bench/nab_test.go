package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aiops-dev/aiops/internal/nabdata"
)

var nabLine = regexp.MustCompile(`(?m)^NAB standard=(\S+) reward_low_FP_rate=(\S+) reward_low_FN_rate=(\S+) points_per_s=(\d+)$`)

// TestNABOnAnyCorpus builds a small corpus in NAB's layout and checks the
// command's outputs: one file per input, timestamps copied as written, and
// the summary line.
func TestNABOnAnyCorpus(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	start := time.Date(2020, 3, 1, 0, 0, 0, 0, time.UTC)
	windows := map[string][][2]string{}
	for c, cat := range []string{"catA", "catB"} {
		if err := os.MkdirAll(filepath.Join(dir, "data", cat), 0o755); err != nil {
			t.Fatal(err)
		}
		for f := 0; f < 2; f++ {
			name := fmt.Sprintf("%s/series_%d.csv", cat, f)
			var b strings.Builder
			b.WriteString("timestamp,value\n")
			spike := 1500 + 100*f
			for i := 0; i < 2000; i++ {
				v := 10 + math.Sin(float64(i*(c+1))/7)
				if i == spike {
					v = 60
				}
				// An unusual but valid timestamp spelling must be kept.
				fmt.Fprintf(&b, "%s,%g\n", start.Add(time.Duration(i)*5*time.Minute).Format("2006-01-02 15:04:05"), v)
			}
			if err := os.WriteFile(filepath.Join(dir, "data", name), []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
			ws := start.Add(time.Duration(spike-20) * 5 * time.Minute).Format("2006-01-02 15:04:05.000000")
			we := start.Add(time.Duration(spike+20) * 5 * time.Minute).Format("2006-01-02 15:04:05.000000")
			windows[name] = [][2]string{{ws, we}}
		}
	}
	var wj strings.Builder
	wj.WriteString("{")
	first := true
	for name, ws := range windows {
		if !first {
			wj.WriteString(",")
		}
		first = false
		fmt.Fprintf(&wj, "%q: [[%q, %q]]", name, ws[0][0], ws[0][1])
	}
	wj.WriteString("}")
	if err := os.WriteFile(filepath.Join(dir, "windows.json"), []byte(wj.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"nab", "--corpus", dir, "--out", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	m := nabLine.FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no summary line in:\n%s", stdout.String())
	}
	if !strings.HasSuffix(strings.TrimSpace(stdout.String()), m[0]) {
		t.Fatalf("summary line is not last:\n%s", stdout.String())
	}
	if std, _ := strconv.ParseFloat(m[1], 64); std < 90 {
		t.Errorf("four obvious spikes scored standard=%v, want >= 90", std)
	}
	for name := range windows {
		in := readAll(t, filepath.Join(dir, "data", name))
		got := readAll(t, filepath.Join(out, name))
		if strings.Join(got[0], ",") != "timestamp,value,anomaly_score" || len(got) != len(in) {
			t.Fatalf("%s: header %v, %d rows for %d", name, got[0], len(got), len(in))
		}
		for i := 1; i < len(in); i++ {
			if got[i][0] != in[i][0] {
				t.Fatalf("%s row %d: timestamp %q, input had %q", name, i, got[i][0], in[i][0])
			}
			if s, err := strconv.ParseFloat(got[i][2], 64); err != nil || s < 0 || s > 1 {
				t.Fatalf("%s row %d: score %q", name, i, got[i][2])
			}
		}
	}

	// Cross-validated, each category is a fold, chosen on the other.
	stdout.Reset()
	if code := run(context.Background(), []string{"nab", "--corpus", dir, "--out", out, "--cv"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--cv: exit %d: %s", code, stderr.String())
	}
	if folds := cvFolds(t, stdout.String(), "this"); len(folds) != 2 || folds["catA"] < 90 || folds["catB"] < 90 {
		t.Errorf("--cv folds %v, want catA and catB at 90 or more", folds)
	}

	// With one category's windows only there is nothing to hold out: an
	// error naming the corpus, before any search.
	one := strings.NewReplacer("catB/series_0.csv\": [[", "catB/series_0.csv\": [], \"x\": [[", "catB/series_1.csv\": [[", "catB/series_1.csv\": [], \"y\": [[").Replace(wj.String())
	if err := os.WriteFile(filepath.Join(dir, "windows.json"), []byte(one), 0o644); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	if code := run(context.Background(), []string{"nab", "--corpus", dir, "--out", out, "--cv"}, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), "1 categories with windows in "+dir) {
		t.Errorf("--cv with one category's windows: exit %d, %s", code, stderr.String())
	}

	// Without windows.json it scores nothing and says so.
	os.Remove(filepath.Join(dir, "windows.json"))
	stdout.Reset()
	if code := run(context.Background(), []string{"nab", "--corpus", dir, "--out", out}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d without windows: %s", code, stderr.String())
	}
	if nabLine.MatchString(stdout.String()) || !strings.Contains(stdout.String(), "no windows.json") {
		t.Fatalf("without windows.json:\n%s", stdout.String())
	}
	// A corpus without data is an error naming the pattern.
	stderr.Reset()
	if code := run(context.Background(), []string{"nab", "--corpus", t.TempDir(), "--out", out}, &stdout, &stderr); code == 0 || !strings.Contains(stderr.String(), "data") {
		t.Fatalf("empty corpus: exit %d, %s", code, stderr.String())
	}
}

// TestNABSharedSplit guards the detector's scores on the development split
// against regressions: the whole split, and cross-validated (--cv) fold by
// fold, beside numenta HTM scored by the same protocol (docs/ANALYZER.md
// has the figures), and that every fold reports its choice, the
// candidates it chose from, and its lead over the reference detectors.
func TestNABSharedSplit(t *testing.T) {
	corpus := nabdata.Dir(t)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"nab", "--corpus", corpus, "--out", t.TempDir(), "--cv"}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	out := stdout.String()
	m := nabLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line in:\n%s", out)
	}
	if std, _ := strconv.ParseFloat(m[1], 64); std < 77.95 {
		t.Errorf("standard=%v, was 77.9531 when this test was written", std)
	}
	this, htm := cvFolds(t, out, "this"), cvFolds(t, out, "numenta")
	if len(this) != 4 || len(htm) != 4 {
		t.Fatalf("folds: this %v, numenta %v, want four each:\n%s", this, htm, out)
	}
	// Held-out scores when this test was written (numenta HTM's in
	// brackets): 92.53 (70.22), 73.44 (73.42), 72.17 (70.21), 83.78 (82.45).
	was := map[string]float64{"artificialWithAnomaly": 92.53, "realAWSCloudwatch": 73.43, "realAdExchange": 72.17, "realTraffic": 83.78}
	var mean, htmMean float64
	for cat, s := range this {
		if s < was[cat]-0.01 {
			t.Errorf("cross-validated on %s: %.4f, was %.2f (numenta HTM %.4f)", cat, s, was[cat], htm[cat])
		}
		// Issue 18's target: at or above HTM on every fold.
		if s < htm[cat] {
			t.Errorf("cross-validated on %s: %.4f, below numenta HTM's %.4f", cat, s, htm[cat])
		}
		mean += s / 4
		htmMean += htm[cat] / 4
	}
	if mean < htmMean+4 {
		t.Errorf("cross-validated mean %.4f, numenta HTM's %.4f", mean, htmMean)
	}
	// Every fold reports what it chose on its other categories, and the
	// score of every candidate there.
	chosen := regexp.MustCompile(`(?m)^cv (\S+)\s+([a-z]\S*)\s+[0-9.]+\s`)
	n := 0
	for _, c := range chosen.FindAllStringSubmatch(out, -1) {
		if _, ok := was[c[1]]; ok {
			n++
		}
	}
	if n != 4 || strings.Count(out, "cv candidates ") != 4 || !strings.Contains(out, "cv standard lead of this over") {
		t.Errorf("%d fold lines with a choice and %d candidate lines (want 4 each), or no table of leads:\n%s", n, strings.Count(out, "cv candidates "), out)
	}
	t.Log(m[0])
	t.Log(cvLine(t, out, "this"))
}

// TestNABScoresAndCV scores NAB's own result files for HTM with --scores
// and checks the published figure, and its cross-validated folds:
// each category scored at the threshold chosen on the others.
func TestNABScoresAndCV(t *testing.T) {
	corpus := nabdata.Dir(t)
	var stdout, stderr bytes.Buffer
	args := []string{"nab", "--corpus", corpus, "--scores", filepath.Join(corpus, "results", "numenta"), "--cv"}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	m := nabLine.FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no summary line in:\n%s", stdout.String())
	}
	if m[1] != "75.5187" {
		t.Errorf("HTM standard=%s, published 75.5187", m[1])
	}
	// The given files and the reference directory are the same results,
	// scored by the same protocol. Per category, NAB's normalisation
	// (raw + windows) / (2 windows) of the held-out raw scores the
	// threshold chosen on the other categories gives: e.g. realTraffic
	// 13 of 14 windows at threshold 0.544450, raw 9.0859, (9.0859 + 14) / 28.
	want := map[string]float64{"artificialWithAnomaly": 70.2224, "realAWSCloudwatch": 73.4190, "realAdExchange": 70.2138, "realTraffic": 82.4495}
	for _, det := range []string{"this", "numenta"} {
		got := cvFolds(t, stdout.String(), det)
		for cat, w := range want {
			if math.Abs(got[cat]-w) > 1e-4 {
				t.Errorf("%s fold %s: %.4f, want %.4f", det, cat, got[cat], w)
			}
		}
	}
	if !strings.Contains(cvLine(t, stdout.String(), "numenta"), "standard=74.0762 ") {
		t.Errorf("HTM cross-validated mean: %s, want 74.0762", cvLine(t, stdout.String(), "numenta"))
	}
}

var cvLineRE = regexp.MustCompile(`(?m)^CV (\S+) standard=(\S+) reward_low_FP_rate=(\S+) reward_low_FN_rate=(\S+) folds=(\S+)$`)

// cvLine returns the CV summary line of detector det.
func cvLine(t *testing.T, out, det string) string {
	t.Helper()
	for _, m := range cvLineRE.FindAllStringSubmatch(out, -1) {
		if m[1] == det {
			return m[0]
		}
	}
	t.Fatalf("no CV line for %s in:\n%s", det, out)
	return ""
}

// cvFolds returns detector det's held-out standard score per category.
func cvFolds(t *testing.T, out, det string) map[string]float64 {
	t.Helper()
	m := cvLineRE.FindStringSubmatch(cvLine(t, out, det))
	folds := map[string]float64{}
	for _, f := range strings.Split(m[5], ",") {
		cat, v, _ := strings.Cut(f, ":")
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			t.Fatalf("fold %q: %v", f, err)
		}
		folds[cat] = x
	}
	return folds
}

func readAll(t *testing.T, path string) [][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return rows
}
