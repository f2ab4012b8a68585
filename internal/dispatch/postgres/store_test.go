package postgres_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/postgres"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/dispatch/storetest"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/eventlog/sqllog"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// requirePostgres skips the test (or fails it under LASTMILE_REQUIRE_POSTGRES=1) without a database,
// once for the whole suite rather than once per subtest.
func requirePostgres(t testing.TB) {
	t.Helper()
	if os.Getenv(databasetest.EnvPostgresDSN) == "" {
		databasetest.PostgresURL(t) // skips or fails without creating anything
	}
}

func TestStore(t *testing.T) {
	requirePostgres(t)
	storetest.Run(t, func(t *testing.T) *sqlstore.Store { return storetest.PostgresStore(t) })
}

// TestUnreachableDatabaseIsUnavailable: with the server unreachable, store calls fail with Unavailable
// (database.Classify in the constraints mapping), not Internal.
func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:1/lastmile?sslmode=disable&connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := postgres.New(pool)
	defer s.Close()
	_, err = s.GetTask(ctx, "t1")
	if got := apperr.CodeOf(err); got != apperr.Unavailable {
		t.Errorf("GetTask() on an unreachable database = %v (code %q), want %q", err, got, apperr.Unavailable)
	}
	_, err = s.UpdateTask(ctx, "t1", nil)
	if got := apperr.CodeOf(err); got != apperr.Unavailable {
		t.Errorf("UpdateTask() on an unreachable database = %v (code %q), want %q", err, got, apperr.Unavailable)
	}
}

// open opens a pool on url in the dispatch schema and migrates it, as a starting process does.
func open(ctx context.Context, t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := database.OpenPostgres(ctx, url, database.PostgresOptions{Schema: postgres.Schema, MaxConns: 8})
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	if err := postgres.Migrate(ctx, pool); err != nil {
		pool.Close()
		t.Fatalf("Migrate: %v", err)
	}
	return pool
}

func TestStoreDurable(t *testing.T) {
	storetest.RunDurable(t, func(t *testing.T) (*sqlstore.Store, func() *sqlstore.Store) {
		ctx := t.Context()
		url := databasetest.PostgresURL(t)
		pool := open(ctx, t, url)
		s := postgres.New(pool)
		t.Cleanup(func() {
			s.Close()
			pool.Close()
		})
		reopen := func() *sqlstore.Store {
			if err := s.Close(); err != nil {
				t.Fatalf("close store: %v", err)
			}
			pool.Close()
			pool = open(ctx, t, url)
			s = postgres.New(pool)
			return s
		}
		return s, reopen
	})
}

// BenchmarkStore measures the store's hot paths (see storetest.Bench).
func BenchmarkStore(b *testing.B) {
	requirePostgres(b)
	storetest.Bench(b, storetest.PostgresStore(b))
}

// TestInvalidText checks that a string PostgreSQL cannot hold (a NUL byte) is refused as Invalid, in a
// column and in a doc: no check in Go catches it, PostgreSQL does, and the constraints mapping must say
// Invalid rather than Internal.
func TestInvalidText(t *testing.T) {
	ctx := t.Context()
	s := storetest.PostgresStore(t)
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	task := dispatch.Task{ID: "t1", CreatedBy: "u1", CustomerID: "u\x001", State: dispatch.StatePending, CreateTime: now, UpdateTime: now}
	_, _, err := s.CreateTask(ctx, task)
	if got := apperr.CodeOf(err); got != apperr.Invalid {
		t.Errorf("CreateTask(NUL in customer id) = %v (code %q), want %q", err, got, apperr.Invalid)
	}
	task.CustomerID, task.Notes = "u1", "a\x00b"
	_, _, err = s.CreateTask(ctx, task)
	if got := apperr.CodeOf(err); got != apperr.Invalid {
		t.Errorf("CreateTask(NUL in notes) = %v (code %q), want %q", err, got, apperr.Invalid)
	}
}

