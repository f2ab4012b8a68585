// Package sqllog keeps a service's event log (package eventlog) in the service's own SQLite database or
// PostgreSQL schema: Append writes an event in the transaction of the change it describes, Source reads
// the log for an eventlog.Log, Listener wakes that Log on PostgreSQL notifications, and Migrations
// creates the tables.
//
// Sequence order is commit order: in SQLite because there is one writer at a time, in PostgreSQL
// because Append takes a transaction-level advisory lock, one per schema, before drawing the number, and
// holds it until the appending transaction ends. A reader that has seen seq n can therefore never later
// find a committed event below n, so a tailer never skips an event, however long a concurrent
// transaction stays open (the next appender waits for it instead). A rolled-back transaction leaves a
// hole in the numbers, never an event. The price is that appending transactions of one service commit
// one at a time: append as the last step of the transaction, so the lock is held only for the commit
// and is always taken after the transaction's other locks. An advisory lock rather than a table lock,
// so retention's DELETE and autovacuum never wait for appenders or make them wait.
package sqllog

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"lastmile/internal/platform/database"
	"lastmile/internal/platform/eventlog"
)

// Limits on what an event may carry; they keep one bad producer from filling the table or a
// subscriber's memory.
const (
	// MaxTopicLen is the longest Event.Topic, in bytes.
	MaxTopicLen = 200
	// MaxKeyLen is the longest Event.Key, in bytes.
	MaxKeyLen = 200
	// MaxPayload is the largest Event.Payload, in bytes.
	MaxPayload = 1 << 20
)

// ErrInvalidEvent is wrapped by Append when an event breaks the limits above.
var ErrInvalidEvent = errors.New("invalid event")

func prepare(e *eventlog.Event) error {
	switch {
	case e.Topic == "":
		return fmt.Errorf("%w: empty topic", ErrInvalidEvent)
	case len(e.Topic) > MaxTopicLen:
		return fmt.Errorf("%w: topic is %d bytes, limit %d", ErrInvalidEvent, len(e.Topic), MaxTopicLen)
	case len(e.Key) > MaxKeyLen:
		return fmt.Errorf("%w: key is %d bytes, limit %d", ErrInvalidEvent, len(e.Key), MaxKeyLen)
	case len(e.Payload) > MaxPayload:
		return fmt.Errorf("%w: payload is %d bytes, limit %d", ErrInvalidEvent, len(e.Payload), MaxPayload)
	}
	if e.Payload == nil {
		e.Payload = []byte{} // drivers send nil as NULL, which the NOT NULL column rejects
	}
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.At = e.At.UTC().Truncate(time.Microsecond)
	return nil
}

// notifyChannel is the PostgreSQL notification channel of the log in the current schema, computed the
// same way by Append and the listener (channel names are at most 63 bytes).
const notifyChannel = "left('event_log:' || current_schema(), 63)"

// appendLock is the advisory lock that serializes the appenders of the log in the current schema. The
// two-key form keeps it apart from the single-key advisory locks of migrations; the first key is an
// arbitrary constant that names this package's locks.
const appendLock = "pg_advisory_xact_lock(1701278828, hashtext(current_schema()))"

// Append records e (Seq is ignored; At defaults to now) in the event log of tx's database as part of
// tx, so the event exists exactly when the change it describes commits, and returns its sequence
// number. d is the engine behind tx. After the commit, call Nudge on this process's eventlog.Log so its
// subscribers hear of it at once; other replicas learn of it through PostgreSQL's LISTEN/NOTIFY
// (Listener) or their next poll.
//
// On PostgreSQL the first Append of a transaction locks out the other appenders of the service until
// the transaction ends (see the package documentation): append as the last step of the transaction.
// The table is found through the search_path (database.OpenPostgres with Schema).
func Append(ctx context.Context, tx *sql.Tx, d database.Dialect, e eventlog.Event) (int64, error) {
	if err := prepare(&e); err != nil {
		return 0, err
	}
	return appendPrepared(ctx, tx, d, e)
}

