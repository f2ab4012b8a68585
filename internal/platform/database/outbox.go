package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// OutboxSchemaSQLite is the outbox table for SQLite. Each service copies it verbatim into one of its
// migration files (a .sql file cannot import a Go constant); a test in the service can compare the
// two. Times are Unix microseconds (UTC); published_at stays NULL until the relay has published the
// event. AUTOINCREMENT keeps ids from ever being reused, which the relay's ordering relies on.
const OutboxSchemaSQLite = `CREATE TABLE IF NOT EXISTS outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    topic        TEXT    NOT NULL,
    key          TEXT    NOT NULL,
    payload      BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    published_at INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
`

// OutboxSchemaPostgres is the outbox table for PostgreSQL, created in the service's schema by the
// service's own migration (copied verbatim, as for OutboxSchemaSQLite). The partial index keeps the
// relay's scan proportional to the backlog, not to the table.
const OutboxSchemaPostgres = `CREATE TABLE IF NOT EXISTS outbox (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic        text        NOT NULL,
    key          text        NOT NULL,
    payload      bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX IF NOT EXISTS outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
`

// Limits on what an event may carry; they keep one bad producer from filling the table or the relay's
// memory.
const (
	// MaxTopicLen is the longest Event.Topic, in bytes.
	MaxTopicLen = 200
	// MaxKeyLen is the longest Event.Key, in bytes.
	MaxKeyLen = 200
	// MaxEventPayload is the largest Event.Payload, in bytes.
	MaxEventPayload = 1 << 20
	// MaxOutboxBatch bounds the limit passed to OutboxStore.Pending and the ids passed to
	// MarkPublished.
	MaxOutboxBatch = 1000
)

// ErrInvalidEvent is wrapped by Append* when an event breaks the limits above.
var ErrInvalidEvent = errors.New("invalid outbox event")

// Event is one state change recorded in a service's outbox.
type Event struct {
	// ID is assigned by the database on append; events are published in ID order.
	ID int64
	// Topic says what happened, such as "dispatch.task.assigned".
	Topic string
	// Key identifies the entity, such as a task id; consumers use it to group and order events.
	Key string
	// Payload is the encoded event (usually a protobuf message).
	Payload []byte
	// CreatedAt is set on append when zero.
	CreatedAt time.Time
}

func (e *Event) prepare() error {
	switch {
	case e.Topic == "":
		return fmt.Errorf("%w: empty topic", ErrInvalidEvent)
	case len(e.Topic) > MaxTopicLen:
		return fmt.Errorf("%w: topic is %d bytes, limit %d", ErrInvalidEvent, len(e.Topic), MaxTopicLen)
	case len(e.Key) > MaxKeyLen:
		return fmt.Errorf("%w: key is %d bytes, limit %d", ErrInvalidEvent, len(e.Key), MaxKeyLen)
	case len(e.Payload) > MaxEventPayload:
		return fmt.Errorf("%w: payload is %d bytes, limit %d", ErrInvalidEvent, len(e.Payload), MaxEventPayload)
	}
	if e.Payload == nil {
		e.Payload = []byte{} // drivers send nil as NULL, which the NOT NULL column rejects
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = time.Now()
	}
	e.CreatedAt = e.CreatedAt.UTC().Truncate(time.Microsecond)
	return nil
}

// AppendSQLite records e in the outbox as part of tx, so the event exists exactly when the state
// change it describes commits. It returns the event's id. Call Relay.Notify after the commit.
func AppendSQLite(ctx context.Context, tx *sql.Tx, e Event) (int64, error) {
	if err := e.prepare(); err != nil {
		return 0, err
	}
	var id int64
	err := tx.QueryRowContext(ctx,
		"INSERT INTO outbox (topic, key, payload, created_at) VALUES (?, ?, ?, ?) RETURNING id",
		e.Topic, e.Key, e.Payload, e.CreatedAt.UnixMicro()).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("append outbox event %s: %w", e.Topic, err)
	}
	return id, nil
}

// AppendPgx records e in the outbox as part of tx; see AppendSQLite. The table is found through the
// search_path (OpenPostgres with Schema).
//
// Ids are drawn when the row is inserted, not when it commits, so an event can become visible after
// one with a higher id; the relay copes (see Relay). Events about one entity keep their order as long
// as the transaction locks or updates the entity's row before appending.
func AppendPgx(ctx context.Context, tx pgx.Tx, e Event) (int64, error) {
	if err := e.prepare(); err != nil {
		return 0, err
	}
	var id int64
	err := tx.QueryRow(ctx,
		"INSERT INTO outbox (topic, key, payload, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
		e.Topic, e.Key, e.Payload, e.CreatedAt).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("append outbox event %s: %w", e.Topic, err)
	}
	return id, nil
}

