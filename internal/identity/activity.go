package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/eventlog"
)

// activityBatch is how many events the hub takes from its subscription at once.
const activityBatch = 500

// ActivityTopicPrefix starts the topic of every activity event in identity's event log: the topic is
// the prefix followed by the ActivityType, such as "identity.user.login". The event's key is the user id.
const ActivityTopicPrefix = "identity.user."

// ActivityFeed is identity's event log as the activity feed uses it; *eventlog.Log implements it. The
// store appends every activity entry to it in the transaction of the change (sqlstore), the Service
// nudges it after such a commit, and the hub subscribes to it to fan the entries out to watches. On
// PostgreSQL every replica tails the same log, so a watcher on any replica sees every replica's activity.
type ActivityFeed interface {
	// Subscribe starts a subscription to the events committed after seq from (eventlog.FromHead: from
	// now on).
	Subscribe(ctx context.Context, from int64) (*eventlog.Subscription, error)
	// Nudge makes the tailer read now; called after a commit that appended events.
	Nudge()
}

// activityPayload is the payload of an activity event, JSON-encoded; the user id is the event's key, the
// type its topic and the time its At.
type activityPayload struct {
	ID            string   `json:"id"`
	ActorUserID   string   `json:"actor_user_id,omitempty"`
	ChangedFields []string `json:"changed_fields,omitempty"`
}

// EncodeActivity returns a as an event of identity's event log. Seq is left to the log.
func EncodeActivity(a Activity) (eventlog.Event, error) {
	payload, err := json.Marshal(activityPayload{ID: a.ID, ActorUserID: a.ActorUserID, ChangedFields: a.ChangedFields})
	if err != nil {
		return eventlog.Event{}, fmt.Errorf("encode activity %s: %w", a.ID, err)
	}
	return eventlog.Event{Topic: ActivityTopicPrefix + string(a.Type), Key: a.UserID, Payload: payload, At: a.At}, nil
}

