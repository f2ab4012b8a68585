package courier_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"lastmile/internal/courier"
	"lastmile/internal/courier/couriertest"
	"lastmile/internal/courier/sqlite"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every wait of a test: a guard against hangs, generous because the tests run on the
// real SQLite store, whose hundreds of transactions take seconds on a loaded machine.
const testTimeout = 60 * time.Second

// t0 is the fixture clock's start: 09:20 UTC, so the current hour slot is 09:00.
var t0 = time.Date(2031, 3, 14, 9, 20, 0, 0, time.UTC)

// clock is a manual clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newStore returns the real SQLite store on a fresh database in a temporary directory.
func newStore(t testing.TB) courier.Store {
	t.Helper()
	db := databasetest.SQLite(t)
	if err := database.MigrateSQLite(testContext(t), db, sqlite.Migrations()); err != nil {
		t.Fatalf("MigrateSQLite: %v", err)
	}
	return sqlite.New(db)
}

// faultyStore is a Store whose SaveLocations fails while an error is set, as when a disk fills up.
type faultyStore struct {
	courier.Store
	mu  sync.Mutex
	err error
}

// SetErr makes SaveLocations fail with err from now on; nil heals the store.
func (s *faultyStore) SetErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *faultyStore) SaveLocations(ctx context.Context, fixes []courier.LocationFix) error {
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.Store.SaveLocations(ctx, fixes)
}

// fixture is a Service over the SQLite store with a manual clock.
type fixture struct {
	store *faultyStore
	users *couriertest.Users
	clock *clock
	svc   *courier.Service
}

func newFixture(t testing.TB, opts courier.Options) *fixture {
	t.Helper()
	f := &fixture{store: &faultyStore{Store: newStore(t)}, users: couriertest.NewUsers(), clock: &clock{now: t0}}
	opts.Now = f.clock.Now
	f.svc = courier.NewService(f.store, f.users, opts)
	if err := f.svc.Load(testContext(t)); err != nil {
		t.Fatalf("Load: %v", err)
	}
	return f
}

func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func userID(n int) string { return fmt.Sprintf("0190b000-0000-7000-8000-%012d", n) }
func taskID(n int) string { return fmt.Sprintf("0190c000-0000-7000-8000-%012d", n) }

// missingID is a well-formed id that no courier has.
const missingID = "0190a000-0000-7000-8000-999999999999"

func as(ctx context.Context, p auth.Principal) context.Context { return auth.WithPrincipal(ctx, p) }

func adminCtx(ctx context.Context) context.Context {
	return as(ctx, auth.Principal{Kind: auth.User, Subject: userID(900), Roles: []string{auth.RoleAdmin}})
}

func dispatcherCtx(ctx context.Context) context.Context {
	return as(ctx, auth.Principal{Kind: auth.User, Subject: userID(901), Roles: []string{auth.RoleDispatcher}})
}

func courierCtx(ctx context.Context, user int) context.Context {
	return as(ctx, auth.Principal{Kind: auth.User, Subject: userID(user), Roles: []string{auth.RoleCourier}})
}

func serviceCtx(ctx context.Context, name string) context.Context {
	return as(ctx, auth.Principal{Kind: auth.Service, Subject: name})
}

// register creates courier user n and registers them with mode and capacity.
func (f *fixture) register(t testing.TB, n int, mode courier.Mode, capacity int) courier.Courier {
	t.Helper()
	f.users.Put(courier.UserInfo{ID: userID(n), Role: auth.RoleCourier, Status: courier.UserActive,
		DisplayName: fmt.Sprintf("Courier %d", n)})
	c, err := f.svc.RegisterCourier(adminCtx(testContext(t)), courier.RegisterRequest{
		UserID: userID(n), Mode: mode, Capacity: capacity})
	if err != nil {
		t.Fatalf("RegisterCourier(user %d): %v", n, err)
	}
	return c
}

// available registers courier n and makes it available.
func (f *fixture) available(t testing.TB, n int, mode courier.Mode, capacity int) courier.Courier {
	t.Helper()
	c := f.register(t, n, mode, capacity)
	if _, err := f.svc.SetStatus(adminCtx(testContext(t)), c.ID, courier.StatusAvailable); err != nil {
		t.Fatalf("SetStatus(available): %v", err)
	}
	return c
}

// report ingests fixes of courier id as the simulator service and returns the counts.
func (f *fixture) report(t *testing.T, id string, fixes ...courier.Fix) courier.IngestResult {
	t.Helper()
	r := f.svc.NewLocationReport()
	if err := r.Add(serviceCtx(testContext(t), "simulator"), id, fixes); err != nil {
		t.Fatalf("LocationReport.Add(%s): %v", id, err)
	}
	return r.Result()
}

func fixAt(lat, lng float64, at time.Time) courier.Fix {
	return courier.Fix{Lat: lat, Lng: lng, RecordedAt: at}
}
