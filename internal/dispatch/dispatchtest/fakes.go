// Package dispatchtest holds test doubles of the services dispatch calls (courier and route), for the
// tests of the dispatch domain, its adapter and its harnesses. The dispatch store is never faked: tests
// run on the real SQLite store.
package dispatchtest

import (
	"context"
	"slices"
	"sort"
	"sync"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// Couriers is an in-memory courier service: couriers with a status, a position and claims. It is safe
// for concurrent use.
type Couriers struct {
	mu       sync.Mutex
	now      func() time.Time
	couriers map[string]*dispatch.CourierInfo
	users    map[string]string
	claims   map[string]string // task id -> courier id
	// gens are the claims' generations (task id -> generation), released the highest generation
	// released per courier and task (ClaimCourierRequest.generation).
	gens     map[string]int64
	released map[[2]string]int64
	// late holds the claims that timed out but land later (LateClaims, LandLate).
	late     []lateClaim
	lateMode bool
	down     bool
	// refuse makes Claim fail with FailedPrecondition for these couriers.
	refuse map[string]bool
	// Calls counts every call, by method name.
	calls map[string]int
	// onClaim runs at the start of each Claim, outside the lock (OnClaim).
	onClaim func()
	// onRelease runs at the start of each Release, outside the lock (OnRelease).
	onRelease func(courierID, taskID string)
	// onClaimed runs at the end of each Claim, outside the lock (OnClaimed).
	onClaimed func(courierID, taskID string, err error)
	// onFound runs at the end of each FindNearby, outside the lock (OnFindNearby).
	onFound func(dispatch.NearbyQuery)
	// watches are the open WatchCouriers streams.
	watches map[*watch]struct{}
}

// lateClaim is a claim call that timed out on the caller's side and lands later.
type lateClaim struct {
	courierID, taskID string
	generation        int64
}

// maxWatchQueue bounds the events a WatchCouriers stream has not read yet; beyond it the stream ends
// with Unavailable (the reader opens another, with a fresh snapshot).
const maxWatchQueue = 4096

// watch is one WatchCouriers stream of the fake.
type watch struct {
	queue  []dispatch.CourierEvent
	ended  bool
	notify chan struct{}
}

func (w *watch) poke() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

// publish queues c's state, as changed, to every stream. The caller holds f.mu.
func (f *Couriers) publish(c *dispatch.CourierInfo) {
	for w := range f.watches {
		if len(w.queue) >= maxWatchQueue {
			w.ended = true
		} else {
			w.queue = append(w.queue, dispatch.CourierEvent{Courier: f.snapshot(c)})
		}
		w.poke()
	}
}

// Restart ends every WatchCouriers stream with Unavailable, as the courier service does when it
// shuts down.
func (f *Couriers) Restart() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for w := range f.watches {
		w.ended = true
		w.poke()
		delete(f.watches, w)
	}
}

// WatchCouriers implements dispatch.CourierWatcher: a snapshot of every courier that is not offline (by
// id), then each change made through the fake, until ctx ends or Restart.
func (f *Couriers) WatchCouriers(ctx context.Context, fn func(dispatch.CourierEvent)) error {
	f.mu.Lock()
	if err := f.enter("WatchCouriers"); err != nil {
		f.mu.Unlock()
		return err
	}
	w := &watch{notify: make(chan struct{}, 1)}
	ids := make([]string, 0, len(f.couriers))
	for id := range f.couriers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if c := f.couriers[id]; c.Status != dispatch.CourierOffline {
			w.queue = append(w.queue, dispatch.CourierEvent{Courier: f.snapshot(c), Snapshot: true})
		}
	}
	if f.watches == nil {
		f.watches = map[*watch]struct{}{}
	}
	f.watches[w] = struct{}{}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.watches, w)
		f.mu.Unlock()
	}()
	for {
		f.mu.Lock()
		evs, ended := w.queue, w.ended
		w.queue = nil
		f.mu.Unlock()
		for _, ev := range evs {
			fn(ev)
		}
		if ended {
			return errDown
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-w.notify:
		}
	}
}

// OnFindNearby makes fn run at the end of every FindNearby, with its query, after the answer was
// decided and before the caller gets it: what happens in it happens while the answer is on its way
// back. nil removes it.
func (f *Couriers) OnFindNearby(fn func(dispatch.NearbyQuery)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onFound = fn
}

// OnClaim makes fn run at the start of every Claim, before the claim is decided: what happens in it
// happens while the claim is on its way. nil removes it.
func (f *Couriers) OnClaim(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onClaim = fn
}

