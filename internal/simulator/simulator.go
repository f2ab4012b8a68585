// Package simulator is lastmile's courier and customer simulator: bots that use the public gRPC API with
// real accounts and tokens, as any outside client does. Courier bots log in, go AVAILABLE, hold a
// StreamAssignments session, report their position while they ride, answer offers (accepting most),
// pick up, upload a photo and deliver; customer bots create tasks at a set rate inside a city area. It is
// what `lastmile simulate` runs against any deployment, what `lastmile demo` runs beside its own
// services, and the load generator of the benchmarks.
package simulator

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/platform/grpcclient"
)

// Berlin is the default city: the centre of Berlin (Alexanderplatz) and an 8 km radius.
var Berlin = Area{Center: Point{Lat: 52.5200, Lng: 13.4050}, RadiusMeters: 8000}

// couriersPerConn is how many courier bots share one connection: each holds two streams (its session and
// its location reports) and the server accepts a thousand concurrent streams per connection.
const couriersPerConn = 100

// Limits of a Config.
const (
	MaxCouriers  = 20_000
	MaxCustomers = 1_000
	MaxRate      = 1_000.0
	MaxSpeedup   = 100.0
)

// Config is what a simulation does.
type Config struct {
	// Target is the deployment's gRPC address: host:port, dns:///name:port (every address of the name, in
	// turn) or a list h1:p1,h2:p2, as serve's peer flags take. Every service is called there, except those
	// Addrs places elsewhere.
	Target string
	// Addrs are the addresses of the services not at Target: in a split deployment each process serves
	// only its own services, so identity, courier, route and dispatch may each have an address of their own.
	Addrs Addrs
	// TLS is the client TLS configuration (it trusts the deployment's CA); nil connects in plaintext, for a
	// deployment run with --insecure.
	TLS *tls.Config
	// AdminEmail and AdminPassword are an admin's credentials: the admin creates the bots' accounts and
	// registers the couriers.
	AdminEmail, AdminPassword string
	// Couriers and Customers are the numbers of bots (Customers 0: one per ten couriers, 1 to 20).
	Couriers, Customers int
	// Rate is how many tasks the customers create per second, in all (open loop).
	Rate float64
	// Duration is how long customers start creating tasks (0: until ctx ends); then the creations in flight
	// finish (and are counted), and for up to Drain couriers finish the open tasks.
	Duration, Drain time.Duration
	// Area is where customers order and couriers start (default Berlin).
	Area Area
	// WaitForCouriers holds the customers back until every courier is ready, so that a measurement starts
	// with the whole fleet (setting up a courier costs two password hashes on the server).
	WaitForCouriers bool
	// SessionDrop, when set, makes every courier end its assignment session after a random time around
	// it (half to one and a half times) and reconnect with its cursor, as apps on a flaky network do.
	SessionDrop time.Duration
	// Modes are the couriers' transport modes, taken in turn (default: mostly bicycles, some scooters, a
	// car, a van and a walker in every nine).
	Modes []geov1.TransportMode
	// DeclineRatio is the share of offers couriers decline, 0 to 1.
	DeclineRatio float64
	// Speedup makes couriers ride faster than route's estimate (1: real time), within what each transport
	// mode can plausibly do (the courier service refuses teleporting positions).
	Speedup float64
	// FixInterval is how often a moving courier reports its position (default 1s).
	FixInterval time.Duration
	// MaxOpen bounds the tasks created and not yet ended (default 20 per courier); creations beyond it are
	// skipped and counted.
	MaxOpen int
	// SetupConcurrency bounds the accounts created at once (default 4: each costs a password hash).
	SetupConcurrency int
	// Progress receives a progress line every ProgressInterval (default 5s) and nothing else; nil for none.
	// With ProgressTTY the line is rewritten in place, else one line is written per interval.
	Progress         io.Writer
	ProgressInterval time.Duration
	ProgressTTY      bool
	// Logger receives the bots' failures at debug level and the run's milestones at info level.
	Logger *slog.Logger
}

