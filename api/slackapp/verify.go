package slackapp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aiops-dev/aiops/internal/atomicfile"
	"github.com/aiops-dev/aiops/storage"
)

// Why a request was refused, as aiops_slack_requests_refused_total
// labels them.
const (
	reasonMissing   = "missing_signature"
	reasonMalformed = "malformed_signature"
	reasonExpired   = "expired_timestamp"
	reasonForged    = "bad_signature"
	reasonReplayed  = "replayed"
	reasonTooLarge  = "too_large"
	// reasonReplayMemory: the request could not be recorded as seen.
	reasonReplayMemory = "replay_memory"
)

// refusal is a request that did not pass verification.
type refusal struct {
	reason string
	msg    string
}

func (r *refusal) Error() string { return r.msg }

// verifier checks Slack's v0 request signatures: an HMAC-SHA256, keyed
// with the signing secret, over "v0:<timestamp>:<raw body>", compared in
// constant time. A timestamp further than tolerance from now is refused,
// and so is a signature seen before within that window: a captured
// request cannot be sent again.
type verifier struct {
	secret    []byte
	tolerance time.Duration
	now       func() time.Time

	mu   sync.Mutex
	seen map[string]time.Time // signature → when it may be forgotten

	// path, when set, keeps the replay memory across restarts: one line
	// per accepted request ("<hex MAC> <unix expiry>"), synced before
	// the request is acted on, compacted at start and as it grows. No
	// body, header or secret is written.
	path  string
	file  *os.File
	lines int

	// shared, in an HA pair, is the store both replicas write: a request
	// accepted by one is refused by the other (after a failover, a
	// captured request sent to the new leader).
	shared SeenEvents
}

// SeenEvents is where an HA pair's replicas share the signatures they
// accepted (storage.EventStore).
type SeenEvents interface {
	QueryEvents(ctx context.Context, q storage.EventQuery) ([]storage.Event, error)
	AppendEvents(ctx context.Context, evs []storage.Event) error
}

// seenKind is the store's event kind of an accepted signature.
const seenKind = "slack.seen"

// seenFile is the replay memory's file in slack.state_dir.
const seenFile = "seen-signatures"

// maxSeen bounds the replay memory. Only verified requests enter it, so
// only Slack can fill it; when full, the oldest half is forgotten early,
// and those requests' timestamps are then refused by the window alone
// once it passes.
const maxSeen = 200_000

