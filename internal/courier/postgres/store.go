// Package postgres runs the courier store (sqlstore.Store) on PostgreSQL, through pgx's database/sql
// adapter on a pool whose search_path starts with the courier schema (database.OpenPostgres with Schema
// "courier"). What is PostgreSQL's own lives here: the migrations, the row lock and the reading of the
// driver's errors.
//
// Times are timestamptz, which keeps microseconds. Every transaction that checks a courier before
// writing locks the courier's row with SELECT ... FOR NO KEY UPDATE first (see package sqlstore).
package postgres

import (
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/courier/sqlstore"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the courier service's PostgreSQL migrations, for database.MigratePostgres; they
// create their tables in the schema "courier".
func Migrations() database.Migrations {
	return database.EmbeddedMigrations("courier", migrationFiles, "migrations")
}

// New returns the courier store on pool, whose connections must resolve the courier schema's tables
// (see database.PostgresOptions.Schema) migrated with Migrations. Close the store before pool: it
// releases the database/sql handle opened over the pool, not the pool itself.
func New(pool *pgxpool.Pool) *sqlstore.Store {
	db := database.SQLDB(pool)
	return sqlstore.New(db, sqlstore.Engine{Dialect: database.Postgres, Lock: " FOR NO KEY UPDATE", MapError: mapError}, db.Close)
}

// conflictMessages names, by constraint, the caller-safe message of a uniqueness violation.
var conflictMessages = map[string]string{
	"couriers_user_id_key": "user already has a courier profile",
	"couriers_pkey":        "courier id already exists",
	"claims_pkey":          "task is already claimed",
}

// mapError turns constraint violations into domain errors, connection failures into Unavailable
// (database.Classify), and wraps anything else with what was being done, which makes it Internal.
func mapError(err error, what string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505": // unique_violation
			msg, ok := conflictMessages[pgErr.ConstraintName]
			if !ok {
				msg = "already exists"
			}
			return apperr.Wrap(apperr.Conflict, fmt.Errorf("%s: %w", what, err), msg)
		case pgErr.Code == "23503": // foreign_key_violation: every foreign key points at couriers
			return apperr.Wrap(apperr.NotFound, fmt.Errorf("%s: %w", what, err), "courier not found")
		case pgErr.Code == "23514", pgErr.Code == "23502": // check_violation, not_null_violation
			return apperr.Wrap(apperr.Invalid, fmt.Errorf("%s: %w", what, err), "value out of range")
		case len(pgErr.Code) == 5 && pgErr.Code[:2] == "22":
			// Data exceptions: a NUL byte or invalid UTF-8 in a string, a time out of range.
			return apperr.Wrap(apperr.Invalid, fmt.Errorf("%s: %w", what, err), "value cannot be stored")
		}
	}
	return database.Classify(fmt.Errorf("%s: %w", what, err))
}