// TestUpdateTasksWritesABatchTogether: a batch of offers, written by one statement per table on
// PostgreSQL, stores each task, each new offer and each decision as one update at a time would; a
// decision id given twice keeps the later document, as two upserts in order do; a task whose closure
// fails is not written.
func TestUpdateTasksWritesABatchTogether(t *testing.T) {
	requirePostgres(t)
	ctx := t.Context()
	s := storetest.PostgresStore(t)
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := []string{"t1", "t2", "t3", "t4"}
	for _, id := range ids {
		task := dispatch.Task{ID: id, CreatedBy: "u1", CustomerID: "u1", State: dispatch.StatePending, CreateTime: now, UpdateTime: now, DueTime: now}
		if _, _, err := s.CreateTask(ctx, task); err != nil {
			t.Fatalf("CreateTask(%s): %v", id, err)
		}
	}
	offerTo := func(cur dispatch.Task, courier, decision string, score float64) dispatch.Change {
		cur.State, cur.UpdateTime, cur.DueTime = dispatch.StateOffered, now.Add(time.Minute), now.Add(2*time.Minute)
		cur.Offers = append(cur.Offers, dispatch.Offer{ID: "o-" + cur.ID, TaskID: cur.ID, CourierID: courier, State: dispatch.OfferOpen,
			CreateTime: now.Add(time.Minute), ExpireTime: now.Add(2 * time.Minute), DecisionID: decision})
		return dispatch.Change{Task: cur, Decision: &dispatch.Decision{ID: decision, TaskID: cur.ID, DecideTime: now.Add(time.Minute),
			Candidates: []dispatch.Candidate{{CourierID: courier, Score: &dispatch.Score{Total: score}}}}}
	}
	refused := apperr.Errorf(apperr.FailedPrecondition, "no")
	out, errs := s.UpdateTasks(ctx, []dispatch.TaskWrite{
		{ID: "t1", Fn: func(cur dispatch.Task) (dispatch.Change, error) { return offerTo(cur, "c1", "d1", 1), nil }},
		{ID: "t2", Fn: func(cur dispatch.Task) (dispatch.Change, error) { return offerTo(cur, "c2", "d2", 2), nil }},
		{ID: "t3", Fn: func(cur dispatch.Task) (dispatch.Change, error) { return offerTo(cur, "c3", "d3", 3), refused }},
		{ID: "t4", Fn: func(cur dispatch.Task) (dispatch.Change, error) { return offerTo(cur, "c4", "d1", 4), nil }},
	})
	for i, want := range []error{nil, nil, refused, nil} {
		if errs[i] != want {
			t.Errorf("update %d: error %v, want %v", i+1, errs[i], want)
		}
	}
	for i, id := range ids {
		got, err := s.GetTask(ctx, id)
		if err != nil {
			t.Fatalf("GetTask(%s): %v", id, err)
		}
		wantVersion, wantState := int64(2), dispatch.StateOffered
		if id == "t3" {
			wantVersion, wantState = 1, dispatch.StatePending
		} else if out[i].Version != 2 {
			t.Errorf("UpdateTasks returned %s at version %d, want 2", id, out[i].Version)
		}
		if got.Version != wantVersion || got.State != wantState || (id != "t3" && !got.DueTime.Equal(now.Add(2*time.Minute))) {
			t.Errorf("%s stored at version %d, %s, due %v; want %d, %s", id, got.Version, got.State, got.DueTime, wantVersion, wantState)
		}
		byOffer, err := s.TaskByOffer(ctx, "o-"+id)
		if id == "t3" {
			if apperr.CodeOf(err) != apperr.NotFound {
				t.Errorf("TaskByOffer(o-t3) = %v, want NotFound", err)
			}
		} else if err != nil || byOffer.ID != id {
			t.Errorf("TaskByOffer(o-%s) = %s, %v; want the task", id, byOffer.ID, err)
		}
	}
	for task, want := range map[string][]float64{"t1": {4}, "t2": {2}, "t4": nil} {
		ds, err := s.Decisions(ctx, task, 10)
		if err != nil {
			t.Fatalf("Decisions(%s): %v", task, err)
		}
		var got []float64
		for _, d := range ds {
			got = append(got, d.Candidates[0].Score.Total)
		}
		if len(got) != len(want) || (len(want) > 0 && got[0] != want[0]) {
			t.Errorf("Decisions(%s) scores = %v, want %v", task, got, want)
		}
	}
}

// migratedBefore returns a new database migrated as a release without the named migrations left it.
func migratedBefore(t *testing.T, without ...string) *pgxpool.Pool {
	t.Helper()
	requirePostgres(t)
	pool := databasetest.Postgres(t, postgres.Schema)
	before := postgres.Migrations()
	for _, name := range without {
		before.FS = storetest.Without(t, before.FS, name)
	}
	if err := database.MigratePostgres(t.Context(), pool, before); err != nil {
		t.Fatal(err)
	}
	if err := database.MigratePostgres(t.Context(), pool, sqllog.Migrations(database.Postgres, sqlstore.Service)); err != nil {
		t.Fatal(err)
	}
	return pool
}

// TestFormerHoldersMigration: the migration that creates former_holders fills it from the histories of
// the tasks written before.
func TestFormerHoldersMigration(t *testing.T) {
	pool := migratedBefore(t, "00012_decision_bin.sql", "00011_waiting_pickups.sql", "00010_former_holders.sql")
	s := postgres.New(pool)
	t.Cleanup(func() { _ = s.Close() })
	storetest.FormerHoldersBackfill(t, s, func(ctx context.Context) error { return postgres.Migrate(ctx, pool) })
}

// TestWaitingPickupsMigration: the migration that adds the pickup columns fills them from the documents
// of the tasks written before.
func TestWaitingPickupsMigration(t *testing.T) {
	pool := migratedBefore(t, "00012_decision_bin.sql", "00011_waiting_pickups.sql")
	s := postgres.New(pool)
	t.Cleanup(func() { _ = s.Close() })
	storetest.WaitingPickupsBackfill(t, s, func(ctx context.Context) error { return postgres.Migrate(ctx, pool) })
}

// TestDecisionBinMigration: the decisions written before the binary form read the same after it.
func TestDecisionBinMigration(t *testing.T) {
	pool := migratedBefore(t, "00012_decision_bin.sql")
	s := postgres.New(pool)
	t.Cleanup(func() { _ = s.Close() })
	storetest.DecisionBinMigration(t, s, func(ctx context.Context) error { return postgres.Migrate(ctx, pool) })
}
