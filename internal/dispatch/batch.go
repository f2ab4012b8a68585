package dispatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"lastmile/internal/geo"
)

// Batched assignment. The work loop leases up to Options.Batch due tasks at once and assigns them
// together (assignBatch). Each task still gets its own decision, made by the same Engine.Decide as
// alone, in lease order (highest priority, then oldest, first), and its own Change (version check,
// offer, deliveries, decision record, events); what the batch shares is the cost:
//
//   - before the decisions, the first courier search of every task is made, and dispatch's own state
//     of every courier found is read once for all of them: who is connected, who has an open offer,
//     and the tasks the busy ones hold;
//   - when the Routes is a MatrixRoutes, the pickup ETAs from every courier found (from where its held
//     work ends) to the pickups are asked in one call per transport mode and group of up to matrixGroup
//     pickups near each other, from the couriers the group's searches found, all those calls at once;
//   - the decisions then run against those answers (a search or a matrix the prefetch did not cover,
//     such as a widened radius, is asked as before);
//   - and every task's write (offer, deferral or UNASSIGNABLE) goes to the store in one transaction
//     (Store.UpdateTasks), each with its own version check, so that one task that changed meanwhile
//     loses only its own write.
//
// A courier chosen for an earlier task of the batch counts as having an open offer for the later ones
// (OTHER_OFFER_OPEN), exactly as if the earlier offer had been committed first: no courier gets two
// offers from one batch. Batches working at once on one replica reserve their couriers (offering), so
// that neither does a courier get two offers from two of them.
//
// Another batch's reservation is only a guess at the store: it lasts from that batch's choice until
// after its writes are done, so it may still stand when the offer it became was answered already (the
// batch's goroutine has not run since its commit). A task that found no courier while another batch's
// reservation counted as an open offer (contended) therefore does not wait for the back-off alone:
//   - when that reservation had ended already (after this batch read the store), the task is made due
//     again at once, and the loop kicked once it is unleased;
//   - when it still stands, the task waits for the back-off but is registered with the reservation
//     (offering.waiting), and the reservation's end makes it due (Store.WakeTasks) and kicks the loop:
//     a courier who just declined an offer gets the next task without a retry's wait, and the task is
//     not searched again while the other batch still holds the courier.

// prefetchSearches bounds the first searches of a batch that run at once.
const prefetchSearches = 8

// matrixGroup is how many pickups of a batch share one matrix.
const matrixGroup = 8

// pendingWrite is one task's write of a batch: fn is the closure for Store.UpdateTasks, done runs after
// a successful write. A deferral's retry is the same deferral made due at once (nil for other writes).
type pendingWrite struct {
	task  Task
	fn    func(Task) (Change, error)
	done  func()
	retry func() pendingWrite
}

// assignBatch finds couriers for PENDING tasks (others are skipped): for each, in order, the next
// eligible candidate of its latest decision, or a new decision when none is left. Winners get an offer;
// a task without one waits (and is searched again after a back-off) or, when its pickup window cannot
// be met or it waited too long, becomes UNASSIGNABLE. All the writes go to the store together.
//
// It returns what is to be done for its contended tasks once ts are unleased (contention.wake).
func (s *Service) assignBatch(ctx context.Context, ts []Task, early *earlyBatch) (c contention) {
	now := s.now()
	todo := make([]Task, 0, len(ts))
	writes := make([]pendingWrite, 0, len(ts))
	var (
		deferred []string // the tasks of todo deferred after a back-off
		freedAt  int64
	)
	for _, t := range ts {
		if t.State != StatePending {
			continue
		}
		if reason := s.hopeless(t, now); reason != "" {
			writes = append(writes, s.giveUpWrite(t, nil, reason))
			continue
		}
		todo = append(todo, t)
	}
	if len(todo) == 0 {
		early.drop(ctx)
	} else {
		var b *batch
		if early != nil {
			b = early.wait()
		} else {
			b = newBatch(s, now)
			s.offering.start(b)
		}
		defer s.endBatch(ctx, b)
		if rest := b.unfetched(todo); len(rest) > 0 {
			b.prefetch(ctx, rest)
		}
		env := DecideEnv{Now: b.now, OfferOpen: b.offerOpen, Connected: b.connected, Held: b.held}
		engine := s.engine.over(b, b)
		freedAt = b.freedAt
		for _, t := range todo {
			w := s.decideOne(ctx, engine, t, env, b)
			if w.retry != nil {
				deferred = append(deferred, t.ID)
			}
			writes = append(writes, w)
		}
		c = b.contention
	}
	s.write(ctx, writes)
	// After the writes: a courier freed from here on wakes the deferred tasks as any waiting task.
	if n := s.freedEver.Load() - freedAt; n > 0 && len(deferred) > 0 {
		c.freed = deferred[:min(int64(len(deferred)), n*wakeShare)]
	}
	return c
}