// OnClaimed makes fn run at the end of every Claim, with its courier, task and answer, after the claim
// was decided and before the caller gets the answer: what happens in it happens while the answer is on
// its way back. nil removes it.
func (f *Couriers) OnClaimed(fn func(courierID, taskID string, err error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onClaimed = fn
}

// OnRelease makes fn run at the start of every Release, with its courier and task, before the release
// is decided: what happens in it happens while the release is on its way. nil removes it.
func (f *Couriers) OnRelease(fn func(courierID, taskID string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onRelease = fn
}

// NewCouriers returns an empty courier service on clock now (nil for time.Now).
func NewCouriers(now func() time.Time) *Couriers {
	if now == nil {
		now = time.Now
	}
	return &Couriers{now: now, couriers: map[string]*dispatch.CourierInfo{}, users: map[string]string{}, claims: map[string]string{}, gens: map[string]int64{}, released: map[[2]string]int64{}, refuse: map[string]bool{}, calls: map[string]int{}}
}

var (
	_ dispatch.Couriers       = (*Couriers)(nil)
	_ dispatch.CourierWatcher = (*Couriers)(nil)
)

// Add registers courier c, linked to identity user userID, with a fresh fix at its location when at is
// non-nil.
func (f *Couriers) Add(userID string, c dispatch.CourierInfo, at *geo.LatLng) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if c.Status == "" {
		c.Status = dispatch.CourierAvailable
	}
	if c.Capacity == 0 {
		c.Capacity = 1
	}
	if c.Mode == "" {
		c.Mode = geo.Bicycle
	}
	if at != nil {
		c.Fix = &dispatch.Fix{Location: *at, Time: f.now()}
	}
	f.couriers[c.ID] = &c
	f.users[userID] = c.ID
	f.publish(&c)
}

// SetStatus changes a courier's status.
func (f *Couriers) SetStatus(id string, s dispatch.CourierStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.couriers[id].Status = s
	f.publish(f.couriers[id])
}

// SetCapacity changes a courier's capacity.
func (f *Couriers) SetCapacity(id string, capacity int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.couriers[id].Capacity = capacity
	f.publish(f.couriers[id])
}

// Move gives a courier a fresh fix at p.
func (f *Couriers) Move(id string, p geo.LatLng) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.couriers[id].Fix = &dispatch.Fix{Location: p, Time: f.now()}
	f.publish(f.couriers[id])
}

// SetDown makes every call fail with Unavailable (the courier service is unreachable).
func (f *Couriers) SetDown(down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down = down
}

// RefuseClaims makes claims on courier id fail with FailedPrecondition.
func (f *Couriers) RefuseClaims(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse[id] = true
}

// LateClaims makes every Claim time out (DeadlineExceeded) without landing while on is set: the call
// stays on its way until LandLate lands it, as a claim whose transaction commits after its caller gave
// up.
func (f *Couriers) LateClaims(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lateMode = on
}

// LandLate lands the claims that timed out under LateClaims, in the order they were made, and returns
// their errors and whether each was superseded.
func (f *Couriers) LandLate() (superseded []bool, errs []error) {
	f.mu.Lock()
	late := f.late
	f.late = nil
	f.mu.Unlock()
	for _, c := range late {
		sup, err := f.claim(c.courierID, c.taskID, c.generation)
		superseded, errs = append(superseded, sup), append(errs, err)
	}
	return superseded, errs
}

// Claims returns the courier holding each claimed task.
func (f *Couriers) Claims() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]string, len(f.claims))
	for k, v := range f.claims {
		out[k] = v
	}
	return out
}

