// Package postgres implements identity.Store on PostgreSQL through a pgx pool whose search_path starts
// with the identity schema (database.OpenPostgres with Schema "identity").
//
// Times are timestamptz, which keeps microseconds: the store truncates every time it is given to the
// microsecond and returns times in UTC, so a round trip through the store is exact at that precision
// (the same precision as the SQLite store).
package postgres

import (
	"crypto/ed25519"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
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
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		// fs.Sub fails only for an invalid path, and "migrations" is a constant.
		panic(fmt.Sprintf("identity postgres migrations: %v", err))
	}
	return database.Migrations{Service: "identity", FS: sub}
}

// MaxLimit bounds the rows one ListUsers or ActivitySince call returns; larger limits are lowered to it.
const MaxLimit = 1000

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

// checkLimit validates a page size and lowers it to MaxLimit.
func checkLimit(limit int) (int, error) {
	if limit <= 0 {
		return 0, apperr.InvalidFields("invalid limit", apperr.FieldViolation{Field: "limit", Description: "must be positive"})
	}
	return min(limit, MaxLimit), nil
}

// likeEscaper escapes LIKE's wildcards (and the escape character itself) so that a search term matches
// literally; queries say ESCAPE '\'.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// checkUser rejects users no store can hold. Business rules (formats, lengths) are the domain's.
func checkUser(u identity.User) error {
	var v []apperr.FieldViolation
	if u.ID == "" {
		v = append(v, apperr.FieldViolation{Field: "id", Description: "must not be empty"})
	}
	if u.Email == "" {
		v = append(v, apperr.FieldViolation{Field: "email", Description: "must not be empty"})
	}
	if !u.Role.Valid() {
		v = append(v, apperr.FieldViolation{Field: "role", Description: fmt.Sprintf("unknown role %q", u.Role)})
	}
	switch u.Status {
	case identity.StatusActive, identity.StatusSuspended, identity.StatusDeleted:
	default:
		v = append(v, apperr.FieldViolation{Field: "status", Description: fmt.Sprintf("unknown status %q", u.Status)})
	}
	if u.CreatedAt.IsZero() {
		v = append(v, apperr.FieldViolation{Field: "created_at", Description: "must be set"})
	}
	if u.UpdatedAt.IsZero() {
		v = append(v, apperr.FieldViolation{Field: "updated_at", Description: "must be set"})
	}
	if len(v) > 0 {
		return apperr.InvalidFields("invalid user", v...)
	}
	return nil
}

// checkActivity rejects entries that cannot be stored.
func checkActivity(activity []identity.Activity) error {
	for i, a := range activity {
		var v []apperr.FieldViolation
		if a.ID == "" {
			v = append(v, apperr.FieldViolation{Field: fmt.Sprintf("activity[%d].id", i), Description: "must not be empty"})
		}
		if a.UserID == "" {
			v = append(v, apperr.FieldViolation{Field: fmt.Sprintf("activity[%d].user_id", i), Description: "must not be empty"})
		}
		if a.Type == "" {
			v = append(v, apperr.FieldViolation{Field: fmt.Sprintf("activity[%d].type", i), Description: "must not be empty"})
		}
		if a.At.IsZero() {
			v = append(v, apperr.FieldViolation{Field: fmt.Sprintf("activity[%d].at", i), Description: "must be set"})
		}
		if len(v) > 0 {
			return apperr.InvalidFields("invalid activity", v...)
		}
	}
	return nil
}

// checkSigningKey rejects keys that are not Ed25519 key pairs with an id.
func checkSigningKey(k identity.SigningKey) error {
	var v []apperr.FieldViolation
	if k.KID == "" {
		v = append(v, apperr.FieldViolation{Field: "kid", Description: "must not be empty"})
	}
	if len(k.PrivateKey) != ed25519.SeedSize {
		v = append(v, apperr.FieldViolation{Field: "private_key", Description: fmt.Sprintf("must be a %d-byte Ed25519 seed", ed25519.SeedSize)})
	}
	if len(k.PublicKey) != ed25519.PublicKeySize {
		v = append(v, apperr.FieldViolation{Field: "public_key", Description: fmt.Sprintf("must be a %d-byte Ed25519 public key", ed25519.PublicKeySize)})
	}
	if k.CreatedAt.IsZero() {
		v = append(v, apperr.FieldViolation{Field: "created_at", Description: "must be set"})
	}
	if len(v) > 0 {
		return apperr.InvalidFields("invalid signing key", v...)
	}
	return nil
}
