package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"weak"

	"lastmile/internal/dispatch"
)

// The couriers' states in memory, on SQLite. What CourierStates reads (who holds an open session with
// a recent heartbeat, who has an open offer, which tasks each courier holds) changes only through this
// package's writes, and on SQLite every write of a database goes through the one *sql.DB that
// database.OpenSQLite opened on it, in this process: the data directory's lock keeps any other lastmile
// process (a second serve, migrate) away from the file, and nothing else writes the tasks or sessions
// tables. So the Stores on that *sql.DB keep the answer themselves (courierIndex, one per *sql.DB,
// shared by every Store on it) and CourierStates, Connected, OfferOpen and HeldTasksOf read it instead
// of asking SQLite: an index seek per courier asked about, hundreds per batch, was a tenth of the
// process's CPU at saturation.
//
// The index is never ahead of the database and never wrong about a write whose call returned:
//   - Every write that changes a task's state, holder or open offer (CreateTask, UpdateTask,
//     UpdateTaskByOffer, UpdateTasks) or a session's openness or heartbeat (UpdateSession,
//     BeatSessions) draws a ticket at the end of its transaction function, on the writer connection:
//     the tickets are in the order the writes are made, which is the order they commit in. After the
//     commit, before the call returns, the write is applied to the index; each task and session
//     remembers the ticket of the write it holds, so a write applied late (its caller's goroutine ran
//     after a later write's) never undoes a later one. A task or session that leaves the index keeps
//     its ticket (a tombstone) until every write drawn before it has been applied.
//   - The index is loaded on first use by a function in the writer's transaction (so it reads the
//     state after exactly the writes whose tickets come before its own) and installed with the writes
//     applied meanwhile whose tickets come after; until then, and whenever it is off, the reads ask
//     SQL as before.
//   - A write whose function succeeded but whose commit failed (the database's own failure, never a
//     closure's) turns the index off: it is loaded again by the next read.
//   - It is bounded: beyond maxIndexed tasks and sessions it turns itself off, and is loaded again at
//     most once per indexRetry.
//
// The held tasks' fields come from the writes (the task written is in memory); those of tasks held
// when the index was loaded are read once, on first use (decodeHeld), and kept for their version.

// maxIndexed bounds the tasks (offered or held) and open sessions a courierIndex keeps. A variable for
// the tests, as are indexRetry and indexPruneAfter.
var maxIndexed = 1 << 18

// indexRetry is how long an index that turned itself off for its size stays off.
var indexRetry = time.Minute

// indexPruneAfter is how many tombstones an index keeps before it prunes them (at most half of its
// entries).
var indexPruneAfter = 1024

// indexLoadRetry is how long an index whose load failed stays off.
const indexLoadRetry = time.Second

// The states of a courierIndex.
const (
	indexOff = iota
	indexLoading
	indexOn
)

// courierIndex is the couriers' states of one SQLite database, kept by the Stores on it. Safe for
// concurrent use; the zero value is off and empty.
type courierIndex struct {
	mu sync.Mutex
	// seq is the last ticket drawn; unresolved are the tickets drawn whose write was not applied (or
	// dropped) yet.
	seq        uint64
	unresolved map[uint64]struct{}
	state      int
	retryAt    time.Time
	// floor is the ticket of the load: writes with tickets below it are in what it read.
	floor uint64
	// pending are the writes committed while the index was loading.
	pending []pendingIndexWrite
	// load counts the loads started and the turn-offs: a load installs only if it is still the last.
	load uint64

	tasks    map[string]*indexedTask
	sessions map[string]*indexedSession
	// offers counts the open offers of each courier; held are each courier's held tasks.
	offers map[string]int
	held   map[string]*heldIndex
	// dead counts the tombstones among tasks and sessions.
	dead int
}

// indexedTask is a task as the index has it: its holder while held, the courier of its open offer
// while offered, neither (a tombstone) otherwise.
type indexedTask struct {
	seq     uint64
	courier string
	offer   string
	version int64
	// task are the held fields (HeldTasksOf's) at version, when known.
	task  dispatch.Task
	known bool
}

// indexedSession is a courier's session as the index has it: open with its heartbeat in Unix
// microseconds (as stored), or closed (a tombstone).
type indexedSession struct {
	seq       uint64
	open      bool
	heartbeat int64
}

