package storetest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/dispatch/postgres"
	"lastmile/internal/dispatch/sqlite"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/eventlog"
	"lastmile/internal/platform/eventlog/sqllog"
)

// SQLiteStore returns a dispatch store on a new SQLite file in a temporary directory, migrated with
// everything (sqlite.Migrate), without a job queue; the file is closed when the test ends.
func SQLiteStore(t testing.TB) *sqlstore.Store {
	t.Helper()
	return sqlite.New(databasetest.MigratedSQLite(t, "dispatch", sqlite.Migrate)) // a copy of one migrated file
}

// PostgresStore returns a dispatch store on a fresh PostgreSQL database (databasetest.Postgres: skipped
// without LASTMILE_TEST_POSTGRES_DSN unless LASTMILE_REQUIRE_POSTGRES=1), migrated with everything
// (postgres.Migrate) in the dispatch schema, without a job queue; it is closed when the test ends.
func PostgresStore(t testing.TB) *sqlstore.Store {
	t.Helper()
	s, _ := postgresStore(t)
	return s
}

func postgresStore(t testing.TB) (*sqlstore.Store, *pgxpool.Pool) {
	t.Helper()
	pool := databasetest.MigratedPostgres(t, postgres.Schema, "dispatch", postgres.Migrate) // a copy of one migrated template
	s := postgres.New(pool)
	t.Cleanup(func() { _ = s.Close() }) // before the pool closes: cleanups run last-in first-out
	return s, pool
}

// Postgres is SQLite on PostgreSQL (see PostgresStore), its event log also woken by LISTEN/NOTIFY.
func Postgres(t testing.TB) (*sqlstore.Store, *eventlog.Log) {
	t.Helper()
	s, pool := postgresStore(t)
	s.SetJobs(sqlstore.RiverJobs(newJobs(t, s)))
	feed := feed(t, s.DB(), s.Dialect(), sqllog.Listener(pool))
	s.SetNudge(feed.Nudge)
	return s, feed
}

// SQLite returns SQLiteStore's store with River as its job queue (an insert-only client: jobs are
// enqueued, never worked) and its event log, running until the test ends and nudged by the store after
// every commit that appends: a Service's Deps.Store and Deps.Events.
func SQLite(t testing.TB) (*sqlstore.Store, *eventlog.Log) {
	t.Helper()
	s := SQLiteStore(t)
	s.SetJobs(sqlstore.RiverJobs(newJobs(t, s)))
	feed := Feed(t, s.DB(), s.Dialect())
	s.SetNudge(feed.Nudge)
	return s, feed
}

// Feed returns the dispatch event log in db (engine d, migrated), polling every 50 ms, and runs it until
// the test ends.
func Feed(t testing.TB, db *sql.DB, d database.Dialect) *eventlog.Log {
	t.Helper()
	return feed(t, db, d, nil)
}

func feed(t testing.TB, db *sql.DB, d database.Dialect, wake func(context.Context, eventlog.Backoff, func())) *eventlog.Log {
	t.Helper()
	feed, err := eventlog.New(sqllog.NewSource(db, d), eventlog.Options{Poll: 50 * time.Millisecond, Wake: wake})
	if err != nil {
		t.Fatalf("storetest: event log: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- feed.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("storetest: event log Run() = %v", err)
		}
	})
	return feed
}
