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