// appendPrepared is Append for an event prepare has checked and completed.
func appendPrepared(ctx context.Context, tx *sql.Tx, d database.Dialect, e eventlog.Event) (int64, error) {
	insert := "INSERT INTO event_log (topic, key, payload, created_at) VALUES ($1, $2, $3, $4) RETURNING seq"
	if d == database.Postgres {
		insert = appendPostgres
	}
	var seq int64
	err := tx.QueryRowContext(ctx, insert, e.Topic, e.Key, e.Payload, d.Time(e.At)).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("append event %s: %w", e.Topic, err)
	}
	return seq, nil
}

// AppendMany is Append for events, in one statement on PostgreSQL (one round trip, whatever their
// number) and one per event on SQLite (no round trips to save there): it returns their sequence
// numbers, increasing in the order of events. Nothing is appended when one of them breaks the limits.
func AppendMany(ctx context.Context, tx *sql.Tx, d database.Dialect, events []eventlog.Event) ([]int64, error) {
	events = slices.Clone(events) // prepare completes them; the caller's stay as they were
	for i := range events {
		if err := prepare(&events[i]); err != nil {
			return nil, err
		}
	}
	if len(events) == 0 {
		return nil, nil
	}
	if d != database.Postgres || len(events) == 1 {
		seqs := make([]int64, len(events))
		for i, e := range events {
			seq, err := appendPrepared(ctx, tx, d, e)
			if err != nil {
				return nil, err
			}
			seqs[i] = seq
		}
		return seqs, nil
	}
	topics, keys := make([]string, len(events)), make([]string, len(events))
	payloads, ats := make([][]byte, len(events)), make([]time.Time, len(events))
	for i, e := range events {
		topics[i], keys[i], payloads[i], ats[i] = e.Topic, e.Key, e.Payload, e.At
	}
	rows, err := tx.QueryContext(ctx, appendManyPostgres, topics, keys, payloads, ats)
	if err != nil {
		return nil, fmt.Errorf("append %d events (first %s): %w", len(events), events[0].Topic, err)
	}
	seqs, err := func() ([]int64, error) {
		defer rows.Close()
		seqs := make([]int64, 0, len(events))
		for rows.Next() {
			var seq int64
			if err := rows.Scan(&seq); err != nil {
				return nil, err
			}
			seqs = append(seqs, seq)
		}
		return seqs, rows.Err()
	}()
	if err != nil {
		return nil, fmt.Errorf("append %d events (first %s): %w", len(events), events[0].Topic, err)
	}
	if len(seqs) != len(events) {
		return nil, fmt.Errorf("append %d events (first %s): %d sequence numbers returned", len(events), events[0].Topic, len(seqs))
	}
	// The numbers are drawn in the order of the rows (ORDER BY n below the insert); RETURNING's order
	// is not promised, so they are sorted.
	slices.Sort(seqs)
	return seqs, nil
}

// appendLockCTE starts both append statements on PostgreSQL: the CTE that takes the log's lock and
// queues the notification (see appendPostgres).
const appendLockCTE = "WITH lock AS MATERIALIZED (SELECT " + appendLock + ", pg_notify(" + notifyChannel + ", '')) "

// appendManyPostgres is AppendMany's statement on PostgreSQL: appendPostgres with the rows from arrays,
// in their order (WITH ORDINALITY, ORDER BY n: nextval is evaluated above the sort).
const appendManyPostgres = appendLockCTE +
	"INSERT INTO event_log (topic, key, payload, created_at) SELECT e.topic, e.key, e.payload, e.created_at " +
	"FROM lock, unnest($1::text[], $2::text[], $3::bytea[], $4::timestamptz[]) WITH ORDINALITY AS e(topic, key, payload, created_at, n) " +
	"ORDER BY e.n RETURNING seq"

// appendPostgres is Append's statement on PostgreSQL, one round trip: the row inserted comes from the
// CTE that takes the log's lock (and queues the notification, sent only when the transaction commits;
// PostgreSQL folds the identical notifications of one transaction into one), so the lock is held before
// the row's seq is drawn. MATERIALIZED keeps the CTE a step of its own; a CTE is only run when
// referenced, hence FROM lock. The casts type the parameters, which INSERT ... SELECT does not infer
// from the columns.
const appendPostgres = appendLockCTE +
	"INSERT INTO event_log (topic, key, payload, created_at) SELECT $1::text, $2::text, $3::bytea, $4::timestamptz FROM lock RETURNING seq"

