package dispatch_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/dispatch/sqlite"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/eventlog"
	"lastmile/internal/platform/eventlog/sqllog"
)

// sessTimeout bounds every wait of the session and watch tests: a guard against hangs, never an
// assertion about timing.
const sessTimeout = 30 * time.Second

// sessT0 is the fixture clock's start.
var sessT0 = time.Date(2031, 3, 14, 9, 20, 0, 0, time.UTC)

// sessCouriers stands in for the courier service: user n is courier n, and statuses are set by tests.
type sessCouriers struct {
	dispatch.Couriers
	mu     sync.Mutex
	status map[string]dispatch.CourierInfo
}

func (c *sessCouriers) CourierOfUser(_ context.Context, userID string) (string, error) {
	var n int
	if _, err := fmt.Sscanf(userID, "0190b000-0000-7000-8000-%012d", &n); err != nil || n >= 500 {
		return "", apperr.Errorf(apperr.NotFound, "user %s has no courier profile", userID)
	}
	return sessCourier(n), nil
}

func (c *sessCouriers) Status(_ context.Context, courierID string) (dispatch.CourierInfo, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	info, ok := c.status[courierID]
	if !ok {
		return dispatch.CourierInfo{}, apperr.Errorf(apperr.NotFound, "no courier %s", courierID)
	}
	return info, nil
}

func (c *sessCouriers) setFix(courierID string, mode geo.TransportMode, at geo.LatLng, when time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status[courierID] = dispatch.CourierInfo{ID: courierID, Mode: mode, Status: dispatch.CourierBusy,
		Fix: &dispatch.Fix{Location: at, Time: when}}
}

// sessRoutes stands in for the route service: 10 m/s along the great circle, or Unavailable when down.
type sessRoutes struct {
	mu   sync.Mutex
	down bool
}

func (r *sessRoutes) Matrix(_ context.Context, origins []geo.LatLng, dest geo.LatLng, _ geo.TransportMode, _ time.Time) ([]dispatch.Leg, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return nil, "", apperr.Errorf(apperr.Unavailable, "route is down")
	}
	legs := make([]dispatch.Leg, len(origins))
	for i, o := range origins {
		d := geo.Distance(o, dest)
		legs[i] = dispatch.Leg{Duration: time.Duration(d / 10 * float64(time.Second)).Round(time.Second), Distance: d, Found: true}
	}
	return legs, "fake", nil
}

// sessMetrics counts session measurements.
type sessMetrics struct {
	dispatch.NopMetrics
	mu                     sync.Mutex
	opened, closed, replay int
}

func (m *sessMetrics) SessionOpened() { m.mu.Lock(); m.opened++; m.mu.Unlock() }
func (m *sessMetrics) SessionClosed() { m.mu.Lock(); m.closed++; m.mu.Unlock() }
func (m *sessMetrics) Replayed(n int) { m.mu.Lock(); m.replay += n; m.mu.Unlock() }

// sessionFixture is one or more Services (replicas) over one real SQLite store, each with its own event
// log tailer and hub running until the test ends. The work loop does not run: tests move tasks with the
// store directly, as the loop and the commands would.
type sessionFixture struct {
	db       *sql.DB
	store    *sqlstore.Store
	couriers *sessCouriers
	routes   *sessRoutes
	clock    *dispatchtest.Clock
	metrics  *sessMetrics
	svc      *dispatch.Service
	opts     dispatch.Options
	logOpts  eventlog.Options
	// step is how far the clock moves before each write (1 s).
	step time.Duration
}

// newSessionFixture starts a fixture; logOpts, when given, tunes the event log tailers.
func newSessionFixture(t testing.TB, opts dispatch.Options, logOpts ...eventlog.Options) *sessionFixture {
	t.Helper()
	f := &sessionFixture{db: databasetest.MigratedSQLite(t, "dispatch", sqlite.Migrate), couriers: &sessCouriers{status: map[string]dispatch.CourierInfo{}},
		routes: &sessRoutes{}, clock: dispatchtest.NewClock(sessT0), metrics: &sessMetrics{}, step: time.Second}
	f.store = sqlite.New(f.db)
	// Jobs (courier claims) are not these tests' concern: they are dropped.
	f.store.SetJobs(func(context.Context, *sql.Tx, []dispatch.Job) error { return nil })
	opts.Now = f.clock.Now
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	f.opts = opts
	f.logOpts = eventlog.Options{Poll: 5 * time.Millisecond}
	if len(logOpts) > 0 {
		f.logOpts = logOpts[0]
	}
	f.svc, _ = f.replica(t, "replica-a")
	return f
}

