package slackapp

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/aiops-dev/aiops/api/auth"
)

// UserInfo looks a Slack user up (users.info; *slack.Client).
type UserInfo interface {
	GetUserInfoContext(ctx context.Context, user string, options ...slack.GetUserInfoOption) (*slack.User, error)
}

// identities maps Slack users to aiops principals: by id from the
// config, else by the email users.info gives (cached), else the default
// scopes under the name slack:<id>.
type identities struct {
	byID    map[string]User
	byEmail map[string]User
	def     []auth.Scope
	info    UserInfo
	now     func() time.Time

	mu    sync.Mutex
	cache map[string]cachedUser
}

type cachedUser struct {
	u       User
	found   bool
	expires time.Time
}

// emailTTL is how long an email lookup is trusted: a user removed from
// users_by_email, or whose email changed, loses the access within it.
const emailTTL = 10 * time.Minute

func newIdentities(cfg Config, info UserInfo, now func() time.Time) *identities {
	byEmail := map[string]User{}
	for e, u := range cfg.UsersByEmail {
		byEmail[strings.ToLower(e)] = u
	}
	return &identities{byID: cfg.Users, byEmail: byEmail, def: cfg.DefaultScopes, info: info, now: now, cache: map[string]cachedUser{}}
}

// principal returns who the Slack user is to aiops. A lookup that fails
// falls back to the default scopes: refusing is the safe side.
func (ids *identities) principal(ctx context.Context, userID, userName string) auth.Principal {
	if u, ok := ids.byID[userID]; ok {
		return auth.Principal{ID: u.Principal, Name: userName, Method: "slack", Scopes: u.Scopes}
	}
	if len(ids.byEmail) > 0 && ids.info != nil && userID != "" {
		if u, ok := ids.lookup(ctx, userID); ok {
			return auth.Principal{ID: u.Principal, Name: userName, Method: "slack", Scopes: u.Scopes}
		}
	}
	return auth.Principal{ID: "slack:" + userID, Name: userName, Method: "slack", Scopes: ids.def}
}

func (ids *identities) lookup(ctx context.Context, userID string) (User, bool) {
	now := ids.now()
	ids.mu.Lock()
	c, ok := ids.cache[userID]
	ids.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.u, c.found
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	su, err := ids.info.GetUserInfoContext(ctx, userID)
	if err != nil {
		return User{}, false // not cached: the next request asks again
	}
	u, found := ids.byEmail[strings.ToLower(su.Profile.Email)]
	if su.Deleted || su.IsRestricted || su.IsUltraRestricted || su.Profile.Email == "" {
		// Guests and deactivated accounts do not inherit an employee's
		// access through a matching address.
		found = false
	}
	ids.mu.Lock()
	if len(ids.cache) > 10_000 {
		clear(ids.cache)
	}
	ids.cache[userID] = cachedUser{u: u, found: found, expires: now.Add(emailTTL)}
	ids.mu.Unlock()
	return u, found
}
