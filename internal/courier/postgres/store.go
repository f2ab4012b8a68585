// Package postgres implements courier.Store on PostgreSQL through a pgx pool whose search_path starts
// with the courier schema (database.OpenPostgres with Schema "courier").
//
// Times are timestamptz, which keeps microseconds: the store truncates every time it is given to the
// microsecond and returns times in UTC, so a round trip through the store is exact at that precision
// (the same precision as the SQLite store).
//
// Concurrency: every transaction that checks a courier's claims before writing (ClaimCourier,
// UpdateCourier, SetStatus, SetAvailability) first locks the courier's row with SELECT ... FOR NO KEY
// UPDATE and only then counts or reads the claims, in a later statement. Under READ COMMITTED each
// statement takes a fresh snapshot, so once the lock is granted the count includes every claim
// committed by the transaction that held it before; concurrent claims on one courier therefore run one
// after the other and never exceed its capacity. NO KEY UPDATE (rather than UPDATE) is the lock a plain
// UPDATE of the row takes: it does not conflict with the KEY SHARE locks that foreign-key checks take,
// so location upserts never wait for a claim.
package postgres

import (
	"embed"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/courier"
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

// Store is a courier.Store backed by PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

var _ courier.Store = (*Store)(nil)

// New returns a Store on pool, whose connections must resolve the courier schema's tables (see
// database.PostgresOptions.Schema) migrated with Migrations.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool}
}

// ts converts t to the stored form, truncated to the microsecond.
func ts(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// ceilTS is ts rounded up, for bounds on stored times: a stored (whole-microsecond) time s satisfies
// s >= t exactly when s >= ceilTS(t).
func ceilTS(t time.Time) time.Time {
	c := ts(t)
	if c.Before(t) {
		c = c.Add(time.Microsecond)
	}
	return c
}

// hourStart normalises t to the start of its hour in UTC, the key of an availability slot.
func hourStart(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// conflictMessages names, by constraint, the caller-safe message of a uniqueness violation.
var conflictMessages = map[string]string{
	"couriers_user_id_key": "user already has a courier profile",
	"couriers_pkey":        "courier id already exists",
	"claims_pkey":          "task is already claimed",
}

// mapError turns constraint violations into domain errors and wraps anything else with what was
// being done, which makes it Internal.
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
	return fmt.Errorf("%s: %w", what, err)
}

func courierNotFound(id string) error {
	return apperr.Errorf(apperr.NotFound, "courier %s not found", id)
}
