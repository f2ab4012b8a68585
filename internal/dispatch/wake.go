package dispatch

import (
	"context"
	"math"
	"slices"
	"time"

	"lastmile/internal/geo"
)

// Couriers wake the tasks waiting for them. A task whose search found nobody waits (PENDING, due after
// a back-off, retryBackoff); every replica follows the courier service's stream of couriers' live states
// (CourierWatcher, courier's WatchCouriers), and when a courier becomes able to take work near waiting
// tasks, it makes those tasks due at once, whichever replica deferred them:
//
//   - a courier can take work when it is AVAILABLE with free capacity and a fix no older than
//     Options.MaxLocationAge, and holds a StreamAssignments session on some replica (Store.Connected);
//   - it wakes tasks when it becomes able (it turned AVAILABLE, connected to the courier service, got a
//     first fix), when its free capacity grows (a task released, its capacity raised), and when it moved
//     wakeMoveMeters since it last woke tasks (at most once per wakeMoveEvery per courier);
//   - it wakes the waiting tasks whose pickup is within the engine's largest search radius
//     (Options.MaxRadius) of it and that may be offered to it (WaitingTask.MayBeOfferedTo: it is not
//     excluded from the task and its transport mode carries the parcel), highest priority first, then
//     oldest, at most wakeShare per event; a move wakes only those that were out of that reach from
//     where it last woke tasks. A task the courier may never be offered is left asleep, so that the
//     tasks it declined or cannot carry do not take the places of one it can.
//
// When no task waits, an event costs a map update: a replica knows that none waits (Store.AnyWaiting)
// until a deferral on any replica says otherwise (Change.Waiting's TopicWaiting event, or the deferral's
// own write on this one). The stream is read by one goroutine; a slow read never holds up the courier
// service, which merges a lagging reader's events into the latest state per courier.
//
// A courier who turns OFFLINE or ON_BREAK loses their open offer (away.go): that event costs a read of
// whether they have one.
const (
	// followRetry is the first wait before the courier stream is opened again after it ended; each
	// failure in a row doubles it, up to followRetryMax.
	followRetry    = 250 * time.Millisecond
	followRetryMax = 30 * time.Second
	// wakeMoveMeters is how far a courier who can take work moves before it wakes the tasks that came
	// within its reach, and wakeMoveEvery how often one courier's moves may do so.
	wakeMoveMeters = 1000.0
	wakeMoveEvery  = 10 * time.Second
	// wakeScan bounds the waiting tasks near a courier read per wake (Store.WaitingNear).
	wakeScan = 64
	// maxFollowed bounds the couriers the follower remembers; beyond it it forgets them all (each then
	// counts as new, and wakes tasks once more).
	maxFollowed = 200_000
)

// CourierEvent is one event of the courier service's stream of couriers' live states.
type CourierEvent struct {
	Courier CourierInfo
	// Snapshot is set on the events that open a stream (the courier's state then), not on changes.
	Snapshot bool
}

// CourierWatcher is a Couriers that also follows every courier's live state. The courier service's gRPC
// client implements it (WatchCouriers); when Deps.Couriers does not, couriers wake no waiting task (only
// the sessions that open and the offers that end on this replica do).
type CourierWatcher interface {
	// WatchCouriers calls fn with one snapshot event per courier that is not offline, then with one
	// event per change, until the stream or ctx ends; it returns what ended it. A lagging reader gets
	// one event for several changes of a courier (its latest state). fn is called from one goroutine.
	WatchCouriers(ctx context.Context, fn func(CourierEvent)) error
}

// followed is what the follower remembers of a courier.
type followed struct {
	// stream is the number of the stream that last told about the courier.
	stream uint64
	able   bool
	// away is set while the courier is ON_BREAK (an OFFLINE courier is forgotten).
	away bool
	free int
	// at and when are where and when the courier last woke tasks (or would have, had any waited).
	at   geo.LatLng
	when time.Time
}

// follower is the state of followCouriers, used by its goroutine alone.
type follower struct {
	couriers map[string]*followed
	stream   uint64
	// noneAt is Service.waitGen+1 when Store.AnyWaiting last said that no task waits, 0 when unknown.
	noneAt uint64
}

