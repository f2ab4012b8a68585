// Package eventlog is a service's feed of changes that watchers on every replica must see: a
// sequence-numbered log written in the same transaction as the change it describes (Append), which
// each replica tails from a cursor and fans out to its in-process subscribers (Log).
//
// It lives beside package database rather than inside it: database opens stores and runs their
// migrations and transactions, while the log is a running component (a tailer goroutine, a
// PostgreSQL listener, subscriptions) that stores and handlers use through a small API of its own.
//
// Ordering. Every event has a sequence number (Event.Seq), and sequence order is commit order: in
// SQLite because there is one writer at a time, in PostgreSQL because Append takes a transaction-level
// advisory lock, one per schema, before drawing the number, held until the appending transaction ends.
// (An advisory lock rather than a table lock, so retention's DELETE and autovacuum never wait for
// appenders or make them wait.)
// A reader that has seen seq n can therefore never later find a committed event below n, so a tailer
// never skips an event, however long a concurrent transaction stays open (it waits for it instead).
// A rolled-back transaction leaves a hole in the numbers, never an event. The price is that appending
// transactions of one service commit one at a time; append last in the transaction, so the lock is
// held only for the commit, and in the same order relative to other locks everywhere.
//
// Waking. A tailer reads when its poll interval passes, when Nudge is called (after a local commit),
// and, on PostgreSQL with Options.Listener, when the appending transaction's pg_notify arrives, so
// replicas learn of each other's commits at once. The database going away makes it back off
// (doubling up to Options.MaxBackoff) and log once when the log becomes unreachable and once when it
// is back.
//
// Retention. Log.Prune (run periodically by Log.Run when Options.Retention is set) deletes events
// older than a maximum age or beyond a maximum count; a subscriber whose cursor is older than what
// was kept gets ErrCursorExpired.
package eventlog

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"time"

	"lastmile/internal/platform/database"
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

// Errors that the package's errors wrap, for errors.Is. The errors returned to subscribers also
// carry an apperr code, so a gRPC handler can return them as they are.
var (
	// ErrInvalidEvent is wrapped by Append when an event breaks the limits above.
	ErrInvalidEvent = errors.New("invalid event")
	// ErrCursorExpired means the events after a subscriber's cursor were deleted by retention
	// (apperr.FailedPrecondition): the subscriber must start again from a fresh state.
	ErrCursorExpired = errors.New("event log cursor expired")
	// ErrTooSlow means a subscriber fell more than Options.Buffer events behind and was dropped
	// (apperr.ResourceExhausted): it may subscribe again from its last cursor.
	ErrTooSlow = errors.New("event log subscriber too slow")
	// ErrClosed means the log stopped (apperr.Unavailable).
	ErrClosed = errors.New("event log closed")
)

// Event is one entry of a service's event log.
type Event struct {
	// Seq is assigned on append; sequence order is commit order.
	Seq int64
	// Topic says what happened, such as "identity.user.login".
	Topic string
	// Key identifies the entity, such as a user id; subscribers use it to filter.
	Key string
	// Payload is the encoded event (usually a protobuf message). Never nil when read back.
	Payload []byte
	// At is when the event happened, in UTC to the microsecond; Append sets it to the current time
	// when zero. Retention by age compares it with the current time.
	At time.Time
}

func (e *Event) prepare() error {
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

// Append records e in the event log of tx's database as part of tx, so the event exists exactly when
// the change it describes commits, and returns its sequence number. d is the engine behind tx. After
// the commit, call Log.Nudge on this process's Log so its subscribers hear of it at once (other
// replicas learn of it through PostgreSQL's LISTEN/NOTIFY, or their next poll).
//
// On PostgreSQL the first Append of a transaction locks out the other appenders of the service until
// the transaction ends (see the package documentation): append as the last step of the transaction. The table is found through the search_path (database.OpenPostgres with Schema).
func Append(ctx context.Context, tx *sql.Tx, d database.Dialect, e Event) (int64, error) {
	if err := e.prepare(); err != nil {
		return 0, err
	}
	if d == database.Postgres {
		// One round trip for both: the notification is only sent when tx commits, and pg_notify
		// folds the identical notifications of one transaction into one.
		_, err := tx.ExecContext(ctx, "SELECT "+appendLock+", pg_notify("+notifyChannel+", '')")
		if err != nil {
			return 0, fmt.Errorf("append event %s: lock event log: %w", e.Topic, err)
		}
	}
	var seq int64
	err := tx.QueryRowContext(ctx,
		"INSERT INTO event_log (topic, key, payload, created_at) VALUES ($1, $2, $3, $4) RETURNING seq",
		e.Topic, e.Key, e.Payload, d.Time(e.At)).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("append event %s: %w", e.Topic, err)
	}
	return seq, nil
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
