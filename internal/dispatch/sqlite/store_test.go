package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"lastmile/internal/dispatch/sqlite"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/dispatch/storetest"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/eventlog/sqllog"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) *sqlstore.Store { return storetest.SQLiteStore(t) })
}

func TestStoreDurable(t *testing.T) {
	storetest.RunDurable(t, func(t *testing.T) (*sqlstore.Store, func() *sqlstore.Store) {
		ctx := t.Context()
		path := filepath.Join(t.TempDir(), "dispatch.db")
		db := open(ctx, t, path)
		t.Cleanup(func() { db.Close() })
		reopen := func() *sqlstore.Store {
			if err := db.Close(); err != nil {
				t.Fatalf("close %s: %v", path, err)
			}
			db = open(ctx, t, path)
			return sqlite.New(db)
		}
		return sqlite.New(db), reopen
	})
}

// open opens and migrates the database file at path, as a starting process does.
func open(ctx context.Context, t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := database.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	if err := sqlite.Migrate(ctx, db); err != nil {
		db.Close()
		t.Fatalf("Migrate: %v", err)
	}
	return db
}

// BenchmarkStore measures the store's hot paths (see storetest.Bench).
func BenchmarkStore(b *testing.B) {
	storetest.Bench(b, storetest.SQLiteStore(b))
}

// migratedBefore returns a new database migrated as a release without the named migrations left it.
func migratedBefore(t *testing.T, without ...string) *sql.DB {
	t.Helper()
	db := databasetest.SQLite(t)
	before := sqlite.Migrations()
	for _, name := range without {
		before.FS = storetest.Without(t, before.FS, name)
	}
	if err := database.MigrateSQLite(t.Context(), db, before); err != nil {
		t.Fatal(err)
	}
	if err := database.MigrateSQLite(t.Context(), db, sqllog.Migrations(database.SQLite, sqlstore.Service)); err != nil {
		t.Fatal(err)
	}
	return db
}

// TestFormerHoldersMigration: the migration that creates former_holders fills it from the histories of
// the tasks written before.
func TestFormerHoldersMigration(t *testing.T) {
	db := migratedBefore(t, "00010_decision_bin.sql", "00009_waiting_pickups.sql", "00008_former_holders.sql")
	storetest.FormerHoldersBackfill(t, sqlite.New(db), func(ctx context.Context) error { return sqlite.Migrate(ctx, db) })
}

// TestWaitingPickupsMigration: the migration that adds the pickup columns fills them from the documents
// of the tasks written before.
func TestWaitingPickupsMigration(t *testing.T) {
	db := migratedBefore(t, "00010_decision_bin.sql", "00009_waiting_pickups.sql")
	storetest.WaitingPickupsBackfill(t, sqlite.New(db), func(ctx context.Context) error { return sqlite.Migrate(ctx, db) })
}

// TestDecisionBinMigration: the decisions written before the binary form read the same after it.
func TestDecisionBinMigration(t *testing.T) {
	db := migratedBefore(t, "00010_decision_bin.sql")
	storetest.DecisionBinMigration(t, sqlite.New(db), func(ctx context.Context) error { return sqlite.Migrate(ctx, db) })
}
