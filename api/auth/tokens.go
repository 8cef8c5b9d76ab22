package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aiops-dev/aiops/storage"
)

// tokenClockSkew is how far apart the clocks of the replicas and hosts
// that create tokens may be, for tokens to be seen without a restart.
const tokenClockSkew = 10 * time.Minute

// Token events. Tokens live in the event store so that every replica
// sharing a store sees the same tokens, and every change is on record.
const (
	kindTokenCreated = "token.created"
	kindTokenRevoked = "token.revoked"
	tokenPrefix      = "aiops_"
)

// Token describes an API token. The secret is not part of it: only its
// SHA-256 is stored. SHA-256 suffices because the secret is 160 random
// bits; slow password hashes guard low-entropy secrets.
type Token struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Scopes    []Scope   `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
	CreatedBy string    `json:"created_by,omitempty"`
	// ExpiresAt is zero for a token that does not expire.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	RevokedAt time.Time `json:"revoked_at,omitzero"`
	// Tenant, when set, is stamped on the data the token sends (ingest).
	Tenant string `json:"tenant,omitempty"`
}

type tokenCreated struct {
	Token
	Hash string `json:"hash"`
}

// TokenStore creates, revokes and checks API tokens.
//
// Requests are checked against an in-memory map of the tokens, by id. The
// map is brought up to date from the event store (where other replicas
// and `aiops token` write) every refresh interval, and when a request names
// an id the map does not hold, but then at most once per retry interval:
// ids nobody created, as a scanner sends them, must not each cost a read
// of the event store, nor hold up requests with good tokens.
type TokenStore struct {
	events   storage.EventStore
	logger   *slog.Logger
	now      func() time.Time
	refresh  time.Duration
	minRetry time.Duration

	mu     sync.RWMutex             // guards tokens
	tokens map[string]*tokenCreated // by id

	// syncMu lets one read of the event store run at a time and guards
	// latest, the time of the latest token event read; loadedAt (Unix
	// nanoseconds) is when the last read that succeeded began.
	syncMu   sync.Mutex
	latest   time.Time
	loadedAt atomic.Int64
}

// NewTokenStore returns a store over events. Changes made by other
// replicas become visible within refresh.
func NewTokenStore(events storage.EventStore, logger *slog.Logger) *TokenStore {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &TokenStore{
		events:   events,
		logger:   logger,
		now:      time.Now,
		refresh:  10 * time.Second,
		minRetry: time.Second,
		tokens:   map[string]*tokenCreated{},
	}
}

// Create makes a token and returns its secret, which is shown once and
// never stored.
func (s *TokenStore) Create(ctx context.Context, name string, scopes []Scope, ttl time.Duration, createdBy string) (string, Token, error) {
	return s.CreateToken(ctx, Token{Name: name, Scopes: scopes}, ttl, createdBy)
}

// CreateToken is Create for a token described by spec: its Name, Scopes
// and Tenant.
func (s *TokenStore) CreateToken(ctx context.Context, spec Token, ttl time.Duration, createdBy string) (string, Token, error) {
	name, scopes := spec.Name, spec.Scopes
	if err := ValidTenant(spec.Tenant); err != nil {
		return "", Token{}, err
	}
	if strings.TrimSpace(name) == "" {
		return "", Token{}, errors.New("token name must not be empty")
	}
	if len(scopes) == 0 {
		return "", Token{}, errors.New("token needs at least one scope")
	}
	id, err := randomString(5)
	if err != nil {
		return "", Token{}, err
	}
	secret, err := randomString(20)
	if err != nil {
		return "", Token{}, err
	}
	now := s.now().UTC()
	rec := tokenCreated{Token: Token{ID: id, Name: name, Scopes: scopes, CreatedAt: now, CreatedBy: createdBy, Tenant: spec.Tenant}}
	if ttl > 0 {
		rec.ExpiresAt = now.Add(ttl)
	}
	rec.Hash = hashSecret(secret)
	payload, err := json.Marshal(rec)
	if err != nil {
		return "", Token{}, err
	}
	if err := s.events.AppendEvents(ctx, []storage.Event{{
		ID: "token-created-" + id, Time: now, Kind: kindTokenCreated, Subject: id,
		Labels: map[string]string{"name": name}, Payload: payload,
	}}); err != nil {
		return "", Token{}, fmt.Errorf("store token: %w", err)
	}
	s.mu.Lock()
	s.tokens[id] = &rec
	s.mu.Unlock()
	return tokenPrefix + id + "_" + secret, rec.Token, nil
}

// Revoke revokes the token with the given id.
func (s *TokenStore) Revoke(ctx context.Context, id, revokedBy string) error {
	if err := s.sync(ctx, 0, true); err != nil {
		return err
	}
	rec, ok := s.lookup(id)
	if !ok {
		return fmt.Errorf("token %q: %w", id, ErrTokenNotFound)
	}
	s.mu.RLock()
	revoked := !rec.RevokedAt.IsZero()
	s.mu.RUnlock()
	if revoked {
		return nil
	}
	now := s.now().UTC()
	if err := s.events.AppendEvents(ctx, []storage.Event{{
		ID: "token-revoked-" + id, Time: now, Kind: kindTokenRevoked, Subject: id,
		Labels: map[string]string{"revoked_by": revokedBy},
	}}); err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	s.mu.Lock()
	rec.RevokedAt = now
	s.mu.Unlock()
	return nil
}

// ErrTokenNotFound is returned for an unknown token id.
var ErrTokenNotFound = errors.New("no such token")

// List returns every token, revoked ones included, by creation time.
func (s *TokenStore) List(ctx context.Context) ([]Token, error) {
	if err := s.sync(ctx, 0, true); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Token, 0, len(s.tokens))
	for _, id := range slices.Sorted(maps.Keys(s.tokens)) {
		out = append(out, s.tokens[id].Token)
	}
	slices.SortStableFunc(out, func(a, b Token) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// Authenticate implements Authenticator for API tokens.
func (s *TokenStore) Authenticate(ctx context.Context, credential string) (Principal, error) {
	id, secret, ok := parseToken(credential)
	if !ok {
		return Principal{}, refuse(reasonNotMine, "not an aiops API token")
	}
	// While another request reads the event store, this one goes on with
	// the tokens already loaded rather than queue behind it.
	if err := s.sync(ctx, s.refresh, false); err != nil {
		return Principal{}, err
	}
	rec, found := s.lookup(id)
	if !found {
		// A token made by another replica moments ago may not be loaded
		// yet; read again, unless a read began less than minRetry ago.
		if err := s.sync(ctx, s.minRetry, true); err != nil {
			return Principal{}, err
		}
		rec, found = s.lookup(id)
	}
	if !found {
		return Principal{}, refuse(ReasonUnknown, "unknown API token")
	}
	s.mu.RLock()
	hash, name, scopes, tenant, revokedAt, expiresAt := rec.Hash, rec.Name, rec.Scopes, rec.Tenant, rec.RevokedAt, rec.ExpiresAt
	s.mu.RUnlock()
	if subtle.ConstantTimeCompare([]byte(hash), []byte(hashSecret(secret))) != 1 {
		return Principal{}, refuse(ReasonUnknown, "unknown API token")
	}
	now := s.now()
	switch {
	case !revokedAt.IsZero():
		return Principal{}, refuse(ReasonRevoked, "API token %s was revoked", id)
	case !expiresAt.IsZero() && now.After(expiresAt):
		return Principal{}, refuse(ReasonExpired, "API token %s expired at %s", id, expiresAt.Format(time.RFC3339))
	}
	return Principal{ID: id, Name: name, Method: "token", Scopes: scopes, Tenant: tenant}, nil
}

func (s *TokenStore) lookup(id string) (*tokenCreated, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec, ok := s.tokens[id]
	return rec, ok
}

// Empty reports whether no token has ever been created.
func (s *TokenStore) Empty(ctx context.Context) (bool, error) {
	if err := s.sync(ctx, 0, true); err != nil {
		return false, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.tokens) == 0, nil
}

// sync reads the token events written since the last read, unless a
// read that succeeded began less than maxAge ago. When another read is
// under way, sync waits for it if wait is set and returns at once if not.
func (s *TokenStore) sync(ctx context.Context, maxAge time.Duration, wait bool) error {
	if s.fresh(maxAge) {
		return nil
	}
	if wait {
		s.syncMu.Lock()
	} else if !s.syncMu.TryLock() {
		return nil
	}
	defer s.syncMu.Unlock()
	if s.fresh(maxAge) {
		return nil // read by the request waited for
	}
	began := s.now()
	// Events are stamped by the clock of whoever wrote them, and one
	// written a moment after the last read may carry an earlier time, so
	// each read goes back tokenClockSkew before the latest event seen.
	// Applying an event twice changes nothing.
	q := storage.EventQuery{KindPrefix: "token.", Limit: 500}
	if !s.latest.IsZero() {
		q.Start = s.latest.Add(-tokenClockSkew)
	}
	for {
		page, err := s.events.QueryEvents(ctx, q)
		if err != nil {
			return fmt.Errorf("load tokens: %w", err)
		}
		s.mu.Lock()
		for _, e := range page {
			s.apply(e)
			if e.Time.After(s.latest) {
				s.latest = e.Time
			}
		}
		s.mu.Unlock()
		if len(page) < q.Limit {
			break
		}
		last := page[len(page)-1]
		q.AfterTime, q.AfterID = last.Time, last.ID
	}
	s.loadedAt.Store(began.UnixNano())
	return nil
}

func (s *TokenStore) fresh(maxAge time.Duration) bool {
	at := s.loadedAt.Load()
	return maxAge > 0 && at != 0 && s.now().Sub(time.Unix(0, at)) < maxAge
}

func (s *TokenStore) apply(e storage.Event) {
	switch e.Kind {
	case kindTokenCreated:
		var rec tokenCreated
		if err := json.Unmarshal(e.Payload, &rec); err != nil {
			s.logger.Warn("Skipping unreadable token event", "event", e.ID, "err", err)
			return
		}
		if old, ok := s.tokens[rec.ID]; ok && !old.RevokedAt.IsZero() {
			rec.RevokedAt = old.RevokedAt
		}
		s.tokens[rec.ID] = &rec
	case kindTokenRevoked:
		if rec, ok := s.tokens[e.Subject]; ok {
			rec.RevokedAt = e.Time
		}
	}
}

// ValidTenant checks a tenant name: it becomes a label value on every
// series its token sends, so it is short, printable and plain.
func ValidTenant(t string) error {
	if t == "" {
		return nil
	}
	if len(t) > 64 {
		return fmt.Errorf("tenant %q: at most 64 characters", t[:64])
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("tenant %q: only letters, digits, '-', '_' and '.'", t)
		}
	}
	return nil
}

func parseToken(credential string) (id, secret string, ok bool) {
	rest, ok := strings.CutPrefix(credential, tokenPrefix)
	if !ok {
		return "", "", false
	}
	id, secret, ok = strings.Cut(rest, "_")
	return id, secret, ok && id != "" && secret != ""
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

var encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func randomString(nbytes int) (string, error) {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("read random bytes: %w", err)
	}
	return encoding.EncodeToString(b), nil
}
