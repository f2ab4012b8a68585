package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlite"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
)

// statesOpts compare CourierStates answers exactly: times with their location, nil and empty alike.
var statesOpts = []cmp.Option{
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) && a.Location() == b.Location() }),
	cmpopts.EquateEmpty(),
}

// statesDiff is cmp.Diff(want, got, statesOpts...) with a quick look first. Values reflect.DeepEqual
// holds for (the same maps, slices and fields, times with the same instant and location pointer) are
// equal under statesOpts too, so the answer is the same; only a pair DeepEqual tells apart pays for
// cmp's reflection, which was most of TestCourierIndexAnswersAsTheDatabase's time under -race (every
// check of its 2,400 steps matched).
func statesDiff(want, got any) string {
	if reflect.DeepEqual(want, got) {
		return ""
	}
	return cmp.Diff(want, got, statesOpts...)
}

// statesWorld drives a SQLite store through every write that changes what CourierStates answers, at
// random, and checks after each step that the store's answer (from its couriers' index) is the
// database's.
type statesWorld struct {
	t        *testing.T
	ctx      context.Context
	rng      *rand.Rand
	path     string
	db       *sql.DB
	s        *sqlstore.Store
	now      time.Time
	couriers []string
	sessions map[string]string // courier: its current session id
	tasks    []string
	n        int // ids drawn
	restarts int
}

// newStatesWorld's context has no deadline of its own: the world runs hundreds of steps, which take
// well over 30 s under -race on a loaded machine; go test's -timeout guards against a hang.
func newStatesWorld(t *testing.T, seed uint64) *statesWorld {
	w := &statesWorld{t: t, ctx: t.Context(), rng: rand.New(rand.NewPCG(seed, 1)), path: filepath.Join(t.TempDir(), "dispatch.db"),
		now: time.Date(2031, 1, 2, 3, 4, 5, 123456789, time.UTC), sessions: map[string]string{}}
	for c := range 6 {
		w.couriers = append(w.couriers, fmt.Sprintf("courier-%d", c))
	}
	w.open()
	t.Cleanup(func() { w.db.Close() })
	return w
}

// open opens and migrates the database file, as a starting process does, and a store on it.
func (w *statesWorld) open() {
	db, err := database.OpenSQLite(w.ctx, w.path)
	if err != nil {
		w.t.Fatalf("OpenSQLite: %v", err)
	}
	if err := sqlite.Migrate(w.ctx, db); err != nil {
		w.t.Fatalf("Migrate: %v", err)
	}
	w.db, w.s = db, sqlite.New(db)
}

// restart stands for a replica's restart: a new store on the same database (which shares its
// index), or the database closed and opened again (a new process: the index is loaded afresh).
func (w *statesWorld) restart() {
	w.restarts++
	if w.rng.IntN(2) == 0 {
		w.s = sqlite.New(w.db)
		return
	}
	if err := w.db.Close(); err != nil {
		w.t.Fatalf("close: %v", err)
	}
	w.open()
}

func (w *statesWorld) id(prefix string) string {
	w.n++
	return fmt.Sprintf("%s-%d", prefix, w.n)
}

func (w *statesWorld) courier() string { return w.couriers[w.rng.IntN(len(w.couriers))] }

func (w *statesWorld) at() time.Time { return w.now }

// newTask returns a PENDING task, OFFERED or held by a random courier.
func (w *statesWorld) newTask() dispatch.Task {
	id := w.id("task")
	t := dispatch.Task{ID: id, CreatedBy: "customer", RequestID: "request-" + id, CustomerID: "customer", State: dispatch.StatePending,
		Priority: dispatch.PriorityNormal, CreateTime: w.at(), UpdateTime: w.at(), DueTime: w.at(),
		Pickup:  dispatch.Stop{Location: geo.LatLng{Lat: 52.5 + w.rng.Float64()/100, Lng: 13.4 + w.rng.Float64()/100}, Address: "pickup " + id},
		Dropoff: dispatch.Stop{Location: geo.LatLng{Lat: 52.5 + w.rng.Float64()/100, Lng: 13.4}, Window: &dispatch.Window{Start: w.at(), End: w.at().Add(time.Hour)}}}
	switch w.rng.IntN(3) {
	case 1:
		t = w.offer(t)
	case 2:
		t = w.assign(t, w.courier())
	}
	return t
}

func (w *statesWorld) offer(t dispatch.Task) dispatch.Task {
	t.State = dispatch.StateOffered
	t.Offers = append(t.Offers, dispatch.Offer{ID: w.id("offer"), TaskID: t.ID, CourierID: w.courier(), State: dispatch.OfferOpen,
		CreateTime: w.at(), ExpireTime: w.at().Add(20 * time.Second)})
	return t
}