// Calls returns how many times method was called.
func (f *Couriers) Calls(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

var errDown = apperr.Errorf(apperr.Unavailable, "courier service unavailable")

func (f *Couriers) enter(method string) error {
	f.calls[method]++
	if f.down {
		return errDown
	}
	return nil
}

func (f *Couriers) snapshot(c *dispatch.CourierInfo) dispatch.CourierInfo {
	out := *c
	out.TaskIDs = nil
	for task, cid := range f.claims {
		if cid == c.ID {
			out.TaskIDs = append(out.TaskIDs, task)
		}
	}
	sort.Strings(out.TaskIDs)
	out.ActiveTasks = len(out.TaskIDs)
	if out.Status == dispatch.CourierAvailable && out.ActiveTasks >= out.Capacity {
		out.Status = dispatch.CourierBusy
	}
	if c.Fix != nil {
		fix := *c.Fix
		out.Fix = &fix
		out.LocationAge = f.now().Sub(fix.Time)
	}
	return out
}

// FindNearby implements dispatch.Couriers.
func (f *Couriers) FindNearby(_ context.Context, q dispatch.NearbyQuery) ([]dispatch.CourierInfo, error) {
	out, err := f.findNearby(q)
	f.mu.Lock()
	done := f.onFound
	f.mu.Unlock()
	if done != nil {
		done(q)
	}
	return out, err
}

func (f *Couriers) findNearby(q dispatch.NearbyQuery) ([]dispatch.CourierInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("FindNearby"); err != nil {
		return nil, err
	}
	var out []dispatch.CourierInfo
	for _, c := range f.couriers {
		s := f.snapshot(c)
		if s.Status != dispatch.CourierAvailable || s.Fix == nil || slices.Contains(q.Exclude, s.ID) {
			continue
		}
		if len(q.Modes) > 0 && !slices.Contains(q.Modes, s.Mode) {
			continue
		}
		if q.MaxAge > 0 && s.LocationAge > q.MaxAge {
			continue
		}
		s.Distance = geo.Distance(q.Center, s.Fix.Location)
		if s.Distance <= q.Radius {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Distance != out[j].Distance {
			return out[i].Distance < out[j].Distance
		}
		return out[i].ID < out[j].ID
	})
	if q.Limit > 0 && len(out) > q.Limit {
		out = out[:q.Limit]
	}
	return out, nil
}

// Status implements dispatch.Couriers.
func (f *Couriers) Status(_ context.Context, id string) (dispatch.CourierInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Status"); err != nil {
		return dispatch.CourierInfo{}, err
	}
	c, ok := f.couriers[id]
	if !ok {
		return dispatch.CourierInfo{}, apperr.Errorf(apperr.NotFound, "courier %s not found", id)
	}
	return f.snapshot(c), nil
}

// CourierOfUser implements dispatch.Couriers.
func (f *Couriers) CourierOfUser(_ context.Context, userID string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("CourierOfUser"); err != nil {
		return "", err
	}
	id, ok := f.users[userID]
	if !ok {
		return "", apperr.Errorf(apperr.NotFound, "user %s has no courier profile", userID)
	}
	return id, nil
}

// UserOfCourier implements dispatch.Couriers.
func (f *Couriers) UserOfCourier(_ context.Context, courierID string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("UserOfCourier"); err != nil {
		return "", err
	}
	for user, id := range f.users {
		if id == courierID {
			return user, nil
		}
	}
	return "", apperr.Errorf(apperr.NotFound, "courier %s not found", courierID)
}

// Claim implements dispatch.Couriers with the courier service's rules: idempotent by task, only while
// available with free capacity.
func (f *Couriers) Claim(_ context.Context, courierID, taskID string, _ time.Time, generation int64) (bool, error) {
	f.mu.Lock()
	hook := f.onClaim
	if f.lateMode {
		f.calls["Claim"]++
		f.late = append(f.late, lateClaim{courierID: courierID, taskID: taskID, generation: generation})
		f.mu.Unlock()
		return false, apperr.Errorf(apperr.Unavailable, "claim of task %s on courier %s: context deadline exceeded", taskID, courierID)
	}
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	superseded, err := f.claim(courierID, taskID, generation)
	f.mu.Lock()
	done := f.onClaimed
	f.mu.Unlock()
	if done != nil {
		done(courierID, taskID, err)
	}
	return superseded, err
}

// claim decides a claim as the courier service does (ClaimCourierRequest.generation included).
func (f *Couriers) claim(courierID, taskID string, generation int64) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Claim"); err != nil {
		return false, err
	}
	c, ok := f.couriers[courierID]
	if !ok {
		return false, apperr.Errorf(apperr.NotFound, "courier %s not found", courierID)
	}
	if generation > 0 && f.released[[2]string{courierID, taskID}] >= generation {
		return true, nil
	}
	if holder, ok := f.claims[taskID]; ok {
		if holder == courierID {
			f.gens[taskID] = max(f.gens[taskID], generation)
			return false, nil
		}
		return false, apperr.Errorf(apperr.FailedPrecondition, "task %s is claimed on courier %s", taskID, holder)
	}
	s := f.snapshot(c)
	if f.refuse[courierID] || c.Status != dispatch.CourierAvailable || s.ActiveTasks >= c.Capacity {
		return false, apperr.Errorf(apperr.FailedPrecondition, "courier %s cannot take task %s", courierID, taskID)
	}
	f.claims[taskID] = courierID
	f.gens[taskID] = generation
	f.publish(c)
	return false, nil
}

