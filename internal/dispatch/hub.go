package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"lastmile/internal/platform/eventlog"
)

// Tuning of the hub.
const (
	// hubBatch is how many events the hub takes from the feed at once.
	hubBatch = 256
	// hubRetry is the wait before subscribing again after the feed failed (not after falling behind,
	// which resubscribes at once).
	hubRetry = time.Second
	// hubReadTimeout bounds the hub's re-read of one task.
	hubReadTimeout = 10 * time.Second
	// maxPendingTasks bounds the tasks a watcher may have waiting; beyond it the watcher forgets them and
	// takes a fresh snapshot instead.
	maxPendingTasks = 1024
)

// hub fans the event feed out to this replica's courier sessions and task watchers. One goroutine (run)
// tails the feed from its head and routes each event:
//
//   - TopicDelivery (key: courier id) wakes that courier's local sessions, which read their deliveries
//     from the store after the last cursor they sent (the event's payload is never trusted);
//   - TopicSession (key: courier id, payload: the current session id) makes the courier's local sessions
//     with another id check the session record, which ends those that were replaced, on this replica or
//     another;
//   - TopicTask (key: task id) re-reads the task once per batch of events, only when someone watches it
//     (a WatchTask of that id, or any WatchTasks), and hands it to the watchers' feeds;
//   - TopicWaiting tells the courier follower that a task may be waiting (wake.go).
//
// Nothing the hub does waits for a session or a watcher: a session has a one-slot wake-up channel, and a
// watcher a feed that keeps the latest state of each task (bounded; beyond the bound it asks for a fresh
// snapshot). When the hub falls behind the feed or the feed's retention overtakes it, it subscribes again
// from the head and wakes everyone: sessions re-read from their cursor, watchers take a fresh snapshot.
type hub struct {
	s *Service

	mu       sync.Mutex
	sessions map[string]map[*CourierSession]struct{}
	tasks    map[string]map[*taskFeed]struct{}
	lists    map[*taskFeed]struct{}
	draining bool
	drainEnd time.Time // wall clock: the grace runs in real time whatever Options.Now says
}

func newHub(s *Service) *hub {
	return &hub{
		s:        s,
		sessions: map[string]map[*CourierSession]struct{}{},
		tasks:    map[string]map[*taskFeed]struct{}{},
		lists:    map[*taskFeed]struct{}{},
	}
}

// runHub tails the event feed for this replica's sessions and watchers, and refreshes the heartbeats of
// its sessions every HeartbeatInterval, until ctx ends; then it returns nil. Run calls it (beside the work
// loop), and must also run the feed itself (Deps.Events.Run).
func (s *Service) runHub(ctx context.Context) error {
	if s.events == nil {
		return errors.New("dispatch hub: no event feed (Deps.Events)")
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.hub.beatEvery(ctx, HeartbeatInterval) })
	err := s.hub.run(ctx)
	wg.Wait()
	return err
}

// beatEvery refreshes the heartbeats every interval until ctx ends.
func (h *hub) beatEvery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.beat(ctx)
		}
	}
}

// beat refreshes the heartbeat of every session open on this replica, a few hundred per statement
// (Store.BeatSessions), which keeps their couriers connected (Store.Connected), and wakes those that have
// deliveries they did not send (a safety net: every delivery wakes its sessions). A session whose record
// was not refreshed was replaced (or closed) meanwhile: it checks its record, and ends if it was replaced,
// as it would on the TopicSession event. When the write fails, every session checks its record: those
// whose read fails too end with the store's error, as the stream would without its heartbeat.
func (h *hub) beat(ctx context.Context) {
	h.mu.Lock()
	refs := make([]SessionRef, 0, len(h.sessions))
	local := make(map[SessionRef]*CourierSession, len(h.sessions))
	for _, cs := range h.sessions {
		for c := range cs {
			ref := SessionRef{CourierID: c.courierID, SessionID: c.id}
			refs = append(refs, ref)
			local[ref] = c
		}
	}
	h.mu.Unlock()
	if len(refs) == 0 {
		return
	}
	beaten, err := h.s.store.BeatSessions(ctx, refs, storedTime(h.s.now()))
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		h.s.logger.Warn("dispatch hub: refresh the session heartbeats", "sessions", len(refs), "err", err)
	}
	for ref, c := range local {
		last, ok := beaten[ref]
		switch {
		case !ok:
			c.recheck()
		case last > c.sentCursor():
			c.poke() // deliveries it has not sent: a wake-up went missing, or it is on its way
		}
	}
}

