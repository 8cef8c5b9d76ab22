package slackstandin

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// File is a file shared through files.completeUploadExternal.
type File struct {
	ID, Title, Channel, ThreadTS string
	Name                         string
	// Content is what was uploaded to the file's upload URL.
	Content []byte
}

type pendingFile struct {
	name    string
	content []byte
}

// Files returns the files shared so far.
func (s *Server) Files() []File {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.files)
}

func (s *Server) getUploadURL(v url.Values) (any, string) {
	if v.Get("filename") == "" || v.Get("length") == "" {
		return nil, "invalid_arguments"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	id := fmt.Sprintf("F%06d", s.seq)
	if s.pending == nil {
		s.pending = map[string]*pendingFile{}
	}
	s.pending[id] = &pendingFile{name: v.Get("filename")}
	return map[string]any{"ok": true, "file_id": id, "upload_url": s.URL() + "_standin/upload/" + id}, ""
}

// serveUpload takes a file's bytes as Slack's upload URL does: a
// multipart form with the file in "file".
func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/_standin/upload/")
	f, _, err := r.FormFile("file")
	if err != nil {
		http.Error(w, "no file: "+err.Error(), http.StatusBadRequest)
		return
	}
	b, err := io.ReadAll(f)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	p := s.pending[id]
	if p != nil {
		p.content = b
	}
	s.mu.Unlock()
	if p == nil {
		http.Error(w, "unknown upload", http.StatusNotFound)
		return
	}
	fmt.Fprintf(w, "OK - %d", len(b))
}

func (s *Server) completeUpload(v url.Values) (any, string) {
	var files []struct{ ID, Title string }
	if err := json.Unmarshal([]byte(v.Get("files")), &files); err != nil || len(files) == 0 {
		return nil, "invalid_arguments"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]string
	for _, f := range files {
		p := s.pending[f.ID]
		if p == nil || p.content == nil {
			return nil, "file_not_found"
		}
		if th := v.Get("thread_ts"); th != "" && s.find(v.Get("channel_id"), th) == nil {
			return nil, "thread_not_found"
		}
		delete(s.pending, f.ID)
		s.files = append(s.files, File{ID: f.ID, Title: f.Title, Channel: v.Get("channel_id"), ThreadTS: v.Get("thread_ts"), Name: p.name, Content: p.content})
		out = append(out, map[string]string{"id": f.ID, "title": f.Title})
	}
	return map[string]any{"ok": true, "files": out}, ""
}
