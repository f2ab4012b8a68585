package dispatchtest

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/blob"
	"lastmile/internal/dispatch/jobargs"
	"lastmile/internal/dispatch/postgres"
	"lastmile/internal/dispatch/sqlite"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/geo"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/eventlog"
	"lastmile/internal/platform/eventlog/sqllog"
	"lastmile/internal/platform/jobs"
)

// Clock is a settable clock, safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// EnvEngine names the environment variable that moves every System without an explicit database to
// PostgreSQL ("postgres"; LASTMILE_TEST_POSTGRES_DSN must be set): `make test-postgres` runs the dispatch
// service's tests a second time that way.
const EnvEngine = "LASTMILE_DISPATCH_TEST_ENGINE"

// Config configures a System.
type Config struct {
	// Options of the service; Now is replaced by the system's clock.
	Options dispatch.Options
	// DB is the database to use (already migrated or not); nil for a fresh SQLite file. Reusing one
	// database across Systems is how tests restart the service on the same data.
	DB *sql.DB
	// NoJobs leaves River's workers stopped: jobs are enqueued but not worked.
	NoJobs bool
	// NoRun leaves the service's Run stopped (no work loop, no hub).
	NoRun bool
	// Pool runs the system on PostgreSQL (the dispatch schema of the pool's database) instead of SQLite.
	// Systems sharing a pool are replicas of one deployment.
	Pool *pgxpool.Pool
	// Clock is the clock to use; nil for a new one at the current time.
	Clock *Clock
	// Couriers is the courier service to use; nil for a new one. Sharing one across Systems is how tests
	// restart dispatch against the same courier service.
	Couriers *Couriers
	// Accounts are the users' standing; nil for new ones, in which every user is active (NewAccounts).
	Accounts *Accounts
	// Metrics receives the service's measurements; nil for none.
	Metrics dispatch.Metrics
	// NoWatch hides the courier service's stream of courier states from the service (its couriers are
	// not a dispatch.CourierWatcher): no courier event wakes a waiting task on this system.
	NoWatch bool
}

// unwatched is a courier service without its stream of courier states.
type unwatched struct{ dispatch.Couriers }

// System is a dispatch service on a real SQLite store, its event feed and River jobs, with fake courier
// and route services, running until the test ends.
type System struct {
	Service *dispatch.Service
	Store   *sqlstore.Store
	DB      *sql.DB
	// Pool is the PostgreSQL pool when the system runs on PostgreSQL, nil on SQLite.
	Pool   *pgxpool.Pool
	Events *eventlog.Log
	// Jobs is the River client of the system's jobs (workers stopped with Config.NoJobs).
	Jobs     *jobs.Client
	Couriers *Couriers
	Accounts *Accounts
	Routes   *Routes
	Clock    *Clock
}

