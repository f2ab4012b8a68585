package auth_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

var issued = time.Date(2026, 5, 4, 10, 30, 0, 0, time.UTC)

func TestSubjectStateCheck(t *testing.T) {
	p := auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{auth.RoleCourier}, IssuedAt: issued}
	active := auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}}
	tests := []struct {
		name string
		st   auth.SubjectState
		p    auth.Principal
		want apperr.Code
	}{
		{"active, same roles", active, p, ""},
		{"roles in another order", auth.SubjectState{Active: true, Roles: []string{"b", "a"}}, auth.Principal{Kind: auth.User, Roles: []string{"a", "b"}}, ""},
		{"suspended or deleted", auth.SubjectState{Roles: []string{auth.RoleCourier}}, p, apperr.Unauthenticated},
		{"role changed", auth.SubjectState{Active: true, Roles: []string{auth.RoleCustomer}}, p, apperr.Unauthenticated},
		{"role added", auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier, auth.RoleAdmin}}, p, apperr.Unauthenticated},
		{"revoked after issue", auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}, RevokedBefore: issued.Add(2 * time.Second)}, p, apperr.Unauthenticated},
		{"revoked in the second of issue", auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}, RevokedBefore: issued.Add(500 * time.Millisecond)}, p, apperr.Unauthenticated},
		{"issued in the second after the revocation", auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}, RevokedBefore: issued.Add(-500 * time.Millisecond)}, p, ""},
		{"issue time unknown", auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}, RevokedBefore: issued}, auth.Principal{Kind: auth.User, Roles: []string{auth.RoleCourier}}, apperr.Unauthenticated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := apperr.CodeOf(tt.st.Check(tt.p)); got != tt.want {
				t.Errorf("Check() code = %q, want %q", got, tt.want)
			}
		})
	}
}

// fakeLoader counts loads and serves states from a map.
type fakeLoader struct {
	mu     sync.Mutex
	states map[string]auth.SubjectState
	err    error
	loads  atomic.Int32
	// block, when set, is waited on inside load (to race it with an Update).
	block chan struct{}
}

func (l *fakeLoader) load(ctx context.Context, id string) (auth.SubjectState, error) {
	l.loads.Add(1)
	if l.block != nil {
		<-l.block
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.states[id], l.err
}

func (l *fakeLoader) set(id string, st auth.SubjectState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.states[id] = st
}

func TestSubjectsCachesAndUpdates(t *testing.T) {
	ctx := context.Background()
	now := issued.Add(time.Hour)
	clock := func() time.Time { return now }
	l := &fakeLoader{states: map[string]auth.SubjectState{"u1": {Active: true, Roles: []string{auth.RoleAdmin}}}}
	s := auth.NewSubjects(l.load, auth.SubjectsOptions{TTL: time.Minute, Now: clock})
	admin := auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{auth.RoleAdmin}, IssuedAt: issued}

	for range 3 {
		if err := s.Check(ctx, admin); err != nil {
			t.Fatalf("Check(active admin) = %v, want nil", err)
		}
	}
	if n := l.loads.Load(); n != 1 {
		t.Errorf("loads after 3 checks = %d, want 1 (cached)", n)
	}
	if err := s.Check(ctx, auth.Principal{Kind: auth.Service, Subject: "courier"}); err != nil {
		t.Errorf("Check(service) = %v, want nil (services are not users)", err)
	}

	// The identity service reports a suspension: the next call is refused without a load.
	s.Update("u1", auth.SubjectState{Roles: []string{auth.RoleAdmin}, RevokedBefore: now})
	if got := apperr.CodeOf(s.Check(ctx, admin)); got != apperr.Unauthenticated {
		t.Errorf("Check(after suspension) code = %q, want %q", got, apperr.Unauthenticated)
	}
	if n := l.loads.Load(); n != 1 {
		t.Errorf("loads after the update = %d, want 1", n)
	}

	// Past the TTL the state is read again.
	l.set("u1", auth.SubjectState{Active: true, Roles: []string{auth.RoleAdmin}})
	now = now.Add(2 * time.Minute)
	if err := s.Check(ctx, admin); err != nil {
		t.Errorf("Check(after the TTL, state active again) = %v, want nil", err)
	}
	if n := l.loads.Load(); n != 2 {
		t.Errorf("loads after the TTL = %d, want 2", n)
	}

	// Forget makes the next call read the state.
	s.Forget("u1")
	if err := s.Check(ctx, admin); err != nil || l.loads.Load() != 3 {
		t.Errorf("Check(after Forget) = %v with %d loads, want nil with 3", err, l.loads.Load())
	}

	// So does ForgetAll, for every user.
	s.ForgetAll()
	if err := s.Check(ctx, admin); err != nil || l.loads.Load() != 4 {
		t.Errorf("Check(after ForgetAll) = %v with %d loads, want nil with 4", err, l.loads.Load())
	}

	// A state that cannot be read refuses the call as Unavailable, never lets it through; one cached
	// before is used past its TTL (stale if error).
	l.err = errors.New("database down")
	now = now.Add(2 * time.Minute)
	if err := s.Check(ctx, admin); err != nil {
		t.Errorf("Check(expired entry, store down) = %v, want nil (the last known state)", err)
	}
	if got := apperr.CodeOf(s.Check(ctx, auth.Principal{Kind: auth.User, Subject: "u2", IssuedAt: issued})); got != apperr.Unavailable {
		t.Errorf("Check(unreadable state) code = %q, want %q", got, apperr.Unavailable)
	}
}

