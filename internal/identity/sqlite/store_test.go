package sqlite_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"lastmile/internal/identity"
	"lastmile/internal/identity/sqlite"
	"lastmile/internal/identity/storetest"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) identity.Store {
		db := databasetest.SQLite(t)
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if err := database.MigrateSQLite(ctx, db, sqlite.Migrations()); err != nil {
			t.Fatalf("MigrateSQLite() = %v", err)
		}
		return sqlite.New(db)
	})
}