// mayWait notes that a task may have started waiting (a deferral here or on another replica): the
// follower asks the store again before it skips a wake.
func (s *Service) mayWait() { s.waitGen.Add(1) }

// followCouriers follows the courier stream until ctx ends, opening it again after it ends (a courier
// restart, a network failure), after followRetry doubling per stream in a row that brought nothing. Each
// new stream starts with a snapshot, compared with what the follower remembers: a courier that became
// able while the stream was down wakes tasks then.
func (s *Service) followCouriers(ctx context.Context) error {
	w, ok := s.couriers.(CourierWatcher)
	if !ok {
		return nil
	}
	f := &follower{couriers: map[string]*followed{}}
	retry, failures := followRetry, 0
	for {
		f.stream++
		// Couriers not heard of in the previous stream or this one are gone (offline then).
		for id, c := range f.couriers {
			if c.stream+1 < f.stream {
				delete(f.couriers, id)
			}
		}
		heard := false
		err := w.WatchCouriers(ctx, func(ev CourierEvent) {
			if !heard && failures > 0 {
				s.logger.Info("dispatch: following the courier stream again", "failures", failures)
			}
			heard = true
			s.follow(ctx, f, ev)
			s.followedEvents.Add(1)
		})
		if ctx.Err() != nil {
			return nil
		}
		if heard {
			retry, failures = followRetry, 0
		}
		failures++
		s.metrics.CourierStreamEnded()
		// One warning per outage: the failures in a row after it are counted (the metric), not logged.
		if failures == 1 {
			s.logger.Warn("dispatch: the courier stream ended; opening it again until it answers", "error", err, "retry", retry)
		} else {
			s.logger.Debug("dispatch: the courier stream failed again", "error", err, "failures", failures, "retry", retry)
		}
		t := time.NewTimer(retry)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		retry = min(2*retry, followRetryMax)
	}
}

// follow handles one courier event: it remembers the courier's state and wakes the tasks it may take.
func (s *Service) follow(ctx context.Context, f *follower, ev CourierEvent) {
	c := ev.Courier
	prev := f.couriers[c.ID]
	if prev != nil && prev.stream != f.stream && !ev.Snapshot {
		prev = nil // not in this stream's snapshot: it was offline when the stream opened
	}
	if away(c.Status) && (prev == nil || !prev.away) {
		s.courierAway(ctx, c)
	}
	if c.Status == CourierOffline {
		delete(f.couriers, c.ID)
		return
	}
	now := s.now()
	reason, from := s.wakeReason(prev, c, now)
	if prev == nil {
		if len(f.couriers) >= maxFollowed {
			clear(f.couriers)
		}
		prev = &followed{}
		f.couriers[c.ID] = prev
	}
	prev.stream, prev.able, prev.away, prev.free = f.stream, s.canTake(c), away(c.Status), c.Capacity-c.ActiveTasks
	if reason == "" {
		return
	}
	prev.at, prev.when = c.Fix.Location, now
	s.wakeNear(ctx, f, c, reason, from, now)
}

// canTake reports whether c can take a task now, as far as the courier service tells.
func (s *Service) canTake(c CourierInfo) bool {
	return c.Status == CourierAvailable && c.ActiveTasks < c.Capacity && c.Fix != nil && c.LocationAge <= s.opts.MaxLocationAge
}

// wakeReason says why c, remembered as prev (nil when unknown), wakes tasks now ("" when it does not):
// "available" when it became able to take work, "freed" when its free capacity grew, "moved" when it
// moved far enough, and then from is where it last woke tasks (those within reach of it stay asleep).
func (s *Service) wakeReason(prev *followed, c CourierInfo, now time.Time) (reason string, from *geo.LatLng) {
	if !s.canTake(c) {
		return "", nil
	}
	switch free := c.Capacity - c.ActiveTasks; {
	case prev == nil || !prev.able:
		return "available", nil
	case free > prev.free:
		return "freed", nil
	case geo.Distance(prev.at, c.Fix.Location) >= wakeMoveMeters && now.Sub(prev.when) >= wakeMoveEvery:
		at := prev.at
		return "moved", &at
	}
	return "", nil
}