func (w *statesWorld) assign(t dispatch.Task, courierID string) dispatch.Task {
	if o := t.CurrentOffer(); o != nil {
		o.State, o.AnswerTime, courierID = dispatch.OfferAccepted, w.at(), o.CourierID
	}
	t.State, t.CourierID, t.AssignTime = dispatch.StateAssigned, courierID, w.at().Add(-time.Duration(w.rng.IntN(100))*time.Second)
	return t
}

// next returns a change of t that the dispatch service could make (or, now and then, one it would
// refuse: the write then fails and changes nothing).
func (w *statesWorld) next(t dispatch.Task) (dispatch.Change, error) {
	if w.rng.IntN(10) == 0 {
		return dispatch.Change{}, errors.New("the closure refuses")
	}
	t.UpdateTime = w.at()
	switch t.State {
	case dispatch.StatePending:
		if w.rng.IntN(4) == 0 {
			t.State = dispatch.StateCancelled
		} else {
			t = w.offer(t)
		}
	case dispatch.StateOffered:
		o := t.CurrentOffer()
		switch w.rng.IntN(4) {
		case 0:
			t = w.assign(t, "")
		case 1:
			o.State, t.State = dispatch.OfferDeclined, dispatch.StatePending
		case 2:
			o.State, t.State = dispatch.OfferExpired, dispatch.StatePending
		default:
			o.State, t.State = dispatch.OfferExpired, dispatch.StateCancelled
		}
	case dispatch.StateAssigned:
		switch w.rng.IntN(5) {
		case 0:
			t.State = dispatch.StatePickedUp
		case 1: // released
			t.State, t.CourierID, t.AssignTime = dispatch.StatePending, "", time.Time{}
		case 2: // reassigned
			t = w.assign(t, w.courier())
		case 3:
			t.State = dispatch.StateCancelled
		default: // a change of a field the held tasks show
			t.Dropoff.Location.Lat += 0.001
		}
	case dispatch.StatePickedUp:
		if w.rng.IntN(2) == 0 {
			t.State = dispatch.StateDelivered
		} else {
			t.State = dispatch.StateFailed
		}
	default:
		t.Searches++
	}
	return dispatch.Change{Task: t}, nil
}

func (w *statesWorld) task() string { return w.tasks[w.rng.IntN(len(w.tasks))] }

// step makes one random write, and returns what it did.
func (w *statesWorld) step() string {
	w.now = w.now.Add(time.Duration(w.rng.IntN(4000)) * time.Millisecond)
	ctx := w.ctx
	switch r := w.rng.IntN(100); {
	case r < 15 || len(w.tasks) == 0:
		t := w.newTask()
		if _, _, err := w.s.CreateTask(ctx, t); err != nil {
			w.t.Fatalf("CreateTask: %v", err)
		}
		w.tasks = append(w.tasks, t.ID)
		if w.rng.IntN(5) == 0 { // the same request again: nothing written
			t.ID = w.id("task")
			if _, created, err := w.s.CreateTask(ctx, t); err != nil || created {
				w.t.Fatalf("CreateTask again = %v, %v; want not created", created, err)
			}
		}
		return "create " + string(t.State)
	case r < 40:
		id := w.task()
		_, err := w.s.UpdateTask(ctx, id, func(cur dispatch.Task) (dispatch.Change, error) { return w.next(cur) })
		return fmt.Sprintf("update (%v)", err)
	case r < 50:
		cur, err := w.s.GetTask(ctx, w.task())
		if err != nil {
			w.t.Fatalf("GetTask: %v", err)
		}
		o := cur.CurrentOffer()
		if o == nil {
			return "no offer to answer"
		}
		_, err = w.s.UpdateTaskByOffer(ctx, o.ID, func(cur dispatch.Task) (dispatch.Change, error) { return w.next(cur) })
		return fmt.Sprintf("answer an offer (%v)", err)
	case r < 60:
		var ups []dispatch.TaskWrite
		for range 1 + w.rng.IntN(4) {
			ups = append(ups, dispatch.TaskWrite{ID: w.task(), Fn: w.next})
		}
		if w.rng.IntN(5) == 0 {
			ups = append(ups, dispatch.TaskWrite{ID: "no-such-task", Fn: w.next})
		}
		_, errs := w.s.UpdateTasks(ctx, ups)
		return fmt.Sprintf("update %d tasks (%v)", len(ups), errs)
	case r < 70: // a session opens (a new session id), or is replaced
		c := w.courier()
		sid := w.id("session")
		w.sessions[c] = sid
		hb := w.at()
		if w.rng.IntN(6) == 0 {
			hb = time.Time{}
		}
		w.session(c, func(ss dispatch.Session) dispatch.Session {
			ss.SessionID, ss.Open, ss.Heartbeat = sid, true, hb
			return ss
		})
		return "open a session"
	case r < 75:
		c := w.courier()
		w.session(c, func(ss dispatch.Session) dispatch.Session {
			ss.Open = false
			return ss
		})
		return "close a session"
	case r < 78:
		c := w.courier()
		w.session(c, func(ss dispatch.Session) dispatch.Session {
			ss.Acked++
			return ss
		})
		return "update a session, heartbeat kept"
	case r < 95:
		var refs []dispatch.SessionRef
		for _, c := range w.couriers {
			switch w.rng.IntN(3) {
			case 0:
				refs = append(refs, dispatch.SessionRef{CourierID: c, SessionID: w.sessions[c]})
			case 1:
				refs = append(refs, dispatch.SessionRef{CourierID: c, SessionID: "stale"})
			}
		}
		if _, err := w.s.BeatSessions(ctx, refs, w.at()); err != nil {
			w.t.Fatalf("BeatSessions: %v", err)
		}
		if w.rng.IntN(4) == 0 {
			// NotFound for a courier without a record yet.
			if err := w.s.AckSession(ctx, w.courier(), int64(w.rng.IntN(10))); err != nil && apperr.CodeOf(err) != apperr.NotFound {
				w.t.Fatalf("AckSession: %v", err)
			}
		}
		return fmt.Sprintf("beat %d sessions", len(refs))
	case r < 98:
		if err := w.s.WakePending(ctx, w.at()); err != nil {
			w.t.Fatalf("WakePending: %v", err)
		}
		if _, err := w.s.LeaseDue(ctx, "replica", w.at(), time.Minute, 3); err != nil {
			w.t.Fatalf("LeaseDue: %v", err)
		}
		return "wake and lease"
	default:
		w.restart()
		return "restart"
	}
}