// heldIndex is one courier's held tasks, and the list HeldTasksOf answers for them (sorted), made when
// first asked for after a change: shared with every caller, never changed.
type heldIndex struct {
	tasks  map[string]*indexedTask
	sorted []dispatch.Task
}

// indexWrite is what one write changed of the index's state.
type indexWrite struct {
	tasks    []indexedTaskWrite
	sessions []indexedSessionWrite
}

// indexedTaskWrite is a task as written.
type indexedTaskWrite struct {
	id, courier, offer string
	version            int64
	task               dispatch.Task // the held fields, when courier is set
}

// indexedSessionWrite is a session as written: the heartbeat is valid only when open is set.
type indexedSessionWrite struct {
	courierID string
	open      bool
	heartbeat int64
}

// pendingIndexWrite is a write committed while the index was loading.
type pendingIndexWrite struct {
	seq uint64
	w   indexWrite
}

// addTask adds t, as written, to w.
func (w *indexWrite) addTask(t *dispatch.Task) {
	e := indexedTaskWrite{id: t.ID, version: t.Version}
	if t.State.Held() && t.CourierID != "" {
		e.courier = t.CourierID
		e.task = heldDocOf(*t).task()
		e.task.Version = t.Version
	}
	if t.State == dispatch.StateOffered {
		e.offer = offerCourier(t)
	}
	w.tasks = append(w.tasks, e)
}

// addSession adds courierID's session, as written (open, with its heartbeat; the zero time is NULL),
// to w.
func (w *indexWrite) addSession(courierID string, open bool, heartbeat time.Time) {
	w.sessions = append(w.sessions, indexedSessionWrite{courierID: courierID, open: open && !heartbeat.IsZero(), heartbeat: heartbeat.UnixMicro()})
}

// courierIndexes are the courierIndex of each SQLite database, by its *sql.DB: the entry goes when the
// *sql.DB is garbage.
var courierIndexes struct {
	mu sync.Mutex
	by map[weak.Pointer[sql.DB]]*courierIndex
}

// courierIndexOf returns the courierIndex of db, shared by every Store on it.
func courierIndexOf(db *sql.DB) *courierIndex {
	key := weak.Make(db)
	courierIndexes.mu.Lock()
	defer courierIndexes.mu.Unlock()
	if x, ok := courierIndexes.by[key]; ok {
		return x
	}
	if courierIndexes.by == nil {
		courierIndexes.by = map[weak.Pointer[sql.DB]]*courierIndex{}
	}
	x := &courierIndex{}
	courierIndexes.by[key] = x
	runtime.AddCleanup(db, func(key weak.Pointer[sql.DB]) {
		courierIndexes.mu.Lock()
		defer courierIndexes.mu.Unlock()
		delete(courierIndexes.by, key)
	}, key)
	return x
}

// draw returns the next ticket. It is called on the writer connection, at the end of a transaction
// function that succeeded.
func (x *courierIndex) draw() uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.seq++
	if x.unresolved == nil {
		x.unresolved = map[uint64]struct{}{}
	}
	x.unresolved[x.seq] = struct{}{}
	return x.seq
}

// done resolves ticket seq: err nil means its write, w, committed, and is applied; otherwise the
// transaction failed after its function succeeded (the commit's failure), and the index turns off.
func (x *courierIndex) done(seq uint64, w *indexWrite, err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.unresolved, seq)
	if err != nil {
		x.turnOff(time.Time{})
		return
	}
	switch x.state {
	case indexLoading:
		x.pending = append(x.pending, pendingIndexWrite{seq: seq, w: *w})
	case indexOn:
		x.apply(seq, w)
		x.settle()
	}
}

// turnOff empties the index, which stays off until retryAt.
func (x *courierIndex) turnOff(retryAt time.Time) {
	x.state, x.retryAt = indexOff, retryAt
	x.load++
	x.pending, x.tasks, x.sessions, x.offers, x.held, x.dead = nil, nil, nil, nil, nil, 0
}