// AppendWithPostgres returns a PostgreSQL statement that runs write, a data-modifying statement with a
// RETURNING clause (its parameters numbered from $1), and appends one event for each row write returns,
// as Append would in write's transaction, in one round trip: topic, key, payload and at are the event's
// columns as SQL expressions over the statement's parameters and write's RETURNING columns (cast them:
// text, text, bytea, timestamptz; at is stored as is, so truncate it to the microsecond). Each of before
// is another data-modifying statement with a RETURNING clause, which may read write's rows as
// "written"; it runs to its end before the events are appended. The log's lock is taken after write's
// rows were made and before's statements ran (after their row locks, as the package documentation
// asks), before the events' numbers are drawn. The statement returns the events' sequence numbers; no
// row when write returned none (then nothing was appended).
//
// Run it as a statement of its own, outside a transaction: its implicit transaction commits at its
// end, so the log's lock is held for the statement and its commit only, not for a round trip to the
// client and back. In a transaction it holds the lock to the transaction's end, as Append does.
func AppendWithPostgres(write, topic, key, payload, at string, before ...string) string {
	var with, after strings.Builder
	with.WriteString("WITH written AS (" + write + ")")
	for i, b := range before {
		name := "before_" + strconv.Itoa(i)
		with.WriteString(", " + name + " AS (" + b + ")")
		// An uncorrelated subquery is evaluated before the first row is: the statement has run by then
		// (a data-modifying WITH query nobody reads runs only at the end of the statement).
		if i == 0 {
			after.WriteString(" WHERE ")
		} else {
			after.WriteString(" AND ")
		}
		after.WriteString("(SELECT count(*) FROM " + name + ") >= 0")
	}
	return with.String() + ", lock AS MATERIALIZED (SELECT written.*, " + appendLock + " AS append_lock, pg_notify(" +
		notifyChannel + ", '') AS append_notify FROM written" + after.String() + ") " +
		"INSERT INTO event_log (topic, key, payload, created_at) SELECT " + topic + ", " + key + ", " + payload + ", " + at +
		" FROM lock RETURNING seq"
}

//go:embed migrations/sqlite/*.sql migrations/postgres/*.sql
var migrationFS embed.FS

// VersionTable is goose's bookkeeping table for the event log's migrations, kept apart from the
// service's own goose_db_version.
const VersionTable = "event_log_goose_version"

// Migrations returns the migrations that create the event log in service's database (SQLite) or
// schema (PostgreSQL). A service applies them with database.MigrateSQLite or database.MigratePostgres
// after its own migrations; they keep their history in VersionTable, so the log's schema has one
// source and evolves independently of the service's.
func Migrations(d database.Dialect, service string) database.Migrations {
	dir := "migrations/sqlite"
	if d == database.Postgres {
		dir = "migrations/postgres"
	}
	m := database.EmbeddedMigrations(service, migrationFS, dir)
	m.VersionTable = VersionTable
	return m
}

// Source reads a service's event log for an eventlog.Log.
type Source struct {
	db      *sql.DB
	read    *sql.DB // Head and Read: database.Reader(db)
	dialect database.Dialect
}

var _ eventlog.Source = (*Source)(nil)

// NewSource returns the event log in db, whose engine is d. It panics when db is nil or d is unknown
// (a wiring mistake). Head and Read run on database.Reader(db), on SQLite the read pool beside the
// writer, so tailing the log never waits for the service's writes; they still see every commit in
// order, because SQLite's one writer draws the sequence numbers in commit order.
func NewSource(db *sql.DB, d database.Dialect) *Source {
	if db == nil || (d != database.SQLite && d != database.Postgres) {
		panic(fmt.Sprintf("sqllog.NewSource: nil db or unknown dialect %q", d))
	}
	return &Source{db: db, read: database.Reader(db), dialect: d}
}

// Head implements eventlog.Source.
func (s *Source) Head(ctx context.Context) (int64, error) {
	var newest, pruned int64
	err := s.read.QueryRowContext(ctx,
		"SELECT coalesce((SELECT max(seq) FROM event_log), 0), pruned_through FROM event_log_state").Scan(&newest, &pruned)
	if err != nil {
		return 0, fmt.Errorf("read event log head: %w", err)
	}
	return max(newest, pruned), nil
}

