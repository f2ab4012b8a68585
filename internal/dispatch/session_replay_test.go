package dispatch_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/eventlog"
	"lastmile/internal/platform/eventlog/sqllog"
)

// logReadStore records how a session reads its courier's delivery log.
type logReadStore struct {
	dispatch.Store
	mu sync.Mutex
	// pages are the limit and the number of deliveries of each DeliveriesWithTasks.
	pages [][2]int
	// withTask and superseded count the deliveries read with their task, and those read as Superseded.
	withTask, superseded int
}

func (s *logReadStore) DeliveriesWithTasks(ctx context.Context, courierID string, after int64, limit int) ([]dispatch.DeliveryWithTask, error) {
	ds, err := s.Store.DeliveriesWithTasks(ctx, courierID, after, limit)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pages = append(s.pages, [2]int{limit, len(ds)})
	for _, d := range ds {
		if d.Found {
			s.withTask++
		}
		if d.Superseded {
			s.superseded++
		}
	}
	return ds, err
}

// TestNeverAcknowledgedReplayIsReadInPagesWithoutClosedOffersTasks: a courier app that never
// acknowledges gets its whole unacknowledged log replayed by every new session, as the contract
// promises: here 250 deliveries, an offer and its offer_closed for each of 125 offers that expired
// unanswered (a courier who never answers gets one offer per offer timeout, an engine limit: one open
// offer per courier). The session reads the log in pages of 100, never all of it at once, sends each
// expired offer once, as its offer_closed only (the contract's compaction), and the store does not read
// the task of an offer delivery whose offer closed meanwhile: only the offer_closed deliveries' tasks are
// read.
func TestNeverAcknowledgedReplayIsReadInPagesWithoutClosedOffersTasks(t *testing.T) {
	const offers = 125
	f := newSessionFixture(t, dispatch.Options{})
	var closed []string
	for n := 1; n <= offers; n++ {
		f.newTask(t, n, 1)
		f.offer(t, sessTaskID(n), n, 1)
		closed = append(closed, fmt.Sprintf("%d offer_closed %s expired", f.expire(t, sessTaskID(n)), sessOfferID(n)))
	}
	store := &logReadStore{Store: f.store}
	log, err := eventlog.New(sqllog.NewSource(f.db, database.SQLite), f.logOpts)
	if err != nil {
		t.Fatalf("eventlog.New: %v", err)
	}
	svc := dispatch.NewService(dispatch.Deps{Store: store, Couriers: f.couriers, Routes: f.routes, Events: log},
		dispatch.Options{Now: f.clock.Now})
	for session := range 2 { // nothing acknowledged: the second session replays it all again
		store.mu.Lock()
		store.pages, store.withTask, store.superseded = nil, 0, 0
		store.mu.Unlock()
		s := sessOpen(t, svc, 1, dispatch.Hello{})
		var got []string
		for range offers {
			got = append(got, sessDescribe(sessNext(t, s)))
		}
		s.Close()
		if !slices.Equal(got, closed) {
			t.Errorf("session %d replayed\n%v\nwant every offer_closed in cursor order, no offer:\n%v", session, got, closed)
		}
		store.mu.Lock()
		if want := [][2]int{{100, 100}, {100, 100}, {100, 50}}; !slices.Equal(store.pages, want) {
			t.Errorf("session %d read pages (limit, deliveries) %v, want %v", session, store.pages, want)
		}
		if store.withTask != offers || store.superseded != offers {
			t.Errorf("session %d read %d deliveries with their task and %d superseded, want %d and %d (only the offer_closed deliveries' tasks)",
				session, store.withTask, store.superseded, offers, offers)
		}
		store.mu.Unlock()
	}
}
