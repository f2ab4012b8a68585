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

	"lastmile/internal/identity/sqlstore"
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
	return sqlstore.New(db, sqlstore.Engine{Dialect: database.SQLite, MapError: constraints.MapSQLite})
}

// constraints says what the store's constraint violations mean to callers.
var constraints = database.Constraints{
	Unique: map[string]string{
		"users.email_key":     "email already registered",
		"users.username_key":  "username already taken",
		"users.id":            "user id already exists",
		"refresh_tokens.hash": "refresh token already exists",
		"activity.id":         "activity entry already recorded",
	},
	ForeignKey: "user not found",
}
