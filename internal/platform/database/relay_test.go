package database_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/platform/database"
)

// waitTimeout bounds every wait for the relay; passing runs never get close to it.
const waitTimeout = 10 * time.Second

// recordingStore reports what the relay does with an outbox: each Pending call (after it returned)
// and each batch of ids marked published. It can fail the first Pending calls.
type recordingStore struct {
	database.OutboxStore
	pendingDone chan struct{}
	marked      chan []int64
	failPending atomic.Int32
}

func newRecordingStore(s database.OutboxStore) *recordingStore {
	return &recordingStore{OutboxStore: s, pendingDone: make(chan struct{}, 100), marked: make(chan []int64, 100)}
}

func (s *recordingStore) Pending(ctx context.Context, after int64, limit int) ([]database.Event, error) {
	defer func() {
		select {
		case s.pendingDone <- struct{}{}:
		default:
		}
	}()
	if s.failPending.Add(-1) >= 0 {
		return nil, errors.New("store unavailable")
	}
	return s.OutboxStore.Pending(ctx, after, limit)
}

func (s *recordingStore) MarkPublished(ctx context.Context, ids []int64) error {
	err := s.OutboxStore.MarkPublished(ctx, ids)
	if err == nil {
		s.marked <- ids
	}
	return err
}

// waitMarked waits until n events in total have been marked published and returns their ids.
func (s *recordingStore) waitMarked(t *testing.T, n int) []int64 {
	t.Helper()
	var ids []int64
	timeout := time.After(waitTimeout)
	for len(ids) < n {
		select {
		case batch := <-s.marked:
			ids = append(ids, batch...)
		case <-timeout:
			t.Fatalf("marked %d of %d events before timeout", len(ids), n)
		}
	}
	return ids
}

func (s *recordingStore) waitPending(t *testing.T) {
	t.Helper()
	select {
	case <-s.pendingDone:
	case <-time.After(waitTimeout):
		t.Fatal("relay did not read the outbox before timeout")
	}
}

// publisher records every publish call; it fails the first failFirst calls.
type publisher struct {
	mu        sync.Mutex
	calls     [][]database.Event
	failFirst int
}

var errPublish = errors.New("broker unavailable")

func (p *publisher) publish(_ context.Context, events []database.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, slices.Clone(events))
	if len(p.calls) <= p.failFirst {
		return errPublish
	}
	return nil
}

func (p *publisher) snapshot() [][]database.Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// startRelay runs r until the test ends and checks that Run returns nil.
func startRelay(t *testing.T, r *database.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil after cancel", err)
			}
		case <-time.After(waitTimeout):
			t.Error("Run did not return after cancel")
		}
	})
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

func eventIDs(events []database.Event) []int64 {
	ids := make([]int64, len(events))
	for i, e := range events {
		ids[i] = e.ID
	}
	return ids
}

func TestRelayPublishesInOrder(t *testing.T) {
	for _, ob := range outboxes {
		t.Run(ob.name, func(t *testing.T) {
			ctx := testContext(t)
			o := ob.open(t)
			var appended []database.Event
			appended = append(appended, o.appendTx(ctx, t, event("task.created", "t1", "1"), event("task.offered", "t1", "2"))...)
			appended = append(appended, o.appendTx(ctx, t, event("task.created", "t2", "3"))...)
			appended = append(appended, o.appendTx(ctx, t, event("task.accepted", "t1", "4"), event("task.assigned", "t1", "5"))...)

			store := newRecordingStore(o.store)
			var pub publisher
			// An hour between polls: everything below happens in the first pass.
			startRelay(t, database.NewRelay(store, pub.publish, database.RelayOptions{
				PollInterval: time.Hour, BatchSize: 2, Logger: testLogger(t),
			}))
			marked := store.waitMarked(t, len(appended))

			calls := pub.snapshot()
			var published []database.Event
			var sizes []int
			for _, c := range calls {
				published = append(published, c...)
				sizes = append(sizes, len(c))
			}
			if diff := cmp.Diff(appended, published); diff != "" {
				t.Errorf("published events mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]int{2, 2, 1}, sizes); diff != "" {
				t.Errorf("batch sizes mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(eventIDs(appended), marked); diff != "" {
				t.Errorf("marked ids mismatch (-want +got):\n%s", diff)
			}
			if left, err := o.store.Pending(ctx, 0, 10); err != nil || len(left) != 0 {
				t.Errorf("Pending after relay = %v, %v, want none", left, err)
			}
		})
	}
}

func TestRelayNotifyWakesItUp(t *testing.T) {
	ctx := testContext(t)
	o := sqliteOutbox(t)
	store := newRecordingStore(o.store)
	var pub publisher
	r := database.NewRelay(store, pub.publish, database.RelayOptions{PollInterval: time.Hour, Logger: testLogger(t)})
	startRelay(t, r)
	store.waitPending(t) // the first pass found nothing; the next poll is an hour away

	appended := o.appendTx(ctx, t, event("task.created", "t1", "1"))
	r.Notify()
	store.waitMarked(t, 1)
	if diff := cmp.Diff([][]database.Event{appended}, pub.snapshot()); diff != "" {
		t.Errorf("publish calls mismatch (-want +got):\n%s", diff)
	}
}

func TestRelayRetriesAfterPublishError(t *testing.T) {
	ctx := testContext(t)
	o := sqliteOutbox(t)
	appended := o.appendTx(ctx, t, event("task.created", "t1", "1"), event("task.created", "t2", "2"))
	store := newRecordingStore(o.store)
	pub := publisher{failFirst: 2}
	startRelay(t, database.NewRelay(store, pub.publish, database.RelayOptions{
		PollInterval: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Logger: testLogger(t),
	}))
	marked := store.waitMarked(t, len(appended))

	// The failed batches are offered again, whole and in order, until one is accepted.
	want := [][]database.Event{appended, appended, appended}
	if diff := cmp.Diff(want, pub.snapshot()); diff != "" {
		t.Errorf("publish calls mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(eventIDs(appended), marked); diff != "" {
		t.Errorf("marked ids mismatch (-want +got):\n%s", diff)
	}
}

func TestRelayRetriesAfterStoreError(t *testing.T) {
	ctx := testContext(t)
	o := sqliteOutbox(t)
	appended := o.appendTx(ctx, t, event("task.created", "t1", "1"))
	store := newRecordingStore(o.store)
	store.failPending.Store(2)
	var pub publisher
	startRelay(t, database.NewRelay(store, pub.publish, database.RelayOptions{
		PollInterval: time.Millisecond, MaxBackoff: 4 * time.Millisecond, Logger: testLogger(t),
	}))
	store.waitMarked(t, 1)
	if diff := cmp.Diff([][]database.Event{appended}, pub.snapshot()); diff != "" {
		t.Errorf("publish calls mismatch (-want +got):\n%s", diff)
	}
}

func TestRelayRunsOnce(t *testing.T) {
	o := sqliteOutbox(t)
	store := newRecordingStore(o.store)
	var pub publisher
	r := database.NewRelay(store, pub.publish, database.RelayOptions{PollInterval: time.Hour})
	startRelay(t, r)
	store.waitPending(t)
	if err := r.Run(testContext(t)); err == nil {
		t.Error("second concurrent Run = nil, want an error")
	}
}

func TestNewRelayPanicsOnNil(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("NewRelay(nil, nil, ...) did not panic")
		}
	}()
	database.NewRelay(nil, nil, database.RelayOptions{})
}
