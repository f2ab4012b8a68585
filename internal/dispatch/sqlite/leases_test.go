package sqlite_test

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pressly/goose/v3"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlite"
	"lastmile/internal/dispatch/storetest"
	"lastmile/internal/platform/database"
)

// TestLeaseTableMigration: migration 00007 moves the leases held in the tasks' columns into
// task_leases, one row per leased task with its owner and end, and drops the columns; its down
// migration puts them back.
func TestLeaseTableMigration(t *testing.T) {
	ctx := t.Context()
	db, err := database.OpenSQLite(ctx, filepath.Join(t.TempDir(), "dispatch.db"))
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sqlite.Migrations().FS, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		t.Fatalf("goose: %v", err)
	}
	if _, err := p.UpTo(ctx, 6); err != nil {
		t.Fatalf("migrate up to 6: %v", err)
	}
	for _, row := range []struct {
		id    string
		owner any
		until any
	}{{"t1", "replica-a", int64(1_700_000_000_123_456)}, {"t2", nil, nil}, {"t3", "replica-b", int64(42)}} {
		if _, err := db.ExecContext(ctx, `INSERT INTO tasks (id, state, customer_id, priority_rank, create_time, update_time,
			due_time, lease_owner, lease_until, created_by, version, doc) VALUES ($1, 'pending', 'u', 1, 1, 1, 1, $2, $3, 'u', 1, '{}')`,
			row.id, row.owner, row.until); err != nil {
			t.Fatalf("insert task %s: %v", row.id, err)
		}
	}
	type lease struct {
		TaskID, Owner string
		Until         int64
	}
	leases := func(query string) []lease {
		t.Helper()
		rows, err := db.QueryContext(ctx, query)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		defer rows.Close()
		var out []lease
		for rows.Next() {
			var l lease
			if err := rows.Scan(&l.TaskID, &l.Owner, &l.Until); err != nil {
				t.Fatal(err)
			}
			out = append(out, l)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := []lease{{"t1", "replica-a", 1_700_000_000_123_456}, {"t3", "replica-b", 42}}

	if _, err := p.UpTo(ctx, 7); err != nil {
		t.Fatalf("migrate up to 7: %v", err)
	}
	if diff := cmp.Diff(want, leases(`SELECT task_id, owner, until FROM task_leases ORDER BY task_id`)); diff != "" {
		t.Errorf("task_leases after the migration (-want +got):\n%s", diff)
	}
	if n := columnCount(t, db, "lease_owner", "lease_until"); n != 0 {
		t.Errorf("tasks has %d lease columns after the migration, want 0", n)
	}

	if _, err := p.DownTo(ctx, 6); err != nil {
		t.Fatalf("migrate down to 6: %v", err)
	}
	if diff := cmp.Diff(want, leases(`SELECT id, lease_owner, lease_until FROM tasks WHERE lease_owner IS NOT NULL ORDER BY id`)); diff != "" {
		t.Errorf("tasks' leases after the down migration (-want +got):\n%s", diff)
	}
	var tables int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema WHERE name = 'task_leases'`).Scan(&tables); err != nil || tables != 0 {
		t.Errorf("task_leases after the down migration: %d tables, %v; want none", tables, err)
	}
}

// columnCount is how many of names are columns of tasks.
func columnCount(t *testing.T, db *sql.DB, names ...string) int {
	t.Helper()
	n := 0
	for _, name := range names {
		var c int
		if err := db.QueryRowContext(t.Context(), `SELECT count(*) FROM pragma_table_info('tasks') WHERE name = $1`, name).Scan(&c); err != nil {
			t.Fatal(err)
		}
		n += c
	}
	return n
}

// TestLeasesInTheirTable: LeaseDue writes a task's lease to task_leases and leaves the task's row as
// it was; the unlease deletes the lease's row, and Purge deletes the rows of leases that ended before
// its bound (a replica that stopped without unleasing), not the others.
func TestLeasesInTheirTable(t *testing.T) {
	ctx := t.Context()
	s := storetest.SQLiteStore(t)
	db := s.DB()
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, id := range []string{"t1", "t2", "t3"} {
		task := dispatch.Task{ID: id, CustomerID: "u1", CreatedBy: "u1", State: dispatch.StatePending, Priority: dispatch.PriorityNormal,
			CreateTime: now, UpdateTime: now, DueTime: now}
		if _, _, err := s.CreateTask(ctx, task); err != nil {
			t.Fatalf("CreateTask(%s): %v", id, err)
		}
	}
	rows := func() []string {
		t.Helper()
		rows, err := db.QueryContext(ctx, `SELECT task_id || ' ' || owner || ' ' || until FROM task_leases ORDER BY task_id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var r string
			if err := rows.Scan(&r); err != nil {
				t.Fatal(err)
			}
			out = append(out, r)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	var docs [2]string
	if err := db.QueryRowContext(ctx, `SELECT group_concat(doc || version || due_time, '|') FROM tasks`).Scan(&docs[0]); err != nil {
		t.Fatal(err)
	}
	until := now.Add(time.Minute).UnixMicro()
	if got, err := s.LeaseDue(ctx, "a", now, time.Minute, 2); err != nil || len(got) != 2 {
		t.Fatalf("LeaseDue(a) = %d tasks, %v; want 2", len(got), err)
	}
	if got, err := s.LeaseDue(ctx, "b", now, time.Hour, 2); err != nil || len(got) != 1 || got[0].ID != "t3" {
		t.Fatalf("LeaseDue(b) = %v, %v; want t3", got, err)
	}
	want := []string{fmt.Sprintf("t1 a %d", until), fmt.Sprintf("t2 a %d", until), fmt.Sprintf("t3 b %d", now.Add(time.Hour).UnixMicro())}
	if diff := cmp.Diff(want, rows()); diff != "" {
		t.Errorf("task_leases after LeaseDue (-want +got):\n%s", diff)
	}
	if err := db.QueryRowContext(ctx, `SELECT group_concat(doc || version || due_time, '|') FROM tasks`).Scan(&docs[1]); err != nil {
		t.Fatal(err)
	}
	if docs[0] != docs[1] {
		t.Errorf("LeaseDue changed the tasks' rows")
	}
	if err := s.Unlease(ctx, "t1", "a"); err != nil {
		t.Fatalf("Unlease: %v", err)
	}
	if diff := cmp.Diff(want[1:], rows()); diff != "" {
		t.Errorf("task_leases after Unlease (-want +got):\n%s", diff)
	}
	// t2's lease (a) ended a minute after now, t3's (b) ends an hour after.
	if _, err := s.Purge(ctx, now.Add(2*time.Minute)); err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if diff := cmp.Diff(want[2:], rows()); diff != "" {
		t.Errorf("task_leases after Purge (-want +got):\n%s", diff)
	}
	if err := s.UnleaseTasks(ctx, []string{"t2", "t3"}, "b"); err != nil {
		t.Fatalf("UnleaseTasks: %v", err)
	}
	if got := rows(); len(got) != 0 {
		t.Errorf("task_leases after UnleaseTasks = %v, want none", got)
	}
}
