package slackapp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
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
}

// maxSeen bounds the replay memory. Only verified requests enter it, so
// only Slack can fill it; when full, the oldest half is forgotten early,
// and those requests' timestamps are then refused by the window alone
// once it passes.
const maxSeen = 200_000

func newVerifier(secret string, tolerance time.Duration, now func() time.Time) *verifier {
	return &verifier{secret: []byte(secret), tolerance: tolerance, now: now, seen: map[string]time.Time{}}
}

func (v *verifier) verify(h http.Header, body []byte) error {
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
	v.mu.Lock()
	defer v.mu.Unlock()
	if until, ok := v.seen[key]; ok && now.Before(until) {
		return &refusal{reasonReplayed, "this request was received before"}
	}
	if len(v.seen) >= maxSeen {
		v.forget(now)
	}
	v.seen[key] = time.Unix(secs, 0).Add(v.tolerance + time.Second)
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