// settle prunes the tombstones no write can come back to, and turns the index off when it holds more
// than maxIndexed.
func (x *courierIndex) settle() {
	if x.dead > indexPruneAfter && x.dead > (len(x.tasks)+len(x.sessions))/2 {
		oldest := x.seq + 1
		for seq := range x.unresolved {
			oldest = min(oldest, seq)
		}
		for id, t := range x.tasks {
			if t.courier == "" && t.offer == "" && t.seq < oldest {
				delete(x.tasks, id)
				x.dead--
			}
		}
		for id, ss := range x.sessions {
			if !ss.open && ss.seq < oldest {
				delete(x.sessions, id)
				x.dead--
			}
		}
	}
	if len(x.tasks)+len(x.sessions)-x.dead > maxIndexed {
		x.turnOff(time.Now().Add(indexRetry))
	}
}

// apply applies w, the write of ticket seq, to what the index holds of each task and session it names
// unless a later write is there already.
func (x *courierIndex) apply(seq uint64, w *indexWrite) {
	if seq <= x.floor {
		return
	}
	for i := range w.tasks {
		tw := &w.tasks[i]
		t := x.tasks[tw.id]
		if t == nil {
			t = &indexedTask{}
			x.tasks[tw.id] = t
			x.dead++ // a new entry starts as a tombstone
		} else if t.seq > seq { // a later write is there (the same write may name a task twice: the last wins)
			continue
		}
		x.setTask(tw.id, t, seq, tw.courier, tw.offer, tw.version)
		if tw.courier != "" {
			t.task, t.known = tw.task, true
		}
	}
	for _, sw := range w.sessions {
		ss := x.sessions[sw.courierID]
		if ss == nil {
			ss = &indexedSession{}
			x.sessions[sw.courierID] = ss
			x.dead++
		} else if ss.seq > seq {
			continue
		}
		if ss.open != sw.open {
			x.dead += boolIndex(ss.open) - boolIndex(sw.open)
		}
		ss.seq, ss.open, ss.heartbeat = seq, sw.open, sw.heartbeat
	}
}

// setTask makes t, task id's entry, what a write of ticket seq left: held by courier, offered to offer
// (either or both empty), at version, its held fields unknown.
func (x *courierIndex) setTask(id string, t *indexedTask, seq uint64, courier, offer string, version int64) {
	wasDead := t.courier == "" && t.offer == ""
	if t.offer != "" {
		if x.offers[t.offer]--; x.offers[t.offer] == 0 {
			delete(x.offers, t.offer)
		}
	}
	if t.courier != "" {
		h := x.held[t.courier]
		delete(h.tasks, id)
		h.sorted = nil
		if len(h.tasks) == 0 {
			delete(x.held, t.courier)
		}
	}
	t.seq, t.courier, t.offer, t.version, t.task, t.known = seq, courier, offer, version, dispatch.Task{}, false
	if offer != "" {
		x.offers[offer]++
	}
	if courier != "" {
		h := x.held[courier]
		if h == nil {
			h = &heldIndex{tasks: map[string]*indexedTask{}}
			x.held[courier] = h
		}
		h.tasks[id] = t
		h.sorted = nil
	}
	if isDead := courier == "" && offer == ""; isDead != wasDead {
		x.dead += boolIndex(isDead) - boolIndex(wasDead)
	}
}

// indexSnapshot is what a load read: the tasks offered or held and the open sessions, and the ticket
// drawn when it read them.
type indexSnapshot struct {
	seq      uint64
	tasks    []indexedTaskWrite
	sessions []indexedSessionWrite
}

// startLoad reports whether the caller is to load the index now (it is off, and due), and the load's
// number, for install.
func (x *courierIndex) startLoad(now time.Time) (uint64, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.state != indexOff || now.Before(x.retryAt) {
		return 0, false
	}
	x.load++
	x.state, x.pending = indexLoading, nil
	return x.load, true
}

// mark returns a ticket that no write holds: the load's, drawn on the writer connection.
func (x *courierIndex) mark() uint64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.seq++
	return x.seq
}