// Start starts a System.
func Start(t testing.TB, cfg Config) *System {
	t.Helper()
	// A database of the system's own is a copy of one migrated template; one a test passes in (a
	// restart, a replica) is migrated here, as a starting process does.
	migrated := false
	if cfg.Pool == nil && cfg.DB == nil && os.Getenv(EnvEngine) == "postgres" {
		cfg.Pool, migrated = databasetest.MigratedPostgres(t, postgres.Schema, "dispatch", postgres.Migrate), true
	}
	// A hang guard for the migrations: under -race on a loaded machine (load 22) SQLite's took more than
	// the 30 s this was (TestWatchTask: "migrate jobs: error applying version 007 [UP]: context deadline
	// exceeded").
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var (
		store   *sqlstore.Store
		dialect = database.SQLite
		wake    func(context.Context, eventlog.Backoff, func())
	)
	if cfg.Pool != nil {
		if !migrated {
			if err := postgres.Migrate(ctx, cfg.Pool); err != nil {
				t.Fatalf("dispatchtest: migrate: %v", err)
			}
		}
		store, dialect, wake = postgres.New(cfg.Pool), database.Postgres, sqllog.Listener(cfg.Pool)
		t.Cleanup(func() { _ = store.Close() })
	} else {
		db := cfg.DB
		if db == nil {
			db = databasetest.MigratedSQLite(t, "dispatch", sqlite.Migrate)
		} else if err := sqlite.Migrate(ctx, db); err != nil {
			t.Fatalf("dispatchtest: migrate: %v", err)
		}
		store = sqlite.New(db)
	}
	db := store.DB()
	clock := cfg.Clock
	if clock == nil {
		clock = NewClock(time.Now().UTC().Truncate(time.Second))
	}
	sys := &System{DB: db, Pool: cfg.Pool, Clock: clock, Couriers: cfg.Couriers, Routes: &Routes{}}
	if sys.Couriers == nil {
		sys.Couriers = NewCouriers(clock.Now)
	}
	sys.Accounts = cfg.Accounts
	if sys.Accounts == nil {
		sys.Accounts = NewAccounts()
	}
	sys.Store = store
	feed, err := eventlog.New(sqllog.NewSource(db, dialect), eventlog.Options{Poll: 20 * time.Millisecond, Wake: wake})
	if err != nil {
		t.Fatalf("dispatchtest: event log: %v", err)
	}
	sys.Events = feed
	store.SetNudge(feed.Nudge)
	opts := cfg.Options
	opts.Now = clock.Now
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
		if os.Getenv("LASTMILE_TEST_LOG") != "" {
			opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
		}
	}
	var svc *dispatch.Service
	// No jitter: the retries of failed jobs come after exactly jobargs.RetryDelay(n, 0).
	policy := jobargs.RetryPolicy{Rand: func() float64 { return 0 }}
	workers := jobargs.Workers(func(ctx context.Context, j dispatch.Job) error { return svc.RunJob(ctx, j) }, policy, opts.Logger)
	jopts := jobs.Options{FetchPollInterval: 20 * time.Millisecond, StopTimeout: 5 * time.Second, RetryPolicy: policy}
	if cfg.Pool != nil {
		jopts.Listener, jopts.Schema = cfg.Pool, postgres.Schema
	}
	if !cfg.NoJobs {
		jopts.Workers = workers
	}
	client, err := jobs.New(db, dialect, jopts)
	if err != nil {
		t.Fatalf("dispatchtest: jobs: %v", err)
	}
	store.SetJobs(sqlstore.RiverJobs(client))
	sys.Jobs = client
	blobs, err := blob.NewFiles(filepath.Join(t.TempDir(), blob.DefaultDir))
	if err != nil {
		t.Fatalf("dispatchtest: proof files: %v", err)
	}
	var couriers dispatch.Couriers = sys.Couriers
	if cfg.NoWatch {
		couriers = unwatched{sys.Couriers}
	}
	svc = dispatch.NewService(dispatch.Deps{Store: store, Uploads: store.Uploads(), ShareKeys: store.ShareKeys(), Blobs: blobs, Couriers: couriers, Accounts: sys.Accounts, Routes: sys.Routes, Events: feed, Metrics: cfg.Metrics}, opts)
	sys.Service = svc

	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(runCtx); err != nil && runCtx.Err() == nil {
				t.Errorf("dispatchtest: %s: %v", name, err)
			}
		}()
	}
	run("event log", feed.Run)
	if !cfg.NoJobs {
		run("jobs", client.Run)
	}
	if !cfg.NoRun {
		run("service", svc.Run)
	}
	t.Cleanup(func() { stop(); wg.Wait() })
	return sys
}

// Customer returns a context calling as customer userID.
func Customer(userID string) context.Context {
	return auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.User, Subject: userID, Roles: []string{auth.RoleCustomer}})
}

// Dispatcher returns a context calling as a dispatcher.
func Dispatcher() context.Context {
	return auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.User, Subject: "00000000-0000-4000-8000-00000000d15c", Roles: []string{auth.RoleDispatcher}})
}

