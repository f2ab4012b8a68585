package identity_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"lastmile/internal/identity"
	"lastmile/internal/identity/identitytest"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/eventlog"
	"lastmile/internal/platform/eventlog/sqllog"
	"lastmile/internal/platform/telemetry/logtest"
)

// nextEvent waits for the next event of w.
func nextEvent(t *testing.T, w *identity.Watch) identity.ActivityEvent {
	t.Helper()
	deadline := time.After(testTimeout)
	for {
		if ev, ok := w.Next(); ok {
			return ev
		}
		select {
		case <-w.Ready():
		case <-w.Done():
			t.Fatalf("watch ended while waiting for an event: %v", w.Err())
		case <-deadline:
			t.Fatalf("no event within %v", testTimeout)
		}
	}
}

func mustWatch(t *testing.T, f *fixture, ctx context.Context) *identity.Watch {
	t.Helper()
	w, err := f.svc.WatchActivity(ctx)
	if err != nil {
		t.Fatalf("WatchActivity() = %v", err)
	}
	t.Cleanup(w.Close)
	return w
}

func mustUpdate(t *testing.T, w *identity.Watch, subscribe, unsubscribe []string, want ...string) {
	t.Helper()
	got, err := w.Update(subscribe, unsubscribe)
	if err != nil {
		t.Fatalf("Update(%v, %v) = %v", subscribe, unsubscribe, err)
	}
	want = sorted(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("Update(%v, %v) set mismatch (-want +got):\n%s", subscribe, unsubscribe, diff)
	}
}

func sorted(ids []string) []string { return slices.Sorted(slices.Values(ids)) }

func TestUserActivity(t *testing.T) { onEngines(t, testUserActivity) }

func testUserActivity(t *testing.T, newFixture fixtureFunc) {
	f := newFixture(t)
	f.run(t)
	alice := f.mustUser(t, "alice", identity.RoleCustomer)
	bob := f.mustUser(t, "bob", identity.RoleCustomer)
	boss := f.mustUser(t, "boss", identity.RoleAdmin)
	w := mustWatch(t, f, as(t, boss))
	mustUpdate(t, w, []string{alice.ID, bob.ID}, nil, alice.ID, bob.ID)

	f.mustLogin(t, "alice@example.com")
	ev := nextEvent(t, w)
	if ev.Type != identity.ActivityLogin || ev.UserID != alice.ID || ev.ActorUserID != alice.ID || ev.User.LastLoginAt.IsZero() {
		t.Errorf("event = %+v, want alice's login with the user as it is after the login", ev)
	}

	if _, err := f.svc.UpdateUser(as(t, alice), identity.UserUpdate{ID: alice.ID, Paths: []string{"display_name"}, DisplayName: "Alice L."}); err != nil {
		t.Fatal(err)
	}
	ev = nextEvent(t, w)
	if ev.Type != identity.ActivityProfileChanged || !cmp.Equal(ev.ChangedFields, []string{"display_name"}) || ev.User.DisplayName != "Alice L." {
		t.Errorf("event = %+v, want alice's display_name change", ev)
	}
	if _, err := f.svc.UpdateUser(as(t, boss), identity.UserUpdate{ID: alice.ID, Paths: []string{"role"}, Role: identity.RoleCourier}); err != nil {
		t.Fatal(err)
	}
	if ev = nextEvent(t, w); ev.Type != identity.ActivityRoleChanged || ev.ActorUserID != boss.ID || ev.User.Role != identity.RoleCourier {
		t.Errorf("event = %+v, want alice's role change by the admin", ev)
	}

	mustUpdate(t, w, nil, []string{alice.ID}, bob.ID)
	f.mustLogin(t, "alice@example.com")
	f.mustLogin(t, "bob@example.com")
	// Alice's login came first; had it been delivered, it would be next.
	if ev = nextEvent(t, w); ev.Type != identity.ActivityLogin || ev.UserID != bob.ID {
		t.Errorf("event = %+v, want bob's login (nothing for unsubscribed alice)", ev)
	}
	if _, err := f.svc.DeleteUser(as(t, bob), bob.ID); err != nil {
		t.Fatal(err)
	}
	if ev = nextEvent(t, w); ev.Type != identity.ActivityDeleted || ev.User.Status != identity.StatusDeleted {
		t.Errorf("event = %+v, want bob's deletion", ev)
	}
}

