package identity_test

import (
	"context"
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
	"lastmile/internal/platform/auth"
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

func TestUserActivity(t *testing.T) {
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

func TestUserActivityUpdateRules(t *testing.T) {
	f := newFixture(t)
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
			wantCode(t, "Update", err, tt.want)
		})
	}
	// Refused changes changed nothing; unsubscribing an id not watched is fine.
	mustUpdate(t, w, nil, []string{bob.ID}, alice.ID)

	_, err := f.svc.WatchActivity(ctxAs(t, auth.Principal{Kind: auth.Service, Subject: "dispatch"}))
	wantCode(t, "WatchActivity(service)", err, apperr.PermissionDenied)
}

func TestUserActivitySubscriptionLimit(t *testing.T) {
	f := newFixture(t)
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
	wantCode(t, "Update(one more than the limit)", err, apperr.ResourceExhausted)
	// Swapping within one message is fine: the limit applies to the resulting set.
	if got, err := w.Update([]string{uuid.NewString()}, all[:1]); err != nil || len(got) != identity.MaxWatchedUsers {
		t.Errorf("Update(add one, remove one at the limit) = %d ids, %v; want %d, nil", len(got), err, identity.MaxWatchedUsers)
	}
}

func TestSlowWatcherIsDisconnected(t *testing.T) {
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
		wantCode(t, "slow watcher Err", slow.Err(), apperr.ResourceExhausted)
	case <-time.After(testTimeout):
		t.Fatal("the slow watcher was not disconnected")
	}
	select {
	case <-fast.Done():
		t.Errorf("the fast watcher ended too: %v", fast.Err())
	default:
	}
}

func TestRunEndEndsWatches(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.svc.Run(ctx) }()
	w := mustWatch(t, f, f.admin(t))
	cancel()
	select {
	case <-w.Done():
		wantCode(t, "watch Err after Run ended", w.Err(), apperr.Unavailable)
	case <-time.After(testTimeout):
		t.Fatal("the watch did not end with Run")
	}
	if err := <-done; err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
	_, err := f.svc.WatchActivity(f.admin(t))
	wantCode(t, "WatchActivity(after Run ended)", err, apperr.Unavailable)
}

// lateStore hides chosen activity entries from ActivitySince, as a PostgreSQL transaction that drew its
// sequence number before a later one but commits after it.
type lateStore struct {
	identity.Store
	mu     sync.Mutex
	hidden map[int64]bool
}

func (s *lateStore) ActivitySince(ctx context.Context, after int64, limit int) ([]identity.Activity, error) {
	acts, err := s.Store.ActivitySince(ctx, after, limit)
	s.mu.Lock()
	defer s.mu.Unlock()
	out := acts[:0]
	for _, a := range acts {
		if !s.hidden[a.Seq] {
			out = append(out, a)
		}
	}
	return out, err
}

func (s *lateStore) setHidden(seq int64, hidden bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hidden[seq] = hidden
}

func TestUserActivityLateCommit(t *testing.T) {
	store := identitytest.SQLiteStore(t)
	late := &lateStore{Store: store, hidden: map[int64]bool{}}
	f := newFixtureWith(t, store, late, func(o *identity.Options) { o.ActivityPoll = 5 * time.Millisecond })
	f.run(t)
	alice := f.mustUser(t, "alice", identity.RoleCustomer)
	w := mustWatch(t, f, as(t, alice))
	mustUpdate(t, w, []string{alice.ID}, nil, alice.ID)

	late.setHidden(1, true) // the first login's entry commits late
	f.mustLogin(t, "alice@example.com")
	f.mustLogin(t, "alice@example.com")
	if ev := nextEvent(t, w); ev.Seq != 2 {
		t.Fatalf("first event seq = %d, want 2 (1 is not committed yet)", ev.Seq)
	}
	late.setHidden(1, false)
	if ev := nextEvent(t, w); ev.Seq != 1 {
		t.Fatalf("second event seq = %d, want the late entry 1", ev.Seq)
	}
	f.mustLogin(t, "alice@example.com")
	if ev := nextEvent(t, w); ev.Seq != 3 {
		t.Errorf("third event seq = %d, want 3 (no entry twice)", ev.Seq)
	}
}

func TestWatchIDsAreCaseInsensitive(t *testing.T) {
	f := newFixture(t)
	alice := f.mustUser(t, "alice", identity.RoleCustomer)
	w := mustWatch(t, f, as(t, alice))
	mustUpdate(t, w, []string{strings.ToUpper(alice.ID)}, nil, alice.ID)
}
