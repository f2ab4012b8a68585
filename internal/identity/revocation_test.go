package identity_test

import (
	"context"
	"testing"
	"time"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
	"lastmile/internal/platform/auth"
)

// newRevocationFixture returns a fixture whose Service keeps an auth.Subjects current, as serve wires it.
func newRevocationFixture(t *testing.T) (*fixture, *auth.Subjects) {
	t.Helper()
	var svc *identity.Service
	subjects := auth.NewSubjects(func(ctx context.Context, id string) (auth.SubjectState, error) {
		return svc.SubjectState(ctx, id)
	}, auth.SubjectsOptions{})
	f := newFixture(t, func(o *identity.Options) { o.Subjects = subjects })
	svc = f.svc
	f.run(t)
	return f, subjects
}

// token is the principal of an access token of u issued now on the fixture's clock (whole seconds, as
// "iat").
func (f *fixture) token(u identity.User) auth.Principal {
	return auth.Principal{Kind: auth.User, Subject: u.ID, Roles: []string{string(u.Role)}, IssuedAt: f.clock.Now().Truncate(time.Second)}
}

func wantRevoked(t *testing.T, subjects *auth.Subjects, what string, p auth.Principal, tracked context.Context) {
	t.Helper()
	apperrtest.WantCode(t, "Check("+what+")", subjects.Check(context.Background(), p), apperr.Unauthenticated)
	if tracked != nil && apperr.CodeOf(auth.RevokedCause(tracked)) != apperr.Unauthenticated {
		t.Errorf("the user's tracked call after %s: cause %v, want Unauthenticated", what, context.Cause(tracked))
	}
}

// TestRevocationTakesEffect: suspension, role change, deletion, password change and logout refuse the
// user's existing tokens at the next call and end their tracked calls; a profile change does not;
// reactivation does not revive old tokens, while new ones work.
func TestRevocationTakesEffect(t *testing.T) {
	f, subjects := newRevocationFixture(t)
	boss := f.mustUser(t, "boss", identity.RoleAdmin)
	ctx := context.Background()
	track := func(p auth.Principal) context.Context {
		if err := subjects.Check(ctx, p); err != nil {
			t.Fatalf("Check(fresh token of %s) = %v, want nil", p.Subject, err)
		}
		tracked, stop := subjects.Track(ctx, p)
		t.Cleanup(stop)
		return tracked
	}

	t.Run("suspension", func(t *testing.T) {
		u := f.mustUser(t, "sus", identity.RoleCourier)
		p := f.token(u)
		tracked := track(p)
		if _, err := f.svc.UpdateUser(as(t, u), identity.UserUpdate{ID: u.ID, Paths: []string{"display_name"}, DisplayName: "Still Fine"}); err != nil {
			t.Fatal(err)
		}
		if err := subjects.Check(ctx, p); err != nil || tracked.Err() != nil {
			t.Fatalf("after a profile change: Check = %v, call ended = %v; want neither", err, tracked.Err())
		}
		if _, err := f.svc.UpdateUser(as(t, boss), identity.UserUpdate{ID: u.ID, Paths: []string{"status"}, Status: identity.StatusSuspended}); err != nil {
			t.Fatal(err)
		}
		wantRevoked(t, subjects, "suspended user", p, tracked)
		if _, err := f.svc.UpdateUser(as(t, boss), identity.UserUpdate{ID: u.ID, Paths: []string{"status"}, Status: identity.StatusActive}); err != nil {
			t.Fatal(err)
		}
		wantRevoked(t, subjects, "token from before the suspension, user reactivated", p, nil)
		f.clock.Advance(2 * time.Second)
		if err := subjects.Check(ctx, f.token(f.mustGet(t, u.ID))); err != nil {
			t.Errorf("Check(token issued after the reactivation) = %v, want nil", err)
		}
	})
	t.Run("role change", func(t *testing.T) {
		u := f.mustUser(t, "role", identity.RoleCourier)
		p := f.token(u)
		tracked := track(p)
		if _, err := f.svc.UpdateUser(as(t, boss), identity.UserUpdate{ID: u.ID, Paths: []string{"role"}, Role: identity.RoleCustomer}); err != nil {
			t.Fatal(err)
		}
		wantRevoked(t, subjects, "token with the old role", p, tracked)
	})
	t.Run("deletion", func(t *testing.T) {
		u := f.mustUser(t, "del", identity.RoleCustomer)
		p := f.token(u)
		tracked := track(p)
		if _, err := f.svc.DeleteUser(as(t, u), u.ID); err != nil {
			t.Fatal(err)
		}
		wantRevoked(t, subjects, "deleted user", p, tracked)
	})
	t.Run("password change", func(t *testing.T) {
		u := f.mustUser(t, "pwd", identity.RoleCustomer)
		p := f.token(u)
		tracked := track(p)
		if err := f.svc.ChangePassword(as(t, u), u.ID, password, "an entirely new passphrase"); err != nil {
			t.Fatal(err)
		}
		wantRevoked(t, subjects, "token from before the password change", p, tracked)
	})
	t.Run("logout", func(t *testing.T) {
		u := f.mustUser(t, "out", identity.RoleCustomer)
		s := f.mustLogin(t, u.Email)
		p := f.token(u)
		tracked := track(p)
		if err := f.svc.Logout(anonymous(t), s.RefreshToken); err != nil {
			t.Fatal(err)
		}
		wantRevoked(t, subjects, "token from before the logout", p, tracked)
		// Signing in again right away works: the new token belongs to a later second.
		again := f.mustLogin(t, u.Email)
		f.clock.Advance(time.Second)
		if err := subjects.Check(ctx, f.token(again.User)); err != nil {
			t.Errorf("Check(token of the next login) = %v, want nil", err)
		}
	})
}

