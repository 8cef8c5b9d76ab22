package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/model"

	"github.com/prometheus/alertmanager/alert"
	"github.com/prometheus/alertmanager/nflog"
	"github.com/prometheus/alertmanager/nflog/nflogpb"
	"github.com/prometheus/alertmanager/provider/mem"
	"github.com/prometheus/alertmanager/silence"
	"github.com/prometheus/alertmanager/silence/silencepb"
)

// Alertmanager keeps silences and the notification log in memory and
// writes them to disk every so often; a crash loses what changed since.
// Here a change counts only once it is on disk: a silence created or
// expired is saved before the API answers, a notification is recorded
// in the saved notification log before the pipeline considers it sent
// (so a crash after it pages nobody twice), and alerts posted are saved
// too, which Alertmanager does not do at all.

// errNotSaved wraps a failure to save a change that is in effect in
// memory.
func errNotSaved(what string, err error) error {
	return fmt.Errorf("%s is in effect but could not be saved to disk, so it would not survive a restart: %w", what, err)
}

// Silences is the silence store, with every change saved to disk before
// Set or Expire returns.
type Silences struct {
	*silence.Silences
	file *snapshotFile
}

// Set creates or updates a silence (see silence.Silences.Set) and saves
// the silences.
func (s *Silences) Set(ctx context.Context, sil *silencepb.Silence) error {
	if err := s.Silences.Set(ctx, sil); err != nil {
		return err
	}
	if _, err := s.file.Save(); err != nil {
		return errNotSaved("silence "+sil.Id, err)
	}
	return nil
}

// Expire expires a silence and saves the silences.
func (s *Silences) Expire(ctx context.Context, id string) error {
	if err := s.Silences.Expire(ctx, id); err != nil {
		return err
	}
	if _, err := s.file.Save(); err != nil {
		return errNotSaved("the expiry of silence "+id, err)
	}
	return nil
}

// durableNflog is the notification log the pipeline records sent
// notifications in: an entry is on disk before the notification counts
// as sent.
type durableNflog struct {
	log  *nflog.Log
	file *snapshotFile
}

func (l *durableNflog) Query(params ...nflog.QueryParam) ([]*nflogpb.Entry, error) {
	return l.log.Query(params...)
}

func (l *durableNflog) Log(r *nflogpb.Receiver, gkey string, firing, resolved, muted []uint64, store *nflog.Store, expiry time.Duration) error {
	if err := l.log.Log(r, gkey, firing, resolved, muted, store, expiry); err != nil {
		return err
	}
	if _, err := l.file.Save(); err != nil {
		return errNotSaved("a notification log entry", err)
	}
	return nil
}

// savedAlert is an alert as the alerts file keeps it.
type savedAlert struct {
	model.Alert
	UpdatedAt time.Time `json:"updatedAt"`
	Timeout   bool      `json:"timeout,omitempty"`
}

// savedState is what the alerts file last got of an alert: a change of
// any of it is saved before the alert is acknowledged.
type savedState struct {
	startsAt    time.Time
	endsAt      time.Time
	annotations model.Fingerprint
}

func stateOf(a *alert.Alert) savedState {
	return savedState{startsAt: a.StartsAt, endsAt: a.EndsAt, annotations: a.Annotations.Fingerprint()}
}

// durableAlerts is the alert store with its alerts saved to disk, so
// that alerts posted to the API survive a restart (and those that ended
// while aiops was down resolve when it starts, rather than leaving their
// incidents open).
//
// Every alert the store holds is saved. A Put returns once its alerts
// are on disk if it brings an alert the file does not have, or changes
// one's start, resolution or annotations; a Put that only moves the end
// of firing alerts further (Prometheus's resends) is saved in the
// background within refreshInterval: until then the file holds an end
// that is still in the future.
type durableAlerts struct {
	*mem.Alerts
	file   *snapshotFile
	logger *slog.Logger

	mu    sync.Mutex
	saved map[model.Fingerprint]savedState
	dirty bool
}

const refreshInterval = 30 * time.Second

func newDurableAlerts(a *mem.Alerts, path string, logger *slog.Logger) *durableAlerts {
	d := &durableAlerts{Alerts: a, logger: logger, saved: map[model.Fingerprint]savedState{}}
	d.file = newSnapshotFile(path, false, d.snapshot, logger)
	return d
}

