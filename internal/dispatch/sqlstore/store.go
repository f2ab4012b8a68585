// Package sqlstore implements dispatch.Store once, in plain SQL over database/sql, for both engines the
// dispatch service runs on: SQLite (dispatch/sqlite) and PostgreSQL (dispatch/postgres, through pgx's
// database/sql adapter). One SQL text serves both, with $n placeholders; what really differs between the
// engines (how times are stored, how rows are locked, how driver errors read, which failures are worth
// running a transaction again) comes in an Engine from the engine's package, which also keeps the
// migrations.
//
// # Storage
//
// A task is stored whole, as encoding/json of dispatch.Task, in tasks.doc; the columns beside it (state,
// customer, holder, the courier of the open offer, priority rank, times, version) copy what the store
// queries by and are written with doc in every statement, so they never disagree. Two columns are the
// store's own and win over doc on every read: version (the etag) and due_time (which WakePending moves
// without rewriting doc). The JSON follows Task's Go field names: renaming a field of Task (or of a type
// it holds) needs a migration of the stored docs; adding one does not (older docs read it as zero).
// Decisions are stored in a binary form instead (decisions.bin: the protobuf wire format of a
// storage-private message, decisionbin.go), about a third of their JSON's size, as they are most of the
// database; the decisions written before it (and one the binary form declines, see decisionBin) keep
// their JSON document in decisions.doc, and every read takes whichever the row has. Every offer of every task also has a row in
// offers (offer id, task, courier), for TaskByOffer and UpdateTaskByOffer; a row once written is never
// changed.
//
// Times are truncated to the microsecond and returned in UTC, in columns and docs alike, so a round trip
// is exact at that precision on both engines.
//
// # Transactions and locks
//
// UpdateTask, UpdateTaskByOffer and UpdateSession read, run the domain's closure and write in one
// transaction, the read locking the row first: on PostgreSQL with SELECT ... FOR UPDATE, on SQLite by
// the write lock that database.OpenSQLite's transactions take at BEGIN (BEGIN IMMEDIATE on a single
// connection), so there they run one at a time. The UPDATE also checks the version it read (WHERE
// version = old), a second guard that makes a lost update impossible even if the lock were missing. On
// PostgreSQL a transaction aborted to break a deadlock or a serialization conflict runs again from the
// start (a few times, after a short randomized pause), so the closures must be pure: no effect outside
// what they return. Nor may a closure call the Store: on SQLite the transaction holds the only writer
// connection, so a write would wait for it forever; a read, there and on PostgreSQL, would run outside
// the transaction.
//
// Every write to a task (CreateTask when it creates, UpdateTask) appends a dispatch.TopicTask event
// (key the task id, payload the task's new state) to the service's event log (package sqllog, in the
// same database: migrate it with sqllog.Migrations(d, "dispatch")) in the same transaction; every
// delivery appends a dispatch.TopicDelivery event (key the courier id, payload the task id) whose
// sequence number becomes the delivery's cursor, so cursors increase in commit order on both engines;
// UpdateSession appends dispatch.TopicSession (key the courier id, payload the new session id) when the
// session id changes. Appends come last in their transaction: on PostgreSQL the first one takes the
// log's lock, which every appender of the service waits for, and taking it after the transaction's row
// locks keeps lock order one way. LeaseDue, Unlease and WakePending append nothing: they change no task
// a reader sees but its due time.
//
// On SQLite (Engine.GroupCommit) UpdateTask, UpdateTaskByOffer and UpdateTasks first read the task
// from the read pool, run the closure on it and encode what it returned, before their transaction; the
// transaction writes that only where the task's version and due time are still the ones the closure
// saw (UPDATE ... WHERE version = ... AND due_time IS ...), and otherwise reads the task, runs the
// closure again and writes as above. The closures being pure, what is written is the same; the one
// writer waits for neither the read, nor the closure, nor the encoding. A closure may therefore run
// twice on SQLite too.
//
// On SQLite (Engine.GroupCommit) the transactions of concurrent calls are grouped (database.Group): each
// call's transaction is a savepoint of a transaction shared with the calls queued beside it, run one
// after the other in queue order, rolled back alone when it fails, and committed with the others in
// one COMMIT; a call returns only after that commit. Each call still sees the writes of those before
// it, exactly as if the transactions had run one after the other, and nothing of the group is visible
// to readers before the commit.
//
// A Change's jobs are enqueued in the same transaction by the enqueuer given to SetJobs (RiverJobs:
// River's tables in the same database, migrated with jobs.Migrate), so each exists exactly when the
// change commits. A Change with jobs fails with Internal when no enqueuer is set: jobs are never dropped.
//
// # Work queue
//
// LeaseDue picks due tasks (due_time at or before now) that no live lease holds (lease_until NULL or
// before now: a lease holds through its lease_until), highest priority first, then oldest, then by id,
// and leases them in the same transaction. The pick walks the index tasks_due_order, which is in its
// order, and stops at its limit, so its cost does not grow with the backlog of due tasks. On PostgreSQL the pick is SELECT ... FOR UPDATE SKIP LOCKED,
// so replicas leasing at once take different tasks and never wait for each other; on SQLite the
// transactions run one at a time anyway. UpdateTask neither checks nor changes leases. UnleaseOthers
// ends the leases of every other owner: the domain calls it at start on SQLite, where they can only be
// those of a process that ended (OneProcess).
//
// # The couriers' states on SQLite
//
// On SQLite the Stores of a database keep in memory what CourierStates, Connected, OfferOpen and
// HeldTasksOf answer (courierindex.go): it is changed after the commit of every write that changes it,
// before the write returns, and loaded on first use. That holds because every write of the tasks and
// sessions tables goes through a Store on the one *sql.DB opened on the file: the data directory's lock
// keeps other lastmile processes away, and nothing else writes those tables. A tool that changed them
// beside a running process (sqlite3 on the live file) would leave the process's answers wrong until it
// restarts.
//
// # Wiring
//
// A process builds the store on its database (sqlite.New(db) or postgres.New(pool)), migrates it
// (sqlite.Migrate or postgres.Migrate: dispatch's tables, the event log's, River's), gives it River as
// its job queue (SetJobs(RiverJobs(client)), client = jobs.New(store.DB(), store.Dialect(), ...) with the
// workers of jobargs' kinds), and opens the event log over the same database
// (eventlog.New(sqllog.NewSource(store.DB(), store.Dialect()), ...), woken by sqllog.Listener(pool) on
// PostgreSQL), whose Nudge it passes to SetNudge.
//
// # Retention
//
// Purge deletes deliveries a courier acknowledged (cursor at or below its session's acked watermark),
// deliveries and command records created before its bound. Tasks keep their request ids forever (the
// unique key on created_by and request_id is never cleared), which makes a request id reused after any
// time a retry of the first request, never a new task.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// Service is the name dispatch's event log and River's tables are kept under.
const Service = "dispatch"

