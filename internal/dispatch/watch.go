package dispatch

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// Tuning of the watches.
const (
	// watchPageSize is the page size of the WatchTasks snapshot's reads.
	watchPageSize = 1000
	// maxSnapshotScan bounds the open tasks a WatchTasks snapshot reads to pick the most recently
	// updated MaxSnapshotTasks; beyond it the snapshot is truncated.
	maxSnapshotScan = 4 * MaxSnapshotTasks
	// trackTimeout bounds one refresh of the courier's position and ETA.
	trackTimeout = 5 * time.Second
)

// MaxChangedSince bounds how far from now the since of WatchTasksSince may be, so that a resume reads at
// most a day of finished tasks.
const MaxChangedSince = 24 * time.Hour

// TaskUpdate is one message of WatchTask. The first carries the task, and the courier's position and ETA
// when the task is held and they are known; later ones carry only what changed.
type TaskUpdate struct {
	// Task is set in the first update and whenever the task changed.
	Task *Task
	// Fix is the holder's last position, set when it changed (ASSIGNED and PICKED_UP only).
	Fix *Fix
	// ETA is a fresh estimate, set when it changed (ASSIGNED and PICKED_UP only).
	ETA *TaskETA
}

// TaskETA estimates when the courier reaches the task's stops.
type TaskETA struct {
	// PickupTime is zero once the parcel is picked up.
	PickupTime  time.Time
	DropoffTime time.Time
	ComputeTime time.Time
	// Degraded is true when the route service could not answer and the estimate is the local geodesic
	// fallback.
	Degraded bool
}

// WatchItem is one message of WatchTasks: a task, or the end of the opening snapshot.
type WatchItem struct {
	Task             *Task
	SnapshotComplete *SnapshotComplete
}

// SnapshotComplete ends the opening snapshot of WatchTasks.
type SnapshotComplete struct {
	TaskCount int
	// Truncated is true when more open tasks matched than the snapshot holds (MaxSnapshotTasks).
	Truncated bool
}

// WatchTask streams one task to send: a snapshot first, then the task on every change and, while it is
// ASSIGNED or PICKED_UP, the holder's position and a fresh ETA every Options.TrackInterval when they
// changed (to a courier only while they hold the task: Task.HolderVisibleTo). It returns nil after sending a final state (DELIVERED, CANCELLED, FAILED), send's error when
// send fails, and ctx's error when ctx ends. A reader slower than the changes sees the latest state.
//
// Errors before the first send: NotFound when the task does not exist or the caller may not see it.
func (s *Service) WatchTask(ctx context.Context, id string, send func(TaskUpdate) error) error {
	return s.watchTask(ctx, id, "", send)
}

// WatchSharedTask is WatchTask for whoever holds a share link to the task: token must be a valid,
// unexpired share link to task id, and every task sent is in the share view (Task.Shared). The holder's
// position and the ETA are sent as to the task's customer. The watch ends with NotFound when the link
// expires, unless the task reached a final state before.
//
// Errors before the first send: NotFound when the task does not exist or token is not a valid,
// unexpired share link to it.
func (s *Service) WatchSharedTask(ctx context.Context, id, token string, send func(TaskUpdate) error) error {
	if token == "" {
		return errTaskNotFound
	}
	return s.watchTask(ctx, id, token, send)
}

