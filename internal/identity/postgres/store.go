// Package postgres implements identity.Store on PostgreSQL through a pgx pool whose search_path starts
// with the identity schema (database.OpenPostgres with Schema "identity").
//
// Times are timestamptz, which keeps microseconds: the store truncates every time it is given to the
// microsecond and returns times in UTC, so a round trip through the store is exact at that precision
// (the same precision as the SQLite store).
package postgres

import (
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the identity service's PostgreSQL migrations, for database.MigratePostgres; they
// create their tables in the schema "identity".
func Migrations() database.Migrations {
	return database.EmbeddedMigrations("identity", migrationFiles, "migrations")
}

// Store is an identity.Store backed by PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

var _ identity.Store = (*Store)(nil)

// New returns a Store on pool, whose connections must resolve the identity schema's tables (see
// database.PostgresOptions.Schema) migrated with Migrations.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// ts converts t to the stored form, truncated to the microsecond.
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// nullTS is ts with the zero time stored as NULL.
func nullTS(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	v := ts(t)
	return &v
}

// fromNullTS reads a nullable timestamptz; pgx returns times in the local zone.
func fromNullTS(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// conflictMessages names, by constraint, the caller-safe message of a uniqueness violation.
var conflictMessages = map[string]string{
	"users_email_key":     "email already registered",
	"users_username_key":  "username already taken",
	"users_pkey":          "user id already exists",
	"refresh_tokens_pkey": "refresh token already exists",
	"activity_id_key":     "activity entry already recorded",
}

// mapError turns constraint violations into domain errors and wraps anything else with what was
// being done, which makes it Internal.
func mapError(err error, what string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "23505": // unique_violation
			msg, ok := conflictMessages[pgErr.ConstraintName]
			if !ok {
				msg = "already exists"
			}
			return apperr.Wrap(apperr.Conflict, fmt.Errorf("%s: %w", what, err), msg)
		case "23503": // foreign_key_violation: the only foreign keys point at users
			return apperr.Wrap(apperr.NotFound, fmt.Errorf("%s: %w", what, err), "user not found")
		}
	}
	return fmt.Errorf("%s: %w", what, err)
}
