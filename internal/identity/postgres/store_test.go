package postgres_test

import (
	"cmp"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"lastmile/internal/identity"
	"lastmile/internal/identity/identitytest"
	"lastmile/internal/identity/postgres"
	"lastmile/internal/identity/sqlstore"
	"lastmile/internal/identity/storetest"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newStore returns the store on a fresh, migrated PostgreSQL database, closed when the test ends.
func newStore(t *testing.T) *sqlstore.Store {
	pool := databasetest.Postgres(t, "identity")
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := database.MigratePostgres(ctx, pool, postgres.Migrations()); err != nil {
		t.Fatalf("MigratePostgres() = %v", err)
	}
	s := postgres.New(pool)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) identity.Store { return newStore(t) })
}

// TestRefreshTokenRace runs the Service's refresh-token rotation on PostgreSQL, where the calls run on
// several connections at once: of concurrent refreshes with one token exactly one wins, and the others
// are reuse, which revokes the family, the winner's new token included.
func TestRefreshTokenRace(t *testing.T) {
	ctx := t.Context()
	svc := identity.NewService(newStore(t), &identitytest.Hasher{}, &identitytest.Issuer{}, identity.Options{})
	const password = "correct horse battery"
	if _, err := svc.CreateUser(ctx, identity.NewUser{Email: "racer@example.com", Password: password, DisplayName: "Racer"}); err != nil {
		t.Fatalf("CreateUser() = %v", err)
	}
	for range 5 {
		s, err := svc.Login(ctx, identity.Credentials{Email: "racer@example.com", Password: password})
		if err != nil {
			t.Fatalf("Login() = %v", err)
		}
		identitytest.CheckRefreshRace(ctx, t, svc, s.RefreshToken, 6)
	}
}

// TestDeadlockRetried makes two UpdateUser transactions deadlock for certain: each locks its own admin,
// waits until the other has too, then counts (and so locks) every active admin. PostgreSQL aborts one to
// break the cycle; the store runs it again, and it then sees the other's committed change.
func TestDeadlockRetried(t *testing.T) {
	ctx := t.Context()
	store := newStore(t)
	at := time.Date(2026, 5, 4, 10, 30, 0, 0, time.UTC)
	var admins []identity.User
	for _, name := range []string{"root1", "root2"} {
		u := identity.User{ID: name, Email: name + "@example.com", Role: identity.RoleAdmin, Status: identity.StatusActive, CreatedAt: at, UpdatedAt: at, Version: 1}
		if err := store.CreateUser(ctx, u); err != nil {
			t.Fatalf("CreateUser(%s) = %v", name, err)
		}
		admins = append(admins, u)
	}

	var lastAdmin error = apperr.Errorf(apperr.FailedPrecondition, "the last active admin")
	var arrived sync.WaitGroup
	arrived.Add(2)
	var calls [2]int
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, u := range admins {
		wg.Go(func() {
			errs[i] = store.UpdateUser(ctx, u.ID, func(tx identity.UserTx, cur identity.User) (identity.User, []identity.Activity, error) {
				calls[i]++
				if calls[i] == 1 {
					arrived.Done()
					arrived.Wait() // both hold their own row now
				}
				if n, err := tx.CountActiveAdmins(ctx); err != nil || n <= 1 {
					return identity.User{}, nil, cmp.Or(err, lastAdmin)
				}
				next := cur
				next.Status, next.Version = identity.StatusSuspended, cur.Version+1
				return next, nil, nil
			})
		})
	}
	wg.Wait()
	won, refused := 0, 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case errors.Is(err, lastAdmin):
			refused++
		default:
			t.Errorf("UpdateUser(%s) = %v, want nil or the closure's refusal", admins[i].ID, err)
		}
	}
	if won != 1 || refused != 1 {
		t.Errorf("%d demotions won and %d were refused, want 1 and 1", won, refused)
	}
	// At least one run is a deadlock victim's retry. Under load PostgreSQL may pick the retried
	// transaction as a victim again (seen: 1 and 3 runs), so the count of retries is not fixed.
	if calls[0]+calls[1] < 3 {
		t.Errorf("the closures ran %d and %d times, want at least 3 runs in all (a deadlock victim run again)", calls[0], calls[1])
	}
}
