// Package sqlstore implements courier.Store once, in plain SQL, for both of lastmile's databases: SQLite
// (package sqlite) and PostgreSQL (package postgres) each configure a Store with an Engine that holds
// only what really differs between them: how times are stored, how a courier's row is locked and how
// driver errors read. Both drivers take $1, $2, ... placeholders, so every statement is one text; the
// one exception is the multi-row location upsert, whose placeholders are ? on SQLite (see SaveLocations).
//
// The store holds no business rule. Every change that a rule guards (a profile or status change, a
// claim, hours made unavailable) runs in one transaction that first takes the courier's lock, then reads
// what the rule needs (the courier with its claim count, its claims, the holder of a task), runs the
// closure the domain passed in, and writes what that closure returns. Two engines, one locking protocol:
//
//   - PostgreSQL: SELECT ... FOR NO KEY UPDATE on the courier's row, and only then, in later statements,
//     the claim count and the claims. Under READ COMMITTED each statement takes a fresh snapshot, so once
//     the lock is granted the reads include every claim committed by whoever held the lock before:
//     concurrent claims on one courier run one after the other and never exceed its capacity. NO KEY
//     UPDATE (rather than UPDATE) is the lock a plain UPDATE of the row takes: it does not conflict with
//     the KEY SHARE locks that foreign-key checks take, so location upserts never wait for a claim.
//   - SQLite: database.OpenSQLite begins every transaction with BEGIN IMMEDIATE on a single connection,
//     which takes the database's write lock up front; transactions therefore run one after the other,
//     within the process and, through SQLite's lock, across processes.
//
// Two claims of one task on different couriers take different locks; the claims table's key on task_id
// settles that race: the later insert fails (Conflict) once the earlier transaction commits.
//
// Times are truncated to the microsecond and returned in UTC, so a round trip is exact at that precision
// on both engines.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// Engine is what differs between the databases a Store runs on.
type Engine struct {
	// Dialect encodes times: Unix microseconds in SQLite, timestamptz in PostgreSQL.
	Dialect database.Dialect
	// Lock ends the statement that locks a courier's row: " FOR NO KEY UPDATE" in PostgreSQL, "" in
	// SQLite, whose transactions hold the write lock from their start.
	Lock string
	// MapError turns a driver error into a domain error (Conflict for a uniqueness violation, NotFound
	// for a missing courier, Invalid for a value the database refuses) or wraps it with what, which makes
	// it Internal.
	MapError func(err error, what string) error
	// GroupCommit runs the store's transactions through a database.Group: the transactions of
	// concurrent calls (dispatch's claims, which its jobs make side by side) share one BEGIN and COMMIT,
	// each in its own savepoint, rolled back alone when it fails. Set on SQLite, whose single writer
	// connection runs transactions one at a time anyway; on PostgreSQL transactions run side by side on
	// their own connections, and grouping them would only serialize them.
	GroupCommit bool
}

// Store is a courier.Store on a *sql.DB. It is safe for concurrent use.
type Store struct {
	db    *sql.DB
	e     Engine
	close func() error
	// group, when the engine asks for GroupCommit, runs inTx's transactions.
	group *database.Group
}

var _ courier.Store = (*Store)(nil)

// New returns a Store on db, which must carry the schema of the engine's migrations. closeDB, if not
// nil, is what Close runs: the engine's package passes it when it opened db itself.
func New(db *sql.DB, e Engine, closeDB func() error) *Store {
	s := &Store{db: db, e: e, close: closeDB}
	if e.GroupCommit {
		s.group = database.NewGroup(db, 0)
	}
	return s
}

// Close releases what the engine's constructor opened for the Store; it never closes a database the
// caller handed in.
func (s *Store) Close() error {
	if s.close == nil {
		return nil
	}
	return s.close()
}

// querier is what *sql.DB and *sql.Tx have in common, so reads run alike inside and outside a
// transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// time returns t as the engine stores it, truncated to the microsecond.
func (s *Store) time(t time.Time) any { return s.e.Dialect.Time(t) }

// timeType is the SQL type of a time stored by s.time, for casts.
func (s *Store) timeType() string {
	if s.e.Dialect == database.SQLite {
		return "INTEGER"
	}
	return "timestamptz"
}

// ceilTime is t rounded up to the microsecond, for bounds on stored times: a stored (whole-microsecond)
// time x satisfies x >= t exactly when x >= ceilTime(t).
func (s *Store) ceilTime(t time.Time) any {
	c := t.Truncate(time.Microsecond)
	if c.Before(t) {
		c = c.Add(time.Microsecond)
	}
	return s.time(c)
}

// hourStart normalises t to the start of its hour in UTC, the key of an availability slot.
func hourStart(t time.Time) time.Time { return t.UTC().Truncate(time.Hour) }

// placeholders returns "$from, $from+1, ..." for n arguments.
func placeholders(from, n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(from+i))
	}
	return b.String()
}

func courierNotFound(id string) error {
	return apperr.Errorf(apperr.NotFound, "courier %s not found", id)
}

// courierExists returns NotFound unless courier id exists.
func (s *Store) courierExists(ctx context.Context, q querier, id string) error {
	var one int
	err := q.QueryRowContext(ctx, `SELECT 1 FROM couriers WHERE id = $1`, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return courierNotFound(id)
	}
	if err != nil {
		return s.e.MapError(err, "look up courier "+id)
	}
	return nil
}

// lock takes the lock that serialises every check-then-write on courier id (see the package comment).
// NotFound when there is no such courier.
func (s *Store) lock(ctx context.Context, tx *sql.Tx, id string) error {
	var one int
	err := tx.QueryRowContext(ctx, `SELECT 1 FROM couriers WHERE id = $1`+s.e.Lock, id).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return courierNotFound(id)
	}
	if err != nil {
		return s.e.MapError(err, "lock courier "+id)
	}
	return nil
}

// lockCourier takes courier id's lock and returns the courier as it is once the lock is held,
// ActiveTasks included: the read is a second statement, so its snapshot follows the lock. Where the
// engine locks no row (SQLite: the transaction holds the database's write lock from its BEGIN), the read
// alone is enough, and NotFound the same.
func (s *Store) lockCourier(ctx context.Context, tx *sql.Tx, id string) (courier.Courier, error) {
	if s.e.Lock == "" {
		return s.getCourier(ctx, tx, "id", id)
	}
	if err := s.lock(ctx, tx, id); err != nil {
		return courier.Courier{}, err
	}
	return s.getCourier(ctx, tx, "id", id)
}

// inTx runs fn in a transaction (see database.InTx), or, with the engine's GroupCommit, in a savepoint
// of a transaction shared with concurrent calls (see database.Group): fn must use its tx only, and
// returns once that transaction committed.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if s.group != nil {
		return s.group.InTx(ctx, fn)
	}
	return database.InTx(ctx, s.db, fn)
}
