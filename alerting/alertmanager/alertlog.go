package alertmanager

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/prometheus/common/model"

	"github.com/aiops-dev/aiops/internal/atomicfile"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/provider/mem"
)

// durableAlerts is the alert store with its alerts saved to disk, so
// that alerts posted to the API survive a restart, and those that ended
// while aiops was down resolve when it starts, rather than leaving their
// incidents open with no alert behind them.
//
// The alerts file is a log: one JSON line per alert as the store holds
// it after a Put, the last line of a fingerprint winning. A Put returns
// once its lines are on disk (appended and fsynced, so a Put costs what
// it brings, not what the store holds) if it brings an alert the file
// does not have, or changes one's start, resolution or annotations; a
// Put that only moves the end of firing alerts further (Prometheus's
// resends, every minute) is written in the background within
// refreshInterval: until then the file holds an end still in the
// future. When the log holds more than twice the alerts the store holds,
// it is rewritten with those alone (atomically), in the background.
type durableAlerts struct {
	*mem.Alerts
	path   string
	logger *slog.Logger

	mu      sync.Mutex
	f       *os.File // the log, open for appending
	lines   int      // lines in the log
	saved   map[model.Fingerprint]savedState
	pending map[model.Fingerprint]*alert.Alert // to write in the background
	buf     bytes.Buffer
}

// refreshInterval bounds how long an alert's later end waits to be
// written, and how often the log is considered for compaction.
const refreshInterval = 30 * time.Second

// savedAlert is an alert as the alerts file keeps it.
type savedAlert struct {
	model.Alert
	UpdatedAt time.Time `json:"updatedAt"`
	Timeout   bool      `json:"timeout,omitempty"`
}

// savedState is what the file last got of an alert: a change of any of
// it is written before the alert is acknowledged.
type savedState struct {
	startsAt    time.Time
	endsAt      time.Time
	annotations model.Fingerprint
}

func stateOf(a *alert.Alert) savedState {
	return savedState{startsAt: a.StartsAt, endsAt: a.EndsAt, annotations: a.Annotations.Fingerprint()}
}

func newDurableAlerts(a *mem.Alerts, path string, logger *slog.Logger) *durableAlerts {
	return &durableAlerts{Alerts: a, path: path, logger: logger,
		saved: map[model.Fingerprint]savedState{}, pending: map[model.Fingerprint]*alert.Alert{}}
}

// load puts the saved alerts into the store and opens the log. A line
// that does not decode (the last, torn by a crash) is skipped.
func (d *durableAlerts) load() error {
	latest := map[model.Fingerprint]*alert.Alert{}
	var order []model.Fingerprint
	f, err := os.Open(d.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return &StateError{File: d.path, Err: err}
	default:
		sc := bufio.NewScanner(f)
		sc.Buffer(nil, 16<<20)
		bad := 0
		for sc.Scan() {
			d.lines++
			var s savedAlert
			if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
				bad++
				continue
			}
			a := alert.New(s.Alert, s.UpdatedAt, s.Timeout)
			if a.Validate() != nil {
				bad++
				continue
			}
			if _, ok := latest[a.Fingerprint()]; !ok {
				order = append(order, a.Fingerprint())
			}
			latest[a.Fingerprint()] = a
		}
		err := sc.Err()
		f.Close()
		if err != nil {
			return &StateError{File: d.path, Err: err}
		}
		if bad > 0 {
			d.logger.Warn("Skipped lines of the alerts file that do not decode (a crash tears the last)", "file", d.path, "lines", bad)
		}
	}
	alerts := make([]*alert.Alert, 0, len(order))
	for _, fp := range order {
		alerts = append(alerts, latest[fp])
	}
	if err := d.Alerts.Put(context.Background(), alerts...); err != nil {
		return &StateError{File: d.path, Err: err}
	}
	for _, a := range alerts {
		d.saved[a.Fingerprint()] = stateOf(a)
	}
	// Start from a log of what the store holds: it drops what the lines
	// before repeated, and a torn last line.
	if err := d.compact(); err != nil {
		return &StateError{File: d.path, Err: err}
	}
	if len(alerts) > 0 {
		d.logger.Info("Alerts loaded", "file", d.path, "alerts", len(alerts))
	}
	return nil
}

