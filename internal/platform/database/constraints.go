package database

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"lastmile/internal/platform/apperr"
)

// Constraints says what one service's constraint violations mean to its callers. Each engine's store
// package declares one and maps driver errors with MapSQLite or MapPostgres, so that the rule "a unique
// violation is Conflict, a foreign key violation NotFound, a check or data exception Invalid, a lost
// connection Unavailable, anything else Internal" is written once.
type Constraints struct {
	// Unique names, by constraint, the caller-safe message of the Conflict a uniqueness violation
	// becomes: PostgreSQL's constraint name ("users_email_key"), or in SQLite what its error names after
	// "UNIQUE constraint failed:" ("users.email", or an index name). Others answer "already exists".
	Unique map[string]string
	// ForeignKey is the message of the NotFound a foreign key violation becomes, such as "user not found":
	// each service's foreign keys point at its one parent table.
	ForeignKey string
}

// MapSQLite maps err, returned by SQLite while doing what, to a domain error (see Constraints); any other
// error is wrapped with what and passed to Classify, which leaves it Internal unless the database is
// unreachable.
func (c Constraints) MapSQLite(err error, what string) error {
	wrapped := fmt.Errorf("%s: %w", what, err)
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			// The driver's message is "... UNIQUE constraint failed: <table>.<column> (2067)". The longest
			// name is tried first, so that "users.id" never matches where "users.id_key" is meant.
			msg := se.Error()
			for _, name := range c.uniqueNames() {
				if strings.Contains(msg, name) {
					return apperr.Wrap(apperr.Conflict, wrapped, c.Unique[name])
				}
			}
			return apperr.Wrap(apperr.Conflict, wrapped, "already exists")
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return apperr.Wrap(apperr.NotFound, wrapped, c.ForeignKey)
		case sqlite3.SQLITE_CONSTRAINT_CHECK, sqlite3.SQLITE_CONSTRAINT_NOTNULL:
			return apperr.Wrap(apperr.Invalid, wrapped, "value out of range")
		}
	}
	return Classify(wrapped)
}

// MapPostgres maps err, returned by PostgreSQL while doing what, to a domain error (see Constraints); any
// other error is wrapped with what and passed to Classify.
func (c Constraints) MapPostgres(err error, what string) error {
	wrapped := fmt.Errorf("%s: %w", what, err)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.Code == "23505": // unique_violation
			msg, ok := c.Unique[pgErr.ConstraintName]
			if !ok {
				msg = "already exists"
			}
			return apperr.Wrap(apperr.Conflict, wrapped, msg)
		case pgErr.Code == "23503": // foreign_key_violation
			return apperr.Wrap(apperr.NotFound, wrapped, c.ForeignKey)
		case pgErr.Code == "23514", pgErr.Code == "23502": // check_violation, not_null_violation
			return apperr.Wrap(apperr.Invalid, wrapped, "value out of range")
		case strings.HasPrefix(pgErr.Code, "22"):
			// Data exceptions: a NUL byte or invalid UTF-8 in a string, a time out of range.
			return apperr.Wrap(apperr.Invalid, wrapped, "value cannot be stored")
		}
	}
	return Classify(wrapped)
}

// uniqueNames returns the keys of c.Unique, longest first.
func (c Constraints) uniqueNames() []string {
	names := make([]string, 0, len(c.Unique))
	for name := range c.Unique {
		names = append(names, name)
	}
	slices.SortFunc(names, func(a, b string) int {
		return cmp.Or(cmp.Compare(len(b), len(a)), strings.Compare(a, b))
	})
	return names
}
