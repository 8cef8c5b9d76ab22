package nab

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Series is one data file: rows in file order.
type Series struct {
	// Raw holds the timestamps exactly as the file wrote them, so that
	// output files can copy them unchanged.
	Raw    []string
	Times  []time.Time
	Values []float64
}

// DataFiles lists a corpus's data files as "category/file.csv", sorted.
// dir is the corpus root (the one holding data/).
func DataFiles(dir string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, "data", "*", "*.csv"))
	if err != nil {
		return nil, fmt.Errorf("list data files: %w", err)
	}
	if len(matches) == 0 {
		return nil, fmt.Errorf("no data files match %s", filepath.Join(dir, "data", "*", "*.csv"))
	}
	out := make([]string, 0, len(matches))
	for _, m := range matches {
		rel, err := filepath.Rel(filepath.Join(dir, "data"), m)
		if err != nil {
			return nil, err
		}
		out = append(out, filepath.ToSlash(rel))
	}
	sort.Strings(out)
	return out, nil
}

// ReadSeries reads a data file with a header naming "timestamp" and "value".
// A value that does not parse as a number is an error naming its line.
func ReadSeries(path string) (Series, error) {
	rows, cols, err := readCSV(path, "timestamp", "value")
	if err != nil {
		return Series{}, err
	}
	s := Series{
		Raw:    make([]string, 0, len(rows)),
		Times:  make([]time.Time, 0, len(rows)),
		Values: make([]float64, 0, len(rows)),
	}
	for i, r := range rows {
		t, err := parseTime(r[cols[0]])
		if err != nil {
			return Series{}, fmt.Errorf("%s line %d: timestamp: %w", path, i+2, err)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(r[cols[1]]), 64)
		if err != nil {
			return Series{}, fmt.Errorf("%s line %d: value: %w", path, i+2, err)
		}
		s.Raw = append(s.Raw, r[cols[0]])
		s.Times = append(s.Times, t)
		s.Values = append(s.Values, v)
	}
	return s, nil
}

// ReadScores reads a results file's timestamp and anomaly_score columns.
func ReadScores(path string) ([]time.Time, []float64, error) {
	rows, cols, err := readCSV(path, "timestamp", "anomaly_score")
	if err != nil {
		return nil, nil, err
	}
	ts := make([]time.Time, 0, len(rows))
	sc := make([]float64, 0, len(rows))
	for i, r := range rows {
		t, err := parseTime(r[cols[0]])
		if err != nil {
			return nil, nil, fmt.Errorf("%s line %d: timestamp: %w", path, i+2, err)
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(r[cols[1]]), 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%s line %d: anomaly_score: %w", path, i+2, err)
		}
		ts = append(ts, t)
		sc = append(sc, v)
	}
	return ts, sc, nil
}

// WriteScores writes timestamp,value,anomaly_score rows, timestamps as given.
func WriteScores(path string, s Series, scores []float64) (err error) {
	if len(scores) != len(s.Raw) {
		return fmt.Errorf("write %s: %d rows but %d scores", path, len(s.Raw), len(scores))
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write scores: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write scores: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("write %s: %w", path, cerr)
		}
	}()
	w := csv.NewWriter(f)
	if err := w.Write([]string{"timestamp", "value", "anomaly_score"}); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	rec := make([]string, 3)
	for i := range s.Raw {
		rec[0] = s.Raw[i]
		rec[1] = strconv.FormatFloat(s.Values[i], 'g', -1, 64)
		rec[2] = strconv.FormatFloat(scores[i], 'f', 6, 64)
		if err := w.Write(rec); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func parseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{TimeLayout, windowLayout, time.RFC3339Nano} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("cannot parse %q as %q", s, TimeLayout)
}

// readCSV returns the data rows and the indexes of the wanted columns.
func readCSV(path string, want ...string) ([][]string, []int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.ReuseRecord = false
	header, err := r.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("%s: empty file, want a header", path)
		}
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	cols := make([]int, len(want))
	for i, w := range want {
		cols[i] = -1
		for j, h := range header {
			if strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")) == w {
				cols[i] = j
			}
		}
		if cols[i] < 0 {
			return nil, nil, fmt.Errorf("%s: header has no %q column", path, w)
		}
	}
	rows, err := r.ReadAll()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return rows, cols, nil
}
