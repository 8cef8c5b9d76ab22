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
	"time"

	"github.com/aiops-dev/aiops/storage"
)

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
}

type tokenCreated struct {
	Token
	Hash string `json:"hash"`
}

// TokenStore creates, revokes and checks API tokens.
type TokenStore struct {
	events  storage.EventStore
	logger  *slog.Logger
	now     func() time.Time
	refresh time.Duration

	mu        sync.Mutex
	tokens    map[string]*tokenCreated // by id
	loadedAt  time.Time
	afterTime time.Time
	afterID   string
}

// NewTokenStore returns a store over events. Changes made by other
// replicas become visible within refresh.
func NewTokenStore(events storage.EventStore, logger *slog.Logger) *TokenStore {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &TokenStore{
		events:  events,
		logger:  logger,
		now:     time.Now,
		refresh: 10 * time.Second,
		tokens:  map[string]*tokenCreated{},
	}
}

// Create makes a token and returns its secret, which is shown once and
// never stored.
func (s *TokenStore) Create(ctx context.Context, name string, scopes []Scope, ttl time.Duration, createdBy string) (string, Token, error) {
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
	rec := tokenCreated{Token: Token{ID: id, Name: name, Scopes: scopes, CreatedAt: now, CreatedBy: createdBy}}
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
	if err := s.sync(ctx, true); err != nil {
		return err
	}
	s.mu.Lock()
	rec, ok := s.tokens[id]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("token %q: %w", id, ErrTokenNotFound)
	}
	if !rec.RevokedAt.IsZero() {
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
	if err := s.sync(ctx, true); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
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
	if err := s.sync(ctx, false); err != nil {
		return Principal{}, err
	}
	s.mu.Lock()
	rec, found := s.tokens[id]
	s.mu.Unlock()
	if !found {
		// A token made by another replica moments ago may not be loaded yet.
		if err := s.sync(ctx, true); err != nil {
			return Principal{}, err
		}
		s.mu.Lock()
		rec, found = s.tokens[id]
		s.mu.Unlock()
	}
	if !found || subtle.ConstantTimeCompare([]byte(rec.Hash), []byte(hashSecret(secret))) != 1 {
		return Principal{}, refuse(ReasonUnknown, "unknown API token")
	}
	now := s.now()
	switch {
	case !rec.RevokedAt.IsZero():
		return Principal{}, refuse(ReasonRevoked, "API token %s was revoked", id)
	case !rec.ExpiresAt.IsZero() && now.After(rec.ExpiresAt):
		return Principal{}, refuse(ReasonExpired, "API token %s expired at %s", id, rec.ExpiresAt.Format(time.RFC3339))
	}
	return Principal{ID: id, Name: rec.Name, Method: "token", Scopes: rec.Scopes}, nil
}

// Empty reports whether no token has ever been created.
func (s *TokenStore) Empty(ctx context.Context) (bool, error) {
	if err := s.sync(ctx, true); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tokens) == 0, nil
}

// sync reads token events written since the last read, when the cache is
// older than the refresh interval or force is set.
func (s *TokenStore) sync(ctx context.Context, force bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !force && s.now().Sub(s.loadedAt) < s.refresh {
		return nil
	}
	for {
		page, err := s.events.QueryEvents(ctx, storage.EventQuery{KindPrefix: "token.", AfterTime: s.afterTime, AfterID: s.afterID, Limit: 500})
		if err != nil {
			return fmt.Errorf("load tokens: %w", err)
		}
		for _, e := range page {
			s.apply(e)
			s.afterTime, s.afterID = e.Time, e.ID
		}
		if len(page) < 500 {
			break
		}
	}
	s.loadedAt = s.now()
	return nil
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
