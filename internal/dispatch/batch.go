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
// reservation counted as an open offer is therefore not deferred by the back-off but made due again at
// once (contended), and the loop is kicked when those reservations have ended: a courier who just
// declined an offer gets the next task without a retry's wait.

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
// It returns the couriers whose reservation by another batch made a task of ts due again at once
// (contended): once ts are unleased, the loop is to be kicked unless one of them is still reserved
// (wakeContended).
func (s *Service) assignBatch(ctx context.Context, ts []Task, early *earlyBatch) (contenders []string) {
	now := s.now()
	todo := make([]Task, 0, len(ts))
	writes := make([]pendingWrite, 0, len(ts))
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
		early.drop()
	} else {
		var b *batch
		if early != nil {
			b = early.wait()
		} else {
			b = newBatch(s, now)
			s.offering.start(b)
		}
		defer s.endBatch(b)
		if rest := b.unfetched(todo); len(rest) > 0 {
			b.prefetch(ctx, rest)
		}
		env := DecideEnv{Now: b.now, OfferOpen: b.offerOpen, Connected: b.connected, Held: b.held}
		engine := s.engine.over(b, b)
		for _, t := range todo {
			w := s.decideOne(ctx, engine, t, env, b)
			writes = append(writes, w)
		}
		if b.retried {
			for id := range b.contenders {
				contenders = append(contenders, id)
			}
		}
	}
	s.write(ctx, writes)
	return contenders
}

// endBatch ends b's reservations, and kicks the loop when another batch awaited one of them.
func (s *Service) endBatch(b *batch) {
	if s.offering.release(b) {
		s.kick()
	}
}

// wakeContended kicks the loop for the tasks a batch made due at once because of contenders' reservations
// by other batches, once those tasks are unleased: at once when none of the contenders is reserved any
// longer, else when the reservation ends (endBatch).
func (s *Service) wakeContended(contenders []string) {
	if len(contenders) > 0 && !s.offering.awaitAny(contenders) {
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
func (e *earlyBatch) drop() {
	if e != nil {
		e.b.s.endBatch(e.wait())
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
// A deferral is made due at once instead of after the back-off when another batch's reservation counted
// as an open offer in it (contended: see the top of this file).
func (s *Service) decideOne(ctx context.Context, engine *Engine, t Task, env DecideEnv, b *batch) pendingWrite {
	b.contended = false
	for try := 1; ; try++ {
		w, courierID := s.decideOnce(ctx, engine, t, env)
		if courierID == "" || s.offering.reserve(courierID, b) {
			b.take(courierID)
			if b.contended && w.retry != nil {
				w, b.retried = w.retry(), true
			}
			return w
		}
		b.take(courierID) // another batch's: open for this one
		b.contend(courierID)
		if try == maxReserveTries {
			b.retried = true
			return s.deferWrite(t, nil, "the couriers chosen were taken by other batches").retry()
		}
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
	// awaited are the couriers whose reservation another batch counted as an open offer: the end of
	// one of them kicks the work loop (release).
	awaited map[string]bool
}

// start registers b as working.
func (o *offering) start(b *batch) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.active == nil {
		o.by, o.ended, o.active, o.awaited = map[string]*batch{}, map[string]uint64{}, map[*batch]uint64{}, map[string]bool{}
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

// other reports whether a batch other than b holds courierID, or ended a reservation of it after b read
// its open offers (at readAt). A reservation held by another batch is awaited: its end kicks the loop.
func (o *offering) other(courierID string, b *batch, readAt uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if held, ok := o.by[courierID]; ok {
		if held != b {
			o.awaited[courierID] = true
		}
		return held != b
	}
	return o.ended[courierID] > readAt
}

// awaitAny marks the reservations of the couriers in ids that a batch holds as awaited, and reports
// whether there was one.
func (o *offering) awaitAny(ids []string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	held := false
	for _, id := range ids {
		if _, ok := o.by[id]; ok {
			o.awaited[id], held = true, true
		}
	}
	return held
}

// release ends b's reservations and b, and reports whether one of them was awaited.
func (o *offering) release(b *batch) (awaited bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for id := range b.taken {
		if o.by[id] == b {
			delete(o.by, id)
			o.seq++
			o.ended[id] = o.seq
			if o.awaited[id] {
				delete(o.awaited, id)
				awaited = true
			}
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
	return awaited
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
	// taken are the couriers offered a task of this batch.
	taken map[string]bool
	// contenders are the couriers counted as having an open offer only because of another batch's
	// reservation; contended is set when the decision being made counted one, and retried when a task
	// of the batch was made due at once for it.
	contenders map[string]bool
	contended  bool
	retried    bool
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
	return &batch{s: s, now: now, known: map[string]bool{}, conn: map[string]bool{}, open: map[string]bool{}, readAt: map[string]uint64{},
		heldOf: map[string][]Task{}, taken: map[string]bool{}, contenders: map[string]bool{}, fetched: map[string]NearbyQuery{}}
}

// contend records that courierID counted as having an open offer only because of another batch.
func (b *batch) contend(courierID string) {
	b.contenders[courierID] = true
	b.contended = true
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
		switch {
		case b.open[id] || b.taken[id]:
			out[id] = true
			if b.contenders[id] { // taken by another batch (decideOne)
				b.contended = true
			}
		case b.s.offering.other(id, b, b.readAt[id]):
			out[id] = true
			b.contend(id)
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

// Status, CourierOfUser, Claim and Release are the courier service's: the engine does not call them.
func (b *batch) Status(ctx context.Context, courierID string) (CourierInfo, error) {
	return b.s.couriers.Status(ctx, courierID)
}

// CourierOfUser passes on to the courier service.
func (b *batch) CourierOfUser(ctx context.Context, userID string) (string, error) {
	return b.s.couriers.CourierOfUser(ctx, userID)
}

// Claim passes on to the courier service.
func (b *batch) Claim(ctx context.Context, courierID, taskID string, expectedRelease time.Time) error {
	return b.s.couriers.Claim(ctx, courierID, taskID, expectedRelease)
}

// Release passes on to the courier service.
func (b *batch) Release(ctx context.Context, courierID, taskID string) error {
	return b.s.couriers.Release(ctx, courierID, taskID)
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