func newVerifier(secret string, tolerance time.Duration, now func() time.Time, path string) (*verifier, error) {
	v := &verifier{secret: []byte(secret), tolerance: tolerance, now: now, seen: map[string]time.Time{}, path: path}
	if path == "" {
		return v, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("slack replay memory: %w", err)
	}
	if f, err := os.Open(path); err == nil {
		t := now()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			mac, exp, ok := strings.Cut(sc.Text(), " ")
			secs, err := strconv.ParseInt(exp, 10, 64)
			raw, herr := hex.DecodeString(mac)
			if !ok || err != nil || herr != nil || len(raw) != sha256.Size {
				continue // a line torn by a crash
			}
			if until := time.Unix(secs, 0); t.Before(until) {
				v.seen[string(raw)] = until
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("slack replay memory: read %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("slack replay memory: %w", err)
	}
	if err := v.rewrite(); err != nil {
		return nil, err
	}
	return v, nil
}

// rewrite writes the memory afresh (what is still in the window) and
// reopens it for appending. Callers hold mu, or own v.
func (v *verifier) rewrite() error {
	var b bytes.Buffer
	for k, until := range v.seen {
		fmt.Fprintf(&b, "%x %d\n", k, until.Unix())
	}
	if err := atomicfile.Write(v.path, b.Bytes(), 0o600); err != nil {
		return fmt.Errorf("slack replay memory: %w", err)
	}
	if v.file != nil {
		v.file.Close()
	}
	var err error
	v.file, err = os.OpenFile(v.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("slack replay memory: %w", err)
	}
	v.lines = len(v.seen)
	return nil
}

// remember records an accepted signature before the request is acted
// on. Callers hold mu.
func (v *verifier) remember(key string, until time.Time) error {
	v.seen[key] = until
	if v.file == nil {
		return nil
	}
	if v.lines > 2*len(v.seen)+1000 {
		return v.rewrite()
	}
	if _, err := fmt.Fprintf(v.file, "%x %d\n", key, until.Unix()); err != nil {
		return err
	}
	v.lines++
	return v.file.Sync()
}

func (v *verifier) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.file != nil {
		v.file.Close()
		v.file = nil
	}
}

func (v *verifier) verify(ctx context.Context, h http.Header, body []byte) error {
	sig, ts := h.Get("X-Slack-Signature"), h.Get("X-Slack-Request-Timestamp")
	if sig == "" || ts == "" {
		return &refusal{reasonMissing, "request is not signed: X-Slack-Signature and X-Slack-Request-Timestamp are required"}
	}
	hexSig, ok := strings.CutPrefix(sig, "v0=")
	mac, err := hex.DecodeString(hexSig)
	if !ok || err != nil || len(mac) != sha256.Size {
		return &refusal{reasonMalformed, "X-Slack-Signature is not a v0 signature"}
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return &refusal{reasonMalformed, "X-Slack-Request-Timestamp is not a Unix time"}
	}
	now := v.now()
	if d := now.Sub(time.Unix(secs, 0)); d > v.tolerance || d < -v.tolerance {
		return &refusal{reasonExpired, "X-Slack-Request-Timestamp is more than " + v.tolerance.String() + " from now"}
	}
	if !hmac.Equal(mac, sign(v.secret, ts, body)) {
		return &refusal{reasonForged, "X-Slack-Signature does not match the request"}
	}
	// The replay memory is keyed by the MAC itself, not the header's
	// text: hex decoding takes either case, so one MAC has 2^n spellings
	// and each would otherwise pass as a new request.
	key := string(mac)
	if err := v.local(key, now, time.Unix(secs, 0)); err != nil {
		return err
	}
	if v.shared == nil {
		return nil
	}
	return v.checkShared(ctx, mac, time.Unix(secs, 0), now)
}

// local checks and records the signature in this replica's memory.
func (v *verifier) local(key string, now, stamped time.Time) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if until, ok := v.seen[key]; ok && now.Before(until) {
		return &refusal{reasonReplayed, "this request was received before"}
	}
	if len(v.seen) >= maxSeen {
		v.forget(now)
	}
	// A request whose acceptance cannot be kept is refused: acted on, it
	// could be sent again after a restart.
	if err := v.remember(key, stamped.Add(v.tolerance+time.Second)); err != nil {
		delete(v.seen, key)
		return &refusal{reasonReplayMemory, "the replay memory could not be written; try again"}
	}
	return nil
}

// checkShared refuses a signature the other replica of an HA pair
// accepted, and records this one for it. Either failing refuses the
// request: acted on unrecorded, it could be replayed to the other.
func (v *verifier) checkShared(ctx context.Context, mac []byte, stamped, now time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	subject := hex.EncodeToString(mac)
	// The replicas' clocks may differ: look from well before the stamp.
	evs, err := v.shared.QueryEvents(ctx, storage.EventQuery{KindPrefix: seenKind, Subject: subject, Start: stamped.Add(-v.tolerance - time.Hour), Limit: 1})
	if err != nil {
		return &refusal{reasonReplayMemory, "the replay memory could not be read; try again"}
	}
	if len(evs) > 0 {
		return &refusal{reasonReplayed, "this request was received before"}
	}
	ev := storage.Event{ID: seenKind + "-" + subject, Time: now, Kind: seenKind, Subject: subject}
	if err := v.shared.AppendEvents(ctx, []storage.Event{ev}); err != nil {
		return &refusal{reasonReplayMemory, "the replay memory could not be written; try again"}
	}
	return nil
}

// forget drops what the window refuses anyway, and, if that is not
// enough, the entries closest to expiring.
func (v *verifier) forget(now time.Time) {
	for k, until := range v.seen {
		if !now.Before(until) {
			delete(v.seen, k)
		}
	}
	if len(v.seen) < maxSeen {
		return
	}
	cut := now.Add(v.tolerance / 2)
	for k, until := range v.seen {
		if until.Before(cut) {
			delete(v.seen, k)
		}
	}
	if len(v.seen) >= maxSeen {
		clear(v.seen)
	}
}

// sign computes the v0 signature of a request; tests sign with it too.
func sign(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("v0:" + ts + ":"))
	m.Write(body)
	return m.Sum(nil)
}

// Sign returns the X-Slack-Signature of body sent at ts, as Slack
// computes it.
func Sign(secret string, ts int64, body []byte) string {
	return "v0=" + hex.EncodeToString(sign([]byte(secret), strconv.FormatInt(ts, 10), body))
}

var errTooLarge = errors.New("request body too large")