// watchTask is WatchTask, or WatchSharedTask when token is set.
func (s *Service) watchTask(ctx context.Context, id, token string, send func(TaskUpdate) error) error {
	// The hub keys changes by the canonical (lower-case) id; a watch subscribed under another spelling of
	// the same UUID (upper case, which the contract accepts) would get its snapshot and no change ever.
	var v violations
	id = v.id("id", id)
	if err := v.err(); err != nil {
		return err
	}
	feed := newTaskFeed()
	stop := s.hub.watchTask(id, feed)
	defer stop()
	w := &taskWatch{s: s, p: auth.FromContext(ctx), shared: token != ""}
	var t Task
	var err error
	var expired <-chan time.Time // the share link's expiry; nil for other watches
	if w.shared {
		var expire time.Time
		if t, expire, err = s.sharedTask(ctx, id, token); err == nil {
			timer := time.NewTimer(expire.Sub(s.now()))
			defer timer.Stop()
			expired = timer.C
		}
	} else {
		t, err = s.visibleTask(ctx, id)
	}
	if err != nil {
		return err
	}
	if !w.shared {
		if w.courierID, err = s.callerCourierID(ctx); err != nil {
			return err
		}
	}
	first := TaskUpdate{Task: w.redact(t)}
	if w.tracks(t) {
		first.Fix, first.ETA = w.track(ctx, t)
	}
	if err := send(first); err != nil {
		return err
	}
	if t.State.Final() {
		return nil
	}
	ticker := time.NewTicker(s.opts.TrackInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-expired:
			return errTaskNotFound
		case <-feed.notify:
			latest, err := w.latest(ctx, feed, t)
			if err != nil {
				return err
			}
			if latest.Version <= t.Version {
				continue
			}
			rehold := w.tracks(latest) && (latest.State != t.State || latest.CourierID != t.CourierID)
			if latest.CourierID != t.CourierID {
				w.fix, w.eta, w.legOK = nil, nil, false // another courier: send their position whatever it is
			}
			t = latest
			u := TaskUpdate{Task: w.redact(t)}
			if rehold {
				u.Fix, u.ETA = w.track(ctx, t)
			}
			if err := send(u); err != nil {
				return err
			}
			if t.State.Final() {
				return nil
			}
		case <-ticker.C:
			if !w.tracks(t) {
				continue
			}
			if fix, eta := w.track(ctx, t); fix != nil || eta != nil {
				if err := send(TaskUpdate{Fix: fix, ETA: eta}); err != nil {
					return err
				}
			}
		}
	}
}

// taskWatch is the state of one WatchTask.
type taskWatch struct {
	s         *Service
	p         auth.Principal
	courierID string
	// shared sends the share view (a share link's watch) instead of the caller's.
	shared bool
	// What was sent last, to send only changes.
	fix *Fix
	eta *TaskETA
	// leg caches the pickup-to-dropoff travel of the holder's mode while ASSIGNED.
	leg     time.Duration
	legMode geo.TransportMode
	legOK   bool
}

func (w *taskWatch) redact(t Task) *Task {
	var out Task
	if w.shared {
		out = t.Shared()
	} else {
		out = t.For(w.p, w.courierID, ViewFull)
	}
	return &out
}

// tracks reports whether the watch sends t's holder's position and ETA: while t is held, to a share
// link's holder and to whoever may follow the holder (Task.HolderVisibleTo).
func (w *taskWatch) tracks(t Task) bool {
	return t.State.Held() && (w.shared || t.HolderVisibleTo(w.p, w.courierID))
}

// latest returns the newest state the feed holds, re-reading the task when the feed asks for a resync;
// cur when there is nothing newer.
func (w *taskWatch) latest(ctx context.Context, feed *taskFeed, cur Task) (Task, error) {
	tasks, resync := feed.take()
	out := cur
	if resync {
		t, err := w.s.store.GetTask(ctx, cur.ID)
		if err != nil {
			return Task{}, fmt.Errorf("read watched task %s: %w", cur.ID, err)
		}
		out = t
	}
	for _, t := range tasks {
		if t.ID == cur.ID && t.Version > out.Version {
			out = t
		}
	}
	return out, nil
}

// track returns the holder's position and a fresh ETA, each nil when unknown or unchanged since sent.
func (w *taskWatch) track(ctx context.Context, t Task) (*Fix, *TaskETA) {
	ctx, cancel := context.WithTimeout(ctx, trackTimeout)
	defer cancel()
	info, err := w.s.couriers.Status(ctx, t.CourierID)
	if err != nil || info.Fix == nil {
		return nil, nil
	}
	var fix *Fix
	if w.fix == nil || w.fix.Location != info.Fix.Location || !w.fix.Time.Equal(info.Fix.Time) {
		f := *info.Fix
		fix, w.fix = &f, &f
	}
	eta := w.estimate(ctx, t, info.Mode, info.Fix.Location)
	if w.eta != nil && w.eta.PickupTime.Equal(eta.PickupTime) && w.eta.DropoffTime.Equal(eta.DropoffTime) &&
		w.eta.Degraded == eta.Degraded {
		return fix, nil
	}
	w.eta = &eta
	return fix, &eta
}