// TestSubjectsLoadRacingUpdate: a load that started before an Update does not cache its (possibly
// older) result over the update.
func TestSubjectsLoadRacingUpdate(t *testing.T) {
	ctx := context.Background()
	l := &fakeLoader{states: map[string]auth.SubjectState{"u1": {Active: true}}, block: make(chan struct{})}
	s := auth.NewSubjects(l.load, auth.SubjectsOptions{})
	p := auth.Principal{Kind: auth.User, Subject: "u1", IssuedAt: issued}
	done := make(chan error, 1)
	go func() { done <- s.Check(ctx, p) }()
	for l.loads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	s.Update("u1", auth.SubjectState{}) // suspended while the load was in flight
	close(l.block)
	if err := <-done; err != nil {
		t.Errorf("Check(racing) = %v, want nil (it read the state before the suspension)", err)
	}
	if got := apperr.CodeOf(s.Check(ctx, p)); got != apperr.Unauthenticated {
		t.Errorf("Check(after the race) code = %q, want %q: the load overwrote the update", got, apperr.Unauthenticated)
	}
}

func TestSubjectsBounded(t *testing.T) {
	ctx := context.Background()
	l := &fakeLoader{states: map[string]auth.SubjectState{}}
	s := auth.NewSubjects(l.load, auth.SubjectsOptions{MaxEntries: 2})
	for _, id := range []string{"a", "b", "c"} {
		l.set(id, auth.SubjectState{Active: true})
		if err := s.Check(ctx, auth.Principal{Kind: auth.User, Subject: id}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"a", "b", "c"} {
		if err := s.Check(ctx, auth.Principal{Kind: auth.User, Subject: id}); err != nil {
			t.Fatal(err)
		}
	}
	// Three users, room for two: at least one was dropped and read again.
	if n := l.loads.Load(); n < 4 {
		t.Errorf("loads = %d, want at least 4 with room for 2 entries", n)
	}
}

func TestSubjectsTrackEndsRevokedCalls(t *testing.T) {
	ctx := context.Background()
	l := &fakeLoader{states: map[string]auth.SubjectState{}}
	s := auth.NewSubjects(l.load, auth.SubjectsOptions{})
	courier := auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{auth.RoleCourier}, IssuedAt: issued}
	other := auth.Principal{Kind: auth.User, Subject: "u2", Roles: []string{auth.RoleCourier}, IssuedAt: issued}
	s.Update("u1", auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}})
	s.Update("u2", auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}})

	c1, stop1 := s.Track(ctx, courier)
	defer stop1()
	c2, stop2 := s.Track(ctx, other)
	defer stop2()
	svc, stopSvc := s.Track(ctx, auth.Principal{Kind: auth.Service, Subject: "dispatch"})
	defer stopSvc()
	if svc != ctx {
		t.Error("Track(service) returned a new context, want ctx itself")
	}

	// A change that keeps the token valid ends nothing.
	s.Update("u1", auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}})
	if c1.Err() != nil {
		t.Fatalf("tracked call ended by a harmless update: %v", context.Cause(c1))
	}
	// A role change ends u1's call, and only u1's, with Unauthenticated.
	s.Update("u1", auth.SubjectState{Active: true, Roles: []string{auth.RoleCustomer}})
	select {
	case <-c1.Done():
	default:
		t.Fatal("u1's tracked call was not cancelled by the role change")
	}
	cause := auth.RevokedCause(c1)
	if !errors.Is(cause, auth.ErrRevoked) || apperr.CodeOf(cause) != apperr.Unauthenticated {
		t.Errorf("RevokedCause() = %v (code %q), want ErrRevoked with code %q", cause, apperr.CodeOf(cause), apperr.Unauthenticated)
	}
	if c2.Err() != nil {
		t.Errorf("u2's call ended too: %v", context.Cause(c2))
	}
	if auth.RevokedCause(c2) != nil {
		t.Error("RevokedCause(live call) != nil")
	}

	// A call tracked after the revocation (it passed Check just before) ends at once.
	late, stopLate := s.Track(ctx, courier)
	defer stopLate()
	if auth.RevokedCause(late) == nil {
		t.Error("a call tracked after its token was revoked was not cancelled")
	}

	// After stop, an update does not reach the call any more (and stop cancels it plainly).
	stop2()
	s.Update("u2", auth.SubjectState{})
	if auth.RevokedCause(c2) != nil {
		t.Error("an update reached a stopped call")
	}
}

