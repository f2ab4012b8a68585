package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// Batch sizes of the activity feed's store reads, and the bound on the sequence numbers it remembers
// while it waits for late commits.
const (
	activityBatch   = 500
	catchUpBatch    = 1000
	maxSeenActivity = 10_000
)

// ActivityEvent is an activity entry as delivered to a watcher.
type ActivityEvent struct {
	Activity
	// User is the user the entry is about, read when the entry was delivered (so it may already show a
	// later change); zero when it could not be read.
	User User
}

// WatchActivity starts a live feed of activity for the calling user. The watch starts with no
// subscriptions; Update changes them. The caller must Close it.
//
// Errors: PermissionDenied for callers that are not users; Unavailable when the service is stopping.
func (s *Service) WatchActivity(ctx context.Context) (*Watch, error) {
	c := callerOf(ctx)
	if c.Kind != auth.User {
		return nil, apperr.Errorf(apperr.PermissionDenied, "only users may watch activity")
	}
	w := &Watch{
		hub:    s.hub,
		caller: c,
		ids:    map[string]struct{}{},
		ready:  make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
	if err := s.hub.add(w); err != nil {
		return nil, err
	}
	return w, nil
}

// Watch is one subscriber of the activity feed: a set of watched user ids and a bounded queue of events
// for them. A consumer waits on Ready and Done, drains Next after each Ready, and calls Update from the
// same goroutine when its client changes the subscriptions: an event queued for a user who has since
// been unsubscribed is then dropped by Next, so no event follows the confirmation of an unsubscribe.
type Watch struct {
	hub    *hub
	caller caller
	ready  chan struct{}
	done   chan struct{}
	once   sync.Once

	mu    sync.Mutex
	ids   map[string]struct{}
	queue []ActivityEvent
	err   error
}

// Update subscribes and then unsubscribes user ids, and returns the resulting set, sorted. Admins may
// watch anyone, other users only themselves. On error the set is unchanged.
//
// Errors: Invalid for an empty change, more than MaxWatchChange ids in a list, or a malformed id;
// PermissionDenied for a user the caller may not watch; ResourceExhausted when the set would exceed
// MaxWatchedUsers; Unavailable when the watch has ended.
func (w *Watch) Update(subscribe, unsubscribe []string) ([]string, error) {
	var v violations
	if len(subscribe)+len(unsubscribe) == 0 {
		v.add("subscribe_user_ids", "subscribe_user_ids or unsubscribe_user_ids must not be empty")
	}
	subs := watchIDs(&v, "subscribe_user_ids", subscribe)
	unsubs := watchIDs(&v, "unsubscribe_user_ids", unsubscribe)
	if err := v.err(); err != nil {
		return nil, err
	}
	for _, id := range subs {
		if !w.caller.isAdmin() && !w.caller.is(id) {
			return nil, apperr.Errorf(apperr.PermissionDenied, "you may only watch your own activity")
		}
	}
	return w.hub.update(w, subs, unsubs)
}

func watchIDs(v *violations, field string, ids []string) []string {
	if len(ids) > MaxWatchChange {
		v.add(field, fmt.Sprintf("must hold at most %d ids", MaxWatchChange))
		return nil
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		v.id(fmt.Sprintf("%s[%d]", field, i), id)
		out[i] = normalizeID(id)
	}
	return out
}

// Ready receives a value when events may be waiting; drain them with Next.
func (w *Watch) Ready() <-chan struct{} { return w.ready }

// Next returns the next queued event for a user still subscribed, or false when there is none.
func (w *Watch) Next() (ActivityEvent, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.queue) > 0 {
		ev := w.queue[0]
		w.queue[0] = ActivityEvent{}
		w.queue = w.queue[1:]
		if _, ok := w.ids[ev.UserID]; ok {
			return ev, true
		}
	}
	w.queue = nil
	return ActivityEvent{}, false
}

// Done is closed when the watch ends; Err says why.
func (w *Watch) Done() <-chan struct{} { return w.done }

// Err returns why the watch ended: ResourceExhausted when its consumer fell behind by more than
// Options.ActivityBuffer events, Unavailable when the service stopped, nil after Close or while running.
func (w *Watch) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close ends the watch. It is idempotent.
func (w *Watch) Close() { w.end(nil) }