// Addrs are the gRPC addresses of the services the bots call, each in a form Config.Target accepts; ""
// is Config.Target.
type Addrs struct {
	Identity, Courier, Route, Dispatch string
}

func (c *Config) defaults() error {
	for _, s := range []struct{ name, addr string }{
		{"identity", c.Addrs.Identity}, {"courier", c.Addrs.Courier}, {"route", c.Addrs.Route}, {"dispatch", c.Addrs.Dispatch},
	} {
		addr := cmp.Or(s.addr, c.Target)
		if addr == "" {
			return fmt.Errorf("simulator: no target: no address for %s", s.name)
		}
		if _, _, err := grpcclient.Target(addr); err != nil {
			return fmt.Errorf("simulator: address of %s: %w", s.name, err)
		}
	}
	if c.AdminEmail == "" || c.AdminPassword == "" {
		return errors.New("simulator: admin credentials are required (they create the bots' accounts)")
	}
	if c.Couriers < 1 || c.Couriers > MaxCouriers {
		return fmt.Errorf("simulator: couriers must be 1..%d, got %d", MaxCouriers, c.Couriers)
	}
	if c.Customers == 0 {
		c.Customers = min(20, max(1, c.Couriers/10))
	}
	if c.Customers < 1 || c.Customers > MaxCustomers {
		return fmt.Errorf("simulator: customers must be 1..%d, got %d", MaxCustomers, c.Customers)
	}
	if !(c.Rate > 0 && c.Rate <= MaxRate) {
		return fmt.Errorf("simulator: rate must be above 0 and at most %g tasks/s, got %g", MaxRate, c.Rate)
	}
	if c.Duration < 0 || c.Drain < 0 {
		return errors.New("simulator: duration and drain must not be negative")
	}
	if c.Area == (Area{}) {
		c.Area = Berlin
	}
	if a := c.Area; a.Center.Lat < -85 || a.Center.Lat > 85 || a.Center.Lng < -180 || a.Center.Lng > 180 || !(a.RadiusMeters >= 100 && a.RadiusMeters <= 100_000) {
		return fmt.Errorf("simulator: area centre must be a latitude within ±85 and a longitude within ±180, radius 100 m to 100 km; got %+v", a)
	}
	if len(c.Modes) == 0 {
		c.Modes = defaultModes
	}
	for _, m := range c.Modes {
		if _, ok := geov1.TransportMode_name[int32(m)]; !ok || m == geov1.TransportMode_TRANSPORT_MODE_UNSPECIFIED {
			return fmt.Errorf("simulator: transport mode %v is not one of bicycle, scooter, car, van, walking", m)
		}
	}
	if !(c.DeclineRatio >= 0 && c.DeclineRatio <= 1) {
		return fmt.Errorf("simulator: decline ratio must be 0..1, got %g", c.DeclineRatio)
	}
	if c.Speedup == 0 {
		c.Speedup = 1
	}
	if !(c.Speedup >= 0.1 && c.Speedup <= MaxSpeedup) {
		return fmt.Errorf("simulator: speed-up must be 0.1..%g, got %g", MaxSpeedup, c.Speedup)
	}
	if c.FixInterval == 0 {
		c.FixInterval = time.Second
	}
	if c.FixInterval < 100*time.Millisecond || c.FixInterval > time.Minute {
		return fmt.Errorf("simulator: fix interval must be 100ms..1m, got %s", c.FixInterval)
	}
	if c.SessionDrop < 0 || (c.SessionDrop > 0 && c.SessionDrop < time.Second) {
		return fmt.Errorf("simulator: session drop interval must be 0 (never) or at least 1s, got %s", c.SessionDrop)
	}
	if c.MaxOpen == 0 {
		c.MaxOpen = 20 * c.Couriers
	}
	if c.SetupConcurrency <= 0 {
		c.SetupConcurrency = 4
	}
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// run is one simulation in progress.
type run struct {
	cfg   Config
	c     *clients
	conns []*clients
	stats *Stats
	id    string // names the run's accounts and request ids
	// hours is how many hour slots, from the current one, couriers mark available.
	hours int

	rngMu sync.Mutex
	rng   *mrand.Rand

	// offered holds the run's tasks that have had an offer (to measure the first only); tasks holds what
	// the watch saw of each, until it ends.
	offered sync.Map
	// allReady is closed once every courier is ready.
	allReady     chan struct{}
	allReadyOnce sync.Once
	tasksMu      sync.Mutex
	tasks        map[string]taskSeen
	ended        map[string]bool
}

// taskSeen is the last state the watch saw of a task.
type taskSeen struct {
	state   dispatchv1.TaskState
	courier string
}

// Run runs a simulation until cfg.Duration (plus the drain) has passed or ctx ends, and returns what it
// counted. It fails only when it cannot start: a bad config, an unreachable target, wrong admin
// credentials. The bots' own failures are counted (Stats.Errors) and retried with a back-off.
func Run(ctx context.Context, cfg Config) (*Stats, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	// Couriers share connections, couriersPerConn each, as the server bounds the streams of one
	// connection (each courier holds two); the admin and the customers use the first.
	conns := make([]*clients, 1+(cfg.Couriers-1)/couriersPerConn)
	for i := range conns {
		c, err := dial(cfg)
		if err != nil {
			return nil, err
		}
		defer c.close()
		conns[i] = c
	}
	seed := mrand.Uint64()
	r := &run{
		cfg: cfg, c: conns[0], conns: conns, stats: &Stats{}, id: strings.ToLower(rand.Text()[:8]),
		rng:   mrand.New(mrand.NewPCG(seed, seed>>1)),
		tasks: map[string]taskSeen{}, ended: map[string]bool{}, allReady: make(chan struct{}),
	}
	total := cfg.Duration + cfg.Drain
	if cfg.Duration == 0 {
		total = 24 * time.Hour
	}
	r.hours = min(744, int(math.Ceil(total.Hours()))+2)
	admin := &account{auth: r.c.auth, email: cfg.AdminEmail, password: cfg.AdminPassword}
	if err := admin.login(ctx); err != nil {
		return nil, fmt.Errorf("simulator: admin: %w", err)
	}
	cfg.Logger.Info("simulation starting", "run", r.id, "identity", cmp.Or(cfg.Addrs.Identity, cfg.Target), "courier", cmp.Or(cfg.Addrs.Courier, cfg.Target),
		"route", cmp.Or(cfg.Addrs.Route, cfg.Target), "dispatch", cmp.Or(cfg.Addrs.Dispatch, cfg.Target), "couriers", cfg.Couriers, "customers", cfg.Customers, "rate", cfg.Rate)
	start := time.Now()

	botCtx, stopBots := context.WithCancel(ctx)
	defer stopBots()
	var wg sync.WaitGroup
	wg.Go(func() { r.watch(botCtx, admin) })
	if cfg.Progress != nil {
		wg.Go(func() { r.progress(botCtx, start) })
	}
	password := rand.Text() // every bot's: the bots are the run's own
	// The few customers first, then the couriers while customers order: Duration counts from the first
	// order.
	customers := r.createCustomers(ctx, admin, password)
	wg.Go(func() { r.startCouriers(botCtx, &wg, admin, password) })
	if cfg.WaitForCouriers {
		select {
		case <-r.allReady:
			cfg.Logger.Info("simulation: every courier is ready", "couriers", cfg.Couriers, "after", time.Since(start).Round(time.Millisecond))
		case <-ctx.Done():
		}
	}
	createCtx := ctx
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		createCtx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	ordering := time.Now()
	if len(customers) > 0 {
		created := r.order(ctx, createCtx.Done(), customers)
		r.stats.Ordering.Store(int64(time.Since(ordering)))
		created()
	} else {
		if ctx.Err() == nil {
			cfg.Logger.Warn("simulator: no customer could be created: no tasks are ordered")
		}
		<-createCtx.Done()
		r.stats.Ordering.Store(int64(time.Since(ordering)))
	}
	r.drain(ctx)
	stopBots()
	wg.Wait()
	if cfg.Progress != nil && cfg.ProgressTTY {
		fmt.Fprintln(cfg.Progress)
	}
	cfg.Logger.Info("simulation finished", "run", r.id, "elapsed", time.Since(start).Round(time.Millisecond))
	return r.stats, nil
}

// courierReady counts a courier that went AVAILABLE.
func (r *run) courierReady() {
	if r.stats.CouriersReady.Add(1) == int64(r.cfg.Couriers) {
		r.allReadyOnce.Do(func() { close(r.allReady) })
	}
}

// jitter returns a random number in [0, 1) for back-offs.
func (r *run) jitter() float64 {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.Float64()
}

func (r *run) seed() uint64 {
	r.rngMu.Lock()
	defer r.rngMu.Unlock()
	return r.rng.Uint64()
}

// failed counts a failed call and logs it at debug level (bots retry; a summary counts them).
func (r *run) failed(what string, err error) {
	r.stats.Errors.Add(1)
	r.cfg.Logger.Debug("simulator: "+what+" failed", "error", err)
}

// createAccount creates a user with role as the admin and returns its account (not yet logged in).
// Attempt n > 0 uses another email: the call of an earlier attempt that timed out may have created its user.
func (r *run) createAccount(ctx context.Context, admin *account, role identityv1.Role, kind string, i, attempt int, password string) (*account, string, error) {
	email := fmt.Sprintf("%s-%d.%s@sim.lastmile.example.com", kind, i, r.id)
	if attempt > 0 {
		email = fmt.Sprintf("%s-%d-%d.%s@sim.lastmile.example.com", kind, i, attempt, r.id)
	}
	u, err := call(ctx, admin, func(c context.Context) (*identityv1.User, error) {
		return r.c.users.CreateUser(c, &identityv1.CreateUserRequest{Email: email, Password: password, DisplayName: fmt.Sprintf("Sim %s %d", kind, i), Role: role})
	})
	if err != nil {
		return nil, "", fmt.Errorf("create %s %d: %w", kind, i, err)
	}
	return &account{auth: r.conns[i/couriersPerConn%len(r.conns)].auth, email: email, password: password}, u.GetId(), nil
}

// defaultModes is the couriers' default mix of transport modes.
var defaultModes = []geov1.TransportMode{
	geov1.TransportMode_TRANSPORT_MODE_BICYCLE, geov1.TransportMode_TRANSPORT_MODE_BICYCLE, geov1.TransportMode_TRANSPORT_MODE_BICYCLE,
	geov1.TransportMode_TRANSPORT_MODE_BICYCLE, geov1.TransportMode_TRANSPORT_MODE_SCOOTER, geov1.TransportMode_TRANSPORT_MODE_SCOOTER,
	geov1.TransportMode_TRANSPORT_MODE_CAR, geov1.TransportMode_TRANSPORT_MODE_VAN, geov1.TransportMode_TRANSPORT_MODE_WALKING,
}

// startCouriers creates the courier accounts and profiles, SetupConcurrency at a time, and starts each
// courier's bot as soon as it exists, on wg.
func (r *run) startCouriers(ctx context.Context, wg *sync.WaitGroup, admin *account, password string) {
	sem := make(chan struct{}, r.cfg.SetupConcurrency)
	var setup sync.WaitGroup
	for i := range r.cfg.Couriers {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			setup.Wait()
			return
		}
		setup.Go(func() {
			defer func() { <-sem }()
			for n := 0; ; n++ {
				bot, err := r.newCourier(ctx, admin, i, n, password)
				if err == nil {
					wg.Go(func() { bot.run(ctx) })
					return
				}
				if ctx.Err() != nil {
					return
				}
				r.failed("create courier", err)
				if !sleep(ctx, backoff(n, r.jitter())) {
					return
				}
			}
		})
	}
	setup.Wait()
}

