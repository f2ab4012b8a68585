package storetest

import (
	"context"
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlstore"
)

// Without returns fsys's files at its root but name, for migrating a database to the version before a
// migration.
func Without(t testing.TB, fsys fs.FS, name string) fs.FS {
	t.Helper()
	out := fstest.MapFS{}
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	for _, e := range entries {
		if e.IsDir() || e.Name() == name {
			continue
		}
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			t.Fatalf("storetest: %v", err)
		}
		out[e.Name()] = &fstest.MapFile{Data: b}
	}
	if len(out) == len(entries) {
		t.Fatalf("storetest: no migration %s", name)
	}
	return out
}

// FormerHoldersBackfill checks the migration that creates former_holders: s is a store on a database
// migrated up to the migration before it, and migrate applies the rest. The tasks written before name
// their former holders in their histories only; after the migration a courier's AnyHolder filter finds
// them.
func FormerHoldersBackfill(t *testing.T, s *sqlstore.Store, migrate func(context.Context) error) {
	ctx := testContext(t)
	pickupColumns(ctx, t, s, true)
	// Task 1: held by courier 1, handed back, then held by courier 2. Task 2: held by courier 1, now.
	// Task 3: held by courier 1, handed back, held by courier 1 again.
	held := func(n int, holders ...int) dispatch.Task {
		task := newTask(n)
		for i, c := range holders {
			task.History = append(task.History,
				dispatch.StateChange{State: dispatch.StateAssigned, At: at(n + 2*i), Actor: dispatch.ActorCourier, CourierID: courierID(c)},
				dispatch.StateChange{State: dispatch.StatePending, At: at(n + 2*i + 1), Actor: dispatch.ActorCourier, CourierID: courierID(c)})
		}
		task.History = task.History[:len(task.History)-1]
		return assign(task, holders[len(holders)-1], n+2*len(holders))
	}
	mustCreate(ctx, t, s, held(1, 1, 2))
	mustCreate(ctx, t, s, held(2, 1))
	mustCreate(ctx, t, s, held(3, 1, 1))
	mustCreate(ctx, t, s, newTask(4))
	pickupColumns(ctx, t, s, false)
	if err := migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	for c, want := range map[int][]string{1: {taskID(3), taskID(2), taskID(1)}, 2: {taskID(1)}, 3: nil} {
		got, err := s.ListTasks(ctx, dispatch.TaskQuery{Filter: dispatch.TaskFilter{CourierID: courierID(c), AnyHolder: true}, Limit: 10})
		if err != nil {
			t.Fatalf("ListTasks(courier %d): %v", c, err)
		}
		if diff := cmp.Diff(want, ids(got), cmpOpts...); diff != "" {
			t.Errorf("courier %d's tasks after the migration (-want +got):\n%s", c, diff)
		}
	}
}

// pickupColumns adds (or drops) the pickup columns of the tasks_waiting migration, which comes after the
// former_holders migration and which the store writes: with them the store creates tasks on a database
// migrated up to before the former_holders migration.
func pickupColumns(ctx context.Context, t *testing.T, s *sqlstore.Store, add bool) {
	t.Helper()
	for _, col := range []string{"pickup_lat", "pickup_lng"} {
		stmt := "ALTER TABLE tasks DROP COLUMN " + col
		if add {
			stmt = "ALTER TABLE tasks ADD COLUMN " + col + " REAL"
		}
		if _, err := s.DB().ExecContext(ctx, stmt); err != nil {
			t.Fatalf("storetest: %s: %v", stmt, err)
		}
	}
}
