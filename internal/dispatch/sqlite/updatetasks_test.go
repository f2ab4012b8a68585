package sqlite_test

import (
	"testing"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/storetest"
)

// On SQLite UpdateTasks and UpdateTask run the closures ahead of their transaction, on the tasks as
// committed; these tests change a task between that run and the transaction (from inside the first
// run, which holds nothing) and check that the transaction writes the closure's result for the task as
// it is then.

// updateBase is the tests' clock.
var updateBase = time.Date(2031, 3, 14, 9, 0, 0, 0, time.UTC)

// createPending stores a PENDING task with id, due at due.
func createPending(t *testing.T, s dispatch.Store, id string, due time.Time) dispatch.Task {
	t.Helper()
	task := dispatch.Task{ID: id, CustomerID: "customer-1", CreatedBy: "customer-1",
		State: dispatch.StatePending, Priority: dispatch.PriorityNormal, CreateTime: updateBase, UpdateTime: updateBase, DueTime: due}
	if _, _, err := s.CreateTask(t.Context(), task); err != nil {
		t.Fatalf("CreateTask: %v", err)
	}
	return task
}

// raiseAfterAChange returns a closure that raises its task's priority, and records in seen the version
// it ran on; after its first run, before its result is written, another writer sets the task's notes to
// "changed meanwhile".
func raiseAfterAChange(t *testing.T, s dispatch.Store, seen *[]int64) func(dispatch.Task) (dispatch.Change, error) {
	return func(cur dispatch.Task) (dispatch.Change, error) {
		*seen = append(*seen, cur.Version)
		if len(*seen) == 1 {
			_, err := s.UpdateTask(t.Context(), cur.ID, func(c dispatch.Task) (dispatch.Change, error) {
				c.Notes = "changed meanwhile"
				return dispatch.Change{Task: c}, nil
			})
			if err != nil {
				t.Errorf("UpdateTask (meanwhile): %v", err)
			}
		}
		cur.Priority = dispatch.PriorityHigh
		return dispatch.Change{Task: cur}, nil
	}
}

func TestUpdateTasksRunsTheClosureAgainWhenTheTaskChangedMeanwhile(t *testing.T) {
	ctx := t.Context()
	s := storetest.SQLiteStore(t)
	task := createPending(t, s, "0190c000-0000-7000-8000-000000000001", updateBase)
	var seen []int64 // the versions the closure ran on
	got, errs := s.UpdateTasks(ctx, []dispatch.TaskWrite{{ID: task.ID, Fn: raiseAfterAChange(t, s, &seen)}})
	if errs[0] != nil {
		t.Fatalf("UpdateTasks: %v", errs[0])
	}
	if want := []int64{1, 2}; len(seen) != 2 || seen[0] != want[0] || seen[1] != want[1] {
		t.Errorf("closure ran on versions %v, want %v", seen, want)
	}
	stored, err := s.GetTask(ctx, task.ID)
	if err != nil {
		t.Fatalf("GetTask: %v", err)
	}
	if stored.Version != 3 || stored.Notes != "changed meanwhile" || stored.Priority != dispatch.PriorityHigh {
		t.Errorf("stored task: version %d, notes %q, priority %v; want 3, %q, %v", stored.Version, stored.Notes, stored.Priority,
			"changed meanwhile", dispatch.PriorityHigh)
	}
	if got[0].Version != 3 || got[0].Notes != "changed meanwhile" {
		t.Errorf("UpdateTasks returned version %d, notes %q; want 3, %q", got[0].Version, got[0].Notes, "changed meanwhile")
	}
}