func (w *statesWorld) session(courierID string, change func(dispatch.Session) dispatch.Session) {
	if _, err := w.s.UpdateSession(w.ctx, courierID, func(ss dispatch.Session) (dispatch.Session, error) { return change(ss), nil }); err != nil {
		w.t.Fatalf("UpdateSession: %v", err)
	}
}

// check compares the store's CourierStates with the database's for a random question.
func (w *statesWorld) check(what string) {
	w.t.Helper()
	var ids, heldOf []string
	for _, c := range append(slices.Clone(w.couriers), "courier-unknown", "") {
		if w.rng.IntN(4) != 0 {
			ids = append(ids, c)
		}
		if w.rng.IntN(3) != 0 {
			heldOf = append(heldOf, c)
		}
	}
	w.rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	since := w.now.Add(-time.Duration(w.rng.IntN(20_000_000)) * time.Microsecond)
	got, err := w.s.CourierStates(w.ctx, ids, since, heldOf)
	if err != nil {
		w.t.Fatalf("after %s: CourierStates: %v", what, err)
	}
	if !sqlstore.StatesIndexed(w.s) {
		w.t.Fatalf("after %s: the store answered without its index", what)
	}
	want, err := sqlstore.SQLCourierStates(w.ctx, w.s, ids, since, heldOf)
	if err != nil {
		w.t.Fatalf("after %s: SQLCourierStates: %v", what, err)
	}
	if diff := statesDiff(want, got); diff != "" {
		w.t.Fatalf("after %s: CourierStates(%q, %v, %q) from the index differs from the database (-sql +index):\n%s", what, ids, since, heldOf, diff)
	}
	for name, read := range map[string]func() (any, any, error){
		"Connected": func() (any, any, error) {
			got, err := w.s.Connected(w.ctx, ids, since)
			return got, want.Connected, err
		},
		"OfferOpen": func() (any, any, error) {
			got, err := w.s.OfferOpen(w.ctx, ids)
			return got, want.OfferOpen, err
		},
		"HeldTasksOf": func() (any, any, error) {
			got, err := w.s.HeldTasksOf(w.ctx, heldOf)
			return got, want.Held, err
		},
	} {
		got, want, err := read()
		if diff := statesDiff(want, got); err != nil || diff != "" {
			w.t.Fatalf("after %s: %s = %v (-sql +index):\n%s", what, name, err, diff)
		}
	}
}

// TestCourierIndexAnswersAsTheDatabase: through random writes of every kind that changes who is
// connected, who has an open offer and who holds which task (create, offer, accept, decline, expire,
// cancel, release, reassign, pick up, deliver, fail, batches with failing closures, sessions opened,
// replaced, closed and beaten with current and stale ids, replica restarts), the store's CourierStates
// (from its index on SQLite) answers exactly what the database does, after every step.
func TestCourierIndexAnswersAsTheDatabase(t *testing.T) {
	for seed := range uint64(6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			if seed%2 == 1 {
				sqlstore.SetIndexPruneAfter(t, 4)
			}
			w := newStatesWorld(t, seed)
			for i := range 400 {
				what := w.step()
				w.check(fmt.Sprintf("step %d (%s)", i, what))
			}
			if w.restarts == 0 {
				t.Errorf("no restart in 400 steps")
			}
		})
	}
}