// newCourier creates courier i: its user, its courier profile, and its bot at a random place in the area.
func (r *run) newCourier(ctx context.Context, admin *account, i, attempt int, password string) (*courierBot, error) {
	acct, userID, err := r.createAccount(ctx, admin, identityv1.Role_ROLE_COURIER, "courier", i, attempt, password)
	if err != nil {
		return nil, err
	}
	mode := r.cfg.Modes[i%len(r.cfg.Modes)]
	cr, err := call(ctx, admin, func(c context.Context) (*courierv1.Courier, error) {
		return r.c.couriers.RegisterCourier(c, &courierv1.RegisterCourierRequest{UserId: userID, TransportMode: mode, Capacity: 1})
	})
	if err != nil {
		return nil, fmt.Errorf("register courier %d: %w", i, err)
	}
	r.rngMu.Lock()
	startAt := r.cfg.Area.random(r.rng)
	r.rngMu.Unlock()
	return newCourierBot(r, r.conns[i/couriersPerConn], acct, cr.GetId(), mode, startAt, r.seed()), nil
}

// createCustomers creates and logs in the customer accounts; it returns those that could be created
// before ctx ended.
func (r *run) createCustomers(ctx context.Context, admin *account, password string) []*account {
	var out []*account
	for i := range r.cfg.Customers {
		for n := 0; ctx.Err() == nil; n++ {
			acct, _, err := r.createAccount(ctx, admin, identityv1.Role_ROLE_CUSTOMER, "customer", i, n, password)
			if err == nil {
				err = acct.login(ctx)
			}
			if err == nil {
				out = append(out, acct)
				break
			}
			if ctx.Err() != nil {
				break
			}
			r.failed("create customer", err)
			if n >= 5 || !sleep(ctx, backoff(n, r.jitter())) {
				break
			}
		}
	}
	return out
}

