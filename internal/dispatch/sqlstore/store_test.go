package sqlstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlite"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// errRetry stands for PostgreSQL's deadlock_detected: an engine may report it as retryable.
var errRetry = errors.New("deadlock detected")

// newStore returns a store on SQLite whose engine reports errRetry as retryable, so that the retry loop
// PostgreSQL needs can be driven deterministically.
func newStore(t *testing.T) *sqlstore.Store {
	t.Helper()
	db := databasetest.SQLite(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := sqlite.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	return sqlstore.New(db, sqlstore.Engine{
		Dialect:   database.SQLite,
		MapError:  database.Constraints{}.MapSQLite,
		Retryable: func(err error) bool { return errors.Is(err, errRetry) },
	}, nil)
}

func newTask() dispatch.Task {
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	return dispatch.Task{ID: "t1", CreatedBy: "u1", RequestID: "r1", CustomerID: "u1", State: dispatch.StatePending, Priority: dispatch.PriorityNormal,
		CreateTime: now, UpdateTime: now, DueTime: now}
}

// TestUpdateTaskRetries: a transaction that fails with a retryable error runs again from the start,
// closure included, and its second run is what is written.
func TestUpdateTaskRetries(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	nudges := 0
	s.SetNudge(func() { nudges++ })
	if _, _, err := s.CreateTask(ctx, newTask()); err != nil {
		t.Fatal(err)
	}
	runs := 0
	out, err := s.UpdateTask(ctx, "t1", func(cur dispatch.Task) (dispatch.Change, error) {
		runs++
		if runs == 1 {
			return dispatch.Change{}, errRetry
		}
		cur.Searches = runs
		return dispatch.Change{Task: cur}, nil
	})
	if err != nil || runs != 2 || out.Searches != 2 || out.Version != 2 {
		t.Errorf("UpdateTask = searches %d version %d, %v after %d runs; want 2, 2, nil after 2 runs", out.Searches, out.Version, err, runs)
	}
	if nudges != 2 {
		t.Errorf("nudges = %d, want 2 (the create and the committed update)", nudges)
	}
}

// TestUpdateTaskRetriesBounded: a transaction that keeps failing is given up after a few runs, as
// Aborted, and a failure that is not retryable is returned at once.
func TestUpdateTaskRetriesBounded(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	if _, _, err := s.CreateTask(ctx, newTask()); err != nil {
		t.Fatal(err)
	}
	runs := 0
	_, err := s.UpdateTask(ctx, "t1", func(dispatch.Task) (dispatch.Change, error) {
		runs++
		return dispatch.Change{}, errRetry
	})
	if apperr.CodeOf(err) != apperr.Aborted || !errors.Is(err, errRetry) || runs != 5 {
		t.Errorf("UpdateTask(always retryable) = %v (code %q) after %d runs, want Aborted wrapping the cause after 5", err, apperr.CodeOf(err), runs)
	}
	runs = 0
	refused := apperr.Errorf(apperr.FailedPrecondition, "no")
	_, err = s.UpdateTask(ctx, "t1", func(dispatch.Task) (dispatch.Change, error) {
		runs++
		return dispatch.Change{}, refused
	})
	if !errors.Is(err, refused) || runs != 1 {
		t.Errorf("UpdateTask(refused) = %v after %d runs, want the refusal after 1", err, runs)
	}
}

// TestNudge: the nudge runs after commits that appended events, never after a failed change or one that
// appends nothing.
func TestNudge(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	nudges := 0
	s.SetNudge(func() { nudges++ })
	if _, _, err := s.CreateTask(ctx, newTask()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateTask(ctx, newTask()); err != nil { // the same request: nothing written
		t.Fatal(err)
	}
	if _, err := s.UpdateTask(ctx, "t1", func(dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{}, apperr.Errorf(apperr.FailedPrecondition, "no")
	}); apperr.CodeOf(err) != apperr.FailedPrecondition {
		t.Fatalf("UpdateTask(refused) = %v", err)
	}
	if _, err := s.UpdateSession(ctx, "c1", func(cur dispatch.Session) (dispatch.Session, error) {
		cur.Acked = 3 // same session id: no event
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LeaseDue(ctx, "r1", time.Date(2032, 1, 1, 0, 0, 0, 0, time.UTC), time.Minute, 10); err != nil {
		t.Fatal(err)
	}
	if nudges != 1 {
		t.Errorf("nudges = %d, want 1 (the first create only)", nudges)
	}
	if _, err := s.UpdateSession(ctx, "c1", func(cur dispatch.Session) (dispatch.Session, error) {
		cur.SessionID = "s1"
		return cur, nil
	}); err != nil {
		t.Fatal(err)
	}
	if nudges != 2 {
		t.Errorf("nudges after a new session = %d, want 2", nudges)
	}
}
