package embedded

import (
	"testing"
	"time"

	"github.com/prometheus/prometheus/tsdb"
)

// TestGate: a lease in flight holds a close up until it is given back; a
// lease never given back is abandoned at the timeout, and giving it back
// later does not disturb the next TSDB's leases; while closing, leases
// are refused at once.
func TestGate(t *testing.T) {
	var g gate
	db1, db2 := &tsdb.DB{}, &tsdb.DB{}
	g.put(db1)
	db, release := g.acquire()
	if db != db1 {
		t.Fatal("no lease on the open TSDB")
	}
	done := make(chan *tsdb.DB)
	go func() {
		db, _ := g.take(time.Minute)
		done <- db
	}()
	for {
		g.mu.Lock()
		closing := g.closing
		g.mu.Unlock()
		if closing {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if db, _ := g.acquire(); db != nil {
		t.Fatal("a lease was handed out while closing")
	}
	release()
	if db := <-done; db != db1 {
		t.Fatal("take did not return the TSDB once the lease was given back")
	}

	g.put(db2)
	_, leaked := g.acquire()
	if db, abandoned := g.take(20 * time.Millisecond); db != db2 || abandoned != 1 {
		t.Fatalf("take with a leaked lease: %v, %d abandoned; want the TSDB and 1", db, abandoned)
	}
	g.put(db1)
	_, r := g.acquire()
	leaked() // late, from the abandoned generation
	g.mu.Lock()
	n := g.leases
	g.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d leases after a late release of an abandoned one, want 1", n)
	}
	r()
	if _, abandoned := g.take(time.Minute); abandoned != 0 {
		t.Fatalf("%d abandoned, want 0", abandoned)
	}
}