// maxCreatesInFlight bounds the CreateTask calls in flight; a tick that finds them all busy is skipped.
const maxCreatesInFlight = 64

// order creates tasks at the configured rate until stop is closed or ctx ends (an open loop: a slow server
// does not slow the rate down; creations that cannot start are counted as skipped), and returns a function
// that waits for the creations still in flight. Those run under ctx, not until stop: a call cut off when
// the ordering period ends may still create its task, which TasksCreated would then miss (the demo test
// found one more task than the customers had created, under load).
func (r *run) order(ctx context.Context, stop <-chan struct{}, customers []*account) (wait func()) {
	interval := time.Duration(float64(time.Second) / r.cfg.Rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	sem := make(chan struct{}, maxCreatesInFlight)
	var wg sync.WaitGroup
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return wg.Wait
		case <-stop:
			return wg.Wait
		case <-tick.C:
		}
		if r.stats.open() >= int64(r.cfg.MaxOpen) {
			r.stats.CreateSkipped.Add(1)
			continue
		}
		select {
		case sem <- struct{}{}:
		default:
			r.stats.CreateSkipped.Add(1)
			continue
		}
		cust := customers[n%len(customers)]
		req := r.taskRequest(n)
		wg.Go(func() {
			defer func() { <-sem }()
			// The request id makes the retry safe: a task created by a call that timed out is returned, not
			// created twice.
			for attempt := 0; attempt < 3; attempt++ {
				_, err := call(ctx, cust, func(c context.Context) (*dispatchv1.Task, error) { return r.c.dispatch.CreateTask(c, req) })
				if err == nil {
					r.stats.TasksCreated.Add(1)
					return
				}
				if ctx.Err() != nil {
					return
				}
				r.failed("create task", err)
				if !sleep(ctx, backoff(attempt, r.jitter())) {
					return
				}
			}
		})
	}
}