func TestUserActivityUpdateRules(t *testing.T) { onEngines(t, testUserActivityUpdateRules) }

func testUserActivityUpdateRules(t *testing.T, newFixture fixtureFunc) {
	f := newFixture(t)
	f.run(t)
	alice := f.mustUser(t, "alice", identity.RoleCustomer)
	bob := f.mustUser(t, "bob", identity.RoleCustomer)
	w := mustWatch(t, f, as(t, alice))
	mustUpdate(t, w, []string{alice.ID}, nil, alice.ID)

	hundredAndOne := make([]string, identity.MaxWatchChange+1)
	for i := range hundredAndOne {
		hundredAndOne[i] = uuid.NewString()
	}
	tests := []struct {
		name        string
		subscribe   []string
		unsubscribe []string
		want        apperr.Code
	}{
		{"another user", []string{bob.ID}, nil, apperr.PermissionDenied},
		{"empty change", nil, nil, apperr.Invalid},
		{"malformed id", []string{"alice"}, nil, apperr.Invalid},
		{"too many ids in one message", nil, hundredAndOne, apperr.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := w.Update(tt.subscribe, tt.unsubscribe)
			apperrtest.WantCode(t, "Update", err, tt.want)
		})
	}
	// Refused changes changed nothing; unsubscribing an id not watched is fine.
	mustUpdate(t, w, nil, []string{bob.ID}, alice.ID)

	_, err := f.svc.WatchActivity(ctxAs(t, auth.Principal{Kind: auth.Service, Subject: "dispatch"}))
	apperrtest.WantCode(t, "WatchActivity(service)", err, apperr.PermissionDenied)
}

func TestUserActivitySubscriptionLimit(t *testing.T) { onEngines(t, testUserActivitySubscriptionLimit) }

func testUserActivitySubscriptionLimit(t *testing.T, newFixture fixtureFunc) {
	f := newFixture(t)
	f.run(t)
	w := mustWatch(t, f, f.admin(t))
	var all []string
	for range identity.MaxWatchedUsers / identity.MaxWatchChange {
		batch := make([]string, identity.MaxWatchChange)
		for i := range batch {
			batch[i] = uuid.NewString()
		}
		all = append(all, batch...)
		if got, err := w.Update(batch, nil); err != nil || len(got) != len(all) {
			t.Fatalf("Update(100 more) = %d ids, %v; want %d", len(got), err, len(all))
		}
	}
	_, err := w.Update([]string{uuid.NewString()}, nil)
	apperrtest.WantCode(t, "Update(one more than the limit)", err, apperr.ResourceExhausted)
	// Swapping within one message is fine: the limit applies to the resulting set.
	if got, err := w.Update([]string{uuid.NewString()}, all[:1]); err != nil || len(got) != identity.MaxWatchedUsers {
		t.Errorf("Update(add one, remove one at the limit) = %d ids, %v; want %d, nil", len(got), err, identity.MaxWatchedUsers)
	}
}

func TestSlowWatcherIsDisconnected(t *testing.T) { onEngines(t, testSlowWatcherIsDisconnected) }

func testSlowWatcherIsDisconnected(t *testing.T, newFixture fixtureFunc) {
	f := newFixture(t, func(o *identity.Options) { o.ActivityBuffer = 2 })
	f.run(t)
	alice := f.mustUser(t, "alice", identity.RoleCustomer)
	slow := mustWatch(t, f, as(t, alice))
	fast := mustWatch(t, f, as(t, alice))
	mustUpdate(t, slow, []string{alice.ID}, nil, alice.ID)
	mustUpdate(t, fast, []string{alice.ID}, nil, alice.ID)
	for i := range 3 {
		f.mustLogin(t, "alice@example.com")
		if ev := nextEvent(t, fast); ev.Type != identity.ActivityLogin {
			t.Fatalf("fast watcher event %d = %+v, want a login", i, ev)
		}
	}
	select {
	case <-slow.Done():
		apperrtest.WantCode(t, "slow watcher Err", slow.Err(), apperr.ResourceExhausted)
	case <-time.After(testTimeout):
		t.Fatal("the slow watcher was not disconnected")
	}
	select {
	case <-fast.Done():
		t.Errorf("the fast watcher ended too: %v", fast.Err())
	default:
	}
}

func TestRunEndEndsWatches(t *testing.T) { onEngines(t, testRunEndEndsWatches) }

