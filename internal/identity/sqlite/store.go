// Package sqlite implements identity.Store on SQLite, the embedded default store, through the pure-Go
// modernc.org/sqlite driver and a *sql.DB opened with database.OpenSQLite.
//
// Times are stored as Unix microseconds in UTC: the store truncates every time it is given to the
// microsecond and returns times in UTC, so a round trip through the store is exact at that precision
// (the same precision as the PostgreSQL store).
package sqlite

import (
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the identity service's SQLite migrations, for database.MigrateSQLite.
func Migrations() database.Migrations {
	return database.EmbeddedMigrations("identity", migrationFiles, "migrations")
}

// Store is an identity.Store backed by SQLite. It is safe for concurrent use.
type Store struct {
	db *sql.DB
}

var _ identity.Store = (*Store)(nil)

// New returns a Store on db, which must come from database.OpenSQLite (a single connection: SQLite has
// one writer anyway) and carry the schema of Migrations.
func New(db *sql.DB) *Store {
	return &Store{db: db}
}

// micros converts t to the stored form, truncating to the microsecond.
func micros(t time.Time) int64 { return t.UnixMicro() }

// nullMicros is micros with the zero time stored as NULL.
func nullMicros(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMicro(), Valid: true}
}

func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

func fromNullMicros(us sql.NullInt64) time.Time {
	if !us.Valid {
		return time.Time{}
	}
	return fromMicros(us.Int64)
}

// conflictMessages names, by the column SQLite reports in a uniqueness violation, the caller-safe
// message of the resulting Conflict.
var conflictMessages = []struct{ column, message string }{
	{"users.email_key", "email already registered"},
	{"users.username_key", "username already taken"},
	{"users.id", "user id already exists"},
	{"refresh_tokens.hash", "refresh token already exists"},
	{"activity.id", "activity entry already recorded"},
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
			// The only foreign keys point at users.
			return apperr.Wrap(apperr.NotFound, fmt.Errorf("%s: %w", what, err), "user not found")
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}