// install makes the index what snap read, with the writes committed since applied; err is the load's
// failure, which leaves the index off for a while.
func (x *courierIndex) install(load uint64, snap *indexSnapshot, err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.state != indexLoading || x.load != load {
		return // turned off meanwhile (and maybe loading again: another load's pending)
	}
	if err != nil {
		x.turnOff(time.Now().Add(indexLoadRetry))
		return
	}
	if len(snap.tasks)+len(snap.sessions) > maxIndexed {
		x.turnOff(time.Now().Add(indexRetry))
		return
	}
	x.tasks, x.sessions = make(map[string]*indexedTask, len(snap.tasks)), make(map[string]*indexedSession, len(snap.sessions))
	x.offers, x.held, x.dead, x.floor = map[string]int{}, map[string]*heldIndex{}, 0, snap.seq
	for _, tw := range snap.tasks {
		t := &indexedTask{}
		x.tasks[tw.id] = t
		x.dead++
		x.setTask(tw.id, t, snap.seq, tw.courier, tw.offer, tw.version)
	}
	for _, sw := range snap.sessions {
		x.sessions[sw.courierID] = &indexedSession{seq: snap.seq, open: true, heartbeat: sw.heartbeat}
	}
	pending := x.pending
	x.pending, x.state = nil, indexOn
	for i := range pending {
		x.apply(pending[i].seq, &pending[i].w)
	}
	x.settle()
}

// loadStates loads the index of s's database if it is off and due: in a function of the writer's
// transaction, which reads the tasks offered or held (through tasks_state_list: only those) and the
// open sessions.
func (s *Store) loadStates(ctx context.Context) {
	x := s.states
	load, ok := x.startLoad(time.Now())
	if !ok {
		return
	}
	var snap indexSnapshot
	err := s.write(ctx, func(q querier) error {
		snap = indexSnapshot{seq: x.mark()}
		rows, err := q.QueryContext(ctx, `SELECT id, version, state, coalesce(courier_id, ''), coalesce(offer_courier_id, '')
			FROM tasks INDEXED BY tasks_state_list WHERE state IN ($1, $2, $3)`,
			string(dispatch.StateOffered), string(dispatch.StateAssigned), string(dispatch.StatePickedUp))
		if err != nil {
			return s.e.MapError(err, "load the couriers' tasks")
		}
		snap.tasks, err = collect(rows, func(r scanner) (indexedTaskWrite, error) {
			var (
				tw      indexedTaskWrite
				state   dispatch.State
				courier string
				offer   string
			)
			if err := r.Scan(&tw.id, &tw.version, &state, &courier, &offer); err != nil {
				return tw, err
			}
			if state.Held() {
				tw.courier = courier
			}
			if state == dispatch.StateOffered {
				tw.offer = offer
			}
			return tw, nil
		})
		if err != nil {
			return s.e.MapError(err, "load the couriers' tasks")
		}
		rows, err = q.QueryContext(ctx, `SELECT courier_id, heartbeat FROM sessions WHERE is_open = $1 AND heartbeat IS NOT NULL`, true)
		if err != nil {
			return s.e.MapError(err, "load the couriers' sessions")
		}
		snap.sessions, err = collect(rows, func(r scanner) (indexedSessionWrite, error) {
			sw := indexedSessionWrite{open: true}
			err := r.Scan(&sw.courierID, &sw.heartbeat)
			return sw, err
		})
		if err != nil {
			return s.e.MapError(err, "load the couriers' sessions")
		}
		return nil
	})
	x.install(load, &snap, err)
}

// lookup answers courierStates from the index: ok false when it is not on. missing are the held
// tasks whose fields it does not know yet (the answer is then incomplete: learn them and ask again).
func (x *courierIndex) lookup(courierIDs []string, parts int, since int64, heldOf []string) (out dispatch.CourierStates, missing []heldRef, ok bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.state != indexOn {
		return out, nil, false
	}
	out = dispatch.CourierStates{Connected: map[string]bool{}, OfferOpen: map[string]bool{}, Held: map[string][]dispatch.Task{}}
	if len(courierIDs) == 0 {
		parts = 0
	}
	for _, id := range courierIDs {
		if parts&partConnected != 0 {
			if ss := x.sessions[id]; ss != nil && ss.open && ss.heartbeat > since {
				out.Connected[id] = true
			}
		}
		if parts&partOfferOpen != 0 && x.offers[id] > 0 {
			out.OfferOpen[id] = true
		}
	}
	for _, id := range heldOf {
		h := x.held[id]
		if h == nil || id == "" {
			continue
		}
		if h.sorted == nil {
			ts := make([]dispatch.Task, 0, len(h.tasks))
			for tid, t := range h.tasks {
				if !t.known {
					missing = append(missing, heldRef{id: tid, courierID: id, version: t.version})
					continue
				}
				ts = append(ts, t.task)
			}
			if len(ts) < len(h.tasks) {
				continue
			}
			slices.SortFunc(ts, func(a, b dispatch.Task) int {
				return cmp.Or(a.AssignTime.Compare(b.AssignTime), strings.Compare(a.ID, b.ID))
			})
			h.sorted = ts
		}
		out.Held[id] = h.sorted
	}
	return out, missing, true
}

