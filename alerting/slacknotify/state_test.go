package slacknotify

import (
	"os"
	"path/filepath"
	"testing"
)

func TestJournalSurvivesTornLineAndCompacts(t *testing.T) {
	dir := t.TempDir()
	j, err := openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := j.Cursor(); ok {
		t.Fatal("a new journal has a cursor")
	}
	if err := j.setCursor(""); err != nil {
		t.Fatal(err)
	}
	for i := range 1200 {
		if err := j.setMessage("inc-1", Message{Channel: "C1", TS: "1.1", Version: uint64(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.setCursor("f1.abc"); err != nil {
		t.Fatal(err)
	}
	j.close()
	st, _ := os.Stat(filepath.Join(dir, journalName))
	if st.Size() > 100_000 {
		t.Fatalf("journal is %d bytes after 1200 changes of one message: not compacted", st.Size())
	}
	// A crash in the middle of a line.
	f, _ := os.OpenFile(filepath.Join(dir, journalName), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"incident":"inc-2","message":{"chan`)
	f.Close()

	j, err = openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	if c, ok := j.Cursor(); !ok || c != "f1.abc" {
		t.Fatalf("cursor %q %v", c, ok)
	}
	if m, ok := j.message("inc-1"); !ok || m.Version != 1199 || m.TS != "1.1" {
		t.Fatalf("message %+v %v", m, ok)
	}
	if _, ok := j.message("inc-2"); ok {
		t.Fatal("the torn line was read")
	}
	if id, ok := j.incidentOf("C1", "1.1"); !ok || id != "inc-1" {
		t.Fatalf("incidentOf = %q %v", id, ok)
	}
	if fi, _ := os.Stat(filepath.Join(dir, journalName)); fi.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode %v, want 0600", fi.Mode().Perm())
	}
}
