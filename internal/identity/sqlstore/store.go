// Package sqlstore implements identity.Store once, in plain SQL over database/sql, for both engines the
// identity service runs on: SQLite (identity/sqlite) and PostgreSQL (identity/postgres, through pgx's
// database/sql adapter). One SQL text serves both, with $n placeholders; what really differs between the
// engines — how times are stored, how rows are locked, how driver errors read — comes in an Engine from
// the engine's package, which also keeps the migrations.
//
// The Store holds no business rule. Where a rule needs a consistent view (refresh-token rotation), the
// Store reads and locks what the rule needs, runs a closure the domain hands it, and writes what the
// closure returns, all in one transaction.
//
// Times are truncated to the microsecond and returned in UTC, on both engines, so a round trip through
// the Store is exact at that precision.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"lastmile/internal/identity"
	"lastmile/internal/platform/database"
)

// Engine is what differs between the databases a Store runs on.
type Engine struct {
	// Dialect decides how times are stored (database.Dialect.Time).
	Dialect database.Dialect
	// LockClause is appended to the reads that a closure's rules depend on: " FOR UPDATE" where rows can
	// be locked. SQLite has no row locks and needs none: database.OpenSQLite's transactions hold the
	// database's write lock from BEGIN (BEGIN IMMEDIATE), so they run one at a time.
	LockClause string
	// MapError turns the driver's constraint violations into apperr errors (Conflict for a taken unique
	// key, NotFound for a missing user), connection failures into Unavailable (database.Classify), and
	// wraps any other error with what was being done. Every database error of the Store goes through it.
	MapError func(err error, what string) error
	// Retryable reports whether a transaction that failed with err may be run again from the start
	// (PostgreSQL's deadlock_detected, say). Nil means never.
	Retryable func(err error) bool
	// OwnsDB says that the *sql.DB given to New belongs to the Store: Close closes it.
	OwnsDB bool
}

// Store is an identity.Store on a *sql.DB. It is safe for concurrent use.
type Store struct {
	db *sql.DB
	e  Engine
}

var _ identity.Store = (*Store)(nil)

// New returns a Store on db, whose schema is the engine's migrations.
func New(db *sql.DB, e Engine) *Store {
	return &Store{db: db, e: e}
}

// Close releases the Store's database handle when the Store owns it (Engine.OwnsDB), and does nothing
// otherwise.
func (s *Store) Close() error {
	if !s.e.OwnsDB {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close identity store: %w", err)
	}
	return nil
}

// maxTxAttempts bounds how often a transaction that the engine reports as retryable is run.
const maxTxAttempts = 5

// inTx runs fn in a transaction (database.InTx), again from the start when it fails with an error the
// engine reports as retryable, after a randomized pause that grows with each attempt: a deadlock victim
// that retried at once could take its first lock again before the winner takes it, and deadlock again.
// fn must therefore leave no trace outside the transaction.
func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	for attempt := 1; ; attempt++ {
		err := database.InTx(ctx, s.db, fn)
		if err == nil || attempt == maxTxAttempts || s.e.Retryable == nil || !s.e.Retryable(err) {
			return err
		}
		pause := time.Duration(rand.Int64N(int64(5*time.Millisecond) << attempt))
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(pause):
		}
	}
}

// ts encodes t as the engine stores it; nullTS stores the zero time as NULL.
func (s *Store) ts(t time.Time) any     { return s.e.Dialect.Time(t) }
func (s *Store) nullTS(t time.Time) any { return s.e.Dialect.NullTime(t) }

// querier is a *sql.DB or a *sql.Tx.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// collect reads every row of rows with scan, and closes rows.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