// Engine is what differs between the databases a Store runs on.
type Engine struct {
	// Dialect decides how times are stored (database.Dialect.Time): Unix microseconds in SQLite,
	// timestamptz in PostgreSQL.
	Dialect database.Dialect
	// Lock ends the statement that reads a row a closure decides on: " FOR UPDATE" in PostgreSQL, "" in
	// SQLite, whose transactions hold the write lock from their start.
	Lock string
	// SkipLocked ends LeaseDue's pick: " FOR UPDATE SKIP LOCKED" in PostgreSQL, "" in SQLite.
	SkipLocked string
	// DueIndex follows the table in LeaseDue's pick to name the index it walks: " INDEXED BY
	// tasks_due_order" in SQLite, whose planner would otherwise read every due task through tasks_due and
	// sort them; "" in PostgreSQL, whose planner picks tasks_due_order for the ORDER BY ... LIMIT itself.
	DueIndex string
	// MapError turns a driver error into a domain error (Conflict for a uniqueness violation, NotFound
	// for a missing task, Invalid for a value the database refuses, Unavailable for a lost connection) or
	// wraps it with what, which makes it Internal.
	MapError func(err error, what string) error
	// Retryable reports whether a transaction that failed with err may run again from the start
	// (PostgreSQL's deadlock_detected and serialization_failure). Nil means never.
	Retryable func(err error) bool
	// GroupCommit runs the store's transactions through a database.Group: the transactions of
	// concurrent calls share one BEGIN and COMMIT, each in its own savepoint. Set on SQLite, whose
	// single writer connection runs transactions one at a time anyway; on PostgreSQL transactions run
	// side by side on their own connections, and grouping them would only serialize them.
	GroupCommit bool
	// OneProcess says that one process alone works the database (Store.OneProcess): set on SQLite,
	// whose file belongs to the process holding lastmile's data directory lock.
	OneProcess bool
	// RefuseNUL makes a document holding a NUL character (the escape \u0000, as encoding/json writes
	// it) Invalid before it is sent: set on PostgreSQL, whose text cannot hold NUL. Its doc columns are
	// json, which would store the escape (jsonb, before migration 00006, refused it), and a NUL in a
	// document stays as refused there as in a column.
	RefuseNUL bool
}

