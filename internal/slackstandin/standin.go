// Package slackstandin is a stand-in for Slack's Web API for tests and
// manual runs: slack-go's slacktest server with the methods it lacks
// (chat.update, users.info for configured users, thread replies with
// distinct timestamps) and faults on demand (429 with Retry-After, 5xx,
// Slack errors). It checks the bot token as Slack does and records every
// message, so a test can see what a channel shows.
package slackstandin

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/slacktest"
)

// Message is a message as the channel shows it.
type Message struct {
	Channel  string
	TS       string
	ThreadTS string
	Text     string
	Blocks   slack.Blocks
	// Updates counts chat.update calls on it.
	Updates int
}

// Ephemeral is a message only one user sees.
type Ephemeral struct {
	Channel, User, Text string
	Blocks              slack.Blocks
}

// Fault is what the next calls of a method get instead of an answer.
type Fault struct {
	// Status is the HTTP status (429, 500, …); 0 with SlackError set
	// answers 200 {"ok":false,"error":SlackError}.
	Status     int
	RetryAfter int // seconds, sent with 429
	SlackError string
	// Times is how many calls get it; < 0 means every call.
	Times int
}

// Server is the stand-in.
type Server struct {
	*slacktest.Server
	token string

	mu         sync.Mutex
	seq        int
	messages   []*Message
	ephemerals []Ephemeral
	faults     map[string][]*Fault
	calls      map[string]int
	users      map[string]slack.User
	sock       socketState
	pending    map[string]*pendingFile
	files      []File
	responses  []Response
}

// New starts a stand-in that accepts token; stop it with Stop.
func New(token string) *Server {
	s := &Server{token: token, faults: map[string][]*Fault{}, calls: map[string]int{}, users: map[string]slack.User{}}
	s.Server = slacktest.NewTestServer(func(c slacktest.Customize) {
		c.Handle("/chat.postMessage", s.method("chat.postMessage", s.postMessage))
		c.Handle("/chat.update", s.method("chat.update", s.update))
		c.Handle("/chat.postEphemeral", s.method("chat.postEphemeral", s.postEphemeral))
		c.Handle("/users.info", s.method("users.info", s.userInfo))
		c.Handle("/apps.connections.open", s.serveConnectionsOpen)
		c.Handle("/files.getUploadURLExternal", s.method("files.getUploadURLExternal", s.getUploadURL))
		c.Handle("/files.completeUploadExternal", s.method("files.completeUploadExternal", s.completeUpload))
		c.Handle("/_standin/upload/", s.serveUpload)
		c.Handle("/_standin/response/", s.serveResponse)
		c.Handle("/_standin/socket", s.serveSocket)
		// For a person driving the stand-in from outside (cmd/slack-standin).
		c.Handle("/_standin/fault", s.serveFault)
		c.Handle("/_standin/messages", s.serveMessages)
		c.Handle("/_standin/envelope", s.serveEnvelope)
	})
	s.Server.Start()
	return s
}

// URL is the API URL to configure (slack.api_url).
func (s *Server) URL() string { return s.GetAPIURL() }

// AddUser makes users.info know a user.
func (s *Server) AddUser(u slack.User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[u.ID] = u
}

// Inject makes the next f.Times calls of method fail as f says.
func (s *Server) Inject(method string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[method] = append(s.faults[method], &f)
}

// Calls is how many calls of method arrived, failed or not.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// Messages returns copies of the messages of channel ("" for all), top
// level and replies, in the order they were posted.
func (s *Server) Messages(channel string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages {
		if channel == "" || m.Channel == channel {
			out = append(out, *m)
		}
	}
	return out
}

// TopLevel returns the messages of channel that are not thread replies.
func (s *Server) TopLevel(channel string) []Message {
	var out []Message
	for _, m := range s.Messages(channel) {
		if m.ThreadTS == "" {
			out = append(out, m)
		}
	}
	return out
}

// Replies returns the replies in the thread of ts.
func (s *Server) Replies(channel, ts string) []Message {
	var out []Message
	for _, m := range s.Messages(channel) {
		if m.ThreadTS == ts {
			out = append(out, m)
		}
	}
	return out
}

// Ephemerals returns the ephemeral messages sent so far.
func (s *Server) Ephemerals() []Ephemeral {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ephemerals)
}

type handler func(v url.Values) (any, string)

