package identitytest

import (
	"context"
	"testing"
	"time"

	"lastmile/internal/identity/sqlite"
	"lastmile/internal/identity/sqlstore"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

// SQLiteStore returns the identity store on a new, migrated SQLite file in a temporary directory; the
// file is closed when the test ends.
func SQLiteStore(t testing.TB) *sqlstore.Store {
	t.Helper()
	db := databasetest.SQLite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := database.MigrateSQLite(ctx, db, sqlite.Migrations()); err != nil {
		t.Fatalf("identitytest: migrate SQLite: %v", err)
	}
	return sqlite.New(db)
}
