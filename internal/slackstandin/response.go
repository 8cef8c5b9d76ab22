package slackstandin

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/slack-go/slack"
)

// Response is a message sent to a command's or an interaction's
// response_url.
type Response struct {
	// Name is the last element of the URL (ResponseURL's name).
	Name    string
	Message slack.WebhookMessage
}

// ResponseURL is a response_url on the stand-in, as Slack puts one in
// each command and interaction; what is posted to it is recorded under
// name (Responses).
func (s *Server) ResponseURL(name string) string { return s.URL() + "_standin/response/" + name }

// Responses returns the messages sent to response URLs so far.
func (s *Server) Responses() []Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.responses)
}

// serveResponse takes a message as Slack's response_url does: a JSON
// body (response_type, text, blocks, replace_original), answered "ok",
// or 400 with the reason. An image block must name a file uploaded
// through the files API (slack_file) or an image URL, as Slack checks.
func (s *Server) serveResponse(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "method_not_allowed", http.StatusMethodNotAllowed)
		return
	}
	s.mu.Lock()
	s.calls["response_url"]++
	s.mu.Unlock()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	var msg slack.WebhookMessage
	if err := json.Unmarshal(b, &msg); err != nil || (msg.Text == "" && msg.Blocks == nil) {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if msg.Blocks != nil {
		for _, bl := range msg.Blocks.BlockSet {
			img, ok := bl.(*slack.ImageBlock)
			if !ok {
				continue
			}
			if img.SlackFile == nil && img.ImageURL == "" ||
				img.SlackFile != nil && !slices.ContainsFunc(s.files, func(f File) bool { return f.ID == img.SlackFile.ID }) {
				http.Error(w, "invalid_blocks", http.StatusBadRequest)
				return
			}
		}
	}
	s.responses = append(s.responses, Response{Name: strings.TrimPrefix(r.URL.Path, "/_standin/response/"), Message: msg})
	io.WriteString(w, "ok")
}