// EnqueueJobs enqueues jobs as part of tx, so that they exist exactly when tx commits (RiverJobs).
type EnqueueJobs func(ctx context.Context, tx *sql.Tx, jobs []dispatch.Job) error

// Store is a dispatch.Store on a *sql.DB. It is safe for concurrent use once configured (SetJobs,
// SetNudge before the first call).
type Store struct {
	db    *sql.DB
	read  *sql.DB // reads outside transactions: database.Reader(db)
	e     Engine
	close func() error
	jobs  EnqueueJobs
	nudge func()
	// group, when the engine asks for GroupCommit, runs inTx's transactions.
	group *database.Group
	// held are the held tasks' fields decoded before (held.go).
	held heldCache
	// heldSets are the couriers' held tasks by the list of ids and versions read (held.go).
	heldSets heldSets
	// docs are the task documents decoded or written before (codec.go).
	docs taskDocs
	// states, on SQLite, are the couriers' states kept in memory, shared by the Stores on db
	// (courierindex.go); nil on PostgreSQL.
	states *courierIndex
}

var _ dispatch.Store = (*Store)(nil)

// New returns a Store on db, which must carry the schema of the engine's migrations and of the event
// log's (sqllog.Migrations(e.Dialect, Service)). closeDB, if not nil, is what Close runs: the engine's
// package passes it when it opened db itself.
//
// Reads outside a transaction (GetTask, ListTasks, Deliveries, Connected, ...) run on
// database.Reader(db): on SQLite the read pool that database.OpenSQLite opened beside the single
// writer connection, so they neither wait for nor delay the writes; on PostgreSQL db itself. A read
// sees every write whose call has returned (WAL); reads inside a transaction stay on it.
func New(db *sql.DB, e Engine, closeDB func() error) *Store {
	s := &Store{db: db, read: database.Reader(db), e: e, close: closeDB}
	if e.GroupCommit {
		s.group = database.NewGroup(db, 0)
	}
	if e.GroupCommit && e.Dialect == database.SQLite {
		s.states = courierIndexOf(db)
	}
	return s
}

// SetJobs sets how a Change's jobs are enqueued: RiverJobs(client) in production. Call it before the
// Store is used. Without it, a Change with jobs fails (Internal).
func (s *Store) SetJobs(enqueue EnqueueJobs) { s.jobs = enqueue }

// SetNudge sets a function called after every commit that appended events to the log: the
// eventlog.Log's Nudge, so that this process's subscribers read them at once instead of at the next
// poll. Call it before the Store is used.
func (s *Store) SetNudge(nudge func()) { s.nudge = nudge }

