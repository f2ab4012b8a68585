package sqlite_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"lastmile/internal/courier"
	"lastmile/internal/courier/sqlite"
	"lastmile/internal/courier/storetest"
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

func newStore(t testing.TB) courier.Store {
	t.Helper()
	db := databasetest.SQLite(t)
	if err := database.MigrateSQLite(testContext(t), db, sqlite.Migrations()); err != nil {
		t.Fatalf("MigrateSQLite: %v", err)
	}
	return sqlite.New(db)
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) courier.Store { return newStore(t) })
}

// open opens and migrates the database file at path, as a starting process does.
func open(ctx context.Context, t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := database.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatalf("OpenSQLite: %v", err)
	}
	if err := database.MigrateSQLite(ctx, db, sqlite.Migrations()); err != nil {
		t.Fatalf("MigrateSQLite: %v", err)
	}
	return db
}

func TestStoreDurable(t *testing.T) {
	storetest.RunDurable(t, func(t *testing.T) (courier.Store, func() courier.Store) {
		ctx := testContext(t)
		path := filepath.Join(t.TempDir(), "courier.db")
		db := open(ctx, t, path)
		t.Cleanup(func() { db.Close() })
		reopen := func() courier.Store {
			if err := db.Close(); err != nil {
				t.Fatalf("close %s: %v", path, err)
			}
			db = open(ctx, t, path)
			return sqlite.New(db)
		}
		return sqlite.New(db), reopen
	})
}

// TestInvalid checks that values no store can hold are refused as Invalid before they reach SQL.
func TestInvalid(t *testing.T) {
	storetest.RunInvalid(t, func(t *testing.T) courier.Store { return newStore(t) })
}

// BenchmarkSaveLocations measures the location flush (see storetest.BenchSaveLocations).
func BenchmarkSaveLocations(b *testing.B) {
	storetest.BenchSaveLocations(b, newStore(b))
}