// run tails the feed until ctx ends. Failures of the feed are logged and retried, never returned.
func (h *hub) run(ctx context.Context) error {
	for {
		err := h.tail(ctx)
		if ctx.Err() != nil {
			return nil
		}
		// Whatever happened, events may have been missed: everyone catches up from the store, and a
		// task may have started waiting.
		h.wakeAll()
		h.s.mayWait()
		if errors.Is(err, eventlog.ErrTooSlow) || errors.Is(err, eventlog.ErrCursorExpired) {
			h.s.logger.Warn("dispatch hub fell behind the event feed; resubscribing", "err", err)
			continue
		}
		h.s.logger.Warn("dispatch hub lost the event feed; retrying", "err", err, "retry", hubRetry)
		t := time.NewTimer(hubRetry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// tail subscribes from the head and routes events until the subscription or ctx ends.
func (h *hub) tail(ctx context.Context) error {
	sub, err := h.s.events.Subscribe(ctx, eventlog.FromHead)
	if err != nil {
		return fmt.Errorf("subscribe to the dispatch event feed: %w", err)
	}
	defer sub.Close()
	// Whatever committed before the subscription started reached no one: catch up from the store, and a
	// deferral among it (another replica's TopicWaiting) may have made a task wait, which the courier
	// follower must not go on believing no task does.
	h.wakeAll()
	h.s.mayWait()
	for {
		events, err := sub.NextBatch(ctx, hubBatch)
		if err != nil {
			return fmt.Errorf("tail the dispatch event feed: %w", err)
		}
		h.route(ctx, events)
	}
}

// route hands a batch of events to whom they concern.
func (h *hub) route(ctx context.Context, events []eventlog.Event) {
	var taskIDs []string
	seen := map[string]bool{}
	for _, e := range events {
		switch e.Topic {
		case TopicDelivery:
			h.wakeCourier(e.Key)
		case TopicSession:
			h.replaceOthers(e.Key, string(e.Payload))
		case TopicWaiting:
			h.s.mayWait()
		case TopicTask:
			if !seen[e.Key] && h.watched(e.Key) {
				seen[e.Key] = true
				taskIDs = append(taskIDs, e.Key)
			}
		}
	}
	for _, id := range taskIDs {
		rctx, cancel := context.WithTimeout(ctx, hubReadTimeout)
		t, err := h.s.store.GetTask(rctx, id)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// The watchers of this task re-read it themselves; list watchers take a fresh snapshot.
			h.s.logger.Warn("dispatch hub: re-read a changed task", "task", id, "err", err)
			h.feedsOf(id, func(f *taskFeed) { f.markResync() })
			continue
		}
		h.feedsOf(id, func(f *taskFeed) { f.push(t) })
	}
}

// watched reports whether any watcher wants task id.
func (h *hub) watched(id string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.tasks[id]) > 0 || len(h.lists) > 0
}

// feedsOf calls fn on every feed that wants task id.
func (h *hub) feedsOf(id string, fn func(*taskFeed)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for f := range h.tasks[id] {
		fn(f)
	}
	for f := range h.lists {
		fn(f)
	}
}

// wakeCourier wakes the local sessions of courierID.
func (h *hub) wakeCourier(courierID string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.sessions[courierID] {
		c.poke()
	}
}

// replaceOthers makes the local sessions of courierID whose id is not current check the session record,
// which ends them. They check rather than end at once: an event the hub reads late may name a session
// older than one opened here since, and only the record says which one is the newest.
func (h *hub) replaceOthers(courierID, current string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.sessions[courierID] {
		if c.id != current {
			c.recheck()
		}
	}
}

// wakeAll wakes every session (to re-read its deliveries and check it is still current) and makes every
// watcher take a fresh snapshot.
func (h *hub) wakeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, cs := range h.sessions {
		for c := range cs {
			c.recheck()
		}
	}
	for _, fs := range h.tasks {
		for f := range fs {
			f.markResync()
		}
	}
	for f := range h.lists {
		f.markResync()
	}
}