// TestSubjectStateOfUnknownUser: a token of a user that does not exist is refused.
func TestSubjectStateOfUnknownUser(t *testing.T) {
	f, subjects := newRevocationFixture(t)
	st, err := f.svc.SubjectState(context.Background(), "00000000-0000-7000-8000-0000000000aa")
	if err != nil || st.Active {
		t.Errorf("SubjectState(unknown) = %+v, %v; want inactive, nil", st, err)
	}
	p := auth.Principal{Kind: auth.User, Subject: "00000000-0000-7000-8000-0000000000aa", Roles: []string{"admin"}, IssuedAt: start}
	apperrtest.WantCode(t, "Check(unknown user)", subjects.Check(context.Background(), p), apperr.Unauthenticated)
}

// TestRunDropsSubjectsLoadedBefore: states cached before the Service follows the event log may predate
// changes it will never read (made meanwhile on another replica), so Run drops them once it follows.
func TestRunDropsSubjectsLoadedBefore(t *testing.T) {
	var svc *identity.Service
	subjects := auth.NewSubjects(func(ctx context.Context, id string) (auth.SubjectState, error) {
		return svc.SubjectState(ctx, id)
	}, auth.SubjectsOptions{})
	f := newFixture(t, func(o *identity.Options) { o.Subjects = subjects })
	svc = f.svc
	boss := f.mustUser(t, "boss", identity.RoleAdmin)
	u := f.mustUser(t, "stale", identity.RoleCourier)
	p := f.token(u)
	if _, err := f.svc.UpdateUser(as(t, boss), identity.UserUpdate{ID: u.ID, Paths: []string{"status"}, Status: identity.StatusSuspended}); err != nil {
		t.Fatal(err)
	}
	// As if read before the suspension, which another replica made.
	subjects.Update(u.ID, auth.SubjectState{Active: true, Roles: []string{string(identity.RoleCourier)}})
	if err := subjects.Check(context.Background(), p); err != nil {
		t.Fatalf("Check(stale entry) = %v, want nil (the setup)", err)
	}
	f.run(t)
	w, err := f.svc.WatchActivity(as(t, boss)) // returns once Run follows the log
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	wantRevoked(t, subjects, "suspended user, once Run follows the log", p, nil)
}