func TestUpdateTasksRunsTheClosureAgainWhenTheDueTimeMovedMeanwhile(t *testing.T) {
	ctx := t.Context()
	s := storetest.SQLiteStore(t)
	base := updateBase
	task := createPending(t, s, "0190c000-0000-7000-8000-000000000002", base.Add(time.Hour))
	var seen []time.Time // the due times the closure ran on
	fn := func(cur dispatch.Task) (dispatch.Change, error) {
		seen = append(seen, cur.DueTime)
		if len(seen) == 1 {
			// WakePending moves the due time and keeps the version.
			if err := s.WakePending(ctx, base.Add(time.Minute)); err != nil {
				t.Errorf("WakePending: %v", err)
			}
		}
		return dispatch.Change{Task: cur}, nil // keeps the due time it saw
	}
	if _, errs := s.UpdateTasks(ctx, []dispatch.TaskWrite{{ID: task.ID, Fn: fn}}); errs[0] != nil {
		t.Fatalf("UpdateTasks: %v", errs[0])
	}
	want := []time.Time{base.Add(time.Hour), base.Add(time.Minute)}
	if len(seen) != 2 || !seen[0].Equal(want[0]) || !seen[1].Equal(want[1]) {
		t.Errorf("closure ran on due times %v, want %v", seen, want)
	}
	stored, err := s.GetTask(ctx, task.ID)
	if err != nil {
		t.Fatalf("GetTask: %v", err)
	}
	if stored.Version != 2 || !stored.DueTime.Equal(base.Add(time.Minute)) {
		t.Errorf("stored task: version %d, due %v; want 2, %v", stored.Version, stored.DueTime, base.Add(time.Minute))
	}
}

func TestUpdateTasksWritesWhatTheClosureReturnedAheadOnce(t *testing.T) {
	ctx := t.Context()
	s := storetest.SQLiteStore(t)
	task := createPending(t, s, "0190c000-0000-7000-8000-000000000003", updateBase)
	runs := 0
	fn := func(cur dispatch.Task) (dispatch.Change, error) {
		runs++
		cur.Notes = "written"
		return dispatch.Change{Task: cur}, nil
	}
	if _, errs := s.UpdateTasks(ctx, []dispatch.TaskWrite{{ID: task.ID, Fn: fn}}); errs[0] != nil {
		t.Fatalf("UpdateTasks: %v", errs[0])
	}
	if runs != 1 {
		t.Errorf("closure ran %d times, want 1", runs)
	}
	stored, err := s.GetTask(ctx, task.ID)
	if err != nil {
		t.Fatalf("GetTask: %v", err)
	}
	if stored.Version != 2 || stored.Notes != "written" {
		t.Errorf("stored task: version %d, notes %q; want 2, %q", stored.Version, stored.Notes, "written")
	}
}

func TestUpdateTaskRunsTheClosureAgainWhenTheTaskChangedMeanwhile(t *testing.T) {
	ctx := t.Context()
	s := storetest.SQLiteStore(t)
	task := createPending(t, s, "0190c000-0000-7000-8000-000000000004", updateBase)
	var seen []int64 // the versions the closure ran on
	got, err := s.UpdateTask(ctx, task.ID, raiseAfterAChange(t, s, &seen))
	if err != nil {
		t.Fatalf("UpdateTask: %v", err)
	}
	if want := []int64{1, 2}; len(seen) != 2 || seen[0] != want[0] || seen[1] != want[1] {
		t.Errorf("closure ran on versions %v, want %v", seen, want)
	}
	if got.Version != 3 || got.Notes != "changed meanwhile" || got.Priority != dispatch.PriorityHigh {
		t.Errorf("UpdateTask = version %d, notes %q, priority %v; want 3, %q, %v", got.Version, got.Notes, got.Priority,
			"changed meanwhile", dispatch.PriorityHigh)
	}
	runs := 0
	if _, err := s.UpdateTask(ctx, task.ID, func(cur dispatch.Task) (dispatch.Change, error) {
		runs++
		return dispatch.Change{Task: cur}, nil
	}); err != nil {
		t.Fatalf("UpdateTask: %v", err)
	}
	if runs != 1 {
		t.Errorf("closure of an undisturbed UpdateTask ran %d times, want 1", runs)
	}
}
