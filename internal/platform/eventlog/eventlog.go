// Package eventlog is a service's feed of changes that watchers on every replica must see: a
// sequence-numbered log, written in the same transaction as the change it describes, which each
// replica tails from a cursor (Log) and fans out to its in-process subscribers (Subscription).
//
// This package holds the tailer and the subscriptions and depends on no database driver, so a domain
// package may take a *Log (or an interface of its own over Subscribe) and consume events. Where the
// events are stored is a Source: package sqllog keeps them in the service's SQLite database or
// PostgreSQL schema, appends them in the store's *sql.Tx, and wakes the tailer on PostgreSQL
// notifications.
//
// Sequence order must be commit order (the Source guarantees it): a reader that has seen seq n never
// later finds a committed event below n, so a subscriber reading "after my cursor" never misses one.
//
// Waking. A tailer reads when its poll interval passes, when Nudge is called (after a local commit),
// and when Options.Wake says the source changed (PostgreSQL LISTEN/NOTIFY), so replicas learn of each
// other's commits at once. The source failing makes it back off (doubling up to Options.MaxBackoff)
// and log once when the log becomes unreachable and once when it is back.
//
// Retention. Log.Prune (run periodically by Log.Run when Options.Retention is set) deletes events
// older than a maximum age or beyond a maximum count; a subscriber whose cursor is older than what
// was kept gets ErrCursorExpired.
package eventlog

import (
	"context"
	"errors"
	"time"
)

// Errors that the package's errors wrap, for errors.Is. The errors returned to subscribers also
// carry an apperr code, so a gRPC handler can return them as they are.
var (
	// ErrCursorExpired means the events after a subscriber's cursor were deleted by retention
	// (apperr.FailedPrecondition): the subscriber must start again from a fresh state.
	ErrCursorExpired = errors.New("event log cursor expired")
	// ErrTooSlow means a subscriber fell more than Options.Buffer events behind and was dropped
	// (apperr.ResourceExhausted): it may subscribe again from its last cursor.
	ErrTooSlow = errors.New("event log subscriber too slow")
	// ErrClosed means the log stopped or the subscription was closed (apperr.Unavailable).
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
	// At is when the event happened, in UTC to the microsecond. Retention by age compares it with
	// the current time.
	At time.Time
}

// Source is where a Log reads events: sqllog.Source for a service's own database.
type Source interface {
	// Head returns the sequence number of the newest committed event, or of the newest one
	// retention deleted when the log is empty: 0 for a log that never had an event.
	Head(ctx context.Context) (int64, error)
	// Read returns up to limit events with Seq above after, in Seq order, and the retention floor:
	// every event at or below it was deleted. Both come from one snapshot.
	Read(ctx context.Context, after int64, limit int) ([]Event, int64, error)
	// Prune deletes a prefix of the log, every event up to the newest one that r no longer keeps at
	// time now, raises the floor accordingly, and returns how many events it deleted.
	Prune(ctx context.Context, r Retention, now time.Time) (int64, error)
}

// Backoff is the wait after consecutive failures: Base, doubled per failure, at most Max.
type Backoff struct {
	// Base is the wait after the first failure.
	Base time.Duration
	// Max caps the wait.
	Max time.Duration
}

// Delay returns the wait after failures (>= 1) consecutive failures.
func (b Backoff) Delay(failures int) time.Duration {
	d := b.Base
	for i := 1; i < failures && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}
