package storetest_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/dispatch/storetest"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/eventlog"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testFixture checks that a fixture's store enqueues jobs (Change.Jobs do not fail) and that its event
// log hears the store's events.
func testFixture(t *testing.T, s *sqlstore.Store, feed *eventlog.Log) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sub, err := feed.Subscribe(ctx, 0)
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	defer sub.Close()
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, _, err := s.CreateTask(ctx, dispatch.Task{ID: "t1", CreatedBy: "u1", CustomerID: "u1", State: dispatch.StatePending,
		CreateTime: now, UpdateTime: now}); err != nil {
		t.Fatalf("CreateTask: %v", err)
	}
	if _, err := s.UpdateTask(ctx, "t1", func(cur dispatch.Task) (dispatch.Change, error) {
		cur.State, cur.CourierID = dispatch.StateAssigned, "c1"
		return dispatch.Change{Task: cur, Jobs: []dispatch.Job{{Kind: dispatch.JobClaim, CourierID: "c1", TaskID: "t1"}}}, nil
	}); err != nil {
		t.Fatalf("UpdateTask(with a job): %v", err)
	}
	var got []string
	for len(got) < 2 {
		e, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("Next after %v: %v", got, err)
		}
		if e.Topic == dispatch.TopicTask {
			got = append(got, e.Key+":"+string(e.Payload))
		}
	}
	if want := []string{"t1:pending", "t1:assigned"}; got[0] != want[0] || got[1] != want[1] {
		t.Errorf("task events = %v, want %v", got, want)
	}
}

func TestSQLite(t *testing.T) {
	s, feed := storetest.SQLite(t)
	testFixture(t, s, feed)
}

func TestPostgres(t *testing.T) {
	databasetest.PostgresURL(t) // skips (or fails under LASTMILE_REQUIRE_POSTGRES=1) without a database
	s, feed := storetest.Postgres(t)
	testFixture(t, s, feed)
}
