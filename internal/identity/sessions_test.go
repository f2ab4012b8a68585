package identity_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"

	"lastmile/internal/identity"
	"lastmile/internal/identity/identitytest"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

func TestLogin(t *testing.T) {
	f := newFixture(t)
	u := f.mustUser(t, "login", identity.RoleCourier)
	f.clock.Advance(time.Minute)
	now := f.clock.Now().Truncate(time.Microsecond)

	for _, c := range []identity.Credentials{
		{Email: "LOGIN@Example.com", Password: password},
		{Username: "LOGIN", Password: password},
	} {
		s, err := f.svc.Login(anonymous(t), c)
		if err != nil {
			t.Fatalf("Login(%+v) = %v", c, err)
		}
		if want := fmt.Sprintf("access.%s.courier.", u.ID); !strings.HasPrefix(s.AccessToken, want) {
			t.Errorf("AccessToken = %q, want one issued to %s with role courier", s.AccessToken, u.ID)
		}
		if len(s.RefreshToken) != 43 || !s.RefreshTokenExpiresAt.Equal(now.Add(identity.DefaultRefreshTokenTTL)) {
			t.Errorf("refresh token %q expiring %v, want 43 characters expiring %v", s.RefreshToken, s.RefreshTokenExpiresAt, now.Add(identity.DefaultRefreshTokenTTL))
		}
		if s.User.ID != u.ID || !s.User.LastLoginAt.Equal(now) {
			t.Errorf("session user = %s last login %v, want %s at %v", s.User.ID, s.User.LastLoginAt, u.ID, now)
		}
	}
	f.wantActivityTypes(t, identity.ActivityLogin, identity.ActivityLogin)
}

func TestLoginFailuresLookAlike(t *testing.T) {
	f := newFixture(t)
	f.mustUser(t, "active", identity.RoleCustomer)
	suspended := f.mustUser(t, "suspended", identity.RoleCustomer)
	if _, err := f.svc.UpdateUser(f.admin(t), identity.UserUpdate{ID: suspended.ID, Paths: []string{"status"}, Status: identity.StatusSuspended}); err != nil {
		t.Fatal(err)
	}
	deleted := f.mustUser(t, "deleted", identity.RoleCustomer)
	if _, err := f.svc.DeleteUser(f.admin(t), deleted.ID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		c         identity.Credentials
		wantDummy int // DummyVerify calls
	}{
		{"unknown email", identity.Credentials{Email: "nobody@example.com", Password: password}, 1},
		{"unknown username", identity.Credentials{Username: "nobody", Password: password}, 1},
		{"wrong password", identity.Credentials{Email: "active@example.com", Password: "wrong password"}, 0},
		{"suspended", identity.Credentials{Email: "suspended@example.com", Password: password}, 0},
		{"deleted", identity.Credentials{Email: "deleted@example.com", Password: password}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.hasher.DummyVerifies()
			_, err := f.svc.Login(anonymous(t), tt.c)
			e := apperr.As(err)
			if e == nil || e.Code != apperr.Unauthenticated || e.Message != "invalid credentials" {
				t.Errorf("Login() = %v, want Unauthenticated %q", err, "invalid credentials")
			}
			if got := f.hasher.DummyVerifies() - before; got != tt.wantDummy {
				t.Errorf("DummyVerify calls = %d, want %d", got, tt.wantDummy)
			}
		})
	}
}

func TestLoginValidation(t *testing.T) {
	f := newFixture(t)
	for _, c := range []identity.Credentials{
		{Password: password},
		{Email: "a@example.com"},
		{Email: "a@example.com", Username: "a", Password: password},
		{Username: strings.Repeat("u", 33), Password: password},
		{Email: "a@example.com", Password: strings.Repeat("p", 129)},
	} {
		_, err := f.svc.Login(anonymous(t), c)
		apperrtest.WantCode(t, fmt.Sprintf("Login(%+v)", c), err, apperr.Invalid)
	}
}