// TestCourierIndexConcurrentWrites: writes made at once by many callers (grouped into shared
// transactions, applied to the index by their goroutines in any order) leave the index as the
// database, and reads beside them see no torn state.
func TestCourierIndexConcurrentWrites(t *testing.T) {
	w := newStatesWorld(t, 99)
	ctx := w.ctx
	for range 40 {
		t := w.newTask()
		if _, _, err := w.s.CreateTask(ctx, t); err != nil {
			w.t.Fatal(err)
		}
		w.tasks = append(w.tasks, t.ID)
	}
	w.check("the first tasks")
	// A new process: the first read loads the index while the others write.
	if err := w.db.Close(); err != nil {
		t.Fatal(err)
	}
	w.open()
	sqlstore.SetIndexPruneAfter(t, 16)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex // the world's random source and clock
		fail = make(chan error, 16)
	)
	lockedNext := func(t dispatch.Task) (dispatch.Change, error) {
		mu.Lock()
		defer mu.Unlock()
		return w.next(t)
	}
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 7))
			for i := range 150 {
				id := w.tasks[rng.IntN(len(w.tasks))]
				c := w.couriers[rng.IntN(len(w.couriers))]
				var err error
				switch rng.IntN(4) {
				case 0:
					_, err = w.s.UpdateTask(ctx, id, lockedNext)
				case 1:
					_, errs := w.s.UpdateTasks(ctx, []dispatch.TaskWrite{{ID: id, Fn: lockedNext}, {ID: w.tasks[rng.IntN(len(w.tasks))], Fn: lockedNext}})
					err = errors.Join(errs...)
				case 2:
					sid := fmt.Sprintf("s-%d-%d", g, i)
					_, err = w.s.UpdateSession(ctx, c, func(ss dispatch.Session) (dispatch.Session, error) {
						ss.SessionID, ss.Open, ss.Heartbeat = sid, rng.IntN(3) != 0, time.Unix(int64(1_900_000_000+i), 0)
						return ss, nil
					})
				default:
					var ss dispatch.Session
					if ss, err = w.s.GetSession(ctx, c); err == nil {
						_, err = w.s.BeatSessions(ctx, []dispatch.SessionRef{{CourierID: c, SessionID: ss.SessionID}}, time.Unix(int64(1_900_000_000+i), 5000))
					}
				}
				if err != nil && ctx.Err() != nil {
					fail <- err
					return
				}
				if _, err := w.s.CourierStates(ctx, w.couriers, time.Unix(1_900_000_050, 0), w.couriers); err != nil {
					fail <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(fail)
	for err := range fail {
		t.Fatal(err)
	}
	w.now = time.Unix(1_900_000_000, 0).UTC()
	for i := range 50 {
		w.check(fmt.Sprintf("the concurrent writes (question %d)", i))
	}
}

// TestCourierIndexBounded: an index that would hold more than its bound turns itself off, and the
// reads answer from the database meanwhile; it is loaded again once the database holds less.
func TestCourierIndexBounded(t *testing.T) {
	w := newStatesWorld(t, 7)
	w.check("the start")
	sqlstore.SetMaxIndexed(t, 3)
	var held []string
	for i := range 5 {
		tk := w.newTask()
		tk.Offers = nil
		tk = w.assign(tk, w.couriers[i%2])
		if _, _, err := w.s.CreateTask(w.ctx, tk); err != nil {
			t.Fatal(err)
		}
		held = append(held, tk.ID)
	}
	for _, what := range []string{"5 held tasks", "5 held tasks, again"} {
		got, err := w.s.CourierStates(w.ctx, w.couriers, w.now, w.couriers)
		want, werr := sqlstore.SQLCourierStates(w.ctx, w.s, w.couriers, w.now, w.couriers)
		if diff := statesDiff(want, got); err != nil || werr != nil || diff != "" {
			t.Fatalf("%s: CourierStates = %v, %v (-sql +store):\n%s", what, err, werr, diff)
		}
		if n := len(got.Held[w.couriers[0]]) + len(got.Held[w.couriers[1]]); n != 5 {
			t.Fatalf("%s: %d held tasks, want 5", what, n)
		}
		if sqlstore.StatesIndexed(w.s) {
			t.Fatalf("%s: the index holds more than its bound", what)
		}
	}
	for _, id := range held[:3] {
		if _, err := w.s.UpdateTask(w.ctx, id, func(cur dispatch.Task) (dispatch.Change, error) {
			cur.State = dispatch.StateDelivered
			return dispatch.Change{Task: cur}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	w.check("2 held tasks left") // loaded again: check fails when the answer is not the index's
}