// contention is what a batch's contended tasks (see the top of this file) need once unleased.
type contention struct {
	// retried is set when a task was made due at once: the loop is to be kicked.
	retried bool
	// waits are the tasks deferred while another batch held couriers they could have had, with those
	// couriers: each is to wait for the end of one of those reservations.
	waits map[string][]string
	// freed are deferred tasks to make due at once: couriers were freed while the batch searched, and
	// may have been found busy (see courierFreed).
	freed []string
}

// wake does what c needs once its tasks are unleased: it registers each waiting task with the
// reservations that still stand, makes those whose reservations all ended meanwhile and those searched
// while couriers were freed due now, and kicks the loop when a task is due.
func (s *Service) wake(ctx context.Context, c contention) {
	now := slices.Clone(c.freed)
	for taskID, couriers := range c.waits {
		if !s.offering.await(taskID, couriers) {
			now = append(now, taskID)
		}
	}
	if s.wakeTasks(ctx, now) || c.retried {
		s.kick()
	}
}

// wakeTasks makes the waiting tasks in ids due now, and reports whether it did (a failure is logged:
// those tasks keep their back-off).
func (s *Service) wakeTasks(ctx context.Context, ids []string) bool {
	if len(ids) == 0 {
		return false
	}
	if err := s.store.WakeTasks(ctx, s.now(), ids); err != nil {
		if ctx.Err() == nil {
			s.logger.Warn("dispatch: waking tasks that waited for a courier another batch held failed", "tasks", len(ids), "error", err)
		}
		return false
	}
	return true
}

// endBatch ends b's reservations, and makes the tasks that waited for one of them due.
func (s *Service) endBatch(ctx context.Context, b *batch) {
	if s.wakeTasks(context.WithoutCancel(ctx), s.offering.release(b)) {
		s.kick()
	}
}

// freshTasks are the tasks created on this replica that the work loop has not leased since: the next
// lease most likely takes them, so their prefetch starts beside it (earlyBatch).
type freshTasks struct {
	mu sync.Mutex
	ts []Task
	// leased are the ids of the tasks the last leases took (up to freshMemory, the oldest forgotten
	// first, in the order of ring): a task a lease took before CreateTask added it is not added.
	leased map[string]bool
	ring   []string
	next   int
}

// freshMemory is how many leased task ids freshTasks remembers.
const freshMemory = 2 * MaxBatch

// add adds t, unless a lease took it already or limit tasks wait already (those are prefetched after
// their lease).
func (f *freshTasks) add(t Task, limit int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.ts) < limit && !f.leased[t.ID] {
		f.ts = append(f.ts, t)
	}
}

// forget drops the tasks in ts, which a lease took (a prefetch started after it would be wasted), and
// remembers their ids.
func (f *freshTasks) forget(ts []Task) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.leased == nil {
		f.leased, f.ring = map[string]bool{}, make([]string, freshMemory)
	}
	for _, t := range ts {
		delete(f.leased, f.ring[f.next])
		f.ring[f.next] = t.ID
		f.leased[t.ID] = true
		f.next = (f.next + 1) % len(f.ring)
	}
	if len(f.ts) > 0 {
		f.ts = slices.DeleteFunc(f.ts, func(t Task) bool { return f.leased[t.ID] })
	}
}