// Release implements dispatch.Couriers.
func (f *Couriers) Release(_ context.Context, courierID, taskID string, generation int64) error {
	f.mu.Lock()
	hook := f.onRelease
	f.mu.Unlock()
	if hook != nil {
		hook(courierID, taskID)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.enter("Release"); err != nil {
		return err
	}
	if _, ok := f.couriers[courierID]; !ok {
		return apperr.Errorf(apperr.NotFound, "courier %s not found", courierID)
	}
	if generation > 0 {
		key := [2]string{courierID, taskID}
		f.released[key] = max(f.released[key], generation)
	}
	if f.claims[taskID] == courierID && (generation == 0 || f.gens[taskID] <= generation) {
		delete(f.claims, taskID)
		delete(f.gens, taskID)
		f.publish(f.couriers[courierID])
	}
	return nil
}

// Routes is a route service that answers with a straight line at a fixed speed per mode. It is safe for
// concurrent use.
type Routes struct {
	mu       sync.Mutex
	down     bool
	calls    int
	matrices int
}

var _ dispatch.MatrixRoutes = (*Routes)(nil)

// Speed is the fake's travel speed in m/s, whatever the mode.
const Speed = 5.0

// SetDown makes Matrix fail with Unavailable.
func (r *Routes) SetDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

// Calls returns how many Matrix calls arrived.
func (r *Routes) Calls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// MatricesCalls returns how many Matrices calls arrived.
func (r *Routes) MatricesCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.matrices
}

// Matrices implements dispatch.MatrixRoutes, as Matrix does for each destination.
func (r *Routes) Matrices(_ context.Context, origins, dests []geo.LatLng, _ geo.TransportMode, _ time.Time) ([][]dispatch.Leg, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.matrices++
	if r.down {
		return nil, "", apperr.Errorf(apperr.Unavailable, "route service unavailable")
	}
	out := make([][]dispatch.Leg, len(origins))
	for i, o := range origins {
		out[i] = make([]dispatch.Leg, len(dests))
		for j, dest := range dests {
			d := geo.Distance(o, dest)
			out[i][j] = dispatch.Leg{Distance: d, Duration: time.Duration(d / Speed * float64(time.Second)), Found: true}
		}
	}
	return out, "fake", nil
}

// Matrix implements dispatch.Routes.
func (r *Routes) Matrix(_ context.Context, origins []geo.LatLng, dest geo.LatLng, _ geo.TransportMode, _ time.Time) ([]dispatch.Leg, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.down {
		return nil, "", apperr.Errorf(apperr.Unavailable, "route service unavailable")
	}
	out := make([]dispatch.Leg, len(origins))
	for i, o := range origins {
		d := geo.Distance(o, dest)
		out[i] = dispatch.Leg{Distance: d, Duration: time.Duration(d / Speed * float64(time.Second)), Found: true}
	}
	return out, "fake", nil
}

// Accounts is an in-memory dispatch.Accounts: every user is active with the courier and the customer
// roles (so that any user may take tasks and have them) until a test says otherwise. It is safe for concurrent use.
type Accounts struct {
	mu        sync.Mutex
	states    map[string]auth.SubjectState
	down      bool
	observers map[*func(string, auth.SubjectState)]struct{}
}

var _ dispatch.AccountWatcher = (*Accounts)(nil)

// NewAccounts returns accounts in which every user is active with the courier and the customer roles.
func NewAccounts() *Accounts {
	return &Accounts{states: map[string]auth.SubjectState{}, observers: map[*func(string, auth.SubjectState)]struct{}{}}
}

// Set records user userID's standing and tells the observers (OnUpdate), as the subject cache's Update
// does when identity changes a user.
func (a *Accounts) Set(userID string, st auth.SubjectState) {
	a.mu.Lock()
	a.states[userID] = st
	observers := make([]func(string, auth.SubjectState), 0, len(a.observers))
	for fn := range a.observers {
		observers = append(observers, *fn)
	}
	a.mu.Unlock()
	for _, fn := range observers {
		fn(userID, st)
	}
}

// SetUnheard records user userID's standing without telling the observers: a change the replicas
// missed (their queue full, the subject cache's feed lost, made while none ran).
func (a *Accounts) SetUnheard(userID string, st auth.SubjectState) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.states[userID] = st
}

// OnUpdate implements dispatch.AccountWatcher: fn hears every Set until stop.
func (a *Accounts) OnUpdate(fn func(string, auth.SubjectState)) (stop func()) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.observers[&fn] = struct{}{}
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		delete(a.observers, &fn)
	}
}

// SetDown makes State fail with Unavailable (the identity store cannot be read).
func (a *Accounts) SetDown(down bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.down = down
}

// State implements dispatch.Accounts.
func (a *Accounts) State(_ context.Context, userID string) (auth.SubjectState, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.down {
		return auth.SubjectState{}, apperr.Errorf(apperr.Unavailable, "cannot check the account; try again")
	}
	if st, ok := a.states[userID]; ok {
		return st, nil
	}
	return auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier, auth.RoleCustomer}}, nil
}
