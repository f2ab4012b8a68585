// Package sqlite implements courier.Store on SQLite, the embedded default store, through the pure-Go
// modernc.org/sqlite driver and a *sql.DB opened with database.OpenSQLite.
//
// Times are stored as Unix microseconds in UTC: the store truncates every time it is given to the
// microsecond and returns times in UTC, so a round trip through the store is exact at that precision
// (the same precision as the PostgreSQL store).
//
// Every check-then-write (capacity, status, version, the claims that pin availability hours) runs in
// one transaction. database.OpenSQLite begins transactions with BEGIN IMMEDIATE on a single connection,
// so they are serialised within the process and, through SQLite's write lock, across processes: no
// other writer can slip in between the check and the write.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the courier service's SQLite migrations, for database.MigrateSQLite.
func Migrations() database.Migrations {
	return database.EmbeddedMigrations("courier", migrationFiles, "migrations")
}

// Store is a courier.Store backed by SQLite. It is safe for concurrent use.
type Store struct {
	db *sql.DB
}

var _ courier.Store = (*Store)(nil)

// New returns a Store on db, which must come from database.OpenSQLite (a single connection whose
// transactions take the write lock up front) and carry the schema of Migrations.
func New(db *sql.DB) *Store {
	return &Store{db: db}
}

// querier is what *sql.DB and *sql.Tx have in common, so reads run alike inside and outside a
// transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// micros converts t to the stored form, truncating to the microsecond.
func micros(t time.Time) int64 { return t.UnixMicro() }

// ceilMicros is micros rounded up, for exclusive lower bounds and inclusive upper bounds on stored
// times: a stored (whole-microsecond) time s satisfies s >= t exactly when s >= ceilMicros(t).
func ceilMicros(t time.Time) int64 {
	us := t.UnixMicro()
	if time.UnixMicro(us).Before(t) {
		us++
	}
	return us
}

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// hourStart normalises t to the start of its hour in UTC, the key of an availability slot.
func hourStart(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// conflictMessages names, by the column SQLite reports in a uniqueness violation, the caller-safe
// message of the resulting Conflict.
var conflictMessages = []struct{ column, message string }{
	{"couriers.user_id", "user already has a courier profile"},
	{"couriers.id", "courier id already exists"},
	{"claims.task_id", "task is already claimed"},
}

// mapError turns constraint violations into domain errors and wraps anything else with what was
// being done, which makes it Internal.
func mapError(err error, what string) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			// The driver's message is "... UNIQUE constraint failed: <table>.<column> (2067)".
			for _, c := range conflictMessages {
				if strings.Contains(se.Error(), c.column) {
					return apperr.Wrap(apperr.Conflict, fmt.Errorf("%s: %w", what, err), c.message)
				}
			}
			return apperr.Wrap(apperr.Conflict, fmt.Errorf("%s: %w", what, err), "already exists")
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			// Every foreign key points at couriers.
			return apperr.Wrap(apperr.NotFound, fmt.Errorf("%s: %w", what, err), "courier not found")
		case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
			return apperr.Wrap(apperr.Invalid, fmt.Errorf("%s: %w", what, err), "value out of range")
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}

func courierNotFound(id string) error {
	return apperr.Errorf(apperr.NotFound, "courier %s not found", id)
}