// taskRequest returns the n-th task of the run: a pickup anywhere in the area, a dropoff 400 m to 2.5 km
// away but within half the area's radius (towards the centre when it would leave the area), half of them
// asking for a photo at the door.
func (r *run) taskRequest(n int) *dispatchv1.CreateTaskRequest {
	hi := min(2500, r.cfg.Area.RadiusMeters/2)
	lo := min(400, hi/2)
	r.rngMu.Lock()
	pickup := r.cfg.Area.random(r.rng)
	d, θ := lo+r.rng.Float64()*(hi-lo), r.rng.Float64()*360
	photo := r.rng.IntN(2) == 0
	r.rngMu.Unlock()
	dropoff := offset(pickup, d, θ)
	if !r.cfg.Area.contains(dropoff) {
		dropoff = offset(pickup, min(d, distance(pickup, r.cfg.Area.Center)), bearing(pickup, r.cfg.Area.Center))
	}
	req := &dispatchv1.CreateTaskRequest{
		RequestId: fmt.Sprintf("sim-%s-%d", r.id, n),
		Pickup:    &dispatchv1.Stop{Location: &geov1.LatLng{Latitude: pickup.Lat, Longitude: pickup.Lng}, Address: fmt.Sprintf("Simulated shop %d", n)},
		Dropoff: &dispatchv1.Stop{Location: &geov1.LatLng{Latitude: dropoff.Lat, Longitude: dropoff.Lng}, Address: fmt.Sprintf("Simulated home %d", n),
			Contact: &dispatchv1.Contact{Name: fmt.Sprintf("Customer %d", n)}},
		Priority: dispatchv1.TaskPriority_TASK_PRIORITY_NORMAL,
		Size:     dispatchv1.ParcelSize_PARCEL_SIZE_SMALL,
		Notes:    "simulated order",
	}
	if photo {
		req.ProofRequirements = []*dispatchv1.ProofRequirement{{Kind: dispatchv1.ProofKind_PROOF_KIND_PHOTO,
			Stage: dispatchv1.TaskStage_TASK_STAGE_DROPOFF, Policy: dispatchv1.ProofPolicy_PROOF_POLICY_REQUIRED}}
	}
	return req
}

