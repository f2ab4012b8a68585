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

	"lastmile/internal/courier/sqlstore"
	"lastmile/internal/platform/database"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the courier service's SQLite migrations, for database.MigrateSQLite.
func Migrations() database.Migrations {
	return database.EmbeddedMigrations("courier", migrationFiles, "migrations")
}

// New returns the courier store on db, which must come from database.OpenSQLite (a single connection
// whose transactions take the write lock up front) and carry the schema of Migrations. Its transactions
// are grouped (sqlstore.Engine.GroupCommit): those of concurrent calls share one BEGIN and COMMIT.
// Closing the store leaves db open.
func New(db *sql.DB) *sqlstore.Store {
	return sqlstore.New(db, sqlstore.Engine{Dialect: database.SQLite, MapError: constraints.MapSQLite, GroupCommit: true}, nil)
}

// constraints says what the store's constraint violations mean to callers.
var constraints = database.Constraints{
	Unique: map[string]string{
		"couriers.user_id": "user already has a courier profile",
		"couriers.id":      "courier id already exists",
		"claims.task_id":   "task is already claimed",
	},
	ForeignKey: "courier not found",
}