// take returns the tasks added since the last take.
func (f *freshTasks) take() []Task {
	f.mu.Lock()
	defer f.mu.Unlock()
	ts := f.ts
	f.ts = nil
	return ts
}

// earlyBatch is a batch whose prefetch (searches, reads, matrices) of the tasks created on this replica
// runs while the work loop leases: what the lease returns of them is then decided without waiting for
// it. The prefetch is only data: the decisions are still made under the lease, against it, as they
// would have been against a prefetch made after it (the couriers' states are read a lease earlier,
// and a reservation that another batch of this replica ended since counts as an open offer, as
// always).
type earlyBatch struct {
	b    *batch
	done chan struct{}
}

// startEarly starts the prefetch of the PENDING tasks of ts that may still be assigned, in a new batch;
// nil when there is none.
func (s *Service) startEarly(ctx context.Context, ts []Task) *earlyBatch {
	now := s.now()
	var todo []Task
	for _, t := range ts {
		if t.State == StatePending && s.hopeless(t, now) == "" {
			todo = append(todo, t)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	e := &earlyBatch{b: newBatch(s, now), done: make(chan struct{})}
	s.offering.start(e.b)
	go func() {
		defer close(e.done)
		e.b.prefetch(ctx, todo)
	}()
	return e
}

// wait returns e's batch once its prefetch is done.
func (e *earlyBatch) wait() *batch {
	<-e.done
	return e.b
}

// drop ends e unused (nil: nothing to do).
func (e *earlyBatch) drop(ctx context.Context) {
	if e != nil {
		e.b.s.endBatch(ctx, e.wait())
	}
}

// maxReserveTries bounds how often decideOne decides again for a task whose chosen courier another batch
// of this replica took meanwhile.
const maxReserveTries = 3

// decideOne returns t's write: an offer to the next candidate of its latest decision or to the winner of
// a new one, a deferral or UNASSIGNABLE. A courier it offers t to is taken for the rest of batch b and
// reserved against this replica's other batches until b's writes are done; when another batch reserved
// it first, t is decided again without it.
//
// A deferral counting another batch's reservation as an open offer is contended (see the top of this
// file): made due at once when that reservation had ended, else registered to wait for its end.
func (s *Service) decideOne(ctx context.Context, engine *Engine, t Task, env DecideEnv, b *batch) pendingWrite {
	clear(b.heldNow)
	b.endedNow = false
	for try := 1; ; try++ {
		w, courierID := s.decideOnce(ctx, engine, t, env)
		if courierID != "" && !s.offering.reserve(courierID, b) {
			b.take(courierID) // another batch's: open for this one
			b.heldBy(courierID)
			if try < maxReserveTries {
				continue
			}
			w, courierID = s.deferWrite(t, nil, "the couriers chosen were taken by other batches"), ""
		}
		b.take(courierID)
		if w.retry != nil {
			switch {
			case b.endedNow:
				w, b.contention.retried = w.retry(), true
			case len(b.heldNow) > 0:
				if b.contention.waits == nil {
					b.contention.waits = map[string][]string{}
				}
				for id := range b.heldNow {
					b.contention.waits[t.ID] = append(b.contention.waits[t.ID], id)
				}
			}
		}
		return w
	}
}

// decideOnce returns t's write and the courier it offers t to ("" for none).
func (s *Service) decideOnce(ctx context.Context, engine *Engine, t Task, env DecideEnv) (pendingWrite, string) {
	if d, c, ok := s.nextCandidate(ctx, t, env); ok {
		return s.offerWrite(t, d, c, false), c.CourierID
	}
	trigger := TriggerAutomatic
	if t.Searches > 0 || len(t.Offers) > 0 {
		trigger = TriggerRetry
	}
	d, err := engine.Decide(ctx, t, trigger, env)
	if err != nil {
		return s.deferWrite(t, nil, fmt.Sprintf("engine failed: %v", err)), ""
	}
	d.TaskID = t.ID
	if d.ID == "" {
		d.ID = newID()
	}
	if d.DecideTime.IsZero() {
		d.DecideTime = storedTime(env.Now)
	}
	s.metrics.Decided(&d)
	s.logDecision(t, &d)
	switch d.Outcome {
	case OutcomeOffered:
		for _, c := range d.Candidates {
			if c.Rank == 1 {
				return s.offerWrite(t, &d, c, true), c.CourierID
			}
		}
		return s.deferWrite(t, nil, fmt.Sprintf("decision %s offered without a winner", d.ID)), ""
	case OutcomeUnassignable:
		return s.giveUpWrite(t, &d, d.Rationale), ""
	}
	return s.deferWrite(t, &d, d.Rationale), ""
}

// offering are the couriers the batches of this replica are offering a task to, each reserved by one
// batch from its choice until its writes are done: a batch counts the others' reservations as open
// offers, as it counts its own, so that two batches working at once do not offer one courier two tasks.
// A reservation that ended after a batch read the store's open offers of its courier counts too: that
// read may have missed the offer the reservation became.
type offering struct {
	mu sync.Mutex
	by map[string]*batch
	// seq counts the reservations ended; ended is the seq at which each courier's last one ended.
	seq   uint64
	ended map[string]uint64
	// active are the batches working, with the seq at their start: an entry of ended older than every
	// active batch's start is forgotten.
	active map[*batch]uint64
	// waiting are, by courier, the tasks waiting for the end of the courier's reservation (await).
	waiting map[string][]string
}

// start registers b as working.
func (o *offering) start(b *batch) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.active == nil {
		o.by, o.ended, o.active, o.waiting = map[string]*batch{}, map[string]uint64{}, map[*batch]uint64{}, map[string][]string{}
	}
	o.active[b] = o.seq
}

// now returns the seq before a read of the store's open offers.
func (o *offering) now() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.seq
}