// wakeNear wakes up to wakeShare waiting tasks within reach of courier c (see the top of this file),
// if c holds a session. A failure is logged: those tasks keep their back-off.
func (s *Service) wakeNear(ctx context.Context, f *follower, c CourierInfo, reason string, from *geo.LatLng, now time.Time) {
	// A batch searching now may have missed a courier who became able: it wakes its deferred tasks
	// (contention.freed). Not for a move: couriers move all the time, anywhere in the city, and a batch
	// woken by each would search its deferred tasks again and again; a search finds couriers where they
	// are now, and a move it missed wakes the task at the next move or at the end of its back-off.
	if reason != "moved" {
		s.freedEver.Add(1)
	}
	if !s.anyWaiting(ctx, f) {
		return
	}
	at, reach := c.Fix.Location, s.opts.MaxRadius
	waiting, err := s.store.WaitingNear(ctx, now, boxAround(at, reach), wakeScan)
	if err != nil {
		s.wakeFailed(ctx, c, err)
		return
	}
	ids := make([]string, 0, wakeShare)
	for _, w := range waiting {
		if geo.Distance(at, w.Pickup) > reach || (from != nil && geo.Distance(*from, w.Pickup) <= reach) || !w.MayBeOfferedTo(c) {
			continue
		}
		if ids = append(ids, w.ID); len(ids) == wakeShare {
			break
		}
	}
	if len(ids) == 0 {
		return
	}
	conn, err := s.store.Connected(ctx, []string{c.ID}, s.connectedSince())
	if err != nil {
		s.wakeFailed(ctx, c, err)
		return
	}
	if !conn[c.ID] {
		return
	}
	if err := s.store.WakeTasks(ctx, now, ids); err != nil {
		s.wakeFailed(ctx, c, err)
		return
	}
	s.metrics.CourierWoke(reason, len(ids))
	s.logger.Debug("dispatch: a courier woke waiting tasks", "courier", c.ID, "reason", reason, "tasks", ids)
	s.kick()
}

// MayBeOfferedTo reports whether w may be offered to courier c at all, whatever c's state: c is not
// excluded from it (declined it, let its offer expire, handed it back) and travels by a mode that carries
// its parcel, as the engine's search requires (search.staticExclusion).
func (w WaitingTask) MayBeOfferedTo(c CourierInfo) bool {
	return !slices.Contains(w.Excluded, c.ID) && w.Size.Carries(c.Mode)
}

func (s *Service) wakeFailed(ctx context.Context, c CourierInfo, err error) {
	if ctx.Err() == nil {
		s.logger.Warn("dispatch: waking the tasks waiting near a courier failed", "courier", c.ID, "error", err)
	}
}

// anyWaiting reports whether a task may wait: false only when the store said none waits and no task
// started waiting since (mayWait). A failure counts as waiting.
func (s *Service) anyWaiting(ctx context.Context, f *follower) bool {
	gen := s.waitGen.Load()
	if f.noneAt == gen+1 {
		return false
	}
	ok, err := s.store.AnyWaiting(ctx, s.now())
	if err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("dispatch: looking for waiting tasks failed", "error", err)
		}
		return true
	}
	if !ok {
		f.noneAt = gen + 1
	}
	return ok
}

// boxAround returns the smallest box (of latitudes and longitudes) holding every point within meters of
// p: the whole band of latitudes when the circle reaches a pole, and a box crossing the antimeridian
// (West > East) when the circle does.
func boxAround(p geo.LatLng, meters float64) geo.Box {
	d := meters / geo.EarthRadiusMeters // the circle's angular radius
	south, north := p.Lat-geo.Degrees(d), p.Lat+geo.Degrees(d)
	sinD, cosLat := math.Sin(d), math.Cos(geo.Radians(p.Lat))
	if south <= -90 || north >= 90 || sinD >= cosLat {
		return geo.Box{South: max(south, -90), West: -180, North: min(north, 90), East: 180}
	}
	dLng := geo.Degrees(math.Asin(sinD / cosLat))
	west, east := p.Lng-dLng, p.Lng+dLng
	if west < -180 {
		west += 360
	}
	if east > 180 {
		east -= 360
	}
	return geo.Box{South: south, West: west, North: north, East: east}
}