// method wraps a handler with what every Web API method does: count the
// call, inject a fault, check the token.
func (s *Server) method(name string, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.calls[name]++
		var fault *Fault
		if fs := s.faults[name]; len(fs) > 0 {
			fault = fs[0]
			if fault.Times > 0 {
				fault.Times--
				if fault.Times == 0 {
					s.faults[name] = fs[1:]
				}
			}
		}
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if fault != nil {
			if fault.Status == http.StatusTooManyRequests {
				w.Header().Set("Retry-After", strconv.Itoa(fault.RetryAfter))
			}
			if fault.Status != 0 {
				w.WriteHeader(fault.Status)
				fmt.Fprintf(w, `{"ok":false,"error":"status %d"}`, fault.Status)
				return
			}
			writeErr(w, fault.SlackError)
			return
		}
		token := r.Form.Get("token")
		if token == "" {
			token, _ = bearer(r.Header.Get("Authorization"))
		}
		if token != s.token {
			writeErr(w, "invalid_auth")
			return
		}
		resp, slackErr := h(r.Form)
		if slackErr != "" {
			writeErr(w, slackErr)
			return
		}
		json.NewEncoder(w).Encode(resp)
	}
}

func bearer(h string) (string, bool) {
	const p = "Bearer "
	if len(h) > len(p) && h[:len(p)] == p {
		return h[len(p):], true
	}
	return "", false
}

func writeErr(w http.ResponseWriter, e string) {
	json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": e})
}

func (s *Server) nextTS() string {
	s.seq++
	return fmt.Sprintf("1700000000.%06d", s.seq)
}

func decodeBlocks(v url.Values) (slack.Blocks, string) {
	var b slack.Blocks
	if raw := v.Get("blocks"); raw != "" {
		if err := json.Unmarshal([]byte(raw), &b); err != nil {
			return b, "invalid_blocks"
		}
	}
	return b, ""
}

func (s *Server) postMessage(v url.Values) (any, string) {
	ch := v.Get("channel")
	if ch == "" {
		return nil, "channel_not_found"
	}
	if v.Get("text") == "" && v.Get("blocks") == "" {
		return nil, "no_text"
	}
	blocks, e := decodeBlocks(v)
	if e != "" {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if th := v.Get("thread_ts"); th != "" && s.find(ch, th) == nil {
		return nil, "thread_not_found"
	}
	m := &Message{Channel: ch, TS: s.nextTS(), ThreadTS: v.Get("thread_ts"), Text: v.Get("text"), Blocks: blocks}
	s.messages = append(s.messages, m)
	return map[string]any{"ok": true, "channel": ch, "ts": m.TS, "message": map[string]any{"text": m.Text, "ts": m.TS}}, ""
}

func (s *Server) find(ch, ts string) *Message {
	for _, m := range s.messages {
		if m.Channel == ch && m.TS == ts {
			return m
		}
	}
	return nil
}

func (s *Server) update(v url.Values) (any, string) {
	blocks, e := decodeBlocks(v)
	if e != "" {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.find(v.Get("channel"), v.Get("ts"))
	if m == nil {
		return nil, "message_not_found"
	}
	m.Text, m.Blocks = v.Get("text"), blocks
	m.Updates++
	return map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS, "text": m.Text}, ""
}

func (s *Server) postEphemeral(v url.Values) (any, string) {
	if v.Get("channel") == "" {
		return nil, "channel_not_found"
	}
	if v.Get("user") == "" {
		return nil, "user_not_in_channel"
	}
	blocks, e := decodeBlocks(v)
	if e != "" {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ephemerals = append(s.ephemerals, Ephemeral{Channel: v.Get("channel"), User: v.Get("user"), Text: v.Get("text"), Blocks: blocks})
	return map[string]any{"ok": true, "message_ts": s.nextTS()}, ""
}

func (s *Server) userInfo(v url.Values) (any, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.users[v.Get("user")]
	if !ok {
		return nil, "user_not_found"
	}
	return map[string]any{"ok": true, "user": u}, ""
}

// ClearFaults removes the faults waiting for method.
func (s *Server) ClearFaults(method string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.faults, method)
}

// serveFault injects a fault: ?method=chat.postMessage&status=429&retry_after=3&times=2
// (or slack_error=channel_not_found; times=-1 for every call; clear=1
// removes the method's faults).
func (s *Server) serveFault(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	method := q.Get("method")
	if method == "" {
		http.Error(w, "method is required", http.StatusBadRequest)
		return
	}
	if q.Get("clear") != "" {
		s.ClearFaults(method)
		return
	}
	atoi := func(k string, def int) int {
		if v, err := strconv.Atoi(q.Get(k)); err == nil {
			return v
		}
		return def
	}
	s.Inject(method, Fault{Status: atoi("status", 0), RetryAfter: atoi("retry_after", 0), SlackError: q.Get("slack_error"), Times: atoi("times", 1)})
}

// serveMessages lists the messages and calls as JSON.
func (s *Server) serveMessages(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	calls := maps.Clone(s.calls)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	type file struct {
		ID, Title, Channel, ThreadTS, Name string
		Bytes                              int
	}
	var files []file
	for _, f := range s.Files() {
		files = append(files, file{f.ID, f.Title, f.Channel, f.ThreadTS, f.Name, len(f.Content)})
	}
	json.NewEncoder(w).Encode(map[string]any{"messages": s.Messages(""), "ephemerals": s.Ephemerals(), "responses": s.Responses(), "files": files, "calls": calls})
}
