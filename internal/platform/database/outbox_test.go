package database_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"

	"lastmile/internal/platform/database"
)

// outboxUnderTest is one dialect's outbox: its store, an append that commits one transaction of
// events, and a count of published rows.
type outboxUnderTest struct {
	store interface {
		database.OutboxStore
		DeletePublished(ctx context.Context, before time.Time) (int64, error)
	}
	// appendTx appends events in one committed transaction and returns them with their ids.
	appendTx func(ctx context.Context, t *testing.T, events ...database.Event) []database.Event
}

func sqliteOutbox(t *testing.T) outboxUnderTest {
	db := migratedSQLite(t)
	return outboxUnderTest{
		store: database.NewSQLiteOutbox(db),
		appendTx: func(ctx context.Context, t *testing.T, events ...database.Event) []database.Event {
			t.Helper()
			out := make([]database.Event, len(events))
			err := database.InTx(ctx, db, func(tx *sql.Tx) error {
				for i, e := range events {
					id, err := database.AppendSQLite(ctx, tx, e)
					if err != nil {
						return err
					}
					e.ID = id
					out[i] = e
				}
				return nil
			})
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			return out
		},
	}
}

func pgxOutbox(t *testing.T) outboxUnderTest {
	pool := migratedPostgres(t)
	return outboxUnderTest{
		store: database.NewPgxOutbox(pool),
		appendTx: func(ctx context.Context, t *testing.T, events ...database.Event) []database.Event {
			t.Helper()
			out := make([]database.Event, len(events))
			err := database.InPgxTx(ctx, pool, func(tx pgx.Tx) error {
				for i, e := range events {
					id, err := database.AppendPgx(ctx, tx, e)
					if err != nil {
						return err
					}
					e.ID = id
					out[i] = e
				}
				return nil
			})
			if err != nil {
				t.Fatalf("append: %v", err)
			}
			return out
		},
	}
}

var outboxes = []struct {
	name string
	open func(t *testing.T) outboxUnderTest
}{
	{"sqlite", sqliteOutbox},
	{"postgres", pgxOutbox},
}

// event returns a test event created at a fixed microsecond-precision time, as stored.
func event(topic, key, payload string) database.Event {
	return database.Event{
		Topic:     topic,
		Key:       key,
		Payload:   []byte(payload),
		CreatedAt: time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC),
	}
}

func TestOutboxStore(t *testing.T) {
	for _, ob := range outboxes {
		t.Run(ob.name, func(t *testing.T) {
			ctx := testContext(t)
			o := ob.open(t)
			appended := o.appendTx(ctx, t,
				event("task.created", "t1", "a"),
				event("task.assigned", "t1", "b"),
				database.Event{Topic: "task.created", Key: "t2", CreatedAt: time.Date(2026, 3, 1, 12, 0, 1, 0, time.UTC)},
			)
			// Stored empty payloads read back as empty, not nil.
			appended[2].Payload = []byte{}

			pending := func(after int64, limit int) []database.Event {
				t.Helper()
				got, err := o.store.Pending(ctx, after, limit)
				if err != nil {
					t.Fatalf("Pending(%d, %d): %v", after, limit, err)
				}
				return got
			}
			if diff := cmp.Diff(appended, pending(0, 10)); diff != "" {
				t.Errorf("Pending(0, 10) mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(appended[1:], pending(appended[0].ID, 10)); diff != "" {
				t.Errorf("Pending(after first, 10) mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(appended[:1], pending(0, 1)); diff != "" {
				t.Errorf("Pending(0, 1) mismatch (-want +got):\n%s", diff)
			}

			if err := o.store.MarkPublished(ctx, []int64{appended[0].ID, appended[2].ID}); err != nil {
				t.Fatalf("MarkPublished: %v", err)
			}
			if diff := cmp.Diff(appended[1:2], pending(0, 10)); diff != "" {
				t.Errorf("Pending after MarkPublished mismatch (-want +got):\n%s", diff)
			}
			// Marking again, or marking nothing, is harmless.
			if err := o.store.MarkPublished(ctx, []int64{appended[0].ID}); err != nil {
				t.Errorf("MarkPublished again: %v", err)
			}
			if err := o.store.MarkPublished(ctx, nil); err != nil {
				t.Errorf("MarkPublished(nil): %v", err)
			}

			n, err := o.store.DeletePublished(ctx, time.Now().Add(time.Hour))
			if err != nil || n != 2 {
				t.Errorf("DeletePublished = %d, %v, want 2, nil", n, err)
			}
			if diff := cmp.Diff(appended[1:2], pending(0, 10)); diff != "" {
				t.Errorf("Pending after DeletePublished mismatch (-want +got):\n%s", diff)
			}

			for _, limit := range []int{0, -1, database.MaxOutboxBatch + 1} {
				if _, err := o.store.Pending(ctx, 0, limit); err == nil {
					t.Errorf("Pending(0, %d) = nil error, want an error", limit)
				}
			}
		})
	}
}

func TestAppendRejectsInvalidEvents(t *testing.T) {
	ctx := testContext(t)
	db := migratedSQLite(t)
	for _, e := range []database.Event{
		{Topic: ""},
		{Topic: strings.Repeat("t", database.MaxTopicLen+1)},
		{Topic: "x", Key: strings.Repeat("k", database.MaxKeyLen+1)},
		{Topic: "x", Payload: make([]byte, database.MaxEventPayload+1)},
	} {
		err := database.InTx(ctx, db, func(tx *sql.Tx) error {
			_, err := database.AppendSQLite(ctx, tx, e)
			return err
		})
		if !errors.Is(err, database.ErrInvalidEvent) {
			t.Errorf("AppendSQLite(topic %d bytes, key %d bytes, payload %d bytes) = %v, want ErrInvalidEvent",
				len(e.Topic), len(e.Key), len(e.Payload), err)
		}
	}
}

func TestAppendIsPartOfTheTransaction(t *testing.T) {
	ctx := testContext(t)
	db := migratedSQLite(t)
	err := database.InTx(ctx, db, func(tx *sql.Tx) error {
		if _, err := database.AppendSQLite(ctx, tx, event("task.created", "t1", "a")); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("InTx = %v, want %v", err, errAbort)
	}
	got, err := database.NewSQLiteOutbox(db).Pending(ctx, 0, 10)
	if err != nil || len(got) != 0 {
		t.Errorf("Pending after rollback = %v, %v, want no events", got, err)
	}
}
