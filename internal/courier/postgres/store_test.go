package postgres_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"lastmile/internal/courier"
	"lastmile/internal/courier/postgres"
	"lastmile/internal/courier/storetest"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// newStore returns a store on a fresh database, skipped without LASTMILE_TEST_POSTGRES_DSN (see
// databasetest).
func newStore(t testing.TB) courier.Store {
	t.Helper()
	pool := databasetest.Postgres(t, "courier")
	if err := database.MigratePostgres(testContext(t), pool, postgres.Migrations()); err != nil {
		t.Fatalf("MigratePostgres: %v", err)
	}
	s := postgres.New(pool)
	t.Cleanup(func() { s.Close() }) // before the pool closes: cleanups run last-in first-out
	return s
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
	storetest.Run(t, func(t *testing.T) courier.Store { return newStore(t) })
}

// open opens a pool on url in the courier schema and migrates it, as a starting process does.
func open(ctx context.Context, t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := database.OpenPostgres(ctx, url, database.PostgresOptions{Schema: "courier", MaxConns: 8})
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	if err := database.MigratePostgres(ctx, pool, postgres.Migrations()); err != nil {
		pool.Close()
		t.Fatalf("MigratePostgres: %v", err)
	}
	return pool
}

func TestStoreDurable(t *testing.T) {
	storetest.RunDurable(t, func(t *testing.T) (courier.Store, func() courier.Store) {
		ctx := testContext(t)
		url := databasetest.PostgresURL(t)
		pool := open(ctx, t, url)
		s := postgres.New(pool)
		t.Cleanup(func() {
			s.Close()
			pool.Close()
		})
		reopen := func() courier.Store {
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

// TestInvalid checks that values no store can hold are refused as Invalid before they reach SQL.
func TestInvalid(t *testing.T) {
	storetest.RunInvalid(t, func(t *testing.T) courier.Store { return newStore(t) })
}

// TestInvalidText checks that a string PostgreSQL's text cannot hold (a NUL byte) is refused as Invalid:
// no check in Go catches it, PostgreSQL does, and the constraints mapping must say Invalid rather than Internal.
func TestInvalidText(t *testing.T) {
	ctx := testContext(t)
	s := newStore(t)
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	c := courier.Courier{ID: "c1", UserID: "u1", DisplayName: "a\x00b", Mode: courier.ModeCar, Capacity: 2, Status: courier.StatusAvailable, CreatedAt: now, UpdatedAt: now, Version: 1}
	if got := apperr.CodeOf(s.CreateCourier(ctx, c)); got != apperr.Invalid {
		t.Errorf("CreateCourier(NUL in name) code = %q, want %q", got, apperr.Invalid)
	}
}

// BenchmarkSaveLocations measures the location flush (see storetest.BenchSaveLocations).
func BenchmarkSaveLocations(b *testing.B) {
	requirePostgres(b)
	storetest.BenchSaveLocations(b, newStore(b))
}

// TestUnreachableDatabaseIsUnavailable: with the server unreachable (stopped), store calls fail with
// Unavailable (database.Classify in the constraints mapping), not Internal.
func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	ctx := testContext(t)
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:1/lastmile?sslmode=disable&connect_timeout=5")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	s := postgres.New(pool)
	defer s.Close()
	_, err = s.GetCourier(ctx, "c1")
	if got := apperr.CodeOf(err); got != apperr.Unavailable {
		t.Errorf("GetCourier() on an unreachable database = %v (code %q), want %q", err, got, apperr.Unavailable)
	}
}

// BenchmarkClaimCourier measures a claim's transaction and the release after it, on one courier.
func BenchmarkClaimCourier(b *testing.B) {
	requirePostgres(b)
	ctx := b.Context()
	s := newStore(b)
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	c := courier.Courier{ID: "c1", UserID: "u1", DisplayName: "c1", Mode: courier.ModeCar, Capacity: 3, Status: courier.StatusAvailable, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := s.CreateCourier(ctx, c); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		n++
		task := fmt.Sprintf("t%d", n)
		claim := courier.Claim{CourierID: c.ID, TaskID: task, ClaimedAt: now, ExpectedRelease: now.Add(time.Hour)}
		err := s.ClaimCourier(ctx, c.ID, task, func(cur courier.Courier, holder string) (*courier.Claim, error) {
			if holder != "" || cur.ActiveTasks != 0 {
				return nil, fmt.Errorf("courier %+v, holder %q: want no claim", cur, holder)
			}
			return &claim, nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if released, err := s.ReleaseCourier(ctx, c.ID, task); err != nil || !released {
			b.Fatalf("ReleaseCourier(%s) = %v, %v", task, released, err)
		}
	}
}
