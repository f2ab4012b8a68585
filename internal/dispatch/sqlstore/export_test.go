package sqlstore

import (
	"context"
	"testing"
	"time"

	"lastmile/internal/dispatch"
)

// SQLCourierStates is CourierStates as read from the database, whatever the couriers' index holds.
func SQLCourierStates(ctx context.Context, s *Store, courierIDs []string, since time.Time, heldOf []string) (dispatch.CourierStates, error) {
	out := dispatch.CourierStates{Connected: map[string]bool{}, OfferOpen: map[string]bool{}, Held: map[string][]dispatch.Task{}}
	if len(courierIDs) == 0 && len(heldOf) == 0 {
		return out, nil
	}
	return s.sqlCourierStates(ctx, courierIDs, partConnected|partOfferOpen, since, heldOf)
}

// StatesIndexed reports whether s answers CourierStates from the couriers' index (on SQLite, once
// loaded).
func StatesIndexed(s *Store) bool {
	if s.states == nil {
		return false
	}
	s.states.mu.Lock()
	defer s.states.mu.Unlock()
	return s.states.state == indexOn
}

// SetIndexPruneAfter makes the couriers' indexes prune their tombstones beyond n, until the test ends.
func SetIndexPruneAfter(t testing.TB, n int) {
	old := indexPruneAfter
	indexPruneAfter = n
	t.Cleanup(func() { indexPruneAfter = old })
}

// SetMaxIndexed bounds the couriers' indexes to n entries, and makes one that turned itself off for its
// size load again at the next read, until the test ends.
func SetMaxIndexed(t testing.TB, n int) {
	oldMax, oldRetry := maxIndexed, indexRetry
	maxIndexed, indexRetry = n, 0
	t.Cleanup(func() { maxIndexed, indexRetry = oldMax, oldRetry })
}
