package sqlstore

import (
	"errors"
	"testing"
	"time"

	"lastmile/internal/dispatch"
)

// A load overtaken by a turn-off and a second load must not install its snapshot without the writes
// committed after it (which the turn-off dropped from pending).
func TestCourierIndexStaleLoadInstalled(t *testing.T) {
	x := &courierIndex{}
	now := time.Now()
	loadA, ok := x.startLoad(now) // load A
	if !ok {
		t.Fatal("no load")
	}
	snapA := indexSnapshot{seq: x.mark()} // A read the database: nothing held yet

	// A write committed after A's read: task t1 assigned to courier c1.
	var w indexWrite
	w.addTask(&dispatch.Task{ID: "t1", State: dispatch.StateAssigned, CourierID: "c1", Version: 2})
	x.done(x.draw(), &w, nil)
	// Another write whose commit failed: the index turns off, dropping pending.
	x.done(x.draw(), nil, errors.New("commit failed"))

	loadB, ok := x.startLoad(now) // load B
	if !ok {
		t.Fatal("no second load")
	}
	x.install(loadA, &snapA, nil) // A's install lands first
	snapB := indexSnapshot{seq: x.mark(), tasks: []indexedTaskWrite{{id: "t1", courier: "c1", version: 2}}}
	x.install(loadB, &snapB, nil) // B installs; A was dropped

	_, missing, ok := x.lookup([]string{"c1"}, partConnected|partOfferOpen, 0, []string{"c1"})
	if ok && len(missing) == 0 {
		out, _, _ := x.lookup([]string{"c1"}, partConnected|partOfferOpen, 0, []string{"c1"})
		if len(out.Held["c1"]) == 0 {
			t.Fatalf("index on and says c1 holds nothing; the database has t1 held by c1")
		}
	}
}
