package identity_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"lastmile/internal/identity"
	"lastmile/internal/identity/identitytest"
	"lastmile/internal/platform/auth"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testTimeout bounds every wait of these tests.
const testTimeout = 60 * time.Second

// start is the fake clock's initial time. Its nanoseconds check that the service truncates times to the
// microseconds the stores keep.
var start = time.Date(2026, 5, 4, 10, 30, 0, 123456789, time.UTC)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock { return &fakeClock{t: start} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is a Service over the real SQLite store, with a fake hasher, issuer and clock.
type fixture struct {
	// store is the store itself, under whatever wrapper the Service was given.
	store  identity.Store
	hasher *identitytest.Hasher
	clock  *fakeClock
	svc    *identity.Service
}

// newFixture returns a Service over a new SQLite store and its event log (Options.Feed, running until the
// test ends); opts may adjust its options (Now and Feed are set).
func newFixture(t *testing.T, opts ...func(*identity.Options)) *fixture {
	t.Helper()
	store, feed := identitytest.SQLite(t)
	withFeed := func(o *identity.Options) { o.Feed = feed }
	return newFixtureWith(t, store, store, append([]func(*identity.Options){withFeed}, opts...)...)
}

// fixtureFunc makes a fixture: newFixture, or newPostgresFixture.
type fixtureFunc func(t *testing.T, opts ...func(*identity.Options)) *fixture

// newPostgresFixture is newFixture on PostgreSQL (identitytest.Postgres: skipped without
// LASTMILE_TEST_POSTGRES_DSN, failed with LASTMILE_REQUIRE_POSTGRES=1).
func newPostgresFixture(t *testing.T, opts ...func(*identity.Options)) *fixture {
	t.Helper()
	store, feed := identitytest.Postgres(t)
	withFeed := func(o *identity.Options) { o.Feed = feed }
	return newFixtureWith(t, store, store, append([]func(*identity.Options){withFeed}, opts...)...)
}

// onEngines runs test on SQLite and on PostgreSQL.
func onEngines(t *testing.T, test func(t *testing.T, newFixture fixtureFunc)) {
	t.Run("sqlite", func(t *testing.T) { test(t, newFixture) })
	t.Run("postgres", func(t *testing.T) { test(t, newPostgresFixture) })
}

// newFixtureWith is newFixture with the Service over wrapped, a wrapper of store.
func newFixtureWith(t *testing.T, store, wrapped identity.Store, opts ...func(*identity.Options)) *fixture {
	t.Helper()
	f := &fixture{store: store, hasher: &identitytest.Hasher{}, clock: newClock()}
	o := identity.Options{Now: f.clock.Now}
	for _, opt := range opts {
		opt(&o)
	}
	f.svc = identity.NewService(wrapped, f.hasher, &identitytest.Issuer{Now: f.clock.Now}, o)
	return f
}

// run runs the service's activity feed until the test ends.
func (f *fixture) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run() = %v, want nil", err)
			}
		case <-time.After(testTimeout):
			t.Errorf("Run did not return within %v of cancel", testTimeout)
		}
	})
}

// ctx returns a test context acting as p.
func ctxAs(t *testing.T, p auth.Principal) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return auth.WithPrincipal(ctx, p)
}

func anonymous(t *testing.T) context.Context { return ctxAs(t, auth.Principal{}) }

// as returns a context acting as user u.
func as(t *testing.T, u identity.User) context.Context {
	t.Helper()
	return ctxAs(t, auth.Principal{Kind: auth.User, Subject: u.ID, Roles: []string{string(u.Role)}})
}

// systemAdmin is an admin principal that is no stored user, for setting up fixtures.
func (f *fixture) admin(t *testing.T) context.Context {
	return ctxAs(t, adminPrincipal)
}

var adminPrincipal = auth.Principal{Kind: auth.User, Subject: "00000000-0000-7000-8000-000000000000", Roles: []string{auth.RoleAdmin}}

const password = "correct horse battery"

// mustUser creates a user named name with role and the test password.
func (f *fixture) mustUser(t *testing.T, name string, role identity.Role) identity.User {
	t.Helper()
	u, err := f.svc.CreateUser(f.admin(t), identity.NewUser{
		Email: name + "@example.com", Password: password, DisplayName: "User " + name, Username: name, Role: role,
	})
	if err != nil {
		t.Fatalf("CreateUser(%s) = %v", name, err)
	}
	return u
}

// mustGet reads a user from the store, bypassing every rule.
func (f *fixture) mustGet(t *testing.T, id string) identity.User {
	t.Helper()
	u, err := f.store.GetUser(context.Background(), identity.Lookup{ID: id})
	if err != nil {
		t.Fatalf("store GetUser(%s) = %v", id, err)
	}
	return u
}

// wantActivityTypes checks the types of the whole activity log, in order.
func (f *fixture) wantActivityTypes(t *testing.T, want ...identity.ActivityType) {
	t.Helper()
	acts, err := f.store.ActivitySince(context.Background(), 0, 100)
	if err != nil {
		t.Fatalf("store ActivitySince(0, 100) = %v", err)
	}
	var types []identity.ActivityType
	for _, a := range acts {
		types = append(types, a.Type)
	}
	if diff := cmp.Diff(want, types); diff != "" {
		t.Errorf("activity types mismatch (-want +got):\n%s", diff)
	}
}

func (f *fixture) mustLogin(t *testing.T, email string) identity.Session {
	t.Helper()
	s, err := f.svc.Login(anonymous(t), identity.Credentials{Email: email, Password: password})
	if err != nil {
		t.Fatalf("Login(%s) = %v", email, err)
	}
	return s
}