// reserve reserves courierID for b; false when another batch holds it.
func (o *offering) reserve(courierID string, b *batch) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if held, ok := o.by[courierID]; ok {
		return held == b
	}
	o.by[courierID] = b
	return true
}

// How another batch's reservation stands for a batch (other).
const (
	otherNone  = iota
	otherHeld  // another batch holds the courier
	otherEnded // another batch ended a reservation of it after this batch read its open offers
)

// other says how another batch than b reserves courierID, for b, which read its open offers at readAt.
func (o *offering) other(courierID string, b *batch, readAt uint64) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if held, ok := o.by[courierID]; ok {
		if held != b {
			return otherHeld
		}
		return otherNone
	}
	if o.ended[courierID] > readAt {
		return otherEnded
	}
	return otherNone
}

// await registers task taskID to wait for the end of the reservations of couriers that still stand,
// and reports whether one did.
func (o *offering) await(taskID string, couriers []string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	waits := false
	for _, id := range couriers {
		if _, ok := o.by[id]; ok {
			o.waiting[id] = append(o.waiting[id], taskID)
			waits = true
		}
	}
	return waits
}

// release ends b's reservations and b, and returns the tasks that waited for one of them.
func (o *offering) release(b *batch) (woken []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for id := range b.taken {
		if o.by[id] == b {
			delete(o.by, id)
			o.seq++
			o.ended[id] = o.seq
			woken = append(woken, o.waiting[id]...)
			delete(o.waiting, id)
		}
	}
	delete(o.active, b)
	oldest := o.seq
	for _, at := range o.active {
		oldest = min(oldest, at)
	}
	for id, at := range o.ended {
		if at <= oldest {
			delete(o.ended, id)
		}
	}
	slices.Sort(woken)
	return slices.Compact(woken)
}

