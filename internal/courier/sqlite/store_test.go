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
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newStore(t *testing.T) courier.Store {
	t.Helper()
	db := databasetest.SQLite(t)
	if err := database.MigrateSQLite(testContext(t), db, sqlite.Migrations()); err != nil {
		t.Fatalf("MigrateSQLite: %v", err)
	}
	return sqlite.New(db)
}

func TestStore(t *testing.T) {
	storetest.Run(t, newStore)
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
	ctx := testContext(t)
	s := newStore(t)
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	good := courier.Courier{ID: "c1", UserID: "u1", DisplayName: "A", Mode: courier.ModeCar, Capacity: 2, Status: courier.StatusAvailable, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := s.CreateCourier(ctx, good); err != nil {
		t.Fatalf("CreateCourier: %v", err)
	}
	with := func(f func(*courier.Courier)) courier.Courier {
		c := good
		c.ID, c.UserID = "c2", "u2"
		f(&c)
		return c
	}
	creates := map[string]courier.Courier{
		"no id":         with(func(c *courier.Courier) { c.ID = "" }),
		"no user":       with(func(c *courier.Courier) { c.UserID = "" }),
		"unknown mode":  with(func(c *courier.Courier) { c.Mode = "rocket" }),
		"capacity 0":    with(func(c *courier.Courier) { c.Capacity = 0 }),
		"capacity 101":  with(func(c *courier.Courier) { c.Capacity = courier.MaxCapacity + 1 }),
		"busy stored":   with(func(c *courier.Courier) { c.Status = courier.StatusBusy }),
		"unknown state": with(func(c *courier.Courier) { c.Status = "sleeping" }),
	}
	for name, c := range creates {
		if got := apperr.CodeOf(s.CreateCourier(ctx, c)); got != apperr.Invalid {
			t.Errorf("CreateCourier(%s) code = %q, want %q", name, got, apperr.Invalid)
		}
	}
	bad := good
	bad.Capacity, bad.Version = 0, 2
	if _, err := s.UpdateCourier(ctx, bad); apperr.CodeOf(err) != apperr.Invalid {
		t.Errorf("UpdateCourier(capacity 0) error = %v, want Invalid", err)
	}
	if _, err := s.SetStatus(ctx, good.ID, courier.StatusBusy); apperr.CodeOf(err) != apperr.Invalid {
		t.Errorf("SetStatus(busy) error = %v, want Invalid", err)
	}
	if _, err := s.ClaimCourier(ctx, courier.Claim{CourierID: good.ID, TaskID: "t1", ClaimedAt: now, ExpectedRelease: now}); apperr.CodeOf(err) != apperr.Invalid {
		t.Errorf("ClaimCourier(release not after claim) error = %v, want Invalid", err)
	}
	if _, err := s.ListCouriers(ctx, courier.Filter{}, "", 0); apperr.CodeOf(err) != apperr.Invalid {
		t.Errorf("ListCouriers(limit 0) error = %v, want Invalid", err)
	}
}