// end ends the watch with err, once.
func (w *Watch) end(err error) {
	w.once.Do(func() {
		w.mu.Lock()
		w.err = err
		w.queue = nil
		w.mu.Unlock()
		close(w.done)
		w.hub.remove(w)
	})
}

// push queues ev, or reports false when the queue is full. The caller holds hub.mu.
func (w *Watch) push(ev ActivityEvent, limit int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.queue) >= limit {
		return false
	}
	w.queue = append(w.queue, ev)
	select {
	case w.ready <- struct{}{}:
	default: // a signal is pending already, and the consumer drains everything after it
	}
	return true
}

// hub tails the store's activity log and fans entries out to watches. Lock order: hub.mu, then Watch.mu.
type hub struct {
	store    Store
	poll     time.Duration
	lookback time.Duration
	buffer   int
	logger   *slog.Logger
	// since is when the service started: entries before it are history, not news, and are skipped.
	since   time.Time
	wake    chan struct{}
	running atomic.Bool

	mu      sync.Mutex
	byUser  map[string]map[*Watch]struct{}
	watches map[*Watch]struct{}
	stopped bool
}

func newHub(store Store, opts Options) *hub {
	return &hub{
		store:    store,
		poll:     opts.ActivityPoll,
		lookback: opts.ActivityLookback,
		buffer:   opts.ActivityBuffer,
		logger:   opts.Logger,
		since:    opts.Now().UTC().Truncate(time.Microsecond),
		wake:     make(chan struct{}, 1),
		byUser:   map[string]map[*Watch]struct{}{},
		watches:  map[*Watch]struct{}{},
	}
}

// notify makes the tailer poll now. Writers call it after committing activity.
func (h *hub) notify() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *hub) add(w *Watch) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return errShuttingDown()
	}
	h.watches[w] = struct{}{}
	return nil
}

func errShuttingDown() error {
	return apperr.Errorf(apperr.Unavailable, "the activity feed is shutting down; reconnect")
}

func (h *hub) remove(w *Watch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range w.ids {
		h.unindex(id, w)
	}
	delete(h.watches, w)
}

func (h *hub) unindex(id string, w *Watch) {
	if ws := h.byUser[id]; ws != nil {
		delete(ws, w)
		if len(ws) == 0 {
			delete(h.byUser, id)
		}
	}
}

func (h *hub) update(w *Watch, subs, unsubs []string) ([]string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := h.watches[w]; !ok {
		return nil, errShuttingDown()
	}
	next := maps.Clone(w.ids)
	for _, id := range subs {
		next[id] = struct{}{}
	}
	for _, id := range unsubs {
		delete(next, id)
	}
	if len(next) > MaxWatchedUsers {
		return nil, apperr.Errorf(apperr.ResourceExhausted, "a watch may hold at most %d user ids", MaxWatchedUsers)
	}
	for id := range w.ids {
		if _, keep := next[id]; !keep {
			h.unindex(id, w)
		}
	}
	for id := range next {
		if h.byUser[id] == nil {
			h.byUser[id] = map[*Watch]struct{}{}
		}
		h.byUser[id][w] = struct{}{}
	}
	w.ids = next
	return slices.Sorted(maps.Keys(next)), nil
}

// run tails the activity log until ctx is done, then ends every watch with Unavailable.
func (h *hub) run(ctx context.Context) error {
	if !h.running.CompareAndSwap(false, true) {
		return errors.New("identity activity feed: already running")
	}
	defer h.running.Store(false)
	h.mu.Lock()
	h.stopped = false
	h.mu.Unlock()
	defer h.stop()

	t := &tail{seen: map[int64]time.Time{}}
	for {
		if err := h.pass(ctx, t); err != nil && ctx.Err() == nil {
			h.logger.WarnContext(ctx, "read activity log", "err", err, "retry_in", h.poll)
		}
		timer := time.NewTimer(h.poll)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		case <-h.wake:
			timer.Stop()
		}
	}
}