// isRunTask reports whether t was created by this run.
func (r *run) isRunTask(t *dispatchv1.Task) bool {
	return strings.HasPrefix(t.GetRequestId(), "sim-"+r.id+"-")
}

// accepted counts an offer a courier accepted, and for the run's own tasks the time from creation to
// acceptance. A deployment may hold tasks the run did not create (an earlier run's, still waiting), which
// the couriers take like any other: they are counted apart (OtherTasks), so that they neither skew the
// run's times nor make its own tasks look finished.
func (r *run) accepted(t *dispatchv1.Task) {
	r.stats.Accepted.Add(1)
	if !r.isRunTask(t) {
		r.stats.OtherTasks.Add(1)
		return
	}
	if t.GetAssignTime() != nil && t.GetCreateTime() != nil {
		r.stats.TimeToAssign.add(t.GetAssignTime().AsTime().Sub(t.GetCreateTime().AsTime()))
	}
}

// count adds one to the run's counter c of a courier's step on task t (picked up, proof uploaded,
// delivered) when t is the run's own: these counters say how the run's tasks ended, and open() (which
// bounds the customers and ends the drain) subtracts them from the tasks created.
func (r *run) count(t *dispatchv1.Task, c *atomic.Int64) {
	if r.isRunTask(t) {
		c.Add(1)
	}
}

// firstOffer records the time to the first offer of a run's task, from its creation to the server time of
// the delivery that carried the offer.
func (r *run) firstOffer(t *dispatchv1.Task, at *timestamppb.Timestamp) {
	if !r.isRunTask(t) || at == nil || t.GetCreateTime() == nil {
		return
	}
	if _, loaded := r.offered.LoadOrStore(t.GetId(), true); loaded {
		return
	}
	r.stats.TimeToOffer.add(at.AsTime().Sub(t.GetCreateTime().AsTime()))
}

