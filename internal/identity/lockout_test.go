package identity_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

// sleeps records the backoff waits a Service asks for, without waiting.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(_ context.Context, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
}

func (s *sleeps) take() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.d
	s.d = nil
	return d
}

// perClient makes the fixture's ClientKey read the client set by withClient.
func perClient(o *identity.Options) { o.ClientKey = clientOf }

// TestStrangerCannotLockAccount is issue 8's repro: a client that fails 20 times on the admin's account
// does not keep the admin, on another client, from logging in at once; its own further attempts are
// refused, the right password included.
func TestStrangerCannotLockAccount(t *testing.T) {
	var waits sleeps
	f := newFixture(t, perClient, func(o *identity.Options) { o.Sleep = waits.sleep })
	f.mustUser(t, "admin", identity.RoleAdmin)
	attacker := withClient(anonymous(t), "ip:203.0.113.7")
	for i := range 20 {
		_, err := f.svc.Login(attacker, identity.Credentials{Email: "admin@example.com", Password: fmt.Sprintf("guess %d", i)})
		want := apperr.Unauthenticated
		if i >= identity.DefaultLoginFailures {
			want = apperr.ResourceExhausted
		}
		apperrtest.WantCode(t, fmt.Sprintf("Login(attacker's attempt %d)", i+1), err, want)
	}
	_, err := f.svc.Login(attacker, identity.Credentials{Email: "admin@example.com", Password: password})
	// 5 failures per 15 minutes: one more attempt every 3 minutes.
	if e := apperr.As(err); e == nil || e.Code != apperr.ResourceExhausted || e.RetryAfter != 3*time.Minute {
		t.Errorf("Login(attacker, right password) = %v, want ResourceExhausted with RetryAfter 3m", err)
	}
	if _, err := f.svc.Login(withClient(anonymous(t), "ip:198.51.100.1"), identity.Credentials{Email: "admin@example.com", Password: password}); err != nil {
		t.Errorf("Login(owner from another client) = %v, want nil", err)
	}
	if got := waits.take(); len(got) != 0 {
		t.Errorf("backoff waits = %v, want none: 5 failures are below the account's slowdown", got)
	}
}

// TestAccountSlowdownDelaysOnlyFailures: failures spread over many clients past LoginAccountSlowdown are
// answered after LoginBackoff; nothing is refused for them, and the right password is answered at once.
func TestAccountSlowdownDelaysOnlyFailures(t *testing.T) {
	var waits sleeps
	f := newFixture(t, perClient, func(o *identity.Options) {
		o.Sleep = waits.sleep
		o.LoginAccountSlowdown = 3
		o.LoginBackoff = 2 * time.Second
	})
	f.mustUser(t, "target", identity.RoleCustomer)
	for i := range 6 {
		client := withClient(anonymous(t), fmt.Sprintf("ip:203.0.113.%d", i))
		_, err := f.svc.Login(client, identity.Credentials{Email: "target@example.com", Password: "wrong password"})
		apperrtest.WantCode(t, fmt.Sprintf("Login(failure from client %d)", i), err, apperr.Unauthenticated)
		var want []time.Duration
		if i >= 3 {
			want = []time.Duration{2 * time.Second}
		}
		if got := waits.take(); !cmp.Equal(got, want) {
			t.Errorf("backoff waits of failure %d = %v, want %v", i+1, got, want)
		}
	}
	if _, err := f.svc.Login(withClient(anonymous(t), "ip:198.51.100.1"), identity.Credentials{Email: "target@example.com", Password: password}); err != nil {
		t.Errorf("Login(owner during the slowdown) = %v, want nil", err)
	}
	if got := waits.take(); len(got) != 0 {
		t.Errorf("backoff waits of the right password = %v, want none", got)
	}
	// The slowdown ends with the window.
	f.clock.Advance(identity.DefaultLoginWindow)
	_, err := f.svc.Login(withClient(anonymous(t), "ip:203.0.113.99"), identity.Credentials{Email: "target@example.com", Password: "wrong password"})
	apperrtest.WantCode(t, "Login(failure after the window)", err, apperr.Unauthenticated)
	if got := waits.take(); len(got) != 0 {
		t.Errorf("backoff waits after the window = %v, want none", got)
	}
}

