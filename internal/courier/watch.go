package courier

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"lastmile/internal/geo"
)

// Change says what changed in an Event.
type Change string

// The changes.
const (
	// ChangeSnapshot is the courier's state when the watch opened, not a change.
	ChangeSnapshot Change = "snapshot"
	// ChangeLocation: a new location was accepted.
	ChangeLocation Change = "location"
	// ChangeStatus: the status, the current hour's availability or the claimed tasks changed.
	ChangeStatus Change = "status"
	// ChangeProfile: display name, transport mode or capacity changed (or the courier was registered).
	ChangeProfile Change = "profile"
	// ChangeLeftBounds: the courier moved out of the watched box; its last event until it returns.
	ChangeLeftBounds Change = "left_bounds"
)

// Event is one WatchCouriers event: a courier's state after one or more changes.
type Event struct {
	Snapshot Snapshot
	// Changes lists what changed since the previous event of this courier, in first-occurrence order;
	// more than one when a lagging watcher's events were merged.
	Changes []Change
	// At is when the latest merged change happened.
	At time.Time
}

// WatchFilter chooses the couriers of a watch. Both filters apply together; zero values watch everyone.
type WatchFilter struct {
	// Bounds keeps couriers whose last location is inside the box; nil keeps all.
	Bounds *Box
	// CourierIDs keeps these couriers (at most MaxWatchIDs); empty keeps all.
	CourierIDs []string
}

// MaxWatchIDs bounds WatchFilter.CourierIDs.
const MaxWatchIDs = 100

// Watch is one subscriber to courier changes. Publishing never waits for it: each watch keeps at most one
// pending event per courier (a newer event replaces the older one's state and merges its changes) and a
// one-slot notification channel, so a watch that does not read holds memory bounded by the number of
// couriers and costs publishers one map update.
type Watch struct {
	b      *broadcaster
	bounds *Box
	ids    map[string]bool

	mu      sync.Mutex
	pending map[string]*Event
	order   []string
	inside  map[string]bool // couriers last seen inside bounds
	closed  bool
	notify  chan struct{}
}

// Watch opens a watch and queues one snapshot event per matching courier that is not offline.
// Dispatchers, admins and services only. Close it when done.
//
// Errors: Invalid for a malformed box or id or more than MaxWatchIDs ids; PermissionDenied for other
// callers; Unavailable when the service is shutting down.
func (s *Service) Watch(ctx context.Context, f WatchFilter) (*Watch, error) {
	if err := requirePrivileged(ctx); err != nil {
		return nil, err
	}
	var v violations
	if f.Bounds != nil && !f.Bounds.Valid() {
		v.add("bounds", "must have corners in range with south_west not north of north_east")
	}
	if len(f.CourierIDs) > MaxWatchIDs {
		v.add("courier_ids", fmt.Sprintf("must list at most %d ids", MaxWatchIDs))
	}
	w := &Watch{
		b:       s.watch,
		pending: make(map[string]*Event),
		inside:  make(map[string]bool),
		notify:  make(chan struct{}, 1),
	}
	if f.Bounds != nil {
		b := *f.Bounds
		w.bounds = &b
	}
	if len(f.CourierIDs) > 0 {
		w.ids = make(map[string]bool, len(f.CourierIDs))
		for i, id := range f.CourierIDs {
			w.ids[v.id(fmt.Sprintf("courier_ids[%d]", i), id)] = true
		}
	}
	if err := v.err(); err != nil {
		return nil, err
	}

	// Reading the snapshot and registering under the live lock means every change is either in the
	// snapshot or published after registration: changes are applied under the write lock and published
	// after it is released.
	now := s.now()
	s.live.mu.RLock()
	defer s.live.mu.RUnlock()
	ids := make([]string, 0, len(s.live.byID))
	for id, e := range s.live.byID {
		if e.c.Status != StatusOffline {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		w.offer(Event{Snapshot: s.live.byID[id].snapshot(now), Changes: []Change{ChangeSnapshot}, At: now})
	}
	if err := s.watch.add(w); err != nil {
		return nil, err
	}
	return w, nil
}

// offer queues ev if it matches the watch, merging it with a pending event of the same courier.
func (w *Watch) offer(ev Event) {
	id := ev.Snapshot.Courier.ID
	if w.ids != nil && !w.ids[id] {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if w.bounds != nil {
		in := ev.Snapshot.HasLocation && w.bounds.Contains(geo.LatLng{Lat: ev.Snapshot.Location.Lat, Lng: ev.Snapshot.Location.Lng})
		switch {
		case in:
			w.inside[id] = true
		case w.inside[id]:
			delete(w.inside, id)
			ev.Changes = append(slices.Clone(ev.Changes), ChangeLeftBounds)
		default:
			return
		}
	}
	if p := w.pending[id]; p != nil {
		p.Snapshot, p.At = ev.Snapshot, ev.At
		for _, c := range ev.Changes {
			if !slices.Contains(p.Changes, c) {
				p.Changes = append(p.Changes, c)
			}
		}
	} else {
		ev.Changes = slices.Clone(ev.Changes)
		w.pending[id] = &ev
		w.order = append(w.order, id)
	}
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// Next waits for events and returns every pending one, in the order their couriers first became
// pending. It returns ctx's error when ctx ends, and an Unavailable error once the watch is closed or the
// service shuts down.
func (w *Watch) Next(ctx context.Context) ([]Event, error) {
	for {
		w.mu.Lock()
		if w.closed {
			w.mu.Unlock()
			return nil, errClosed
		}
		if len(w.order) > 0 {
			out := make([]Event, len(w.order))
			for i, id := range w.order {
				out[i] = *w.pending[id]
			}
			clear(w.pending)
			w.order = w.order[:0]
			w.mu.Unlock()
			return out, nil
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-w.notify:
		}
	}
}

// Close ends the watch and releases what it holds. It is idempotent.
func (w *Watch) Close() {
	w.b.remove(w)
	w.shut()
}

func (w *Watch) shut() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	w.closed = true
	w.pending, w.order, w.inside = nil, nil, nil
	close(w.notify)
}

// broadcaster fans events out to watches. It does not bound their number: the transport does, per caller
// and in all (the stream limits of WatchCouriers, configured where the service is wired).
type broadcaster struct {
	mu      sync.RWMutex
	watches map[*Watch]struct{}
	closed  bool
}

func newBroadcaster() *broadcaster {
	return &broadcaster{watches: make(map[*Watch]struct{})}
}

// add registers w, or refuses it when the service is closing.
func (b *broadcaster) add(w *Watch) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return errClosed
	}
	b.watches[w] = struct{}{}
	return nil
}

func (b *broadcaster) remove(w *Watch) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.watches, w)
}

// publish offers events to every watch. It never blocks on a watch.
func (b *broadcaster) publish(events []Event) {
	if len(events) == 0 {
		return
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for w := range b.watches {
		for _, ev := range events {
			w.offer(ev)
		}
	}
}

// close shuts every watch and refuses new ones.
func (b *broadcaster) close() {
	b.mu.Lock()
	ws := make([]*Watch, 0, len(b.watches))
	for w := range b.watches {
		ws = append(ws, w)
	}
	clear(b.watches)
	b.closed = true
	b.mu.Unlock()
	for _, w := range ws {
		w.shut()
	}
}
