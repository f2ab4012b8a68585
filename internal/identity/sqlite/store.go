// Package sqlite runs the identity store (sqlstore) on SQLite, the embedded default, through the pure-Go
// modernc.org/sqlite driver and a *sql.DB opened with database.OpenSQLite. It holds what is SQLite's
// own: the migrations and the reading of the driver's constraint errors.
//
// Times are stored as Unix microseconds in UTC. Transactions take the database's write lock at BEGIN
// (database.OpenSQLite), so the store's read-decide-write transactions run one at a time.
package sqlite

import (
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"lastmile/internal/identity/sqlstore"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the identity service's SQLite migrations, for database.MigrateSQLite.
func Migrations() database.Migrations {
	return database.EmbeddedMigrations("identity", migrationFiles, "migrations")
}

// New returns the identity store on db, which must come from database.OpenSQLite (a single connection
// whose transactions begin with BEGIN IMMEDIATE) and carry the schema of Migrations, then of the event
// log's (sqllog.Migrations(database.SQLite, "identity")), which activity is appended to. The caller closes
// db.
func New(db *sql.DB) *sqlstore.Store {
	return sqlstore.New(db, sqlstore.Engine{Dialect: database.SQLite, MapError: mapError})
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

// mapError turns constraint violations into domain errors, connection failures into Unavailable
// (database.Classify), and wraps anything else with what was being done, which makes it Internal.
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
	return database.Classify(fmt.Errorf("%s: %w", what, err))
}