func testRunEndEndsWatches(t *testing.T, newFixture fixtureFunc) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.svc.Run(ctx) }()
	w := mustWatch(t, f, f.admin(t))
	cancel()
	select {
	case <-w.Done():
		apperrtest.WantCode(t, "watch Err after Run ended", w.Err(), apperr.Unavailable)
	case <-time.After(testTimeout):
		t.Fatal("the watch did not end with Run")
	}
	if err := <-done; err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
	_, err := f.svc.WatchActivity(f.admin(t))
	apperrtest.WantCode(t, "WatchActivity(after Run ended)", err, apperr.Unavailable)
}

// TestUserActivityInCommitOrder has several writers log in at once: the watcher receives every entry
// exactly once, in increasing sequence order. (That an entry whose transaction commits late is not
// skipped is the event log's promise: eventlog's TestAppendWaitsForOpenAppenderOnPostgres.)
func TestUserActivityInCommitOrder(t *testing.T) { onEngines(t, testUserActivityInCommitOrder) }

func testUserActivityInCommitOrder(t *testing.T, newFixture fixtureFunc) {
	f := newFixture(t)
	f.run(t)
	alice := f.mustUser(t, "alice", identity.RoleCustomer)
	w := mustWatch(t, f, as(t, alice))
	mustUpdate(t, w, []string{alice.ID}, nil, alice.ID)

	const logins = 6
	errs := make([]error, logins)
	identitytest.Race(logins, func(i int) {
		_, errs[i] = f.svc.Login(anonymous(t), identity.Credentials{Email: "alice@example.com", Password: password})
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Login() #%d = %v", i, err)
		}
	}
	seen := map[string]bool{}
	var last int64
	for i := range logins {
		ev := nextEvent(t, w)
		if ev.Seq <= last || seen[ev.ID] {
			t.Fatalf("event %d = seq %d (id %s) after seq %d, want each entry once, in increasing order", i, ev.Seq, ev.ID, last)
		}
		last, seen[ev.ID] = ev.Seq, true
	}
	f.mustLogin(t, "alice@example.com")
	if ev := nextEvent(t, w); ev.Seq != last+1 {
		t.Errorf("event after the race = seq %d, want %d (no entry twice)", ev.Seq, last+1)
	}
}

// TestWatchActivityNeedsRunningFeed: a watch waits for Run to have subscribed to the event log, within
// its context; a Service without a feed refuses watches and Run.
func TestWatchActivityNeedsRunningFeed(t *testing.T) { onEngines(t, testWatchActivityNeedsRunningFeed) }

func testWatchActivityNeedsRunningFeed(t *testing.T, newFixture fixtureFunc) {
	f := newFixture(t)
	ctx, cancel := context.WithTimeout(f.admin(t), 50*time.Millisecond)
	defer cancel()
	_, err := f.svc.WatchActivity(ctx)
	apperrtest.WantCode(t, "WatchActivity(before Run)", err, apperr.Unavailable)

	bare := identity.NewService(identitytest.SQLiteStore(t), &identitytest.Hasher{}, &identitytest.Issuer{}, identity.Options{})
	_, err = bare.WatchActivity(f.admin(t))
	apperrtest.WantCode(t, "WatchActivity(no feed)", err, apperr.Unavailable)
	if err := bare.Run(t.Context()); err == nil {
		t.Error("Run(no feed) = nil, want an error")
	}
}

func TestWatchIDsAreCaseInsensitive(t *testing.T) { onEngines(t, testWatchIDsAreCaseInsensitive) }

func testWatchIDsAreCaseInsensitive(t *testing.T, newFixture fixtureFunc) {
	f := newFixture(t)
	f.run(t)
	alice := f.mustUser(t, "alice", identity.RoleCustomer)
	w := mustWatch(t, f, as(t, alice))
	mustUpdate(t, w, []string{strings.ToUpper(alice.ID)}, nil, alice.ID)
}

// flakyFeed fails Subscribe until healed, then hands over to the real log.
type flakyFeed struct {
	*eventlog.Log
	mu       sync.Mutex
	healthy  bool
	attempts int
}

func (f *flakyFeed) Subscribe(ctx context.Context, from int64) (*eventlog.Subscription, error) {
	f.mu.Lock()
	f.attempts++
	healthy := f.healthy
	f.mu.Unlock()
	if !healthy {
		return nil, apperr.Errorf(apperr.Unavailable, "cannot read the event log")
	}
	return f.Log.Subscribe(ctx, from)
}

