package identity_test

import (
	"context"
	"testing"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

func TestEnsureAdminGeneratesPasswordOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	created, generated, err := f.svc.EnsureAdmin(ctx, "", "")
	if err != nil || !created || len(generated) < 20 {
		t.Fatalf("EnsureAdmin(first start) = %v, %d characters, %v; want created with a generated password of 20+", created, len(generated), err)
	}
	s, err := f.svc.Login(anonymous(t), identity.Credentials{Email: identity.DefaultAdminEmail, Password: generated})
	if err != nil || s.User.Role != identity.RoleAdmin {
		t.Fatalf("Login(bootstrap admin) = %+v, %v; want an admin session", s.User, err)
	}
	created, again, err := f.svc.EnsureAdmin(ctx, "", "")
	if err != nil || created || again != "" {
		t.Errorf("EnsureAdmin(second start) = %v, %q, %v; want nothing done", created, again, err)
	}
}

func TestEnsureAdminWithConfiguredCredentials(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	created, generated, err := f.svc.EnsureAdmin(ctx, "Ops@Example.com", password)
	if err != nil || !created || generated != "" {
		t.Fatalf("EnsureAdmin(configured) = %v, %q, %v; want created without a generated password", created, generated, err)
	}
	f.mustLogin(t, "ops@example.com")
}

func TestEnsureAdminErrors(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, _, err := f.svc.EnsureAdmin(ctx, "admin@example.com", "short")
	apperrtest.WantCode(t, "EnsureAdmin(short password)", err, apperr.Invalid)

	// The address belongs to a customer: never turned into an admin behind anyone's back.
	f.mustUser(t, "taken", identity.RoleCustomer)
	_, _, err = f.svc.EnsureAdmin(ctx, "taken@example.com", "")
	apperrtest.WantCode(t, "EnsureAdmin(email of a customer)", err, apperr.Conflict)

	// Only active admins count.
	root := f.mustUser(t, "root", identity.RoleAdmin)
	other := f.mustUser(t, "other", identity.RoleAdmin)
	if _, err := f.svc.UpdateUser(as(t, other), identity.UserUpdate{ID: root.ID, Paths: []string{"status"}, Status: identity.StatusSuspended}); err != nil {
		t.Fatal(err)
	}
	if created, _, err := f.svc.EnsureAdmin(ctx, "", ""); err != nil || created {
		t.Errorf("EnsureAdmin(one active admin left) = %v, %v; want nothing done", created, err)
	}
	// Behind the last-admin guard's back (a database edited by hand, say).
	other.Status, other.Version = identity.StatusSuspended, other.Version+1
	if err := f.store.UpdateUser(ctx, other.ID, func(identity.UserTx, identity.User) (identity.User, []identity.Activity, error) {
		return other, nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if created, generated, err := f.svc.EnsureAdmin(ctx, "", ""); err != nil || !created || generated == "" {
		t.Errorf("EnsureAdmin(only suspended admins) = %v, %v; want a new admin", created, err)
	}
}
