package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/alertmanager/nflog"
	"github.com/prometheus/alertmanager/nflog/nflogpb"
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