// estimate computes the task's ETA from the courier at from, by route when it answers, else by the local
// fallback (Degraded). Times are to the second, so that a courier standing still does not produce a new
// estimate every refresh.
func (w *taskWatch) estimate(ctx context.Context, t Task, mode geo.TransportMode, from geo.LatLng) TaskETA {
	now := w.s.now()
	eta := TaskETA{ComputeTime: now}
	if t.State == StateAssigned {
		toPickup, ok := w.travel(ctx, from, t.Pickup.Location, mode, now)
		eta.Degraded = !ok
		if w.legMode != mode || !w.legOK {
			leg, ok := w.travel(ctx, t.Pickup.Location, t.Dropoff.Location, mode, now.Add(toPickup))
			w.leg, w.legMode, w.legOK = leg, mode, ok
		}
		eta.Degraded = eta.Degraded || !w.legOK
		eta.PickupTime = now.Add(toPickup).Truncate(time.Second)
		eta.DropoffTime = now.Add(toPickup + w.leg).Truncate(time.Second)
		return eta
	}
	toDropoff, ok := w.travel(ctx, from, t.Dropoff.Location, mode, now)
	eta.Degraded = !ok
	eta.DropoffTime = now.Add(toDropoff).Truncate(time.Second)
	return eta
}

// travel returns the travel time from a to b by mode: route's when it answers with a route (ok), else
// the local estimate (geo.EstimateTravel).
func (w *taskWatch) travel(ctx context.Context, a, b geo.LatLng, mode geo.TransportMode, depart time.Time) (time.Duration, bool) {
	if w.s.routes != nil {
		legs, _, err := w.s.routes.Matrix(ctx, []geo.LatLng{a}, b, mode, depart)
		if err == nil && len(legs) == 1 && legs[0].Found {
			return legs[0].Duration, true
		}
	}
	d, _ := geo.EstimateTravel(a, b, mode)
	return d, false
}

// WatchTasks streams the tasks matching f to send: a snapshot of the open ones (at most
// MaxSnapshotTasks, the most recently updated), one SnapshotComplete, then every change of a matching
// task, and a task that stops matching once more in its new state. Changes are coalesced per task for a
// slow reader. view "" means ViewBasic. It returns send's error when send fails and ctx's error when ctx
// ends.
//
// The filter is scoped as ListTasks scopes it: customers see their own tasks and couriers the tasks they
// hold or held, an empty CustomerID (CourierID) meaning theirs. Errors before the first send: Invalid for a
// malformed filter; PermissionDenied when a customer or courier asks for another's tasks;
// FailedPrecondition when a courier user has no courier profile.
func (s *Service) WatchTasks(ctx context.Context, f TaskFilter, view View, send func(WatchItem) error) error {
	return s.WatchTasksSince(ctx, f, view, time.Time{}, send)
}

// WatchTasksSince is WatchTasks for a reader resuming a feed it lost: when since is not zero, the snapshot
// also holds, after the open tasks, the tasks in a final state that match f and were updated at or after
// since, at most MaxSnapshotTasks, the most recently updated first (SnapshotComplete.Truncated when more
// matched). The reader thus learns the final state of the tasks that finished while it was away, which a
// snapshot of open tasks would show only by their absence.
//
// Errors before the first send: those of WatchTasks, and Invalid when since is more than MaxChangedSince
// from now.
func (s *Service) WatchTasksSince(ctx context.Context, f TaskFilter, view View, since time.Time, send func(WatchItem) error) error {
	if !since.IsZero() {
		if d := s.now().Sub(since); d > MaxChangedSince || d < -MaxChangedSince {
			return apperr.InvalidRequest(apperr.FieldViolation{Field: "changed_since",
				Description: "must be within 24 hours of the server's clock"})
		}
	}
	p := auth.FromContext(ctx)
	f, err := s.scopeFilter(ctx, f) // as ListTasks
	if err != nil {
		return err
	}
	courierID, err := s.callerCourierID(ctx)
	if err != nil {
		return err
	}
	if view == "" {
		view = ViewBasic
	}
	feed := newTaskFeed()
	stop := s.hub.watchAll(feed)
	defer stop()
	w := &listWatch{s: s, p: p, courierID: courierID, f: f, view: view, send: send, shown: map[string]int64{}}
	tasks, truncated, err := s.watchSnapshot(ctx, f)
	if err != nil {
		return err
	}
	if !since.IsZero() {
		finished, more, err := s.finishedSince(ctx, f, since)
		if err != nil {
			return err
		}
		tasks, truncated = append(tasks, finished...), truncated || more
	}
	for _, t := range tasks {
		if err := w.emit(t); err != nil {
			return err
		}
		if !t.State.Final() {
			w.shown[t.ID] = t.Version // a finished task never changes: resync need not read it again
		}
	}
	if err := send(WatchItem{SnapshotComplete: &SnapshotComplete{TaskCount: len(tasks), Truncated: truncated}}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-feed.notify:
		}
		changed, resync := feed.take()
		if resync {
			fresh, err := w.resync(ctx)
			if err != nil {
				return err
			}
			changed = append(fresh, changed...)
		}
		for _, t := range changed {
			if err := w.offer(t); err != nil {
				return err
			}
		}
	}
}