// watch follows the run's tasks over WatchTasks as the admin, to count how they end and to check that no
// task is ever held by two couriers at once. It reconnects after a back-off when the stream drops.
func (r *run) watch(ctx context.Context, admin *account) {
	for n := 0; ctx.Err() == nil; n++ {
		err := r.watchOnce(ctx, admin)
		if ctx.Err() != nil {
			return
		}
		r.failed("watch tasks", err)
		r.stats.Reconnects.Add(1)
		if !sleep(ctx, backoff(n, r.jitter())) {
			return
		}
	}
}

func (r *run) watchOnce(ctx context.Context, admin *account) error {
	actx, err := admin.authed(ctx)
	if err != nil {
		return err
	}
	stream, err := r.c.dispatch.WatchTasks(actx, &dispatchv1.WatchTasksRequest{View: dispatchv1.TaskView_TASK_VIEW_BASIC})
	if err != nil {
		return fmt.Errorf("open WatchTasks: %w", err)
	}
	for {
		msg, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("WatchTasks: %w", err)
		}
		if t := msg.GetTask(); t != nil && r.isRunTask(t) {
			r.seen(t)
		}
	}
}

// seen records one state of a run's task.
func (r *run) seen(t *dispatchv1.Task) {
	held := func(s dispatchv1.TaskState) bool {
		return s == dispatchv1.TaskState_TASK_STATE_ASSIGNED || s == dispatchv1.TaskState_TASK_STATE_PICKED_UP
	}
	r.tasksMu.Lock()
	defer r.tasksMu.Unlock()
	if r.ended[t.GetId()] {
		return
	}
	prev, ok := r.tasks[t.GetId()]
	if ok && held(prev.state) && (held(t.GetState()) || t.GetState() == dispatchv1.TaskState_TASK_STATE_DELIVERED) && t.GetCourierId() != prev.courier {
		r.stats.DoubleHolds.Add(1)
		r.cfg.Logger.Error("simulator: a task is held by two couriers", "task", t.GetId(), "first", prev.courier, "second", t.GetCourierId())
	}
	switch t.GetState() {
	case dispatchv1.TaskState_TASK_STATE_DELIVERED, dispatchv1.TaskState_TASK_STATE_CANCELLED, dispatchv1.TaskState_TASK_STATE_UNASSIGNABLE, dispatchv1.TaskState_TASK_STATE_FAILED:
		delete(r.tasks, t.GetId())
		r.offered.Delete(t.GetId())
		r.ended[t.GetId()] = true
		switch t.GetState() {
		case dispatchv1.TaskState_TASK_STATE_CANCELLED:
			r.stats.Cancelled.Add(1)
		case dispatchv1.TaskState_TASK_STATE_UNASSIGNABLE:
			r.stats.Unassignable.Add(1)
		case dispatchv1.TaskState_TASK_STATE_FAILED:
			r.stats.Failed.Add(1)
		}
	default:
		r.tasks[t.GetId()] = taskSeen{state: t.GetState(), courier: t.GetCourierId()}
	}
}

// drain waits, up to cfg.Drain, for the couriers to finish the run's open tasks.
func (r *run) drain(ctx context.Context) {
	if r.cfg.Drain <= 0 || ctx.Err() != nil {
		return
	}
	r.cfg.Logger.Info("simulation draining: customers stopped, couriers finish the open tasks", "open", r.stats.open(), "drain", r.cfg.Drain)
	deadline := time.Now().Add(r.cfg.Drain)
	for r.stats.open() > 0 && time.Now().Before(deadline) {
		if !sleep(ctx, 250*time.Millisecond) {
			return
		}
	}
}

// progress writes the progress line every interval until ctx ends.
func (r *run) progress(ctx context.Context, start time.Time) {
	tick := time.NewTicker(r.cfg.ProgressInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		line := r.stats.Line(time.Since(start))
		if r.cfg.ProgressTTY {
			fmt.Fprintf(r.cfg.Progress, "\r\033[K%s", line)
		} else {
			fmt.Fprintln(r.cfg.Progress, line)
		}
	}
}
