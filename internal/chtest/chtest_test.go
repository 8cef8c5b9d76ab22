package chtest

import (
	"context"
	"strings"
	"testing"
)

// TestDatabaseDroppedWithItsTest: NewDatabase's database exists during
// its test and is gone after it; Restart brings the server back.
func TestDatabaseDroppedWithItsTest(t *testing.T) {
	s := Start(t)
	var db string
	t.Run("uses a database", func(t *testing.T) {
		db = s.NewDatabase(t)
		if err := s.Exec(context.Background(), "CREATE TABLE "+db+".t (x UInt8) ENGINE = Memory"); err != nil {
			t.Fatal(err)
		}
	})
	out, err := s.Query(context.Background(), "SELECT count() FROM system.databases WHERE name = '"+db+"'")
	if err != nil || strings.TrimSpace(out) != "0" {
		t.Fatalf("database %s after its test: count %q, %v", db, out, err)
	}
	s.Restart(t)
	if !s.Running() {
		t.Fatal("not running after Restart")
	}
}