// TestSubjectsStaleIsBounded: while the store cannot be read, a cached state is used for MaxStale past its
// TTL and no longer: a replica cut off from the store refuses calls rather than trust old knowledge.
func TestSubjectsStaleIsBounded(t *testing.T) {
	ctx := context.Background()
	now := issued.Add(time.Hour)
	l := &fakeLoader{states: map[string]auth.SubjectState{"u1": {Active: true, Roles: []string{auth.RoleCourier}}}}
	s := auth.NewSubjects(l.load, auth.SubjectsOptions{TTL: time.Minute, MaxStale: 5 * time.Minute, Now: func() time.Time { return now }})
	courier := auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{auth.RoleCourier}, IssuedAt: issued}
	if err := s.Check(ctx, courier); err != nil {
		t.Fatalf("Check(active courier) = %v, want nil", err)
	}
	l.err = errors.New("database down")
	now = now.Add(time.Minute + 5*time.Minute - time.Second)
	if err := s.Check(ctx, courier); err != nil {
		t.Errorf("Check(1s before TTL+MaxStale, store down) = %v, want nil", err)
	}
	now = now.Add(time.Second)
	if got := apperr.CodeOf(s.Check(ctx, courier)); got != apperr.Unavailable {
		t.Errorf("Check(at TTL+MaxStale, store down) code = %q, want %q", got, apperr.Unavailable)
	}
}

// TestSubjectsForgetEndsTrackedCalls: a forgotten state may hide a missed change, so the user's open
// calls end with Unavailable (the reconnect is checked afresh); ForgetAll does so for every user, and
// DropAll for nobody.
func TestSubjectsForgetEndsTrackedCalls(t *testing.T) {
	ctx := context.Background()
	s := auth.NewSubjects((&fakeLoader{states: map[string]auth.SubjectState{}}).load, auth.SubjectsOptions{})
	u1 := auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{auth.RoleCourier}, IssuedAt: issued}
	u2 := auth.Principal{Kind: auth.User, Subject: "u2", Roles: []string{auth.RoleCourier}, IssuedAt: issued}
	for _, id := range []string{"u1", "u2"} {
		s.Update(id, auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}})
	}
	c1, stop1 := s.Track(ctx, u1)
	defer stop1()
	c2, stop2 := s.Track(ctx, u2)
	defer stop2()

	// DropAll only drops states: the calls were checked against states read moments before.
	s.DropAll()
	if c1.Err() != nil || c2.Err() != nil {
		t.Fatalf("DropAll ended tracked calls: %v, %v", context.Cause(c1), context.Cause(c2))
	}

	s.Forget("u1")
	if got := apperr.CodeOf(auth.RevokedCause(c1)); got != apperr.Unavailable {
		t.Errorf("u1's call after Forget(u1): cause code %q, want %q", got, apperr.Unavailable)
	}
	if c2.Err() != nil {
		t.Fatalf("u2's call ended by Forget(u1): %v", context.Cause(c2))
	}
	s.ForgetAll()
	if got := apperr.CodeOf(auth.RevokedCause(c2)); got != apperr.Unavailable {
		t.Errorf("u2's call after ForgetAll: cause code %q, want %q", got, apperr.Unavailable)
	}
}

