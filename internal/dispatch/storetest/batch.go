package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// testUpdateTasks: UpdateTasks writes every update whose closure succeeds, in one transaction; a closure
// that fails writes nothing for its task; a write that fails in the database fails only its own task
// (the others are written all the same); a missing task is NotFound; a second update of one task sees
// the first's result; and each written task has its event, in the order of the updates.
func testUpdateTasks(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	for n := 1; n <= 4; n++ {
		mustCreate(ctx, t, s, newTask(n))
	}
	// The command key "taken" is stored: task 3's write fails in the database, after its row was written.
	if err := s.SaveCommand(ctx, dispatch.CommandRecord{CourierID: courierID(3), CommandID: "taken", CreateTime: at(1)}); err != nil {
		t.Fatalf("SaveCommand: %v", err)
	}
	before := len(events(ctx, t, s))
	refused := apperr.Errorf(apperr.FailedPrecondition, "no")
	var secondSaw int64
	out, errs := s.UpdateTasks(ctx, []dispatch.TaskWrite{
		{ID: taskID(1), Fn: func(cur dispatch.Task) (dispatch.Change, error) {
			return dispatch.Change{
				Task:       offer(cur, 1, 1, 2),
				Deliveries: []dispatch.Delivery{{CourierID: courierID(1), Kind: dispatch.DeliveryOffer, TaskID: cur.ID, OfferID: offerID(1)}},
				Decision:   &dispatch.Decision{ID: "d1", TaskID: cur.ID, DecideTime: at(2)},
			}, nil
		}},
		{ID: taskID(2), Fn: func(cur dispatch.Task) (dispatch.Change, error) {
			return dispatch.Change{Task: offer(cur, 2, 2, 2)}, refused
		}},
		{ID: taskID(3), Fn: func(cur dispatch.Task) (dispatch.Change, error) {
			return dispatch.Change{
				Task:    offer(cur, 3, 3, 2),
				Command: &dispatch.CommandRecord{CourierID: courierID(3), CommandID: "taken", TaskID: cur.ID},
			}, nil
		}},
		{ID: taskID(99), Fn: func(cur dispatch.Task) (dispatch.Change, error) {
			return dispatch.Change{Task: cur}, nil
		}},
		{ID: taskID(4), Fn: func(cur dispatch.Task) (dispatch.Change, error) {
			return dispatch.Change{Task: offer(cur, 4, 4, 2)}, nil
		}},
		{ID: taskID(1), Fn: func(cur dispatch.Task) (dispatch.Change, error) {
			secondSaw = cur.Version
			cur.Notes = "second update"
			return dispatch.Change{Task: cur}, nil
		}},
	})
	if len(out) != 6 || len(errs) != 6 {
		t.Fatalf("UpdateTasks returned %d tasks and %d errors, want 6 and 6", len(out), len(errs))
	}
	if errs[0] != nil || out[0].Version != 2 || out[0].State != dispatch.StateOffered {
		t.Errorf("update 1 = version %d %s, %v; want version 2 OFFERED, nil", out[0].Version, out[0].State, errs[0])
	}
	if !errors.Is(errs[1], refused) {
		t.Errorf("update 2 (failing closure) error = %v, want the closure's", errs[1])
	}
	wantCode(t, "update 3 (command id taken)", errs[2], apperr.Conflict)
	wantCode(t, "update 4 (no such task)", errs[3], apperr.NotFound)
	if errs[4] != nil || out[4].Version != 2 || out[4].State != dispatch.StateOffered {
		t.Errorf("update 5 = version %d %s, %v; want version 2 OFFERED, nil", out[4].Version, out[4].State, errs[4])
	}
	if errs[5] != nil || secondSaw != 2 || out[5].Version != 3 || out[5].Notes != "second update" {
		t.Errorf("update 6 saw version %d and = version %d %q, %v; want to see 2 and write version 3", secondSaw, out[5].Version, out[5].Notes, errs[5])
	}
	for n, want := range map[int]int64{1: 3, 2: 1, 3: 1, 4: 2} {
		if got := mustGet(ctx, t, s, taskID(n)); got.Version != want {
			t.Errorf("task %d stored at version %d, want %d", n, got.Version, want)
		}
	}
	ds, err := s.Deliveries(ctx, courierID(1), 0, 10)
	if err != nil || len(ds) != 1 || ds[0].OfferID != offerID(1) {
		t.Errorf("courier 1's deliveries = %+v, %v; want the offer of task 1", ds, err)
	}
	got := eventsOf(events(ctx, t, s)[before:], dispatch.TopicTask)
	for i := range got {
		got[i].Seq = 0
	}
	want := []event{
		{Topic: dispatch.TopicTask, Key: taskID(1), Payload: string(dispatch.StateOffered)},
		{Topic: dispatch.TopicTask, Key: taskID(4), Payload: string(dispatch.StateOffered)},
		{Topic: dispatch.TopicTask, Key: taskID(1), Payload: string(dispatch.StateOffered)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("task events of UpdateTasks (-want +got):\n%s", diff)
	}

	// Without failures, one transaction; an empty batch writes nothing.
	out, errs = s.UpdateTasks(ctx, []dispatch.TaskWrite{
		{ID: taskID(2), Fn: func(cur dispatch.Task) (dispatch.Change, error) {
			return dispatch.Change{Task: offer(cur, 5, 5, 3)}, nil
		}},
		{ID: taskID(3), Fn: func(cur dispatch.Task) (dispatch.Change, error) {
			return dispatch.Change{Task: offer(cur, 6, 6, 3)}, nil
		}},
	})
	if errs[0] != nil || errs[1] != nil || out[0].Version != 2 || out[1].Version != 2 {
		t.Errorf("clean batch = versions %d, %d, errors %v, %v; want 2, 2, nil, nil", out[0].Version, out[1].Version, errs[0], errs[1])
	}
	if out, errs := s.UpdateTasks(ctx, nil); len(out) != 0 || len(errs) != 0 {
		t.Errorf("UpdateTasks(nil) = %v, %v; want nothing", out, errs)
	}
}

// testUnleaseTasks: UnleaseTasks ends the owner's leases on the tasks named, and no other lease.
func testUnleaseTasks(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	for n := 1; n <= 3; n++ {
		mustCreate(ctx, t, s, newTask(n))
	}
	now := at(10)
	leased, err := s.LeaseDue(ctx, "a", now, time.Minute, 3)
	if err != nil || len(leased) != 3 {
		t.Fatalf("LeaseDue = %d tasks, %v; want 3", len(leased), err)
	}
	if err := s.UnleaseTasks(ctx, []string{taskID(1), taskID(2)}, "b"); err != nil {
		t.Fatalf("UnleaseTasks(other owner): %v", err)
	}
	if got, err := s.LeaseDue(ctx, "b", now, time.Minute, 3); err != nil || len(got) != 0 {
		t.Fatalf("LeaseDue after another owner's unlease = %v, %v; want none", ids(got), err)
	}
	if err := s.UnleaseTasks(ctx, []string{taskID(1), taskID(3)}, "a"); err != nil {
		t.Fatalf("UnleaseTasks: %v", err)
	}
	got, err := s.LeaseDue(ctx, "b", now, time.Minute, 3)
	if err != nil {
		t.Fatalf("LeaseDue: %v", err)
	}
	if diff := cmp.Diff([]string{taskID(1), taskID(3)}, ids(got)); diff != "" {
		t.Errorf("tasks leased after UnleaseTasks (-want +got):\n%s", diff)
	}
}

// testUnleaseOthers: UnleaseOthers ends the leases of every owner but the one named on tasks in the work
// queue, says how many, and leaves the named owner's; OneProcess is the engine's.
func testUnleaseOthers(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	for n := 1; n <= 4; n++ {
		mustCreate(ctx, t, s, newTask(n))
	}
	now := at(10)
	for owner, n := range map[string]int{"a": 2, "b": 1, "keep": 1} {
		if got, err := s.LeaseDue(ctx, owner, now, time.Minute, n); err != nil || len(got) != n {
			t.Fatalf("LeaseDue(%s) = %d tasks, %v; want %d", owner, len(got), err, n)
		}
	}
	if n, err := s.UnleaseOthers(ctx, "keep"); err != nil || n != 3 {
		t.Fatalf("UnleaseOthers = %d, %v; want 3", n, err)
	}
	got, err := s.LeaseDue(ctx, "c", now, time.Minute, 4)
	if err != nil || len(got) != 3 {
		t.Fatalf("LeaseDue after UnleaseOthers = %v, %v; want the 3 tasks of a and b", ids(got), err)
	}
	if n, err := s.UnleaseOthers(ctx, "c"); err != nil || n != 1 {
		t.Fatalf("UnleaseOthers(c) = %d, %v; want 1 (keep's)", n, err)
	}
	if want := s.Dialect() == database.SQLite; s.OneProcess() != want {
		t.Errorf("OneProcess = %t, want %t", s.OneProcess(), want)
	}
}