// write writes ws in one Store.UpdateTasks and runs each successful write's done.
func (s *Service) write(ctx context.Context, ws []pendingWrite) {
	if len(ws) == 0 {
		return
	}
	ups := make([]TaskWrite, len(ws))
	for i, w := range ws {
		ups[i] = TaskWrite{ID: w.task.ID, Fn: w.fn}
	}
	_, errs := s.store.UpdateTasks(ctx, ups)
	for i, w := range ws {
		if errs[i] == nil {
			w.done()
			continue
		}
		s.workFailed(ctx, w.task, errs[i])
	}
}

// batch is what the decisions of one batch share: the answers read before them, and the couriers taken
// by the batch's earlier offers. It is the Couriers and Routes of the batch's engine: it answers the
// searches and matrices it prefetched, and passes the others on. It is used by one goroutine.
type batch struct {
	s   *Service
	now time.Time
	// searches are the prefetched first searches, with their answers.
	searches []prefetched
	// conn and open are dispatch's state of the couriers in known; heldOf the tasks held by the couriers
	// in it.
	known map[string]bool
	conn  map[string]bool
	open  map[string]bool
	// readAt is offering's seq before each known courier's open offers were read.
	readAt map[string]uint64
	heldOf map[string][]Task
	// freedAt is the Service's freedEver before the batch's first search.
	freedAt int64
	// taken are the couriers offered a task of this batch, and others those of them another batch
	// reserved first (decideOne).
	taken  map[string]bool
	others map[string]bool
	// heldNow are the couriers the decision being made counted as having an open offer only because
	// another batch holds them, and endedNow is set when it so counted one whose reservation had ended
	// (see the top of this file); contention is what the batch's contended tasks need (assignBatch).
	heldNow    map[string]bool
	endedNow   bool
	contention contention
	// fetched are the first queries of the tasks prefetched, by task id.
	fetched map[string]NearbyQuery
	// matrices are the prefetched pickup ETAs, in the order asked (a later one's leg wins over an
	// earlier one's for the same trip), and provider the name route gave them.
	matrices []keptMatrix
	provider string
}

type prefetched struct {
	q     NearbyQuery
	found []CourierInfo
}

// keptMatrix is a matrix of the prefetch that route answered: legs[o][d] is the trip from origins[o]
// to dests[d] by mode.
type keptMatrix struct {
	mode           geo.TransportMode
	origins, dests []geo.LatLng
	legs           [][]Leg
}

func newBatch(s *Service, now time.Time) *batch {
	return &batch{s: s, now: now, freedAt: s.freedEver.Load(), known: map[string]bool{}, conn: map[string]bool{}, open: map[string]bool{}, readAt: map[string]uint64{},
		heldOf: map[string][]Task{}, taken: map[string]bool{}, others: map[string]bool{}, heldNow: map[string]bool{}, fetched: map[string]NearbyQuery{}}
}

// heldBy records that the decision being made counted courierID as having an open offer because another
// batch holds it.
func (b *batch) heldBy(courierID string) {
	b.heldNow[courierID] = true
	b.others[courierID] = true
}

// take marks courierID as offered a task of the batch (or taken by another batch); "" is nobody.
func (b *batch) take(courierID string) {
	if courierID != "" {
		b.taken[courierID] = true
	}
}