// DecodeActivity returns the activity entry that e holds, with the event's Seq, and false when e is not
// an activity event (another topic of identity's log).
func DecodeActivity(e eventlog.Event) (Activity, bool, error) {
	typ, ok := strings.CutPrefix(e.Topic, ActivityTopicPrefix)
	if !ok {
		return Activity{}, false, nil
	}
	var p activityPayload
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		return Activity{}, true, fmt.Errorf("decode activity event %d: %w", e.Seq, err)
	}
	return Activity{
		Seq:           e.Seq,
		ID:            p.ID,
		UserID:        e.Key,
		Type:          ActivityType(typ),
		At:            e.At,
		ActorUserID:   p.ActorUserID,
		ChangedFields: p.ChangedFields,
	}, true, nil
}

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
// It waits, within ctx, until Run has subscribed to the event log, so that every entry committed after
// it returns can reach the watch.
//
// Errors: PermissionDenied for callers that are not users; Unavailable when the service is stopping, has
// no Options.Feed, or ctx ends before the feed has started.
func (s *Service) WatchActivity(ctx context.Context) (*Watch, error) {
	c := callerOf(ctx)
	if c.Kind != auth.User {
		return nil, apperr.Errorf(apperr.PermissionDenied, "only users may watch activity")
	}
	if err := s.hub.waitReady(ctx); err != nil {
		return nil, err
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

// hub subscribes to identity's event log and fans the activity entries out to watches. Lock order:
// hub.mu, then Watch.mu.
type hub struct {
	store  Store
	feed   ActivityFeed
	buffer int
	logger *slog.Logger
	retry  eventlog.Backoff
	// revoked is called, on the hub's goroutine, with each user whose standing an event changed
	// (Service.refreshSubject).
	revoked func(ctx context.Context, userID string)
	// lost is called, on the hub's goroutine, whenever it starts following the log from its head, with
	// first true the first time (at start) and false after events were lost to retention: the changes
	// before may not have reached the subject cache (Service.forgetSubjects).
	lost     func(first bool)
	followed bool
	running  atomic.Bool
	// ready is closed once the hub first subscribed to the feed, or stopped.
	ready     chan struct{}
	readyOnce sync.Once

	mu      sync.Mutex
	byUser  map[string]map[*Watch]struct{}
	watches map[*Watch]struct{}
	stopped bool
}

func newHub(store Store, opts Options) *hub {
	return &hub{
		store:   store,
		feed:    opts.Feed,
		buffer:  opts.ActivityBuffer,
		logger:  opts.Logger,
		retry:   eventlog.Backoff{Base: 500 * time.Millisecond, Max: 30 * time.Second},
		ready:   make(chan struct{}),
		byUser:  map[string]map[*Watch]struct{}{},
		watches: map[*Watch]struct{}{},
	}
}

// nudge wakes the feed's tailer. Writers call it after committing activity.
func (h *hub) nudge() {
	if h.feed != nil {
		h.feed.Nudge()
	}
}

func (h *hub) markReady() { h.readyOnce.Do(func() { close(h.ready) }) }

// waitReady waits until the hub has subscribed to the feed (or stopped), within ctx.
func (h *hub) waitReady(ctx context.Context) error {
	if h.feed == nil {
		return apperr.Errorf(apperr.Unavailable, "the activity feed is not configured")
	}
	select {
	case <-h.ready:
		return nil
	case <-ctx.Done():
		return apperr.Wrap(apperr.Unavailable, ctx.Err(), "the activity feed has not started")
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

// run feeds the watches from the event log until ctx is done, then ends every watch with Unavailable.
// It starts at the log's head: entries committed before are history, not news. A subscription that
// fell behind resumes from its cursor, so no entry is lost or repeated; a read failure is retried with
// backoff and logged once per outage; when entries were lost for good (retention overtook the hub) or
// the log stopped, the watches are ended with Unavailable, so their clients reconnect.
func (h *hub) run(ctx context.Context) error {
	if h.feed == nil {
		return errors.New("identity activity feed: no Options.Feed")
	}
	if !h.running.CompareAndSwap(false, true) {
		return errors.New("identity activity feed: already running")
	}
	defer h.running.Store(false)
	h.mu.Lock()
	h.stopped = false
	h.mu.Unlock()
	defer h.stop()

	from := eventlog.FromHead
	failures := 0
	subscribed := func() {
		if failures > 0 {
			h.logger.InfoContext(ctx, "activity feed reads the event log again", "failures", failures)
			failures = 0
		}
	}
	for {
		err := h.follow(ctx, &from, subscribed)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, eventlog.ErrClosed):
			// The log stopped, for good (a Log runs once): the process is shutting down.
			h.stop()
			<-ctx.Done()
			return nil
		case errors.Is(err, eventlog.ErrTooSlow):
			continue // resume from the cursor: the entries are read again from the database
		case errors.Is(err, eventlog.ErrCursorExpired):
			h.logger.ErrorContext(ctx, "activity feed lost events to the event log's retention; disconnecting watchers", "error", err.Error())
			h.endAll(apperr.Errorf(apperr.Unavailable, "activity events were lost; reconnect"))
			from = eventlog.FromHead
			continue
		}
		failures++
		if failures == 1 {
			h.logger.ErrorContext(ctx, "activity feed cannot read the event log; retrying with backoff", "error", err.Error())
		}
		t := time.NewTimer(h.retry.Delay(failures))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// follow subscribes from *from, calls subscribed, and publishes what arrives until the subscription
// ends, leaving *from at the last entry handled. It always returns an error: why it ended.
func (h *hub) follow(ctx context.Context, from *int64, subscribed func()) error {
	fromHead := *from == eventlog.FromHead
	sub, err := h.feed.Subscribe(ctx, *from)
	if err != nil {
		return fmt.Errorf("subscribe to the event log after %d: %w", *from, err)
	}
	defer sub.Close()
	if fromHead && h.lost != nil {
		h.lost(!h.followed)
	}
	h.followed = true
	h.markReady()
	subscribed()
	for {
		events, err := sub.NextBatch(ctx, activityBatch)
		*from = sub.Cursor()
		if err != nil {
			return fmt.Errorf("read the event log after %d: %w", *from, err)
		}
		acts := make([]Activity, 0, len(events))
		for _, e := range events {
			a, ok, err := DecodeActivity(e)
			switch {
			case err != nil:
				h.logger.ErrorContext(ctx, "skipping an undecodable activity event", "seq", e.Seq, "error", err.Error())
			case ok:
				acts = append(acts, a)
			}
		}
		h.noteRevocations(ctx, acts)
		h.publish(ctx, acts)
	}
}

// noteRevocations hands each user whose standing acts changed to h.revoked, once per batch.
func (h *hub) noteRevocations(ctx context.Context, acts []Activity) {
	if h.revoked == nil {
		return
	}
	seen := map[string]bool{}
	for _, a := range acts {
		if revokes(a.Type) && !seen[a.UserID] {
			seen[a.UserID] = true
			h.revoked(ctx, a.UserID)
		}
	}
}

func (h *hub) stop() {
	h.mu.Lock()
	h.stopped = true
	h.mu.Unlock()
	h.markReady() // a WatchActivity waiting for a start that never came learns that the feed stopped
	h.endAll(errShuttingDown())
}

// endAll ends every watch with err.
func (h *hub) endAll(err error) {
	h.mu.Lock()
	ws := slices.Collect(maps.Keys(h.watches))
	h.mu.Unlock()
	for _, w := range ws {
		w.end(err)
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
			h.logger.WarnContext(ctx, "read user for activity event", "user_id", id, "error", err.Error())
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