// load puts the saved alerts into the store.
func (d *durableAlerts) load() error {
	data, err := os.ReadFile(d.file.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return &StateError{File: d.file.path, Err: err}
	}
	var saved []savedAlert
	if err := json.Unmarshal(data, &saved); err != nil {
		// Only a damaged disk makes this (writes are atomic): the
		// alerts come back as their senders repeat them.
		d.logger.Error("Alerts file does not decode; starting without the alerts it held", "file", d.file.path, "err", err)
		return nil
	}
	alerts := make([]*alert.Alert, 0, len(saved))
	for _, s := range saved {
		a := alert.New(s.Alert, s.UpdatedAt, s.Timeout)
		if err := a.Validate(); err != nil {
			continue
		}
		alerts = append(alerts, a)
	}
	if err := d.Alerts.Put(context.Background(), alerts...); err != nil {
		return &StateError{File: d.file.path, Err: err}
	}
	d.mu.Lock()
	for _, a := range alerts {
		d.saved[a.Fingerprint()] = stateOf(a)
	}
	d.mu.Unlock()
	d.logger.Info("Alerts loaded", "file", d.file.path, "alerts", len(alerts))
	return nil
}

// Put stores alerts and saves them (see durableAlerts).
func (d *durableAlerts) Put(ctx context.Context, alerts ...*alert.Alert) error {
	if err := d.Alerts.Put(ctx, alerts...); err != nil {
		return err
	}
	now := time.Now()
	urgent := false
	d.mu.Lock()
	for _, a := range alerts {
		stored, err := d.Alerts.Get(a.Fingerprint())
		if err != nil {
			continue // refused by a limit
		}
		old, ok := d.saved[a.Fingerprint()]
		cur := stateOf(stored)
		switch {
		case !ok, !old.startsAt.Equal(cur.startsAt), old.annotations != cur.annotations,
			!old.endsAt.After(now) != !cur.endsAt.After(now):
			urgent = true
		case !old.endsAt.Equal(cur.endsAt):
			d.dirty = true
		}
	}
	d.mu.Unlock()
	if !urgent {
		return nil
	}
	if _, err := d.file.Save(); err != nil {
		return errNotSaved("the alerts", err)
	}
	return nil
}

// refresh saves the alerts if a Put changed them since the last save.
func (d *durableAlerts) refresh() {
	d.mu.Lock()
	dirty := d.dirty
	d.mu.Unlock()
	if !dirty {
		return
	}
	if _, err := d.file.Save(); err != nil {
		d.logger.Error("Saving the alerts failed", "err", err)
	}
}

// snapshot writes every alert of the store.
func (d *durableAlerts) snapshot(w io.Writer) (int64, error) {
	it := d.Alerts.GetPending()
	defer it.Close()
	var saved []savedAlert
	state := map[model.Fingerprint]savedState{}
	for a := range it.Next() {
		saved = append(saved, savedAlert{Alert: a.Data.Alert, UpdatedAt: a.Data.UpdatedAt, Timeout: a.Data.Timeout})
		state[a.Data.Fingerprint()] = stateOf(a.Data)
	}
	if err := it.Err(); err != nil {
		return 0, err
	}
	if saved == nil {
		saved = []savedAlert{}
	}
	b, err := json.Marshal(saved)
	if err != nil {
		return 0, err
	}
	d.mu.Lock()
	d.saved, d.dirty = state, false
	d.mu.Unlock()
	n, err := w.Write(b)
	return int64(n), err
}

// savingHandler saves the silences after the v2 API changed them, before
// it answers: the API takes Alertmanager's silence store, not ours. It
// also bounds request bodies, which the API reads whole.
type savingHandler struct {
	next     http.Handler
	silences *snapshotFile
	// maxSilenceBody and maxAlertsBody bound the bodies of POST
	// /api/v2/silences and /api/v2/alerts.
	maxSilenceBody, maxAlertsBody int64
}

func (h *savingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	changes := false
	switch {
	case r.Method == http.MethodPost && path == "/api/v2/silences":
		r.Body = http.MaxBytesReader(w, r.Body, h.maxSilenceBody)
		changes = true
	case r.Method == http.MethodDelete && strings.HasPrefix(path, "/api/v2/silence/"):
		changes = true
	case r.Method == http.MethodPost && path == "/api/v2/alerts":
		r.Body = http.MaxBytesReader(w, r.Body, h.maxAlertsBody)
	}
	if !changes {
		h.next.ServeHTTP(w, r)
		return
	}
	rec := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
	h.next.ServeHTTP(rec, r)
	if rec.status/100 == 2 {
		if _, err := h.silences.Save(); err != nil {
			msg, _ := json.Marshal(errNotSaved("the silence change", err).Error())
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusInternalServerError)
			w.Write(msg)
			return
		}
	}
	maps.Copy(w.Header(), rec.header)
	w.WriteHeader(rec.status)
	w.Write(rec.body.Bytes())
}

// bufferedResponse holds a response until it may be sent.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) WriteHeader(status int)      { b.status = status }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