// TestSubjectsRecheckEndsCallsMissedChangesRevoked: after a feed of changes was lost, Recheck reads the
// state of every user with open calls again, ends those the new state refuses (Unauthenticated) and
// keeps the others; a state that cannot be read ends the user's calls (Unavailable).
func TestSubjectsRecheckEndsCallsMissedChangesRevoked(t *testing.T) {
	ctx := context.Background()
	courierState := auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}}
	l := &fakeLoader{states: map[string]auth.SubjectState{"u1": courierState, "u2": courierState}}
	s := auth.NewSubjects(l.load, auth.SubjectsOptions{})
	u1 := auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{auth.RoleCourier}, IssuedAt: issued}
	u2 := auth.Principal{Kind: auth.User, Subject: "u2", Roles: []string{auth.RoleCourier}, IssuedAt: issued}
	for _, p := range []auth.Principal{u1, u2} {
		if err := s.Check(ctx, p); err != nil {
			t.Fatalf("Check(%s) = %v, want nil", p.Subject, err)
		}
	}
	c1, stop1 := s.Track(ctx, u1)
	defer stop1()
	c2, stop2 := s.Track(ctx, u2)
	defer stop2()

	// u1 is suspended while the feed is down: nothing tells the cache.
	l.set("u1", auth.SubjectState{Roles: []string{auth.RoleCourier}})
	s.DropAll()
	before := l.loads.Load()
	s.Recheck(ctx)
	if got := l.loads.Load() - before; got != 2 {
		t.Errorf("Recheck loaded %d states, want 2 (the users with open calls)", got)
	}
	if got := apperr.CodeOf(auth.RevokedCause(c1)); got != apperr.Unauthenticated {
		t.Errorf("u1's call after Recheck: cause code %q, want %q", got, apperr.Unauthenticated)
	}
	if c2.Err() != nil {
		t.Fatalf("u2's call ended by Recheck: %v", context.Cause(c2))
	}

	l.mu.Lock()
	l.err = errors.New("identity unreachable")
	l.mu.Unlock()
	s.Recheck(ctx)
	if got := apperr.CodeOf(auth.RevokedCause(c2)); got != apperr.Unavailable {
		t.Errorf("u2's call after a Recheck that could not read: cause code %q, want %q", got, apperr.Unavailable)
	}
}

// TestSubjectsOnUpdateTellsEveryUpdate: an observer hears every Update, of any user, with or without an
// open call, after the user's refused calls ended; a miss, Forget, DropAll and ForgetAll tell nothing;
// after stop, nothing more.
func TestSubjectsOnUpdateTellsEveryUpdate(t *testing.T) {
	ctx := context.Background()
	courierState := auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}}
	l := &fakeLoader{states: map[string]auth.SubjectState{"u1": courierState}}
	s := auth.NewSubjects(l.load, auth.SubjectsOptions{})
	u1 := auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{auth.RoleCourier}, IssuedAt: issued}
	call, stopCall := s.Track(ctx, u1)
	defer stopCall()

	type update struct {
		user      string
		st        auth.SubjectState
		callEnded bool
	}
	var got []update
	stop := s.OnUpdate(func(id string, st auth.SubjectState) {
		got = append(got, update{id, st, id == "u1" && call.Err() != nil})
	})
	if _, err := s.State(ctx, "u1"); err != nil { // a miss: read, not an update
		t.Fatal(err)
	}
	suspended := auth.SubjectState{Roles: []string{auth.RoleCourier}}
	s.Update("u1", suspended)
	s.Update("u2", courierState) // a user without a call
	s.Forget("u1")
	s.DropAll()
	s.ForgetAll()
	stop()
	s.Update("u2", suspended)

	want := []update{{"u1", suspended, true}, {"u2", courierState, false}}
	if len(got) != len(want) {
		t.Fatalf("observed %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].user != want[i].user || got[i].st.Active != want[i].st.Active || got[i].callEnded != want[i].callEnded {
			t.Errorf("update %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}
