// Package sqlite runs the courier store (sqlstore.Store) on SQLite, the embedded default, through the
// pure-Go modernc.org/sqlite driver and a *sql.DB opened with database.OpenSQLite. What is SQLite's own
// lives here: the migrations and the reading of the driver's errors.
//
// Times are stored as Unix microseconds in UTC. database.OpenSQLite begins transactions with BEGIN
// IMMEDIATE on a single connection, so they are serialised within the process and, through SQLite's
// write lock, across processes: that lock is what makes the store's check-then-write transactions atomic,
// so the store needs no row lock here.
package sqlite

import (
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"lastmile/internal/courier/sqlstore"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the courier service's SQLite migrations, for database.MigrateSQLite.
func Migrations() database.Migrations {
	return database.EmbeddedMigrations("courier", migrationFiles, "migrations")
}

// New returns the courier store on db, which must come from database.OpenSQLite (a single connection
// whose transactions take the write lock up front) and carry the schema of Migrations. Closing the store
// leaves db open.
func New(db *sql.DB) *sqlstore.Store {
	return sqlstore.New(db, sqlstore.Engine{Dialect: database.SQLite, MapError: mapError}, nil)
}

// conflictMessages names, by the column SQLite reports in a uniqueness violation, the caller-safe
// message of the resulting Conflict.
var conflictMessages = []struct{ column, message string }{
	{"couriers.user_id", "user already has a courier profile"},
	{"couriers.id", "courier id already exists"},
	{"claims.task_id", "task is already claimed"},
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
			// Every foreign key points at couriers.
			return apperr.Wrap(apperr.NotFound, fmt.Errorf("%s: %w", what, err), "courier not found")
		case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
			return apperr.Wrap(apperr.Invalid, fmt.Errorf("%s: %w", what, err), "value out of range")
		}
	}
	return database.Classify(fmt.Errorf("%s: %w", what, err))
}
