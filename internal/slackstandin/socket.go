package slackstandin

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/gorilla/websocket"
)

// Socket Mode: apps.connections.open with the app-level token hands out
// a WebSocket URL; the stand-in greets the client with "hello", sends it
// envelopes (SendEnvelope) and records the acknowledgements.

type socketState struct {
	mu       sync.Mutex
	appToken string
	conns    []*websocket.Conn
	acks     map[string]json.RawMessage
	seq      int
}

// EnableSocketMode makes apps.connections.open accept appToken.
func (s *Server) EnableSocketMode(appToken string) {
	s.sock.mu.Lock()
	defer s.sock.mu.Unlock()
	s.sock.appToken = appToken
}

// SocketConnections is how many Socket Mode clients are connected.
func (s *Server) SocketConnections() int {
	s.sock.mu.Lock()
	defer s.sock.mu.Unlock()
	return len(s.sock.conns)
}

// SendEnvelope sends a Socket Mode request (type slash_commands,
// interactive or events_api) to every connected client and returns its
// envelope id.
func (s *Server) SendEnvelope(typ string, payload any) (string, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return "", err
	}
	s.sock.mu.Lock()
	defer s.sock.mu.Unlock()
	s.sock.seq++
	id := fmt.Sprintf("env-%d", s.sock.seq)
	msg := map[string]any{"envelope_id": id, "type": typ, "payload": json.RawMessage(raw), "accepts_response_payload": typ == "slash_commands"}
	if len(s.sock.conns) == 0 {
		return "", fmt.Errorf("no Socket Mode client is connected")
	}
	for _, c := range s.sock.conns {
		if err := c.WriteJSON(msg); err != nil {
			return "", err
		}
	}
	return id, nil
}

// Ack returns the payload the client acknowledged envelope id with, and
// whether it did.
func (s *Server) Ack(id string) (json.RawMessage, bool) {
	s.sock.mu.Lock()
	defer s.sock.mu.Unlock()
	p, ok := s.sock.acks[id]
	return p, ok
}

func (s *Server) serveConnectionsOpen(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	tok, _ := bearer(r.Header.Get("Authorization"))
	s.sock.mu.Lock()
	want := s.sock.appToken
	s.sock.mu.Unlock()
	if want == "" || tok != want {
		writeErr(w, "invalid_auth")
		return
	}
	u := "ws://" + strings.TrimPrefix(strings.TrimSuffix(s.URL(), "/"), "http://") + "/_standin/socket"
	json.NewEncoder(w).Encode(map[string]any{"ok": true, "url": u})
}

var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	s.sock.mu.Lock()
	if s.sock.acks == nil {
		s.sock.acks = map[string]json.RawMessage{}
	}
	err = c.WriteJSON(map[string]any{"type": "hello", "num_connections": len(s.sock.conns) + 1, "connection_info": map[string]any{"app_id": "A0STANDIN"}})
	s.sock.conns = append(s.sock.conns, c)
	s.sock.mu.Unlock()
	defer func() {
		s.sock.mu.Lock()
		for i, cc := range s.sock.conns {
			if cc == c {
				s.sock.conns = append(s.sock.conns[:i], s.sock.conns[i+1:]...)
				break
			}
		}
		s.sock.mu.Unlock()
		c.Close()
	}()
	if err != nil {
		return
	}
	for {
		var resp struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if err := c.ReadJSON(&resp); err != nil {
			return
		}
		s.sock.mu.Lock()
		s.sock.acks[resp.EnvelopeID] = resp.Payload
		s.sock.mu.Unlock()
	}
}

// serveEnvelope drives Socket Mode from outside: POST
// ?type=slash_commands with the payload as the body sends an envelope and
// answers its id; GET ?ack=ID answers the acknowledgement's payload (404
// until it came).
func (s *Server) serveEnvelope(w http.ResponseWriter, r *http.Request) {
	if id := r.URL.Query().Get("ack"); id != "" {
		p, ok := s.Ack(id)
		if !ok {
			http.Error(w, "not acknowledged", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if len(p) == 0 {
			p = json.RawMessage("null")
		}
		w.Write(p)
		return
	}
	var payload json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&payload); err != nil {
		http.Error(w, "the body must be the envelope's JSON payload", http.StatusBadRequest)
		return
	}
	id, err := s.SendEnvelope(r.URL.Query().Get("type"), payload)
	if err != nil {
		http.Error(w, err.Error(), http.StatusConflict)
		return
	}
	fmt.Fprintln(w, id)
}
