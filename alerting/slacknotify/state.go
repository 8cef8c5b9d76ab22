package slacknotify

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Message is the Slack message that stands for one incident.
type Message struct {
	Channel string `json:"channel"`
	TS      string `json:"ts"`
	// Version is the incident version the message last showed, and
	// ThreadSeq the incident event last told in its thread: replaying the
	// feed after a crash skips what was already said.
	Version   uint64 `json:"version,omitempty"`
	ThreadSeq uint64 `json:"thread_seq,omitempty"`
	// ResolvedAt is when the incident was resolved, as its message last
	// showed it (Unix seconds; 0 while it is not): the message is
	// forgotten once that is longer ago than the retention.
	ResolvedAt int64 `json:"resolved_at,omitempty"`
}

// journal is the notifier's durable state: the feed cursor it has handled
// up to and each incident's message. Every change is one appended,
// synced JSON line, so a message posted is remembered before anything
// else happens and a restart never posts it twice; the file is rewritten
// compactly when it has grown to several times its content.
type journal struct {
	path string

	mu     sync.Mutex
	f      *os.File
	lines  int
	cursor string
	// started says a cursor was saved: "" is then the feed's start, not
	// "never ran".
	started  bool
	messages map[string]Message
	// approvals are the approval requests posted and not decided yet,
	// by execution id: one is never posted twice, and its buttons go
	// once it is decided, wherever it was decided.
	approvals map[string]Message
}

type journalLine struct {
	Cursor   *string  `json:"cursor,omitempty"`
	Incident string   `json:"incident,omitempty"`
	Message  *Message `json:"message,omitempty"`
	// Forget, with Incident, drops the incident's message: resolved
	// longer ago than the retention.
	Forget bool `json:"forget,omitempty"`
	// Approval is an execution id; with Message its request was posted,
	// without it the request was decided (and is forgotten).
	Approval string `json:"approval,omitempty"`
}

const journalName = "notifier.journal"

func openJournal(dir string) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("slack state: %w", err)
	}
	j := &journal{path: filepath.Join(dir, journalName), messages: map[string]Message{}, approvals: map[string]Message{}}
	if err := j.load(); err != nil {
		return nil, err
	}
	if err := j.compact(); err != nil {
		return nil, err
	}
	return j, nil
}

// load replays the file. A torn last line (a crash mid-write) is ignored:
// what it said had not been acted on as durable.
func (j *journal) load() error {
	f, err := os.Open(j.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("slack state: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var l journalLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue
		}
		j.apply(l)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("slack state: read %s: %w", j.path, err)
	}
	return nil
}

func (j *journal) apply(l journalLine) {
	if l.Cursor != nil {
		j.cursor, j.started = *l.Cursor, true
	}
	if l.Incident != "" && l.Message != nil {
		j.messages[l.Incident] = *l.Message
	}
	if l.Incident != "" && l.Forget {
		delete(j.messages, l.Incident)
	}
	if l.Approval != "" {
		if l.Message != nil {
			j.approvals[l.Approval] = *l.Message
		} else {
			delete(j.approvals, l.Approval)
		}
	}
}

// compact rewrites the file with the current state alone.
func (j *journal) compact() error {
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("slack state: %w", err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	if j.started {
		cur := j.cursor
		enc.Encode(journalLine{Cursor: &cur})
	}
	for id, m := range j.messages {
		enc.Encode(journalLine{Incident: id, Message: &m})
	}
	for id, m := range j.approvals {
		enc.Encode(journalLine{Approval: id, Message: &m})
	}
	err = w.Flush()
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, j.path)
	}
	if err == nil {
		err = syncDir(filepath.Dir(j.path))
	}
	if err != nil {
		return fmt.Errorf("slack state: compact: %w", err)
	}
	j.lines = 1 + len(j.messages) + len(j.approvals)
	j.f, err = os.OpenFile(j.path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("slack state: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (j *journal) write(l journalLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("slack state: append: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("slack state: sync: %w", err)
	}
	j.apply(l)
	j.lines++
	if j.lines > 1000 && j.lines > 4*(1+len(j.messages)+len(j.approvals)) {
		return j.compact()
	}
	return nil
}

func (j *journal) setCursor(c string) error { return j.write(journalLine{Cursor: &c}) }

func (j *journal) setMessage(id string, m Message) error {
	return j.write(journalLine{Incident: id, Message: &m})
}

// prune forgets the messages of incidents resolved before cutoff, so
// that the state holds the incidents of the retention alone, however
// long aiops runs. It returns how many it forgot.
func (j *journal) prune(cutoff time.Time) (int, error) {
	j.mu.Lock()
	var old []string
	for id, m := range j.messages {
		if m.ResolvedAt != 0 && m.ResolvedAt < cutoff.Unix() {
			old = append(old, id)
		}
	}
	j.mu.Unlock()
	for _, id := range old {
		if err := j.write(journalLine{Incident: id, Forget: true}); err != nil {
			return 0, err
		}
	}
	return len(old), nil
}

func (j *journal) setApproval(execID string, m Message) error {
	return j.write(journalLine{Approval: execID, Message: &m})
}

func (j *journal) forgetApproval(execID string) error {
	return j.write(journalLine{Approval: execID})
}

func (j *journal) approval(execID string) (Message, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	m, ok := j.approvals[execID]
	return m, ok
}

// pendingApprovals are the execution ids whose requests are posted and
// not yet decided.
func (j *journal) pendingApprovals() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	ids := make([]string, 0, len(j.approvals))
	for id := range j.approvals {
		ids = append(ids, id)
	}
	return ids
}

// Cursor is the saved cursor; ok is false when none was ever saved.
func (j *journal) Cursor() (cursor string, ok bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.cursor, j.started
}

func (j *journal) message(id string) (Message, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	m, ok := j.messages[id]
	return m, ok
}

// incidentOf finds the incident whose message is ts in channel.
func (j *journal) incidentOf(channel, ts string) (string, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for id, m := range j.messages {
		if m.TS == ts && (channel == "" || m.Channel == channel) {
			return id, true
		}
	}
	return "", false
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