func checkLimit(limit int) error {
	if limit <= 0 || limit > MaxOutboxBatch {
		return fmt.Errorf("outbox batch limit %d: want 1..%d", limit, MaxOutboxBatch)
	}
	return nil
}

// SQLiteOutbox reads and marks a SQLite outbox for a Relay.
type SQLiteOutbox struct {
	db *sql.DB
}

var _ OutboxStore = (*SQLiteOutbox)(nil)

// NewSQLiteOutbox returns the outbox of the service database db.
func NewSQLiteOutbox(db *sql.DB) *SQLiteOutbox {
	return &SQLiteOutbox{db: db}
}

// Pending implements OutboxStore.
func (o *SQLiteOutbox) Pending(ctx context.Context, after int64, limit int) ([]Event, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := o.db.QueryContext(ctx,
		"SELECT id, topic, key, payload, created_at FROM outbox WHERE published_at IS NULL AND id > ? ORDER BY id LIMIT ?",
		after, limit)
	if err != nil {
		return nil, fmt.Errorf("list pending outbox events: %w", err)
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		var e Event
		var created int64
		if err := rows.Scan(&e.ID, &e.Topic, &e.Key, &e.Payload, &created); err != nil {
			return nil, fmt.Errorf("list pending outbox events: %w", err)
		}
		e.CreatedAt = time.UnixMicro(created).UTC()
		if e.Payload == nil {
			e.Payload = []byte{} // the driver scans an empty blob as nil; pgx as empty
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list pending outbox events: %w", err)
	}
	return events, nil
}

// MarkPublished implements OutboxStore.
func (o *SQLiteOutbox) MarkPublished(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if len(ids) > MaxOutboxBatch {
		return fmt.Errorf("mark %d outbox events published: limit %d", len(ids), MaxOutboxBatch)
	}
	args := make([]any, 0, len(ids)+1)
	args = append(args, time.Now().UnixMicro())
	for _, id := range ids {
		args = append(args, id)
	}
	q := "UPDATE outbox SET published_at = ? WHERE published_at IS NULL AND id IN (?" +
		strings.Repeat(", ?", len(ids)-1) + ")"
	if _, err := o.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("mark %d outbox events published: %w", len(ids), err)
	}
	return nil
}

// DeletePublished removes the events published earlier than before and returns how many it removed. Services call
// it periodically; the outbox is a queue, not an archive.
func (o *SQLiteOutbox) DeletePublished(ctx context.Context, before time.Time) (int64, error) {
	res, err := o.db.ExecContext(ctx,
		"DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < ?", before.UnixMicro())
	if err != nil {
		return 0, fmt.Errorf("delete published outbox events: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("delete published outbox events: %w", err)
	}
	return n, nil
}

// PgxOutbox reads and marks a PostgreSQL outbox for a Relay. The pool's search_path must lead to the
// service's schema (OpenPostgres with Schema).
type PgxOutbox struct {
	pool *pgxpool.Pool
}

var _ OutboxStore = (*PgxOutbox)(nil)

// NewPgxOutbox returns the outbox reachable through pool.
func NewPgxOutbox(pool *pgxpool.Pool) *PgxOutbox {
	return &PgxOutbox{pool: pool}
}

// Pending implements OutboxStore.
func (o *PgxOutbox) Pending(ctx context.Context, after int64, limit int) ([]Event, error) {
	if err := checkLimit(limit); err != nil {
		return nil, err
	}
	rows, err := o.pool.Query(ctx,
		"SELECT id, topic, key, payload, created_at FROM outbox WHERE published_at IS NULL AND id > $1 ORDER BY id LIMIT $2",
		after, limit)
	if err != nil {
		return nil, fmt.Errorf("list pending outbox events: %w", err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Event, error) {
		var e Event
		err := row.Scan(&e.ID, &e.Topic, &e.Key, &e.Payload, &e.CreatedAt)
		e.CreatedAt = e.CreatedAt.UTC()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("list pending outbox events: %w", err)
	}
	return events, nil
}

// MarkPublished implements OutboxStore.
func (o *PgxOutbox) MarkPublished(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if len(ids) > MaxOutboxBatch {
		return fmt.Errorf("mark %d outbox events published: limit %d", len(ids), MaxOutboxBatch)
	}
	if _, err := o.pool.Exec(ctx,
		"UPDATE outbox SET published_at = now() WHERE published_at IS NULL AND id = ANY($1)", ids); err != nil {
		return fmt.Errorf("mark %d outbox events published: %w", len(ids), err)
	}
	return nil
}

// DeletePublished removes the events published earlier than before and returns how many it removed.
func (o *PgxOutbox) DeletePublished(ctx context.Context, before time.Time) (int64, error) {
	tag, err := o.pool.Exec(ctx, "DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < $1", before)
	if err != nil {
		return 0, fmt.Errorf("delete published outbox events: %w", err)
	}
	return tag.RowsAffected(), nil
}
