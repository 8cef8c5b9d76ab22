package slacknotify

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/aiops-dev/aiops/internal/atomicfile"
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
// up to and each incident's message. Every change is written through to
// its backend before the next step, so a message posted is remembered
// before anything else happens and a restart never posts it twice; the
// backend is rewritten compactly when it has grown to several times its
// content.
type journal struct {
	mu      sync.Mutex
	backend journalBackend
	lines   int
	cursor  string
	// started says a cursor was saved: "" is then the feed's start, not
	// "never ran".
	started  bool
	messages map[string]Message
	// approvals are the approval requests posted and not decided yet,
	// by execution id: one is never posted twice, and its buttons go
	// once it is decided, wherever it was decided.
	approvals map[string]Message
}

// journalBackend is where a journal persists: a local file (fileJournal)
// or the store's events, which every replica of an HA pair reads
// (eventJournal).
type journalBackend interface {
	// load calls apply for each line written since the last compaction,
	// the compacted state first, in the order they were written; it
	// returns how many there were.
	load(apply func(journalLine)) (int, error)
	// append persists one line durably.
	append(l journalLine) error
	// compact replaces everything with state, the lines of the current
	// state alone.
	compact(state []journalLine) error
	// due reports whether the backend wants compacting even though it
	// has not grown: the store's event retention would otherwise drop
	// the state of incidents still open.
	due() bool
	close() error
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

// openJournal opens the journal kept in a file in dir.
func openJournal(dir string) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("slack state: %w", err)
	}
	j := newJournal(&fileJournal{path: filepath.Join(dir, journalName)})
	if err := j.reload(); err != nil {
		return nil, err
	}
	return j, nil
}

func newJournal(b journalBackend) *journal {
	return &journal{backend: b, messages: map[string]Message{}, approvals: map[string]Message{}}
}

// reload replaces what the journal holds by what its backend reads, and
// compacts it. On an error it keeps what it held: a state read halfway
// would post again.
func (j *journal) reload() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	fresh := newJournal(j.backend)
	if _, err := j.backend.load(fresh.apply); err != nil {
		return err
	}
	j.cursor, j.started, j.messages, j.approvals = fresh.cursor, fresh.started, fresh.messages, fresh.approvals
	return j.compact()
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

// state is the current state as lines (j.mu held).
func (j *journal) state() []journalLine {
	var ls []journalLine
	if j.started {
		cur := j.cursor
		ls = append(ls, journalLine{Cursor: &cur})
	}
	for id, m := range j.messages {
		ls = append(ls, journalLine{Incident: id, Message: &m})
	}
	for id, m := range j.approvals {
		ls = append(ls, journalLine{Approval: id, Message: &m})
	}
	return ls
}

// compact rewrites the backend with the current state alone (j.mu held).
func (j *journal) compact() error {
	st := j.state()
	if err := j.backend.compact(st); err != nil {
		return err
	}
	j.lines = len(st)
	return nil
}

// maintain compacts the journal when its backend asks to.
func (j *journal) maintain() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if !j.backend.due() {
		return nil
	}
	return j.compact()
}

func (j *journal) write(l journalLine) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.backend.append(l); err != nil {
		return err
	}
	j.apply(l)
	j.lines++
	if (j.lines > 1000 && j.lines > 4*(1+len(j.messages)+len(j.approvals))) || j.backend.due() {
		return j.compact()
	}
	return nil
}

// fileJournal keeps the journal in a local file: one appended, synced
// JSON line per change.
type fileJournal struct {
	path string
	f    *os.File
}

// load replays the file. A torn last line (a crash mid-write) is ignored:
// what it said had not been acted on as durable.
func (fj *fileJournal) load(apply func(journalLine)) (int, error) {
	f, err := os.Open(fj.path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("slack state: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		var l journalLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			continue
		}
		apply(l)
		n++
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("slack state: read %s: %w", fj.path, err)
	}
	return n, nil
}

func (fj *fileJournal) compact(state []journalLine) error {
	if fj.f != nil {
		fj.f.Close()
		fj.f = nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, l := range state {
		enc.Encode(l)
	}
	err := atomicfile.Write(fj.path, buf.Bytes(), 0o600)
	if err != nil {
		return fmt.Errorf("slack state: compact: %w", err)
	}
	fj.f, err = os.OpenFile(fj.path, os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("slack state: %w", err)
	}
	return nil
}

func (fj *fileJournal) append(l journalLine) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if fj.f == nil {
		return errors.New("slack state: closed")
	}
	if _, err := fj.f.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("slack state: append: %w", err)
	}
	if err := fj.f.Sync(); err != nil {
		return fmt.Errorf("slack state: sync: %w", err)
	}
	return nil
}

func (fj *fileJournal) due() bool { return false }

func (fj *fileJournal) close() error {
	if fj.f == nil {
		return nil
	}
	err := fj.f.Close()
	fj.f = nil
	return err
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
	return j.backend.close()
}