func TestLoginRateLimitPerAccount(t *testing.T) {
	f := newFixture(t)
	f.mustUser(t, "target", identity.RoleCustomer)
	for _, name := range []string{"target", "nobody"} {
		t.Run(name, func(t *testing.T) {
			email := name + "@example.com"
			for i := range identity.DefaultLoginFailures {
				_, err := f.svc.Login(anonymous(t), identity.Credentials{Email: email, Password: fmt.Sprintf("wrong %d", i)})
				apperrtest.WantCode(t, fmt.Sprintf("Login(failure %d)", i+1), err, apperr.Unauthenticated)
			}
			// The limit holds for the right password too, and for another spelling of the email.
			_, err := f.svc.Login(anonymous(t), identity.Credentials{Email: strings.ToUpper(email), Password: password})
			e := apperr.As(err)
			// 5 failures per 15 minutes: one more attempt every 3 minutes.
			if e == nil || e.Code != apperr.ResourceExhausted || e.RetryAfter != 3*time.Minute {
				t.Fatalf("Login(after %d failures) = %v, want ResourceExhausted with RetryAfter 3m", identity.DefaultLoginFailures, err)
			}
		})
	}
	// Other accounts are not affected; after the delay, the right password works again.
	if _, err := f.svc.CreateUser(anonymous(t), identity.NewUser{Email: "bystander@example.com", Password: password, DisplayName: "B"}); err != nil {
		t.Fatal(err)
	}
	f.mustLogin(t, "bystander@example.com")
	f.clock.Advance(3 * time.Minute)
	f.mustLogin(t, "target@example.com")
	// Success clears the account's failures.
	for range identity.DefaultLoginFailures - 1 {
		_, err := f.svc.Login(anonymous(t), identity.Credentials{Email: "target@example.com", Password: "wrong"})
		apperrtest.WantCode(t, "Login(wrong, after success)", err, apperr.Unauthenticated)
	}
	if _, err := f.svc.Login(anonymous(t), identity.Credentials{Email: "target@example.com", Password: password}); err != nil {
		t.Errorf("Login(right, 4 failures after a success) = %v, want nil", err)
	}
}

func TestLoginRateLimitPerClient(t *testing.T) {
	f := newFixture(t, func(o *identity.Options) {
		o.LoginClientFailures = 3
		o.ClientKey = func(ctx context.Context) string { return clientOf(ctx) }
	})
	f.mustUser(t, "victim", identity.RoleCustomer)
	attacker := withClient(anonymous(t), "ip:203.0.113.7")
	for i := range 3 {
		_, err := f.svc.Login(attacker, identity.Credentials{Email: fmt.Sprintf("guess%d@example.com", i), Password: "123456"})
		apperrtest.WantCode(t, "Login(spray)", err, apperr.Unauthenticated)
	}
	_, err := f.svc.Login(attacker, identity.Credentials{Email: "victim@example.com", Password: password})
	if e := apperr.As(err); e == nil || e.Code != apperr.ResourceExhausted || e.RetryAfter <= 0 {
		t.Errorf("Login(4th account from the client) = %v, want ResourceExhausted with a RetryAfter", err)
	}
	// Another client logs in to the same account.
	if _, err := f.svc.Login(withClient(anonymous(t), "ip:198.51.100.1"), identity.Credentials{Email: "victim@example.com", Password: password}); err != nil {
		t.Errorf("Login(from another client) = %v, want nil", err)
	}
}

type clientKey struct{}

func withClient(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, clientKey{}, key)
}

func clientOf(ctx context.Context) string {
	k, _ := ctx.Value(clientKey{}).(string)
	return k
}