// prefetch makes the first search of each task, reads dispatch's state of every courier found, and
// asks for the pickup ETAs of those who may take a task. What fails here is not an error: the decisions
// ask again, and fail as they would have.
func (b *batch) prefetch(ctx context.Context, ts []Task) {
	// The searches run a few at a time: they wait on the courier service, not on this process.
	searches := make([]prefetched, len(ts))
	failed := make([]bool, len(ts))
	sem := make(chan struct{}, prefetchSearches)
	var wg sync.WaitGroup
	for i := range ts {
		searches[i].q = b.s.engine.firstQuery(&ts[i])
		b.fetched[ts[i].ID] = searches[i].q
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			found, err := b.s.couriers.FindNearby(ctx, searches[i].q)
			searches[i].found, failed[i] = found, err != nil
		}()
	}
	wg.Wait()
	var ids []string
	infos := map[string]CourierInfo{}
	for i, p := range searches {
		if failed[i] {
			continue
		}
		b.searches = append(b.searches, p)
		for _, c := range p.found {
			if _, ok := infos[c.ID]; !ok {
				infos[c.ID] = c
				ids = append(ids, c.ID)
			}
		}
	}
	if len(ids) == 0 {
		return
	}
	// The busy couriers who may take a task of the batch as far as the courier service says (the engine
	// asks Held only about those among them who are connected and have no open offer): their held tasks
	// are read with who is connected and who has an open offer, in one read.
	var busyIDs []string
	for _, id := range ids {
		if c := infos[id]; b.s.engine.mayTake(c) && c.ActiveTasks > 0 {
			busyIDs = append(busyIDs, id)
		}
	}
	if b.readAll(ctx, ids, busyIDs) != nil {
		return
	}
	// The couriers who may take a task of the batch (route is asked only about where they will be free).
	var may []CourierInfo
	for _, id := range ids {
		if c := infos[id]; b.s.engine.mayTake(c) && b.conn[id] && !b.open[id] {
			may = append(may, c)
		}
	}
	mr, ok := b.s.routes.(MatrixRoutes)
	if !ok {
		return
	}
	// Where each of them will be free, as the engine plans it (search.heldWork).
	fromOf := make(map[string]geo.LatLng, len(may))
	for _, c := range may {
		from := c.Fix.Location
		if c.ActiveTasks > 0 {
			_, from = b.s.engine.plans.plan(c.ID, c.Fix.Location, c.Mode, b.heldOf[c.ID], b.now)
		}
		fromOf[c.ID] = from
	}
	// One matrix per mode and per group of up to matrixGroup pickups near each other (by latitude): from
	// where the couriers the group's searches found will be free to the group's pickups. A matrix of
	// every courier to every pickup of the batch would be mostly elements no decision asks for.
	order := make([]int, len(ts))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int {
		return cmp.Or(cmp.Compare(ts[i].Pickup.Location.Lat, ts[j].Pickup.Location.Lat), cmp.Compare(ts[i].Pickup.Location.Lng, ts[j].Pickup.Location.Lng))
	})
	var ms []matrixCall
	for _, mode := range geo.Modes {
		var idx []int
		for _, i := range order {
			if !failed[i] && ts[i].Size.Carries(mode) {
				idx = append(idx, i)
			}
		}
		for g := 0; g < len(idx); g += matrixGroup {
			m := matrixCall{mode: mode}
			seen := map[geo.LatLng]bool{}
			for _, i := range idx[g:min(g+matrixGroup, len(idx))] {
				if p := ts[i].Pickup.Location; !slices.Contains(m.dests, p) {
					m.dests = append(m.dests, p)
				}
				for _, c := range searches[i].found {
					if from, ok := fromOf[c.ID]; ok && infos[c.ID].Mode == mode && !seen[from] {
						seen[from] = true
						m.origins = append(m.origins, from)
					}
				}
			}
			if len(m.origins) > 0 {
				ms = append(ms, m)
			}
		}
	}
	// The matrices are asked for at once (they wait on route, not on this process), and kept in the
	// order above.
	sem = make(chan struct{}, prefetchSearches)
	for i := range ms {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ms[i].legs, ms[i].provider, ms[i].err = mr.Matrices(ctx, ms[i].origins, ms[i].dests, ms[i].mode, b.now)
		}()
	}
	wg.Wait()
	for _, m := range ms {
		b.keepMatrix(m)
	}
}

// unfetched returns the tasks of ts whose first search the batch did not prefetch (or prefetched for
// a version of the task that searches otherwise).
func (b *batch) unfetched(ts []Task) []Task {
	var out []Task
	for i := range ts {
		if q, ok := b.fetched[ts[i].ID]; !ok || !sameQuery(q, b.s.engine.firstQuery(&ts[i])) {
			out = append(out, ts[i])
		}
	}
	return out
}

