package postgres_test

import (
	"context"
	"testing"
	"time"

	"go.uber.org/goleak"

	"lastmile/internal/identity"
	"lastmile/internal/identity/postgres"
	"lastmile/internal/identity/storetest"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) identity.Store {
		pool := databasetest.Postgres(t, "identity")
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if err := database.MigratePostgres(ctx, pool, postgres.Migrations()); err != nil {
			t.Fatalf("MigratePostgres() = %v", err)
		}
		s := postgres.New(pool)
		t.Cleanup(func() {
			if err := s.Close(); err != nil {
				t.Errorf("Close() = %v", err)
			}
		})
		return s
	})
}