// CourierUser returns a context calling as courier user userID.
func CourierUser(userID string) context.Context {
	return auth.WithPrincipal(context.Background(), auth.Principal{Kind: auth.User, Subject: userID, Roles: []string{auth.RoleCourier}})
}

// Courier is a courier of the fake courier service.
type Courier struct {
	ID, UserID string
	// Ctx calls as the courier's user.
	Ctx context.Context
}

// AddCourier adds an available courier with a fresh fix at at, travelling by mode, capacity 1, and marks
// it connected (an open session with a fresh heartbeat) unless offline is set.
func (s *System) AddCourier(t testing.TB, at geo.LatLng, mode geo.TransportMode, connected bool) Courier {
	t.Helper()
	c := Courier{ID: uuid.NewString(), UserID: uuid.NewString()}
	c.Ctx = CourierUser(c.UserID)
	s.Couriers.Add(c.UserID, dispatch.CourierInfo{ID: c.ID, DisplayName: "courier " + c.ID[:8], Mode: mode, Capacity: 1}, &at)
	if connected {
		s.Connect(t, c.ID)
	}
	return c
}

// Connect marks courierID as holding an open session with a heartbeat now.
func (s *System) Connect(t testing.TB, courierID string) {
	t.Helper()
	_, err := s.Store.UpdateSession(context.Background(), courierID, func(ss dispatch.Session) (dispatch.Session, error) {
		if ss.SessionID == "" {
			ss.SessionID = uuid.NewString()
		}
		ss.Open, ss.Heartbeat, ss.Replica = true, s.Clock.Now(), "test"
		return ss, nil
	})
	if err != nil {
		t.Fatalf("dispatchtest: connect %s: %v", courierID, err)
	}
}

// Disconnect marks courierID's session closed, as when the app went away (no session on any replica).
func (s *System) Disconnect(t testing.TB, courierID string) {
	t.Helper()
	_, err := s.Store.UpdateSession(context.Background(), courierID, func(ss dispatch.Session) (dispatch.Session, error) {
		ss.Open = false
		return ss, nil
	})
	if err != nil {
		t.Fatalf("dispatchtest: disconnect %s: %v", courierID, err)
	}
}

// WaitTask reads task id (as a dispatcher) until cond holds, failing the test after a generous minute
// (a hang guard, not a timing assertion: under -race on a loaded machine a lease, a decision and its
// write may take seconds).
func (s *System) WaitTask(t testing.TB, id string, what string, cond func(dispatch.Task) bool) dispatch.Task {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		task, err := s.Service.GetTask(Dispatcher(), id, dispatch.ViewFull)
		if err != nil {
			t.Fatalf("dispatchtest: get task %s: %v", id, err)
		}
		if cond(task) {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("dispatchtest: task %s never became %s; it is %s: %+v", id, what, task.State, task)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// InState returns a WaitTask condition: the task is in state st.
func InState(st dispatch.State) func(dispatch.Task) bool {
	return func(t dispatch.Task) bool { return t.State == st }
}

// Berlin is a point in central Berlin; tests place stops and couriers around it.
var Berlin = geo.LatLng{Lat: 52.52, Lng: 13.405}

// Near returns a point about meters north of p.
func Near(p geo.LatLng, meters float64) geo.LatLng {
	return geo.LatLng{Lat: p.Lat + meters/111_195, Lng: p.Lng}
}

// Request returns a valid create request for customer (set for staff callers) with a pickup at p and
// request id rid.
func Request(rid string, p geo.LatLng, customer string) dispatch.CreateRequest {
	return dispatch.CreateRequest{
		RequestID:  rid,
		CustomerID: customer,
		Pickup:     dispatch.Stop{Location: p, Address: fmt.Sprintf("Pickup %s", rid)},
		Dropoff:    dispatch.Stop{Location: Near(p, 2000), Address: "Dropoff street 1", Contact: dispatch.Contact{Name: "Ada", Phone: "+4915112345678"}, Instructions: "ring twice"},
	}
}