// readLimited is Read's statement: the floor beside each of the (at most $2) events after $1, in seq
// order, or the floor alone in one row when none follows. The events are limited before the join, so
// that PostgreSQL's planner never sorts every event after $1; SQLite materializes them and sorts them
// again for the outer ORDER BY.
const readLimited = `SELECT s.pruned_through, e.seq, e.topic, e.key, e.payload, e.created_at
		FROM event_log_state s
		LEFT JOIN (SELECT seq, topic, key, payload, created_at FROM event_log WHERE seq > $1 ORDER BY seq LIMIT $2) e ON 1 = 1
		ORDER BY e.seq`

// readSQLite is readLimited for SQLite when $2 is at least 1: event_log_state is one row by its key, so
// the join walks event_log's rowid from $1 in seq order and stops at the limit, with nothing
// materialized or sorted.
const readSQLite = `SELECT s.pruned_through, e.seq, e.topic, e.key, e.payload, e.created_at
		FROM event_log_state s LEFT JOIN event_log e ON e.seq > $1
		WHERE s.id = 1 ORDER BY e.seq LIMIT $2`

// Read implements eventlog.Source, in one statement so the events and the floor come from one
// snapshot.
func (s *Source) Read(ctx context.Context, after int64, limit int) ([]eventlog.Event, int64, error) {
	query := readLimited
	if s.dialect == database.SQLite && limit >= 1 {
		query = readSQLite
	}
	rows, err := s.read.QueryContext(ctx, query, after, limit)
	if err != nil {
		return nil, 0, fmt.Errorf("read event log after %d: %w", after, err)
	}
	defer rows.Close()
	var (
		events []eventlog.Event
		pruned int64
	)
	for rows.Next() {
		var (
			seq        sql.NullInt64
			topic, key sql.NullString
			e          eventlog.Event
		)
		if err := rows.Scan(&pruned, &seq, &topic, &key, &e.Payload, database.ScanTime(&e.At)); err != nil {
			return nil, 0, fmt.Errorf("read event log after %d: %w", after, err)
		}
		if !seq.Valid {
			continue // the row of the outer join when no event follows
		}
		e.Seq, e.Topic, e.Key = seq.Int64, topic.String, key.String
		if e.Payload == nil {
			e.Payload = []byte{} // SQLite reads an empty blob as nil
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("read event log after %d: %w", after, err)
	}
	return events, pruned, nil
}

// Prune implements eventlog.Source. It deletes a prefix of the log: every event up to the newest one
// that is too old or beyond the count, so the floor stays a single number.
func (s *Source) Prune(ctx context.Context, r eventlog.Retention, now time.Time) (int64, error) {
	var deleted int64
	err := database.InTx(ctx, s.db, func(tx *sql.Tx) error {
		var through int64
		if r.MaxAge > 0 {
			err := tx.QueryRowContext(ctx, "SELECT coalesce(max(seq), 0) FROM event_log WHERE created_at < $1",
				s.dialect.Time(now.Add(-r.MaxAge))).Scan(&through)
			if err != nil {
				return fmt.Errorf("find events older than %v: %w", r.MaxAge, err)
			}
		}
		if r.MaxCount > 0 {
			var seq int64
			err := tx.QueryRowContext(ctx, "SELECT seq FROM event_log ORDER BY seq DESC LIMIT 1 OFFSET $1", r.MaxCount).Scan(&seq)
			switch {
			case errors.Is(err, sql.ErrNoRows): // no more than MaxCount events
			case err != nil:
				return fmt.Errorf("find events beyond the newest %d: %w", r.MaxCount, err)
			default:
				through = max(through, seq)
			}
		}
		if through == 0 {
			return nil
		}
		res, err := tx.ExecContext(ctx, "DELETE FROM event_log WHERE seq <= $1", through)
		if err != nil {
			return fmt.Errorf("delete events up to %d: %w", through, err)
		}
		if deleted, err = res.RowsAffected(); err != nil {
			return fmt.Errorf("delete events up to %d: %w", through, err)
		}
		if _, err := tx.ExecContext(ctx,
			"UPDATE event_log_state SET pruned_through = $1 WHERE pruned_through < $1", through); err != nil {
			return fmt.Errorf("record events deleted up to %d: %w", through, err)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune event log: %w", err)
	}
	return deleted, nil
}