// TestSignUpLimitPerClient: anonymous sign-ups count per client whatever their answer; the limit refuses
// with a RetryAfter, leaves other clients and admins alone, and refills over the window.
func TestSignUpLimitPerClient(t *testing.T) {
	f := newFixture(t, perClient, func(o *identity.Options) { o.SignUpLimit = 3; o.SignUpWindow = 3 * time.Minute })
	f.mustUser(t, "taken", identity.RoleCustomer)
	flood := withClient(anonymous(t), "ip:203.0.113.7")
	signUp := func(ctx context.Context, name string) error {
		_, err := f.svc.CreateUser(ctx, identity.NewUser{Email: name + "@example.com", Password: password, DisplayName: name})
		return err
	}
	apperrtest.WantCode(t, "CreateUser(new)", signUp(flood, "one"), "")
	apperrtest.WantCode(t, "CreateUser(taken)", signUp(flood, "taken"), apperr.Conflict)
	apperrtest.WantCode(t, "CreateUser(new)", signUp(flood, "two"), "")
	for _, name := range []string{"three", "taken"} {
		err := signUp(flood, name)
		if e := apperr.As(err); e == nil || e.Code != apperr.ResourceExhausted || e.RetryAfter != time.Minute {
			t.Errorf("CreateUser(%s) after 3 sign-ups = %v, want ResourceExhausted with RetryAfter 1m", name, err)
		}
	}
	if _, err := f.store.GetUser(context.Background(), identity.Lookup{Email: "three@example.com"}); apperr.CodeOf(err) != apperr.NotFound {
		t.Errorf("refused sign-up was stored (GetUser = %v)", err)
	}
	apperrtest.WantCode(t, "CreateUser(from another client)", signUp(withClient(anonymous(t), "ip:198.51.100.1"), "four"), "")
	apperrtest.WantCode(t, "CreateUser(by an admin from the flooding client)", signUp(withClient(f.admin(t), "ip:203.0.113.7"), "five"), "")
	f.clock.Advance(time.Minute)
	apperrtest.WantCode(t, "CreateUser(a minute later)", signUp(flood, "three"), "")
}

// TestSignUpTakenNameSkipsTheHasher: a taken email (a deleted account's too) or username is answered
// Conflict, with the stores' messages, without hashing the password.
func TestSignUpTakenNameSkipsTheHasher(t *testing.T) {
	f := newFixture(t)
	f.mustUser(t, "taken", identity.RoleCustomer)
	gone := f.mustUser(t, "gone", identity.RoleCustomer)
	if _, err := f.svc.DeleteUser(f.admin(t), gone.ID); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   identity.NewUser
		want string
	}{
		{"taken email", identity.NewUser{Email: "TAKEN@example.com"}, "email already registered"},
		{"deleted account's email", identity.NewUser{Email: "gone@example.com"}, "email already registered"},
		{"taken username", identity.NewUser{Email: "fresh@example.com", Username: "Taken"}, "username already taken"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Password, tt.in.DisplayName = password, "New"
			before := f.hasher.Hashes()
			_, err := f.svc.CreateUser(anonymous(t), tt.in)
			if e := apperr.As(err); e == nil || e.Code != apperr.Conflict || e.Message != tt.want {
				t.Errorf("CreateUser(%+v) = %v, want code %q with message %q", tt.in, err, apperr.Conflict, tt.want)
			}
			if got := f.hasher.Hashes() - before; got != 0 {
				t.Errorf("CreateUser(%s) hashed %d times, want 0", tt.name, got)
			}
		})
	}
	before := f.hasher.Hashes()
	if _, err := f.svc.CreateUser(anonymous(t), identity.NewUser{Email: "fresh@example.com", Password: password, DisplayName: "New"}); err != nil {
		t.Fatalf("CreateUser(fresh) = %v", err)
	}
	if got := f.hasher.Hashes() - before; got != 1 {
		t.Errorf("CreateUser(fresh) hashed %d times, want 1", got)
	}
}
