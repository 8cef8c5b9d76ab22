package embedded

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/aiops-dev/aiops/storage"
)

// migrations are applied in order, each once; a version is never edited
// after it has shipped, only followed by a new one.
var migrations = []string{
	// 1: logs, spans, events.
	`CREATE TABLE logs (
		id TEXT PRIMARY KEY,
		ts INTEGER NOT NULL,
		observed_ts INTEGER NOT NULL,
		trace_id TEXT NOT NULL,
		span_id TEXT NOT NULL,
		severity_text TEXT NOT NULL,
		severity_number INTEGER NOT NULL,
		body TEXT NOT NULL,
		service_name TEXT NOT NULL,
		scope_name TEXT NOT NULL,
		attributes TEXT NOT NULL,
		resource_attributes TEXT NOT NULL
	);
	CREATE INDEX logs_ts ON logs (ts);
	CREATE INDEX logs_service_ts ON logs (service_name, ts);
	CREATE INDEX logs_trace ON logs (trace_id) WHERE trace_id != '';
	CREATE TABLE spans (
		trace_id TEXT NOT NULL,
		span_id TEXT NOT NULL,
		parent_span_id TEXT NOT NULL,
		name TEXT NOT NULL,
		kind TEXT NOT NULL,
		service_name TEXT NOT NULL,
		scope_name TEXT NOT NULL,
		start_ts INTEGER NOT NULL,
		end_ts INTEGER NOT NULL,
		status_code TEXT NOT NULL,
		status_message TEXT NOT NULL,
		attributes TEXT NOT NULL,
		resource_attributes TEXT NOT NULL,
		PRIMARY KEY (trace_id, span_id)
	);
	CREATE INDEX spans_start ON spans (start_ts);
	CREATE INDEX spans_service_start ON spans (service_name, start_ts);
	CREATE TABLE events (
		id TEXT PRIMARY KEY,
		ts INTEGER NOT NULL,
		kind TEXT NOT NULL,
		subject TEXT NOT NULL,
		labels TEXT NOT NULL,
		payload BLOB NOT NULL
	);
	CREATE INDEX events_ts ON events (ts, id);
	CREATE INDEX events_subject_ts ON events (subject, ts, id);`,
	// 2: metric metadata arriving with OTLP (type, help, unit per family).
	`CREATE TABLE metric_metadata (
		metric TEXT PRIMARY KEY,
		type TEXT NOT NULL,
		help TEXT NOT NULL,
		unit TEXT NOT NULL
	);`,
	// 3: what the trace APIs read: span details (scope version, trace
	// state, events, links, attribute types), the operations of each
	// service, and logs in their newest-first order for cursors.
	`ALTER TABLE spans ADD COLUMN details TEXT NOT NULL DEFAULT '{}';
	CREATE INDEX spans_name_start ON spans (service_name, name, start_ts);
	CREATE TABLE span_operations (
		service_name TEXT NOT NULL,
		name TEXT NOT NULL,
		kind TEXT NOT NULL,
		last_seen INTEGER NOT NULL,
		PRIMARY KEY (service_name, name, kind)
	) WITHOUT ROWID;
	INSERT INTO span_operations (service_name, name, kind, last_seen)
		SELECT service_name, name, kind, max(start_ts) FROM spans WHERE service_name != '' GROUP BY service_name, name, kind;`,
}

// Records holds logs, spans and events in SQLite. A Store embeds one; a
// second process (such as `aiops token create`) may open its own over the
// same data dir while the server runs, which SQLite's WAL mode allows.
type Records struct {
	db  *sql.DB
	cfg Config
}

// OpenRecords opens only the SQLite part of the store in cfg.DataDir.
func OpenRecords(cfg Config) (*Records, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The file holds audit records, incidents and token hashes: its
	// owner's alone. SQLite gives its journal files the same mode.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	path := filepath.Join(cfg.DataDir, "aiops.db")
	if f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600); err == nil {
		f.Close()
	}
	db, err := openSQL(path)
	if err != nil {
		return nil, err
	}
	return &Records{db: db, cfg: cfg}, nil
}

// Close closes the SQLite file.
func (s *Records) Close() error { return s.db.Close() }

// maxIdleConns is how many SQLite connections stay open between queries:
// about as many as there are commonly readers at once (a dashboard's
// panels), each holding up to SQLite's default 2 MiB of page cache.
const maxIdleConns = 8

func openSQL(path string) (*sql.DB, error) {
	// WAL lets queries run while a batch is written; FULL sync keeps
	// incidents and audit records across a power cut, not only a crash.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// database/sql keeps two idle connections by default and closes the
	// rest as soon as they are put back, so with more concurrent readers
	// (dashboards, Jaeger searches, rule evaluation) most queries opened a
	// connection, ran its pragmas and started from a cold page cache.
	db.SetMaxIdleConns(maxIdleConns)
	if err := migrate(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate sqlite %s: %w", path, err)
	}
	return db, nil
}