func TestLoginRehashesOutdatedHashes(t *testing.T) {
	f := newFixture(t)
	u := f.mustUser(t, "rehash", identity.RoleCustomer)
	f.hasher.Upgrade()
	f.mustLogin(t, "rehash@example.com")
	got := f.mustGet(t, u.ID).PasswordHash
	if got == u.PasswordHash || !strings.HasPrefix(got, "fake$v1$") {
		t.Errorf("hash after login = %q, want a new version-1 hash (was %q)", got, u.PasswordHash)
	}
	f.mustLogin(t, "rehash@example.com")
}

func TestRefreshTokenRotation(t *testing.T) {
	f := newFixture(t)
	f.mustUser(t, "rotate", identity.RoleCustomer)
	first := f.mustLogin(t, "rotate@example.com")

	f.clock.Advance(time.Hour)
	second, err := f.svc.RefreshToken(anonymous(t), first.RefreshToken)
	if err != nil {
		t.Fatalf("RefreshToken(first) = %v", err)
	}
	if second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
		t.Error("RefreshToken() returned the old tokens, want new ones")
	}
	if !second.RefreshTokenExpiresAt.Equal(first.RefreshTokenExpiresAt) {
		t.Errorf("rotated token expires %v, want the family's expiry %v", second.RefreshTokenExpiresAt, first.RefreshTokenExpiresAt)
	}
	third, err := f.svc.RefreshToken(anonymous(t), second.RefreshToken)
	if err != nil {
		t.Fatalf("RefreshToken(second) = %v", err)
	}

	// Reuse of an old token: refused, and the whole family dies, the newest token included.
	_, err = f.svc.RefreshToken(anonymous(t), first.RefreshToken)
	apperrtest.WantCode(t, "RefreshToken(reused first)", err, apperr.Unauthenticated)
	_, err = f.svc.RefreshToken(anonymous(t), third.RefreshToken)
	apperrtest.WantCode(t, "RefreshToken(newest after reuse)", err, apperr.Unauthenticated)

	// Another session of the same user is unaffected.
	other := f.mustLogin(t, "rotate@example.com")
	if _, err := f.svc.RefreshToken(anonymous(t), other.RefreshToken); err != nil {
		t.Errorf("RefreshToken(other session) = %v, want nil", err)
	}
}

func TestRefreshTokenRefusals(t *testing.T) {
	f := newFixture(t)
	u := f.mustUser(t, "refuse", identity.RoleCustomer)
	expired := f.mustLogin(t, "refuse@example.com")
	f.clock.Advance(identity.DefaultRefreshTokenTTL)
	live := f.mustLogin(t, "refuse@example.com")

	_, err := f.svc.RefreshToken(anonymous(t), expired.RefreshToken)
	apperrtest.WantCode(t, "RefreshToken(expired)", err, apperr.Unauthenticated)
	_, err = f.svc.RefreshToken(anonymous(t), "made-up-token")
	apperrtest.WantCode(t, "RefreshToken(unknown)", err, apperr.Unauthenticated)
	_, err = f.svc.RefreshToken(anonymous(t), "")
	apperrtest.WantCode(t, "RefreshToken(empty)", err, apperr.Invalid)
	_, err = f.svc.RefreshToken(anonymous(t), strings.Repeat("t", 513))
	apperrtest.WantCode(t, "RefreshToken(oversized)", err, apperr.Invalid)

	if _, err := f.svc.UpdateUser(f.admin(t), identity.UserUpdate{ID: u.ID, Paths: []string{"status"}, Status: identity.StatusSuspended}); err != nil {
		t.Fatal(err)
	}
	_, err = f.svc.RefreshToken(anonymous(t), live.RefreshToken)
	apperrtest.WantCode(t, "RefreshToken(suspended user)", err, apperr.Unauthenticated)
	if _, err := f.svc.UpdateUser(f.admin(t), identity.UserUpdate{ID: u.ID, Paths: []string{"status"}, Status: identity.StatusActive}); err != nil {
		t.Fatal(err)
	}
	// The suspension revoked the sessions: reactivation does not bring them back (issue 8), a new login
	// starts a new one.
	_, err = f.svc.RefreshToken(anonymous(t), live.RefreshToken)
	apperrtest.WantCode(t, "RefreshToken(reactivated user, session from before the suspension)", err, apperr.Unauthenticated)
	fresh := f.mustLogin(t, u.Email)
	if _, err := f.svc.RefreshToken(anonymous(t), fresh.RefreshToken); err != nil {
		t.Errorf("RefreshToken(reactivated user, new session) = %v, want nil", err)
	}
}