// waitAttempts waits until Subscribe was called n times and returns how many times it was, or returns
// fewer after 30 s (a hang guard: the feed retries after 500 ms, then 1 s).
func (f *flakyFeed) waitAttempts(n int) (attempts int) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		f.mu.Lock()
		attempts = f.attempts
		f.mu.Unlock()
		if attempts >= n || time.Now().After(deadline) {
			return attempts
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (f *flakyFeed) heal() (attempts int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.healthy = true
	return f.attempts
}

// TestFeedOutageLoggedOnce: while the event log cannot be read, the activity feed retries with backoff
// and logs the outage once (key "error"), and once more when it reads again; no watch can start before,
// and watches work after (issue 7, item 8: the old tailer warned every 200 ms).
func TestFeedOutageLoggedOnce(t *testing.T) {
	store, db := identitytest.SQLiteDB(t)
	feed := &flakyFeed{Log: identitytest.Feed(t, db, database.SQLite, nil)}
	var logs logtest.Buffer
	f := newFixtureWith(t, store, store, func(o *identity.Options) {
		o.Feed = feed
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	f.run(t)
	alice := f.mustUser(t, "alice", identity.RoleCustomer)
	// A watch started during the outage waits for the feed until its caller gives up, here once the feed
	// has retried (before, a 1.2 s deadline assumed the retry, due 500 ms after the first attempt, came
	// within it: on a loaded machine it may not).
	ctx, cancel := context.WithCancel(as(t, alice))
	defer cancel()
	retried := make(chan int, 1)
	go func() {
		defer cancel()
		retried <- feed.waitAttempts(2)
	}()
	_, err := f.svc.WatchActivity(ctx)
	apperrtest.WantCode(t, "WatchActivity(event log unreadable)", err, apperr.Unavailable)
	if attempts := <-retried; attempts < 2 {
		t.Errorf("%d attempts to subscribe 30 s into the outage, want at least 2 (retries)", attempts)
	}
	feed.heal()
	w := mustWatch(t, f, as(t, alice))
	mustUpdate(t, w, []string{alice.ID}, nil, alice.ID)
	f.mustLogin(t, "alice@example.com")
	if ev := nextEvent(t, w); ev.Type != identity.ActivityLogin {
		t.Errorf("event after the outage = %+v, want the login", ev)
	}

	var records []map[string]any
	for line := range strings.Lines(logs.String()) {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		records = append(records, r)
	}
	var outage, back int
	for _, r := range records {
		switch r["msg"] {
		case "activity feed cannot read the event log; retrying with backoff":
			outage++
			if r["level"] != "ERROR" || !strings.Contains(fmt.Sprint(r["error"]), "cannot read the event log") {
				t.Errorf("outage record = %v, want level ERROR with the cause under key error", r)
			}
		case "activity feed reads the event log again":
			back++
		default:
			t.Errorf("unexpected log record %v", r)
		}
	}
	if outage != 1 || back != 1 {
		t.Errorf("logged the outage %d times and the recovery %d times, want once each:\n%s", outage, back, logs.String())
	}
}

// TestFeedStopEndsWatches: when the event log stops (the process shuts down) before Run, every watch
// ends with Unavailable and new watches are refused.
func TestFeedStopEndsWatches(t *testing.T) {
	store, db := identitytest.SQLiteDB(t)
	log, err := eventlog.New(sqllog.NewSource(db, database.SQLite), eventlog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	logCtx, cancelLog := context.WithCancel(context.Background())
	logDone := make(chan error, 1)
	go func() { logDone <- log.Run(logCtx) }()
	var once sync.Once
	stopLog := func() {
		once.Do(func() {
			cancelLog()
			if err := <-logDone; err != nil {
				t.Errorf("event log Run() = %v", err)
			}
		})
	}
	defer stopLog()
	f := newFixtureWith(t, store, store, func(o *identity.Options) { o.Feed = log })
	f.run(t)
	w := mustWatch(t, f, f.admin(t))

	stopLog()
	select {
	case <-w.Done():
		apperrtest.WantCode(t, "watch Err after the event log stopped", w.Err(), apperr.Unavailable)
	case <-time.After(testTimeout):
		t.Fatal("the watch did not end when the event log stopped")
	}
	_, err = f.svc.WatchActivity(f.admin(t))
	apperrtest.WantCode(t, "WatchActivity(event log stopped)", err, apperr.Unavailable)
}
