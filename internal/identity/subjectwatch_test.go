package identity_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

// watch runs svc.WatchSubjects until the test ends, sending each batch to the returned channel; release,
// when not nil, is waited on before every send but the first.
func watch(t *testing.T, svc *identity.Service, release <-chan struct{}) (<-chan []identity.SubjectChange, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	batches, done, finished := make(chan []identity.SubjectChange, 64), make(chan error, 1), make(chan struct{})
	sent := 0
	go func() {
		defer close(finished)
		done <- svc.WatchSubjects(ctx, func(b []identity.SubjectChange) error {
			if sent++; sent > 1 && release != nil {
				<-release
			}
			select {
			case batches <- b:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-finished })
	return batches, done
}

// TestWatchSubjectsDeliversChanges: a watch starts with a lone reset, then carries a suspended user's new
// standing, the same that SubjectState reads.
func TestWatchSubjectsDeliversChanges(t *testing.T) {
	f := newFixture(t)
	f.run(t)
	boss := f.mustUser(t, "boss", identity.RoleAdmin)
	u := f.mustUser(t, "sus", identity.RoleCourier)
	batches, _ := watch(t, f.svc, nil)
	if first := <-batches; !cmp.Equal(first, []identity.SubjectChange{{Reset: true}}) {
		t.Fatalf("first batch = %v, want a lone reset", first)
	}
	if _, err := f.svc.UpdateUser(as(t, boss), identity.UserUpdate{ID: u.ID, Paths: []string{"status"}, Status: identity.StatusSuspended}); err != nil {
		t.Fatalf("suspend: %v", err)
	}
	want, err := f.svc.SubjectState(context.Background(), u.ID)
	if err != nil || want.Active {
		t.Fatalf("SubjectState(suspended) = %v, %v; want an inactive state", want, err)
	}
	guard := time.After(testTimeout)
	for {
		select {
		case b := <-batches:
			for _, c := range b {
				if c.Reset {
					t.Fatalf("a reset after the first batch: %v", b)
				}
				if c.UserID == u.ID {
					if diff := cmp.Diff(identity.SubjectChange{UserID: u.ID, State: want}, c); diff != "" {
						t.Errorf("change of the suspended user mismatch (-want +got):\n%s", diff)
					}
					return
				}
			}
		case <-guard:
			t.Fatal("no change of the suspended user delivered")
		}
	}
}

// TestWatchSubjectsEndsSlowWatcher: a watcher that lets more changes wait than its buffer holds is ended
// with ResourceExhausted instead of holding up the service.
func TestWatchSubjectsEndsSlowWatcher(t *testing.T) {
	f := newFixture(t, func(o *identity.Options) { o.SubjectWatchBuffer = 2 })
	f.run(t)
	boss := f.mustUser(t, "boss", identity.RoleAdmin)
	var users []identity.User
	// The watch holds at most 2 changes in its batch (blocked in send) and 2 in its buffer: six suspensions
	// overflow it whatever the timing (each publishes at least once: at commit, and again when the hub
	// reads it from the event log).
	for _, name := range []string{"slow1", "slow2", "slow3", "slow4", "slow5", "slow6"} {
		users = append(users, f.mustUser(t, name, identity.RoleCourier))
	}
	release := make(chan struct{})
	batches, done := watch(t, f.svc, release)
	<-batches // the reset: the watch is registered
	for _, u := range users {
		if _, err := f.svc.UpdateUser(as(t, boss), identity.UserUpdate{ID: u.ID, Paths: []string{"status"}, Status: identity.StatusSuspended}); err != nil {
			t.Fatalf("suspend %s: %v", u.ID, err)
		}
	}
	close(release)
	select {
	case err := <-done:
		apperrtest.WantCode(t, "WatchSubjects(slow watcher)", err, apperr.ResourceExhausted)
	case <-time.After(testTimeout):
		t.Fatal("the slow watcher was not ended")
	}
}

// TestWatchSubjectsEndsWhenRunStops: when Run returns (the process stops), every watch ends with
// Unavailable, so that it does not hold up the server's graceful stop, and new ones are refused.
func TestWatchSubjectsEndsWhenRunStops(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- f.svc.Run(ctx) }()
	batches, done := watch(t, f.svc, nil)
	<-batches // the reset: the watch is registered
	cancel()
	if err := <-ran; err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	select {
	case err := <-done:
		apperrtest.WantCode(t, "WatchSubjects(after Run returned)", err, apperr.Unavailable)
	case <-time.After(testTimeout):
		t.Fatal("the watch did not end when Run returned")
	}
	err := f.svc.WatchSubjects(context.Background(), func([]identity.SubjectChange) error { return nil })
	apperrtest.WantCode(t, "WatchSubjects(new, after Run returned)", err, apperr.Unavailable)
}