func TestLogout(t *testing.T) {
	f := newFixture(t)
	f.mustUser(t, "logout", identity.RoleCustomer)
	s := f.mustLogin(t, "logout@example.com")
	rotated, err := f.svc.RefreshToken(anonymous(t), s.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	// Any token of the session ends it, even one already rotated.
	if err := f.svc.Logout(anonymous(t), s.RefreshToken); err != nil {
		t.Fatalf("Logout() = %v", err)
	}
	_, err = f.svc.RefreshToken(anonymous(t), rotated.RefreshToken)
	apperrtest.WantCode(t, "RefreshToken(after logout)", err, apperr.Unauthenticated)
	for _, token := range []string{s.RefreshToken, rotated.RefreshToken, "unknown-token"} {
		if err := f.svc.Logout(anonymous(t), token); err != nil {
			t.Errorf("Logout(again or unknown) = %v, want nil", err)
		}
	}
	apperrtest.WantCode(t, "Logout(empty)", f.svc.Logout(anonymous(t), ""), apperr.Invalid)

	f.wantActivityTypes(t, identity.ActivityLogin, identity.ActivityLogout)
}

// TestLoginRateLimitCountsAccountNotName checks that an existing account's failures count together however
// it is named: alternating email and username must not double an attacker's guesses.
func TestLoginRateLimitCountsAccountNotName(t *testing.T) {
	f := newFixture(t)
	f.mustUser(t, "target", identity.RoleCustomer)
	for i := range identity.DefaultLoginFailures {
		creds := identity.Credentials{Email: "target@example.com", Password: fmt.Sprintf("wrong %d", i)}
		if i%2 == 1 {
			creds = identity.Credentials{Username: "TARGET", Password: fmt.Sprintf("wrong %d", i)}
		}
		_, err := f.svc.Login(anonymous(t), creds)
		apperrtest.WantCode(t, fmt.Sprintf("Login(failure %d)", i+1), err, apperr.Unauthenticated)
	}
	for _, creds := range []identity.Credentials{
		{Email: "target@example.com", Password: "wrong again"},
		{Username: "target", Password: "wrong again"},
	} {
		_, err := f.svc.Login(anonymous(t), creds)
		apperrtest.WantCode(t, fmt.Sprintf("Login(%+v) after %d mixed failures", identity.Credentials{Email: creds.Email, Username: creds.Username}, identity.DefaultLoginFailures), err, apperr.ResourceExhausted)
	}
}

// TestRefreshTokenConcurrentUse presents one refresh token in several calls at once, on the real store:
// exactly one rotates it, and the others are reuse, which revokes the family, the winner's new token
// included.
func TestRefreshTokenConcurrentUse(t *testing.T) {
	f := newFixture(t)
	f.mustUser(t, "racer", identity.RoleCustomer)
	s := f.mustLogin(t, "racer@example.com")

	identitytest.CheckRefreshRace(anonymous(t), t, f.svc, s.RefreshToken, 8)
}

// TestRefreshTokenExpiryEdge checks that a session's tokens work up to its expiry, to the microsecond.
func TestRefreshTokenExpiryEdge(t *testing.T) {
	f := newFixture(t)
	f.mustUser(t, "edge", identity.RoleCustomer)
	s := f.mustLogin(t, "edge@example.com")
	f.clock.Advance(identity.DefaultRefreshTokenTTL - time.Microsecond)
	next, err := f.svc.RefreshToken(anonymous(t), s.RefreshToken)
	if err != nil {
		t.Fatalf("RefreshToken(a microsecond before expiry) = %v, want nil", err)
	}
	f.clock.Advance(time.Microsecond)
	_, err = f.svc.RefreshToken(anonymous(t), next.RefreshToken)
	apperrtest.WantCode(t, "RefreshToken(at expiry)", err, apperr.Unauthenticated)
}

// TestRefreshTokenReuseBySuspendedUser checks that reuse revokes the family whoever holds it: a token
// of a suspended user that was already used still ends the session, so reactivating the user does not
// bring it back.
func TestRefreshTokenReuseBySuspendedUser(t *testing.T) {
	f := newFixture(t)
	u := f.mustUser(t, "paused", identity.RoleCustomer)
	first := f.mustLogin(t, "paused@example.com")
	second, err := f.svc.RefreshToken(anonymous(t), first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	for _, status := range []identity.Status{identity.StatusSuspended, identity.StatusActive} {
		if _, err := f.svc.UpdateUser(f.admin(t), identity.UserUpdate{ID: u.ID, Paths: []string{"status"}, Status: status}); err != nil {
			t.Fatal(err)
		}
		if status == identity.StatusSuspended {
			_, err = f.svc.RefreshToken(anonymous(t), first.RefreshToken)
			apperrtest.WantCode(t, "RefreshToken(reused, suspended user)", err, apperr.Unauthenticated)
		}
	}
	_, err = f.svc.RefreshToken(anonymous(t), second.RefreshToken)
	apperrtest.WantCode(t, "RefreshToken(newest after reuse, reactivated user)", err, apperr.Unauthenticated)
}

// TestPurgeExpiredSessions checks that the tokens of expired sessions are deleted, and only those: every
// login and rotation stores a token, and before the purge nothing ever deleted one (the identity database
// grew by about 96 rows a day per app that refreshes every 15 minutes, forever).
func TestPurgeExpiredSessions(t *testing.T) {
	onEngines(t, func(t *testing.T, newFixture fixtureFunc) {
		f := newFixture(t)
		f.mustUser(t, "purged", identity.RoleCustomer)
		first := f.mustLogin(t, "purged@example.com")
		rotated, err := f.svc.RefreshToken(anonymous(t), first.RefreshToken)
		if err != nil {
			t.Fatalf("RefreshToken() = %v, want nil", err)
		}
		f.clock.Advance(24 * time.Hour)
		second := f.mustLogin(t, "purged@example.com")

		if n, err := f.svc.PurgeExpiredSessions(t.Context()); err != nil || n != 0 {
			t.Fatalf("PurgeExpiredSessions(nothing expired) = %d, %v, want 0, nil", n, err)
		}
		f.clock.Advance(identity.DefaultRefreshTokenTTL - 24*time.Hour) // the first session's end
		if n, err := f.svc.PurgeExpiredSessions(t.Context()); err != nil || n != 2 {
			t.Fatalf("PurgeExpiredSessions(first session expired) = %d, %v, want 2 (its login and its rotation), nil", n, err)
		}
		for _, tok := range []string{first.RefreshToken, rotated.RefreshToken} {
			_, err := f.store.GetRefreshToken(t.Context(), hashOf(tok))
			apperrtest.WantCode(t, "GetRefreshToken(token of the expired session)", err, apperr.NotFound)
			_, err = f.svc.RefreshToken(anonymous(t), tok)
			apperrtest.WantCode(t, "RefreshToken(token of the expired session)", err, apperr.Unauthenticated)
		}
		if _, err := f.svc.RefreshToken(anonymous(t), second.RefreshToken); err != nil {
			t.Errorf("RefreshToken(the live session) = %v, want nil", err)
		}
	})
}

// hashOf is how stores key a refresh token: its SHA-256.
func hashOf(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}