func (h *hub) stop() {
	h.mu.Lock()
	h.stopped = true
	ws := slices.Collect(maps.Keys(h.watches))
	h.mu.Unlock()
	for _, w := range ws {
		w.end(errShuttingDown())
	}
}

// tail is the tailer's position in the activity log. Every entry with Seq <= floor has been handled or
// will never appear; entries above it that were delivered are in seen, with when they were first seen.
// PostgreSQL draws sequence numbers before commit, so an entry can become visible after a higher one:
// the floor only passes an entry once it was seen lookback ago, and the entries between are re-read (and
// de-duplicated by seen) until then.
type tail struct {
	floor    int64
	seen     map[int64]time.Time
	caughtUp bool
}

// pass delivers every entry not delivered yet.
func (h *hub) pass(ctx context.Context, t *tail) error {
	if !t.caughtUp {
		if err := h.catchUp(ctx, t); err != nil {
			return err
		}
	}
	after := t.floor
	for {
		rows, err := h.store.ActivitySince(ctx, after, activityBatch)
		if err != nil {
			return fmt.Errorf("activity since %d: %w", after, err)
		}
		now := time.Now()
		var fresh []Activity
		for _, a := range rows {
			if _, ok := t.seen[a.Seq]; !ok {
				t.seen[a.Seq] = now
				fresh = append(fresh, a)
			}
		}
		h.publish(ctx, fresh)
		if len(rows) < activityBatch {
			break
		}
		after = rows[len(rows)-1].Seq
	}
	t.advance(time.Now(), h.lookback)
	return nil
}

// catchUp moves the floor past the history written before the service started, without delivering it.
func (h *hub) catchUp(ctx context.Context, t *tail) error {
	for {
		rows, err := h.store.ActivitySince(ctx, t.floor, catchUpBatch)
		if err != nil {
			return fmt.Errorf("activity since %d: %w", t.floor, err)
		}
		for _, a := range rows {
			if !a.At.Before(h.since) {
				t.caughtUp = true
				return nil
			}
			t.floor = a.Seq
		}
		if len(rows) < catchUpBatch {
			t.caughtUp = true
			return nil
		}
	}
}

// advance raises the floor to the highest entry seen at least lookback ago, or further when more than
// maxSeenActivity entries wait, and forgets the entries below it.
func (t *tail) advance(now time.Time, lookback time.Duration) {
	floor := t.floor
	for seq, at := range t.seen {
		if now.Sub(at) >= lookback && seq > floor {
			floor = seq
		}
	}
	if len(t.seen) > maxSeenActivity {
		seqs := slices.Sorted(maps.Keys(t.seen))
		floor = max(floor, seqs[len(seqs)-maxSeenActivity-1])
	}
	if floor == t.floor {
		return
	}
	t.floor = floor
	for seq := range t.seen {
		if seq <= floor {
			delete(t.seen, seq)
		}
	}
}

// publish queues entries for the watches of their users. A watch whose queue is full is ended with
// ResourceExhausted rather than allowed to hold up the others.
func (h *hub) publish(ctx context.Context, acts []Activity) {
	if len(acts) == 0 {
		return
	}
	h.mu.Lock()
	watched := map[string]bool{}
	for _, a := range acts {
		if len(h.byUser[a.UserID]) > 0 {
			watched[a.UserID] = true
		}
	}
	h.mu.Unlock()
	if len(watched) == 0 {
		return
	}
	users := make(map[string]User, len(watched))
	for id := range watched {
		u, err := h.store.GetUser(ctx, Lookup{ID: id})
		if err != nil {
			h.logger.WarnContext(ctx, "read user for activity event", "user_id", id, "err", err)
			continue
		}
		users[id] = u
	}
	var slow []*Watch
	h.mu.Lock()
	for _, a := range acts {
		for w := range h.byUser[a.UserID] {
			if !w.push(ActivityEvent{Activity: a, User: users[a.UserID]}, h.buffer) {
				slow = append(slow, w)
			}
		}
	}
	h.mu.Unlock()
	for _, w := range slow {
		w.end(apperr.Errorf(apperr.ResourceExhausted, "too slow to receive activity events; reconnect"))
	}
}