func migrate(db *sql.DB) error {
	if _, err := db.Exec(`CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)`); err != nil {
		return err
	}
	var current int
	if err := db.QueryRow(`SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return err
	}
	if current > len(migrations) {
		return fmt.Errorf("database is at schema version %d, newer than this binary knows (%d): refusing to run an older aiops on it", current, len(migrations))
	}
	for v := current + 1; v <= len(migrations); v++ {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		if _, err := tx.Exec(migrations[v-1]); err != nil {
			tx.Rollback()
			return fmt.Errorf("version %d: %w", v, err)
		}
		if _, err := tx.Exec(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, v, time.Now().Unix()); err != nil {
			tx.Rollback()
			return fmt.Errorf("version %d: %w", v, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("version %d: %w", v, err)
		}
	}
	return nil
}

// inTx runs fn in a transaction and commits it, or rolls back on error.
// A failed transaction leaves nothing behind, and a full disk makes it
// fail retryably (storage.ErrUnavailable).
func (s *Records) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return retryableIfFull(err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return retryableIfFull(err)
	}
	return retryableIfFull(tx.Commit())
}

// retryableIfFull marks errors of a full disk storage.ErrUnavailable:
// the same write succeeds once there is room.
func retryableIfFull(err error) error {
	var se *sqlite.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL,
		errors.Is(err, syscall.ENOSPC):
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}

// AppendLogs stores records; a record stored before (same ID) is skipped.
func (s *Records) AppendLogs(ctx context.Context, records []storage.LogRecord) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO logs
			(id, ts, observed_ts, trace_id, span_id, severity_text, severity_number, body, service_name, scope_name, attributes, resource_attributes)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := range records {
			r := &records[i]
			if _, err := stmt.ExecContext(ctx, r.ID(), storage.UnixNano(r.Timestamp), storage.UnixNano(r.ObservedTimestamp),
				r.TraceID, r.SpanID, r.SeverityText, r.SeverityNumber, r.Body, r.ServiceName, r.ScopeName,
				encodeMap(r.Attributes), encodeMap(r.ResourceAttributes)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d log records: %w", len(records), err)
	}
	return nil
}

// AppendEvents stores events; an event stored before (same ID) is skipped.
func (s *Records) AppendEvents(ctx context.Context, events []storage.Event) error {
	for i := range events {
		if events[i].ID == "" {
			return fmt.Errorf("append events: event %d (kind %q) has no id", i, events[i].Kind)
		}
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO events (id, ts, kind, subject, labels, payload) VALUES (?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for i := range events {
			e := &events[i]
			payload := e.Payload
			if payload == nil {
				payload = []byte{}
			}
			if _, err := stmt.ExecContext(ctx, e.ID, storage.UnixNano(e.Time), e.Kind, e.Subject, encodeMap(e.Labels), payload); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("append %d events: %w", len(events), err)
	}
	return nil
}

// QueryEvents returns matching events ordered by (Time, ID).
func (s *Records) QueryEvents(ctx context.Context, q storage.EventQuery) ([]storage.Event, error) {
	var w where
	w.timeRange("ts", q.Start, q.End)
	if q.KindPrefix != "" {
		w.add("substr(kind, 1, ?) = ?", len(q.KindPrefix), q.KindPrefix)
	}
	w.eq("subject", q.Subject)
	if !q.AfterTime.IsZero() {
		t := storage.UnixNano(q.AfterTime)
		w.add("(ts > ? OR (ts = ? AND id > ?))", t, t, q.AfterID)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT id, ts, kind, subject, labels, payload FROM events`+w.sql()+
		` ORDER BY ts, id LIMIT ?`, append(w.args, storage.QueryLimit(q.Limit))...)
	if err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	defer rows.Close()
	var out []storage.Event
	for rows.Next() {
		var (
			e      storage.Event
			ts     int64
			labels string
		)
		if err := rows.Scan(&e.ID, &ts, &e.Kind, &e.Subject, &labels, &e.Payload); err != nil {
			return nil, fmt.Errorf("query events: %w", err)
		}
		e.Time = storage.FromUnixNano(ts)
		if e.Labels, err = decodeMap(labels); err != nil {
			return nil, fmt.Errorf("query events: labels: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("query events: %w", err)
	}
	return out, nil
}

func (s *Records) enforceRetention(ctx context.Context, now time.Time) error {
	cutoff := storage.UnixNano(now.Add(-time.Duration(s.cfg.Retention)))
	if _, err := s.db.ExecContext(ctx, `DELETE FROM logs WHERE ts < ?`, cutoff); err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM spans WHERE start_ts < ?`, cutoff); err != nil {
		return fmt.Errorf("spans: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM span_operations WHERE last_seen < ?`, cutoff); err != nil {
		return fmt.Errorf("span operations: %w", err)
	}
	if s.cfg.EventRetention > 0 {
		cutoff := storage.UnixNano(now.Add(-time.Duration(s.cfg.EventRetention)))
		if _, err := s.db.ExecContext(ctx, `DELETE FROM events WHERE ts < ?`, cutoff); err != nil {
			return fmt.Errorf("events: %w", err)
		}
	}
	return nil
}

// where builds a WHERE clause from optional filters.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

func (w *where) eq(col, v string) {
	if v != "" {
		w.add(col+" = ?", v)
	}
}

func (w *where) timeRange(col string, start, end time.Time) {
	if !start.IsZero() {
		w.add(col+" >= ?", storage.UnixNano(start))
	}
	if !end.IsZero() {
		w.add(col+" <= ?", storage.UnixNano(end))
	}
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

func encodeMap(m map[string]string) string {
	if len(m) == 0 {
		return "{}"
	}
	b, err := json.Marshal(m)
	if err != nil {
		// A map[string]string always marshals.
		panic(err)
	}
	return string(b)
}

func decodeMap(s string) (map[string]string, error) {
	if s == "{}" || s == "" {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, err
	}
	return m, nil
}