// addSession registers c and makes the courier's other local sessions check the session record, which
// ends them unless one of them committed after c (the store's TopicSession event does the same on every
// other replica). It fails when the replica is draining.
func (h *hub) addSession(c *CourierSession) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.draining {
		return false
	}
	cs := h.sessions[c.courierID]
	if cs == nil {
		cs = map[*CourierSession]struct{}{}
		h.sessions[c.courierID] = cs
	}
	for old := range cs {
		old.recheck()
	}
	cs[c] = struct{}{}
	return true
}

// removeSession forgets c.
func (h *hub) removeSession(c *CourierSession) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cs := h.sessions[c.courierID]; cs != nil {
		delete(cs, c)
		if len(cs) == 0 {
			delete(h.sessions, c.courierID)
		}
	}
}

// drain starts the graceful shutdown: new sessions are refused, current ones told to go.
func (h *hub) drain(grace time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.draining {
		h.draining = true
		h.drainEnd = time.Now().Add(max(grace, 0))
	}
	for _, cs := range h.sessions {
		for c := range cs {
			c.poke()
		}
	}
}

// drainState reports whether the replica is draining and when the grace ends.
func (h *hub) drainState() (bool, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.draining, h.drainEnd
}

// watchTask registers f for task id's changes; the returned function unregisters it.
func (h *hub) watchTask(id string, f *taskFeed) func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	fs := h.tasks[id]
	if fs == nil {
		fs = map[*taskFeed]struct{}{}
		h.tasks[id] = fs
	}
	fs[f] = struct{}{}
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(fs, f)
		if len(fs) == 0 {
			delete(h.tasks, id)
		}
	}
}

// watchAll registers f for every task's changes; the returned function unregisters it.
func (h *hub) watchAll(f *taskFeed) func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lists[f] = struct{}{}
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.lists, f)
	}
}

// taskFeed is what the hub hands a watcher: the latest state of each changed task, in first-change
// order, and a one-slot notification. Pushing never waits. When more than maxPendingTasks tasks wait, the
// feed forgets them and asks for a fresh snapshot (resync), so a stalled watcher holds bounded memory.
type taskFeed struct {
	notify chan struct{}

	mu      sync.Mutex
	pending map[string]Task
	order   []string
	resync  bool
}

func newTaskFeed() *taskFeed {
	return &taskFeed{notify: make(chan struct{}, 1), pending: map[string]Task{}}
}

func (f *taskFeed) signal() {
	select {
	case f.notify <- struct{}{}:
	default: // a notification is pending, and the reader takes everything after it
	}
}

// push queues t, replacing an older state of the same task.
func (f *taskFeed) push(t Task) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.resync {
		return // the fresh snapshot will read it
	}
	old, ok := f.pending[t.ID]
	switch {
	case !ok && len(f.pending) >= maxPendingTasks:
		f.pending, f.order, f.resync = map[string]Task{}, nil, true
	case !ok:
		f.order = append(f.order, t.ID)
		f.pending[t.ID] = t
	case t.Version >= old.Version:
		f.pending[t.ID] = t
	}
	f.signal()
}

// markResync asks the reader for a fresh snapshot.
func (f *taskFeed) markResync() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending, f.order, f.resync = map[string]Task{}, nil, true
	f.signal()
}

// take returns what waits and empties the feed.
func (f *taskFeed) take() (tasks []Task, resync bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range f.order {
		tasks = append(tasks, f.pending[id])
	}
	resync = f.resync
	f.pending, f.order, f.resync = map[string]Task{}, nil, false
	return tasks, resync
}
