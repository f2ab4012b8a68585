package database

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// OutboxStore is what a Relay needs from an outbox. SQLiteOutbox and PgxOutbox implement it.
type OutboxStore interface {
	// Pending returns up to limit (1..MaxOutboxBatch) unpublished events with an id above after,
	// in id order.
	Pending(ctx context.Context, after int64, limit int) ([]Event, error)
	// MarkPublished records that the events with these ids have been published. Ids already
	// marked or unknown are ignored.
	MarkPublished(ctx context.Context, ids []int64) error
}

// RelayOptions tunes a Relay. The zero value is valid.
type RelayOptions struct {
	// PollInterval is how often the relay looks for events nobody notified it about (written by
	// another process, or left over after a crash). Default 1 s.
	PollInterval time.Duration
	// BatchSize is how many events one publish call gets at most. Default 100, at most
	// MaxOutboxBatch.
	BatchSize int
	// MaxBackoff caps the wait after consecutive failures, which doubles from PollInterval.
	// Default 30 s (and never below PollInterval).
	MaxBackoff time.Duration
	// Logger receives failures. Payloads are never logged. Default: discard.
	Logger *slog.Logger
}

// Relay moves committed outbox events to a publish function: at least once, in id order, retrying
// with backoff while publish or the store fails.
//
// Each pass starts again from the oldest unpublished event, because in PostgreSQL an event can commit
// after one with a higher id (ids are drawn at insert); such a late event is published on the next
// pass, after the higher ids. An event is marked published only after publish returned nil for it,
// so a crash in between publishes it again: consumers must be idempotent (the id is a natural
// deduplication key).
type Relay struct {
	store   OutboxStore
	publish func(context.Context, []Event) error
	opts    RelayOptions
	wake    chan struct{}
	running atomic.Bool
}

// NewRelay returns a relay from store to publish. It panics if store or publish is nil.
func NewRelay(store OutboxStore, publish func(context.Context, []Event) error, opts RelayOptions) *Relay {
	if store == nil || publish == nil {
		panic("database.NewRelay: nil store or publish")
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 100
	}
	opts.BatchSize = min(opts.BatchSize, MaxOutboxBatch)
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.PollInterval)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Relay{store: store, publish: publish, opts: opts, wake: make(chan struct{}, 1)}
}

// Notify makes a running relay look for events now instead of at its next poll. Call it after
// committing a transaction that appended events. It never blocks; notifications received while the
// relay is backing off from a failure are deferred until the backoff ends.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default: // a wake-up is already pending, and one pass picks up everything
	}
}

// Run relays events until ctx is done, then returns nil. Failures are logged and retried, never
// returned. It returns an error only if the relay is already running.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("outbox relay: already running")
	}
	defer r.running.Store(false)
	failures := 0
	for {
		delay := r.opts.PollInterval
		wake := r.wake
		if err := r.pass(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			failures++
			delay = r.backoff(failures)
			wake = nil
			r.opts.Logger.WarnContext(ctx, "outbox relay failed", "err", err, "failures", failures, "retry_in", delay)
		} else {
			failures = 0
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-wake:
			t.Stop()
		}
	}
}

// backoff doubles from PollInterval up to MaxBackoff.
func (r *Relay) backoff(failures int) time.Duration {
	d := r.opts.PollInterval
	for i := 1; i < failures && d < r.opts.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, r.opts.MaxBackoff)
}

// pass publishes every event pending now, batch by batch.
func (r *Relay) pass(ctx context.Context) error {
	var after int64
	for {
		events, err := r.store.Pending(ctx, after, r.opts.BatchSize)
		if err != nil {
			return fmt.Errorf("load pending events after %d: %w", after, err)
		}
		if len(events) == 0 {
			return nil
		}
		if err := r.publish(ctx, events); err != nil {
			return fmt.Errorf("publish events %d..%d: %w", events[0].ID, events[len(events)-1].ID, err)
		}
		ids := make([]int64, len(events))
		for i, e := range events {
			ids[i] = e.ID
		}
		if err := r.store.MarkPublished(ctx, ids); err != nil {
			return fmt.Errorf("mark events %d..%d published: %w", ids[0], ids[len(ids)-1], err)
		}
		if len(events) < r.opts.BatchSize {
			return nil
		}
		after = ids[len(ids)-1]
	}
}