// Put stores alerts and saves them (see durableAlerts).
func (d *durableAlerts) Put(ctx context.Context, alerts ...*alert.Alert) error {
	if err := d.Alerts.Put(ctx, alerts...); err != nil {
		return err
	}
	now := time.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	var urgent []*alert.Alert
	for _, a := range alerts {
		stored, err := d.Alerts.Get(a.Fingerprint())
		if err != nil {
			continue // refused by a limit
		}
		old, ok := d.saved[a.Fingerprint()]
		cur := stateOf(stored)
		switch {
		case !ok, !old.startsAt.Equal(cur.startsAt), old.annotations != cur.annotations,
			old.endsAt.After(now) != cur.endsAt.After(now):
			urgent = append(urgent, stored)
			delete(d.pending, a.Fingerprint())
		case !old.endsAt.Equal(cur.endsAt):
			d.pending[a.Fingerprint()] = stored
		}
	}
	if len(urgent) == 0 {
		return nil
	}
	if err := d.append(urgent); err != nil {
		return errNotSaved("the alerts", &StateError{File: d.path, Err: err})
	}
	return nil
}

// append writes alerts to the log and fsyncs it. Callers hold mu.
func (d *durableAlerts) append(alerts []*alert.Alert) error {
	if d.f == nil {
		return errors.New("alerts file not open")
	}
	d.buf.Reset()
	enc := json.NewEncoder(&d.buf)
	for _, a := range alerts {
		if err := enc.Encode(savedAlert{Alert: a.Alert, UpdatedAt: a.UpdatedAt, Timeout: a.Timeout}); err != nil {
			return err
		}
	}
	if _, err := d.f.Write(d.buf.Bytes()); err != nil {
		return err
	}
	if err := d.f.Sync(); err != nil {
		return err
	}
	d.lines += len(alerts)
	for _, a := range alerts {
		d.saved[a.Fingerprint()] = stateOf(a)
	}
	return nil
}

// refresh writes the alerts whose end moved since they were written, and
// compacts the log once it has grown past twice the alerts held.
func (d *durableAlerts) refresh() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.pending) > 0 {
		alerts := make([]*alert.Alert, 0, len(d.pending))
		for _, a := range d.pending {
			alerts = append(alerts, a)
		}
		if err := d.append(alerts); err != nil {
			d.logger.Error("Saving the alerts failed", "file", d.path, "err", err)
			return
		}
		clear(d.pending)
	}
	if d.lines > 2*len(d.saved)+1000 {
		if err := d.compact(); err != nil {
			d.logger.Error("Compacting the alerts file failed", "file", d.path, "err", err)
		}
	}
}

// compact rewrites the log with the alerts the store holds. Callers hold
// mu, or are load.
func (d *durableAlerts) compact() error {
	it := d.Alerts.GetPending()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	saved := map[model.Fingerprint]savedState{}
	for a := range it.Next() {
		if err := enc.Encode(savedAlert{Alert: a.Data.Alert, UpdatedAt: a.Data.UpdatedAt, Timeout: a.Data.Timeout}); err != nil {
			it.Close()
			return err
		}
		saved[a.Data.Fingerprint()] = stateOf(a.Data)
	}
	it.Close()
	if err := it.Err(); err != nil {
		return err
	}
	if err := atomicfile.Write(d.path, buf.Bytes(), 0o600); err != nil {
		return err
	}
	f, err := os.OpenFile(d.path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if d.f != nil {
		d.f.Close()
	}
	d.f, d.lines, d.saved = f, len(saved), saved
	clear(d.pending)
	return nil
}

// close writes what waits and closes the log.
func (d *durableAlerts) close() {
	d.refresh()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.f != nil {
		if err := d.f.Close(); err != nil {
			d.logger.Error("Closing the alerts file failed", "file", d.path, "err", err)
		}
		d.f = nil
	}
}