// learn keeps the held fields of ts, read from the tasks' documents, for the entries still at their
// versions.
func (x *courierIndex) learn(ts []dispatch.Task) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, got := range ts {
		t := x.tasks[got.ID]
		if t == nil || t.known || t.courier == "" || t.version != got.Version || got.CourierID != t.courier || !got.State.Held() {
			continue
		}
		t.task, t.known = got, true
		x.held[t.courier].sorted = nil
	}
}

// errIndexLost is the error an index write's ticket is resolved with when its transaction function
// runs again: the transaction that ran it first failed after it succeeded.
var errIndexLost = errors.New("transaction run again after its function succeeded")

// indexedStates is courierStates from the index, loading it first when it is off: ok false when the
// index cannot answer (off, loading, or tasks changing under the fields' read), and SQL is to.
func (s *Store) indexedStates(ctx context.Context, courierIDs []string, parts int, since time.Time, heldOf []string) (dispatch.CourierStates, bool, error) {
	s.loadStates(ctx)
	for range 2 {
		out, missing, ok := s.states.lookup(courierIDs, parts, since.UnixMicro(), heldOf)
		if !ok {
			return dispatch.CourierStates{}, false, nil
		}
		if len(missing) == 0 {
			return out, true, nil
		}
		got, err := s.decodeHeld(ctx, missing)
		if err != nil {
			return dispatch.CourierStates{}, false, fmt.Errorf("read the held tasks of %d couriers: %w", len(heldOf), err)
		}
		s.states.learn(got)
	}
	return dispatch.CourierStates{}, false, nil
}

// inTxIndexed is inTx for a write that changes what the index holds: fn returns what it wrote, which is
// applied to the index once the transaction committed (see the top of this file). Without an index
// (PostgreSQL) it is inTx.
func (s *Store) inTxIndexed(ctx context.Context, fn func(tx *sql.Tx, a *appender) (indexWrite, error)) error {
	if s.states == nil {
		return s.inTx(ctx, func(tx *sql.Tx, a *appender) error {
			_, err := fn(tx, a)
			return err
		})
	}
	var (
		seq uint64
		w   indexWrite
		err = errIndexLost // until inTx returns: a panic through it resolves the ticket so
	)
	defer func() {
		if seq != 0 {
			s.states.done(seq, &w, err)
		}
	}()
	err = s.inTx(ctx, func(tx *sql.Tx, a *appender) error {
		if seq != 0 {
			s.states.done(seq, nil, errIndexLost)
			seq = 0
		}
		got, err := fn(tx, a)
		if err != nil {
			return err
		}
		w, seq = got, s.states.draw()
		return nil
	})
	return err
}

// writeIndexed is write for statements that change what the index holds, as inTxIndexed.
func (s *Store) writeIndexed(ctx context.Context, fn func(q querier) (indexWrite, error)) error {
	if s.states == nil {
		return s.write(ctx, func(q querier) error {
			_, err := fn(q)
			return err
		})
	}
	var (
		seq uint64
		w   indexWrite
		err = errIndexLost
	)
	defer func() {
		if seq != 0 {
			s.states.done(seq, &w, err)
		}
	}()
	err = s.write(ctx, func(q querier) error {
		if seq != 0 {
			s.states.done(seq, nil, errIndexLost)
			seq = 0
		}
		got, err := fn(q)
		if err != nil {
			return err
		}
		w, seq = got, s.states.draw()
		return nil
	})
	return err
}