// DB returns the database the Store runs on: the event log (sqllog.NewSource) and River (jobs.New) run
// on it too.
func (s *Store) DB() *sql.DB { return s.db }

// WriterStats returns what the Store's group commit ran (database.Group.Stats): how long SQLite's
// one writer was held by the Store's transactions, in how many transactions and functions. It is zero
// without the engine's GroupCommit (PostgreSQL).
func (s *Store) WriterStats() database.GroupStats {
	if s.group == nil {
		return database.GroupStats{}
	}
	return s.group.Stats()
}

// Dialect returns the engine behind DB.
func (s *Store) Dialect() database.Dialect { return s.e.Dialect }

// Close releases what the engine's constructor opened for the Store; it never closes a database the
// caller handed in.
func (s *Store) Close() error {
	if s.close == nil {
		return nil
	}
	if err := s.close(); err != nil {
		return fmt.Errorf("close dispatch store: %w", err)
	}
	return nil
}

// querier is what *sql.DB and *sql.Tx have in common, so reads run alike inside and outside a
// transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// maxTxAttempts bounds how often a transaction that the engine reports as retryable is run.
const maxTxAttempts = 5

// inTx runs fn in a transaction (database.InTx), again from the start when it fails with an error the
// engine reports as retryable, after a randomized pause that grows with each attempt. When the
// transaction committed after appending events, the nudge runs.
//
// With the engine's GroupCommit the transaction is the Store's database.Group's: fn runs in a
// savepoint of a transaction shared with concurrent calls, and is rolled back alone when it fails.
// What fn did in memory is its call's alone (its appender, what its closure captured), and the nudge
// runs only once the shared transaction committed with fn's writes in it, as without the group. The
// events of one shared transaction become visible together, in the order the functions ran, their
// sequence numbers contiguous (SQLite's one writer draws them).
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx, a *appender) error) error {
	a := &appender{s: s}
	run := func(tx *sql.Tx) error {
		a.appended = false
		return fn(tx, a)
	}
	err := s.retrying(ctx, func() error {
		*a = appender{s: s}
		if s.group != nil {
			return s.group.InTx(ctx, run)
		}
		return database.InTx(ctx, s.db, run)
	})
	if err == nil && a.appended {
		s.afterAppend()
	}
	return err
}

// retrying runs fn, a transaction or a statement outside one, again from the start when it fails with
// an error the engine reports as retryable, after a randomized pause that grows with each attempt, at
// most maxTxAttempts times; the last retryable failure is Aborted.
func (s *Store) retrying(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || s.e.Retryable == nil || !s.e.Retryable(err) {
			return err
		}
		if attempt == maxTxAttempts {
			return apperr.Wrap(apperr.Aborted, err, "too many concurrent changes; try again")
		}
		pause := time.Duration(rand.Int64N(int64(5*time.Millisecond) << attempt))
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return errors.Join(err, ctx.Err())
		case <-t.C:
		}
	}
}

// write runs fn, statements that need no transaction of their own, on the writer: through the Store's
// Group when it has one, so that they share a group's COMMIT instead of paying one of their own, and on
// db directly (one autocommit transaction per statement) otherwise. A failure of fn writes nothing of
// its statements in a group; outside one, the statements before the failing one stay.
func (s *Store) write(ctx context.Context, fn func(q querier) error) error {
	if s.group == nil {
		return fn(s.db)
	}
	return s.group.InTx(ctx, func(tx *sql.Tx) error { return fn(tx) })
}

func (s *Store) afterAppend() {
	if s.nudge != nil {
		s.nudge()
	}
}

// time returns t as the engine stores it; nullTime stores the zero time as NULL.
func (s *Store) time(t time.Time) any     { return s.e.Dialect.Time(t) }
func (s *Store) nullTime(t time.Time) any { return s.e.Dialect.NullTime(t) }

// nullString stores "" as NULL.
func nullString(v string) any {
	if v == "" {
		return nil
	}
	return v
}

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

// storedTime returns t as the store keeps it: UTC, whole microseconds.
func storedTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}