// matrixCall is one matrix of a batch's prefetch: its question and route's answer.
type matrixCall struct {
	mode           geo.TransportMode
	origins, dests []geo.LatLng
	legs           [][]Leg
	provider       string
	err            error
}

// keepMatrix keeps the legs of m; when route failed, it keeps nothing: the decisions ask route
// themselves, and degrade as they would have. Of an answer with a row of the wrong length it keeps the
// rows before that one, and not route's name. The legs are looked up when a decision asks (leg):
// most of a matrix's elements are never asked for, so they are not indexed up front.
func (b *batch) keepMatrix(m matrixCall) {
	if m.err != nil || len(m.legs) != len(m.origins) {
		return
	}
	rows := len(m.origins)
	for o := range m.origins {
		if len(m.legs[o]) != len(m.dests) {
			rows = o
			break
		}
	}
	if rows > 0 {
		b.matrices = append(b.matrices, keptMatrix{mode: m.mode, origins: m.origins[:rows], dests: m.dests, legs: m.legs[:rows]})
	}
	if rows == len(m.origins) && b.provider == "" {
		b.provider = m.provider
	}
}

// leg returns the prefetched trip from from to to by mode, if any: the last matrix kept that has it.
func (b *batch) leg(mode geo.TransportMode, from, to geo.LatLng) (Leg, bool) {
	for k := len(b.matrices) - 1; k >= 0; k-- {
		m := &b.matrices[k]
		if m.mode != mode {
			continue
		}
		d := slices.Index(m.dests, to)
		if d < 0 {
			continue
		}
		if o := slices.Index(m.origins, from); o >= 0 {
			return m.legs[o][d], true
		}
	}
	return Leg{}, false
}

// read reads dispatch's state of the couriers in ids that the batch did not read yet: who is connected
// and who has an open offer.
func (b *batch) read(ctx context.Context, ids []string) error { return b.readAll(ctx, ids, nil) }

// learnStates records who of ids is connected and who has an open offer, as read at offering time at.
func (b *batch) learnStates(ids []string, conn, open map[string]bool, at uint64) {
	for _, id := range ids {
		b.known[id] = true
		b.conn[id], b.open[id], b.readAt[id] = conn[id], open[id], at
	}
}

// learnHeld records the tasks held by the couriers in ids (none for those missing from held: known all
// the same).
func (b *batch) learnHeld(ids []string, held map[string][]Task) {
	for _, id := range ids {
		b.heldOf[id] = held[id]
		if b.heldOf[id] == nil {
			b.heldOf[id] = []Task{}
		}
	}
}

// readAll reads, in one read, dispatch's state of the couriers in ids (as read does) and the tasks held
// by the couriers in heldOf (as readHeld does), each only for the couriers the batch did not read yet.
func (b *batch) readAll(ctx context.Context, ids, heldOf []string) error {
	var todo, todoHeld []string
	for _, id := range ids {
		if !b.known[id] {
			todo = append(todo, id)
		}
	}
	for _, id := range heldOf {
		if _, ok := b.heldOf[id]; !ok {
			todoHeld = append(todoHeld, id)
		}
	}
	if len(todo) == 0 && len(todoHeld) == 0 {
		return nil
	}
	at := b.s.offering.now()
	st, err := b.s.store.CourierStates(ctx, todo, b.s.connectedSince(), todoHeld)
	if err != nil {
		return err
	}
	b.learnStates(todo, st.Connected, st.OfferOpen, at)
	b.learnHeld(todoHeld, st.Held)
	return nil
}

// readHeld reads, in one read, the tasks held by the couriers in ids that the batch did not read yet.
func (b *batch) readHeld(ctx context.Context, ids []string) error { return b.readAll(ctx, nil, ids) }