// listWatch is the state of one WatchTasks.
type listWatch struct {
	s         *Service
	p         auth.Principal
	courierID string
	f         TaskFilter
	view      View
	send      func(WatchItem) error
	// shown maps the tasks the reader holds as matching to the version sent.
	shown map[string]int64
}

func (w *listWatch) emit(t Task) error {
	out := t.For(w.p, w.courierID, w.view)
	return w.send(WatchItem{Task: &out})
}

// offer sends t when it matches and is newer than what was sent, or when it stopped matching.
func (w *listWatch) offer(t Task) error {
	ver, shown := w.shown[t.ID]
	if shown && t.Version <= ver {
		return nil
	}
	switch {
	case w.matches(t):
		w.shown[t.ID] = t.Version
	case shown:
		delete(w.shown, t.ID)
	default:
		return nil
	}
	return w.emit(t)
}

// matches reports whether t passes the filter and the caller may see it.
func (w *listWatch) matches(t Task) bool {
	f := w.f
	switch {
	case len(f.States) > 0 && !slices.Contains(f.States, t.State),
		f.CourierID != "" && t.CourierID != f.CourierID && !(f.AnyHolder && t.HeldBy(f.CourierID)),
		f.CustomerID != "" && t.CustomerID != f.CustomerID:
		return false
	}
	return canSee(w.p, t, w.courierID)
}

// resync returns the tasks to look at again after the feed lost changes: the open tasks matching now,
// and those the reader holds that are not among them (they may have stopped matching).
func (w *listWatch) resync(ctx context.Context) ([]Task, error) {
	tasks, _, err := w.s.watchSnapshot(ctx, w.f)
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(tasks))
	for _, t := range tasks {
		seen[t.ID] = true
	}
	for id := range w.shown {
		if seen[id] {
			continue
		}
		t, err := w.s.store.GetTask(ctx, id)
		if apperr.CodeOf(err) == apperr.NotFound {
			delete(w.shown, id)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read watched task %s: %w", id, err)
		}
		tasks = append(tasks, t)
	}
	return tasks, nil
}

// finishedSince returns the tasks in a final state matching f updated at or after since, the most recently
// updated first, at most MaxSnapshotTasks, and whether more matched.
func (s *Service) finishedSince(ctx context.Context, f TaskFilter, since time.Time) ([]Task, bool, error) {
	tasks, err := s.store.FinishedTasks(ctx, f, since, MaxSnapshotTasks+1)
	if err != nil {
		return nil, false, fmt.Errorf("list the tasks finished since %s: %w", since.Format(time.RFC3339Nano), err)
	}
	if len(tasks) > MaxSnapshotTasks {
		return tasks[:MaxSnapshotTasks], true, nil
	}
	return tasks, false, nil
}

// watchSnapshot returns the open tasks matching f, the most recently updated first, at most
// MaxSnapshotTasks, and whether more matched.
func (s *Service) watchSnapshot(ctx context.Context, f TaskFilter) ([]Task, bool, error) {
	q := TaskQuery{Filter: f, Limit: watchPageSize}
	q.Filter.States = nil
	for _, st := range States {
		if !st.Final() && (len(f.States) == 0 || slices.Contains(f.States, st)) {
			q.Filter.States = append(q.Filter.States, st)
		}
	}
	if len(q.Filter.States) == 0 {
		return nil, false, nil
	}
	var all []Task
	truncated := false
	for {
		page, err := s.store.ListTasks(ctx, q)
		if err != nil {
			return nil, false, fmt.Errorf("list the tasks to watch: %w", err)
		}
		all = append(all, page...)
		if len(page) < q.Limit {
			break
		}
		if len(all) >= maxSnapshotScan {
			truncated = true
			break
		}
		last := page[len(page)-1]
		q.AfterCreate, q.AfterID = last.CreateTime, last.ID
	}
	slices.SortStableFunc(all, func(a, b Task) int {
		return cmp.Or(b.UpdateTime.Compare(a.UpdateTime), cmp.Compare(a.ID, b.ID))
	})
	if len(all) > MaxSnapshotTasks {
		all, truncated = all[:MaxSnapshotTasks], true
	}
	return all, truncated, nil
}