// replica starts another Service over the fixture's store, with its own event log tailer.
func (f *sessionFixture) replica(t testing.TB, name string) (*dispatch.Service, *eventlog.Log) {
	t.Helper()
	log, err := eventlog.New(sqllog.NewSource(f.db, database.SQLite), f.logOpts)
	if err != nil {
		t.Fatalf("eventlog.New: %v", err)
	}
	if f.svc == nil {
		f.store.SetNudge(log.Nudge) // the first replica's commits wake its tailer; the others poll
	}
	opts := f.opts
	opts.Replica = name
	svc := dispatch.NewService(dispatch.Deps{Store: f.store, ShareKeys: f.store.ShareKeys(), Couriers: f.couriers, Routes: f.routes, Events: log,
		Metrics: f.metrics}, opts)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := log.Run(ctx); err != nil {
			t.Errorf("eventlog Run: %v", err)
		}
	})
	wg.Go(func() {
		if err := svc.RunHub(ctx); err != nil {
			t.Errorf("RunHub: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
	return svc, log
}

func sessCtx(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sessTimeout)
	t.Cleanup(cancel)
	return ctx
}

func sessUser(n int) string    { return fmt.Sprintf("0190b000-0000-7000-8000-%012d", n) }
func sessCourier(n int) string { return fmt.Sprintf("0190b100-0000-7000-8000-%012d", n) }
func sessTaskID(n int) string  { return fmt.Sprintf("0190c000-0000-7000-8000-%012d", n) }
func sessOfferID(n int) string { return fmt.Sprintf("0190d000-0000-7000-8000-%012d", n) }

func asCourier(ctx context.Context, n int) context.Context {
	return auth.WithPrincipal(ctx, auth.Principal{Kind: auth.User, Subject: sessUser(n), Roles: []string{auth.RoleCourier}})
}

func asCustomer(ctx context.Context, n int) context.Context {
	return auth.WithPrincipal(ctx, auth.Principal{Kind: auth.User, Subject: sessUser(n), Roles: []string{auth.RoleCustomer}})
}

func asDispatcher(ctx context.Context) context.Context {
	return auth.WithPrincipal(ctx, auth.Principal{Kind: auth.User, Subject: sessUser(900), Roles: []string{auth.RoleDispatcher}})
}

var (
	sessPickup  = geo.LatLng{Lat: 52.5200, Lng: 13.4050}
	sessDropoff = geo.LatLng{Lat: 52.5300, Lng: 13.4050}
)

// newTask creates PENDING task n of customer user 600+customer.
func (f *sessionFixture) newTask(t testing.TB, n, customer int) dispatch.Task {
	t.Helper()
	f.clock.Advance(f.step)
	now := f.clock.Now()
	task, _, err := f.store.CreateTask(sessCtx(t), dispatch.Task{
		ID: sessTaskID(n), CustomerID: sessUser(600 + customer), CreatedBy: sessUser(600 + customer),
		RequestID: fmt.Sprintf("req-%d", n), State: dispatch.StatePending,
		Pickup:   dispatch.Stop{Location: sessPickup, Address: "Pickup 1", Contact: dispatch.Contact{Name: "Shop", Phone: "+4930000"}},
		Dropoff:  dispatch.Stop{Location: sessDropoff, Address: "Dropoff 1", Instructions: "ring twice"},
		Priority: dispatch.PriorityNormal, Size: dispatch.SizeSmall, CreateTime: now, UpdateTime: now,
	})
	if err != nil {
		t.Fatalf("CreateTask(%d): %v", n, err)
	}
	return task
}

// update changes task id with fn, appending deliveries.
func (f *sessionFixture) update(t testing.TB, id string, fn func(task *dispatch.Task) []dispatch.Delivery) dispatch.Task {
	t.Helper()
	f.clock.Advance(f.step)
	now := f.clock.Now()
	task, err := f.store.UpdateTask(sessCtx(t), id, func(task dispatch.Task) (dispatch.Change, error) {
		ds := fn(&task)
		task.UpdateTime = now
		for i := range ds {
			ds[i].TaskID, ds[i].CreateTime = id, now
		}
		return dispatch.Change{Task: task, Deliveries: ds}, nil
	})
	if err != nil {
		t.Fatalf("UpdateTask(%s): %v", id, err)
	}
	return task
}

// offer offers task id to courier n under offer offerN; it returns the offer delivery's cursor.
func (f *sessionFixture) offer(t testing.TB, id string, offerN, courier int) int64 {
	t.Helper()
	f.update(t, id, func(task *dispatch.Task) []dispatch.Delivery {
		now := f.clock.Now()
		task.State = dispatch.StateOffered
		task.Offers = append(task.Offers, dispatch.Offer{ID: sessOfferID(offerN), TaskID: id, CourierID: sessCourier(courier),
			State: dispatch.OfferOpen, CreateTime: now, ExpireTime: now.Add(20 * time.Second), ResponseTimeout: 20 * time.Second})
		return []dispatch.Delivery{{CourierID: sessCourier(courier), Kind: dispatch.DeliveryOffer, OfferID: sessOfferID(offerN)}}
	})
	return f.lastCursor(t, courier)
}

// expire expires task id's open offer, back to PENDING, with an offer_closed delivery.
func (f *sessionFixture) expire(t testing.TB, id string) int64 {
	t.Helper()
	var courier string
	f.update(t, id, func(task *dispatch.Task) []dispatch.Delivery {
		o := task.CurrentOffer()
		o.State, o.AnswerTime = dispatch.OfferExpired, f.clock.Now()
		task.State = dispatch.StatePending
		courier = o.CourierID
		return []dispatch.Delivery{{CourierID: o.CourierID, Kind: dispatch.DeliveryOfferClosed, OfferID: o.ID}}
	})
	c, err := f.store.LastCursor(sessCtx(t), courier)
	if err != nil {
		t.Fatalf("LastCursor: %v", err)
	}
	return c
}

// assign assigns task id to courier n directly, with an assigned notice.
func (f *sessionFixture) assign(t *testing.T, id string, courier int) int64 {
	t.Helper()
	f.update(t, id, func(task *dispatch.Task) []dispatch.Delivery {
		task.State, task.CourierID, task.AssignTime = dispatch.StateAssigned, sessCourier(courier), f.clock.Now()
		return []dispatch.Delivery{{CourierID: sessCourier(courier), Kind: dispatch.DeliveryTask, Reason: dispatch.NoticeAssigned}}
	})
	return f.lastCursor(t, courier)
}

// setState moves task id to st without deliveries.
func (f *sessionFixture) setState(t *testing.T, id string, st dispatch.State) dispatch.Task {
	t.Helper()
	return f.update(t, id, func(task *dispatch.Task) []dispatch.Delivery {
		task.State = st
		return nil
	})
}

func (f *sessionFixture) lastCursor(t testing.TB, courier int) int64 {
	t.Helper()
	c, err := f.store.LastCursor(sessCtx(t), sessCourier(courier))
	if err != nil {
		t.Fatalf("LastCursor: %v", err)
	}
	return c
}

// sessOpen opens courier n's session on svc.
func sessOpen(t testing.TB, svc *dispatch.Service, courier int, hello dispatch.Hello) *dispatch.CourierSession {
	t.Helper()
	s, err := svc.OpenSession(asCourier(sessCtx(t), courier), hello)
	if err != nil {
		t.Fatalf("OpenSession(courier %d, %+v): %v", courier, hello, err)
	}
	t.Cleanup(s.Close)
	return s
}

// sessNext returns the session's next message, failing the test on an error or a hang.
func sessNext(t *testing.T, s *dispatch.CourierSession) dispatch.Outbound {
	t.Helper()
	out, err := s.Next(sessCtx(t))
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return out
}

// sessDescribe renders an Outbound compactly for comparisons.
func sessDescribe(o dispatch.Outbound) string {
	switch {
	case o.Offer != nil:
		return fmt.Sprintf("%d offer %s %s task %s %s", o.Cursor, o.Offer.Offer.ID, o.Offer.Offer.State, o.Offer.Task.ID, o.Offer.Task.State)
	case o.OfferClosed != nil:
		return fmt.Sprintf("%d offer_closed %s %s", o.Cursor, o.OfferClosed.ID, o.OfferClosed.State)
	case o.Notice != nil:
		return fmt.Sprintf("%d task %s %s %s", o.Cursor, o.Notice.Reason, o.Notice.Task.ID, o.Notice.Task.State)
	case o.Drain != nil:
		return fmt.Sprintf("%d drain %s", o.Cursor, o.Drain.Code)
	}
	return fmt.Sprintf("%d empty", o.Cursor)
}

// errCanceled is context.Canceled.
var errCanceled = context.Canceled

func contextWithCancel(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	return context.WithCancel(sessCtx(t))
}