// connected is the batch's DecideEnv.Connected.
func (b *batch) connected(ctx context.Context, ids []string) (map[string]bool, error) {
	if err := b.read(ctx, ids); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = b.conn[id]
	}
	return out, nil
}

// offerOpen is the batch's DecideEnv.OfferOpen: the couriers taken by the batch have one too.
func (b *batch) offerOpen(ctx context.Context, ids []string) (map[string]bool, error) {
	if err := b.read(ctx, ids); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		if b.open[id] {
			out[id] = true
			continue
		}
		if b.taken[id] && !b.others[id] {
			out[id] = true // offered a task of this batch
			continue
		}
		switch b.s.offering.other(id, b, b.readAt[id]) {
		case otherHeld:
			out[id] = true
			b.heldBy(id)
		case otherEnded:
			out[id] = true
			b.endedNow = true
		case otherNone:
			if b.taken[id] { // lost to another batch (decideOne), whose reservation ended since
				out[id] = true
				b.endedNow = true
			}
		}
	}
	return out, nil
}

// held is the batch's DecideEnv.Held.
func (b *batch) held(ctx context.Context, ids []string) (map[string][]Task, error) {
	if err := b.readHeld(ctx, ids); err != nil {
		return nil, err
	}
	out := make(map[string][]Task, len(ids))
	for _, id := range ids {
		out[id] = b.heldOf[id]
	}
	return out, nil
}

// FindNearby answers a prefetched search from the prefetch (once), any other from the courier service.
func (b *batch) FindNearby(ctx context.Context, q NearbyQuery) ([]CourierInfo, error) {
	for i, p := range b.searches {
		if sameQuery(p.q, q) {
			b.searches = slices.Delete(b.searches, i, i+1)
			return p.found, nil
		}
	}
	return b.s.couriers.FindNearby(ctx, q)
}

func sameQuery(a, b NearbyQuery) bool {
	return a.Center == b.Center && a.Radius == b.Radius && a.Limit == b.Limit && a.MaxAge == b.MaxAge &&
		slices.Equal(a.Modes, b.Modes) && slices.Equal(a.Exclude, b.Exclude)
}

// Status, CourierOfUser, UserOfCourier, Claim and Release are the courier service's: the engine does not call them.
func (b *batch) Status(ctx context.Context, courierID string) (CourierInfo, error) {
	return b.s.couriers.Status(ctx, courierID)
}

// CourierOfUser passes on to the courier service.
func (b *batch) CourierOfUser(ctx context.Context, userID string) (string, error) {
	return b.s.couriers.CourierOfUser(ctx, userID)
}

// UserOfCourier passes on to the courier service.
func (b *batch) UserOfCourier(ctx context.Context, courierID string) (string, error) {
	return b.s.couriers.UserOfCourier(ctx, courierID)
}

// Claim passes on to the courier service.
func (b *batch) Claim(ctx context.Context, courierID, taskID string, expectedRelease time.Time, generation int64) (bool, error) {
	return b.s.couriers.Claim(ctx, courierID, taskID, expectedRelease, generation)
}

// Release passes on to the courier service.
func (b *batch) Release(ctx context.Context, courierID, taskID string, generation int64) error {
	return b.s.couriers.Release(ctx, courierID, taskID, generation)
}

// Matrix answers from the prefetched legs when they hold every origin (for the batch's time), and asks
// route otherwise.
func (b *batch) Matrix(ctx context.Context, origins []geo.LatLng, dest geo.LatLng, mode geo.TransportMode, depart time.Time) ([]Leg, string, error) {
	if depart.Equal(b.now) && b.provider != "" {
		legs := make([]Leg, len(origins))
		ok := true
		for i, o := range origins {
			l, found := b.leg(mode, o, dest)
			if !found {
				ok = false
				break
			}
			legs[i] = l
		}
		if ok {
			return legs, b.provider, nil
		}
	}
	if b.s.routes == nil {
		return nil, "", errors.New("route service not configured")
	}
	return b.s.routes.Matrix(ctx, origins, dest, mode, depart)
}
