// Package postgres runs the identity store (sqlstore) on PostgreSQL, through pgx's database/sql adapter
// over a pool whose search_path starts with the identity schema (database.OpenPostgres with Schema
// "identity"). It holds what is PostgreSQL's own: the migrations, the row and table locks, and the
// reading of the driver's constraint errors.
//
// Times are timestamptz, which keeps microseconds.
package postgres

import (
	"embed"
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/identity/sqlstore"
	"lastmile/internal/platform/database"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the identity service's PostgreSQL migrations, for database.MigratePostgres; they
// create their tables in the schema "identity".
func Migrations() database.Migrations {
	return database.EmbeddedMigrations("identity", migrationFiles, "migrations")
}

// New returns the identity store on pool, whose connections must resolve the identity schema's tables
// (see database.PostgresOptions.Schema) migrated with Migrations and then the event log's
// (sqllog.Migrations(database.Postgres, "identity")), which activity is appended to. Close the store before
// pool: it
// releases the database/sql adapter it runs on.
func New(pool *pgxpool.Pool) *sqlstore.Store {
	return sqlstore.New(database.SQLDB(pool), sqlstore.Engine{
		Dialect:    database.Postgres,
		LockClause: " FOR UPDATE",
		MapError:   constraints.MapPostgres,
		Retryable:  retryable,
		OwnsDB:     true,
	})
}

// constraints says what the store's constraint violations mean to callers.
var constraints = database.Constraints{
	Unique: map[string]string{
		"users_email_key":     "email already registered",
		"users_username_key":  "username already taken",
		"users_pkey":          "user id already exists",
		"refresh_tokens_pkey": "refresh token already exists",
		"activity_id_key":     "activity entry already recorded",
	},
	ForeignKey: "user not found",
}

// retryable reports a transaction that PostgreSQL aborted to break a deadlock or a serialization
// conflict: running it again is expected to succeed.
func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}
