// Package sqlite runs the dispatch store (sqlstore.Store) on SQLite, the embedded default, through the
// pure-Go modernc.org/sqlite driver and a *sql.DB opened with database.OpenSQLite. What is SQLite's own
// lives here: the migrations and the reading of the driver's errors.
//
// Times are stored as Unix microseconds in UTC. database.OpenSQLite begins transactions with BEGIN
// IMMEDIATE on a single connection, so they run one at a time, within the process and, through SQLite's
// write lock, across processes: that is what makes the store's read-decide-write transactions atomic,
// so the store takes no row lock here, and LeaseDue needs no SKIP LOCKED.
//
// A database file belongs to one process (lastmile's data directory lock), and its tasks and sessions
// are written only through the stores on the *sql.DB opened on it: the stores keep the couriers' states
// in memory on that ground (sqlstore's "The couriers' states on SQLite"), and the work loop ends at start
// the task leases an earlier process left (Engine.OneProcess).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"

	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/eventlog/sqllog"
	"lastmile/internal/platform/jobs"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the dispatch service's SQLite migrations, for database.MigrateSQLite. The event
// log's (sqllog.Migrations(database.SQLite, sqlstore.Service)) and River's (jobs.Migrate) are separate.
func Migrations() database.Migrations {
	return database.EmbeddedMigrations(sqlstore.Service, migrationFiles, "migrations")
}

// Migrate applies everything the store needs to db: dispatch's migrations, then the event log's, then
// River's tables.
func Migrate(ctx context.Context, db *sql.DB) error {
	if err := database.MigrateSQLite(ctx, db, Migrations()); err != nil {
		return fmt.Errorf("migrate dispatch: %w", err)
	}
	if err := database.MigrateSQLite(ctx, db, sqllog.Migrations(database.SQLite, sqlstore.Service)); err != nil {
		return fmt.Errorf("migrate dispatch event log: %w", err)
	}
	if err := jobs.Migrate(ctx, db, database.SQLite, ""); err != nil {
		return fmt.Errorf("migrate dispatch jobs: %w", err)
	}
	return nil
}

// New returns the dispatch store on db, which must come from database.OpenSQLite (a single connection
// whose transactions take the write lock up front) and carry the schema of Migrations and of the event
// log (Migrate does both). Closing the store leaves db open. Set its job queue with SetJobs before use.
//
// The store's transactions are grouped (sqlstore.Engine.GroupCommit): those of concurrent calls run in
// one SQLite transaction, each in its own savepoint, and pay one BEGIN and one COMMIT between them.
func New(db *sql.DB) *sqlstore.Store {
	return sqlstore.New(db, sqlstore.Engine{Dialect: database.SQLite, MapError: constraints.MapSQLite,
		DueIndex: " INDEXED BY tasks_due_order", GroupCommit: true, OneProcess: true}, nil)
}

// constraints says what the store's constraint violations mean to callers.
var constraints = database.Constraints{
	Unique: map[string]string{
		"tasks.id":            "task id already exists",
		"tasks.created_by":    "request id already used",
		"commands.courier_id": "command already recorded",
		"decisions.id":        "decision already recorded",
		"offers.offer_id":     "offer already recorded",
		"sessions.courier_id": "session already exists",
	},
	ForeignKey: "task not found",
}
