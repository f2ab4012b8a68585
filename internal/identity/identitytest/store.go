package identitytest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"lastmile/internal/identity/postgres"
	"lastmile/internal/identity/sqlite"
	"lastmile/internal/identity/sqlstore"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/eventlog"
	"lastmile/internal/platform/eventlog/sqllog"
)

// SQLiteStore returns the identity store on a new SQLite file in a temporary directory, migrated with
// identity's migrations and the event log's; the file is closed when the test ends.
func SQLiteStore(t testing.TB) *sqlstore.Store {
	t.Helper()
	store, _ := sqliteDB(t)
	return store
}

// SQLite returns what SQLiteStore does and identity's event log over the same file, running until the
// test ends: pass it as identity.Options.Feed.
func SQLite(t testing.TB) (*sqlstore.Store, *eventlog.Log) {
	t.Helper()
	store, db := sqliteDB(t)
	return store, Feed(t, db, database.SQLite, nil)
}

// SQLiteDB returns what SQLiteStore does and the database handle under it, for a test that runs its
// own event log.
func SQLiteDB(t testing.TB) (*sqlstore.Store, *sql.DB) {
	t.Helper()
	return sqliteDB(t)
}

// Postgres returns the identity store on a fresh PostgreSQL database (databasetest.Postgres: skipped
// without LASTMILE_TEST_POSTGRES_DSN), migrated with identity's migrations and the event log's, and
// identity's event log over it, woken by LISTEN/NOTIFY and running until the test ends.
func Postgres(t testing.TB) (*sqlstore.Store, *eventlog.Log) {
	t.Helper()
	pool := databasetest.Postgres(t, "identity")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := database.MigratePostgres(ctx, pool, postgres.Migrations()); err != nil {
		t.Fatalf("identitytest: migrate PostgreSQL: %v", err)
	}
	if err := database.MigratePostgres(ctx, pool, sqllog.Migrations(database.Postgres, "identity")); err != nil {
		t.Fatalf("identitytest: migrate the event log on PostgreSQL: %v", err)
	}
	store := postgres.New(pool)
	t.Cleanup(func() { _ = store.Close() })
	db := database.SQLDB(pool)
	t.Cleanup(func() { _ = db.Close() })
	return store, Feed(t, db, database.Postgres, sqllog.Listener(pool))
}

func sqliteDB(t testing.TB) (*sqlstore.Store, *sql.DB) {
	t.Helper()
	db := databasetest.SQLite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := database.MigrateSQLite(ctx, db, sqlite.Migrations()); err != nil {
		t.Fatalf("identitytest: migrate SQLite: %v", err)
	}
	if err := database.MigrateSQLite(ctx, db, sqllog.Migrations(database.SQLite, "identity")); err != nil {
		t.Fatalf("identitytest: migrate the event log on SQLite: %v", err)
	}
	return sqlite.New(db), db
}

// Feed returns identity's event log in db (engine d, already migrated with sqllog.Migrations), woken by
// wake when set (sqllog.Listener on PostgreSQL), and runs it until the test ends. Register it after db's
// own cleanup, so that it stops first.
func Feed(t testing.TB, db *sql.DB, d database.Dialect, wake func(context.Context, eventlog.Backoff, func())) *eventlog.Log {
	t.Helper()
	feed, err := eventlog.New(sqllog.NewSource(db, d), eventlog.Options{Poll: 50 * time.Millisecond, Wake: wake})
	if err != nil {
		t.Fatalf("identitytest: event log: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- feed.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("identitytest: event log Run() = %v", err)
		}
	})
	return feed
}
