package identity_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/identity"
	"lastmile/internal/identity/identitytest"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
	"lastmile/internal/platform/auth"
)

// countingStore counts the calls of the store methods that batch work.
type countingStore struct {
	identity.Store
	mu          sync.Mutex
	listCalls   int
	createCalls []int // batch sizes of CreateUsers
}

func (s *countingStore) ListUsers(ctx context.Context, f identity.Filter, after string, limit int) ([]identity.User, error) {
	s.mu.Lock()
	s.listCalls++
	s.mu.Unlock()
	return s.Store.ListUsers(ctx, f, after, limit)
}

func (s *countingStore) CreateUsers(ctx context.Context, users []identity.User) ([]error, error) {
	s.mu.Lock()
	s.createCalls = append(s.createCalls, len(users))
	s.mu.Unlock()
	return s.Store.CreateUsers(ctx, users)
}

func (s *countingStore) calls() (list int, create []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listCalls, slices.Clone(s.createCalls)
}

func newCountingFixture(t *testing.T) (*fixture, *countingStore) {
	store := identitytest.SQLiteStore(t)
	cs := &countingStore{Store: store}
	return newFixtureWith(t, store, cs), cs
}

// seeded numbers the users of seedUsers, so that their emails stay unique.
var seeded atomic.Int64

// seedTimeout bounds seedUsers.
const seedTimeout = 5 * time.Minute

// seedUsers creates n users with role through BulkCreateUsers and returns their ids in creation order.
func (f *fixture) seedUsers(t *testing.T, n int, role identity.Role) []string {
	t.Helper()
	// Each user's password is checked for strength (zxcvbn), about 30 ms under -race: a thousand took more
	// than testTimeout on a loaded machine (TestStreamUsers: "BulkCreateUsers(seed) = context deadline
	// exceeded" after 64 s, twice in two -race runs at load 15-19). The bound is a hang guard.
	ctx, cancel := context.WithTimeout(auth.WithPrincipal(context.Background(), adminPrincipal), seedTimeout)
	defer cancel()
	var ids []string
	for n > 0 {
		chunk := min(n, identity.MaxBulkItems)
		n -= chunk
		users := make([]identity.NewUser, chunk)
		for i := range users {
			k := seeded.Add(1)
			users[i] = identity.NewUser{Email: fmt.Sprintf("seed%d@example.com", k), Password: password, DisplayName: fmt.Sprintf("Seed %d", k), Role: role}
		}
		results, err := f.svc.BulkCreateUsers(ctx, bulk(users...))
		if err != nil {
			t.Fatalf("BulkCreateUsers(seed) = %v", err)
		}
		for i, r := range results {
			if r.Err != nil {
				t.Fatalf("seed item %d: %v", i, r.Err)
			}
			ids = append(ids, r.UserID)
		}
	}
	return ids
}

func TestListUsersPages(t *testing.T) {
	f := newFixture(t)
	couriers := f.seedUsers(t, 5, identity.RoleCourier)
	f.seedUsers(t, 2, identity.RoleCustomer)
	disp := f.mustUser(t, "disp", identity.RoleDispatcher)
	filter := identity.Filter{Role: identity.RoleCourier}

	var got []string
	token := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("ListUsers did not finish after 5 pages")
		}
		page, err := f.svc.ListUsers(as(t, disp), identity.ListRequest{Filter: filter, PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatalf("ListUsers(page %d) = %v", pages, err)
		}
		if page.TotalSize != len(couriers) {
			t.Errorf("ListUsers(page %d) total = %d, want %d", pages, page.TotalSize, len(couriers))
		}
		for _, u := range page.Users {
			got = append(got, u.ID)
		}
		if pages == 0 {
			// Created between pages: it sorts after everything listed, so it appears exactly once.
			couriers = append(couriers, f.seedUsers(t, 1, identity.RoleCourier)...)
		}
		if token = page.NextPageToken; token == "" {
			break
		}
	}
	if diff := cmp.Diff(couriers, got); diff != "" {
		t.Errorf("listed ids mismatch (-want +got):\n%s", diff)
	}
}

func TestListUsersRefuses(t *testing.T) {
	f := newFixture(t)
	f.seedUsers(t, 3, identity.RoleCourier)
	disp := f.mustUser(t, "disp", identity.RoleDispatcher)
	cust := f.mustUser(t, "cust", identity.RoleCustomer)
	first, err := f.svc.ListUsers(f.admin(t), identity.ListRequest{PageSize: 1})
	if err != nil || first.NextPageToken == "" {
		t.Fatalf("ListUsers(first page) = %+v, %v; want a next page", first, err)
	}
	tests := []struct {
		name string
		ctx  context.Context
		req  identity.ListRequest
		want apperr.Code
	}{
		{"customer", as(t, cust), identity.ListRequest{}, apperr.PermissionDenied},
		{"dispatcher lists deleted", as(t, disp), identity.ListRequest{Filter: identity.Filter{Status: identity.StatusDeleted}}, apperr.PermissionDenied},
		{"admin lists deleted", f.admin(t), identity.ListRequest{Filter: identity.Filter{Status: identity.StatusDeleted}}, ""},
		{"page size too large", f.admin(t), identity.ListRequest{PageSize: 1001}, apperr.Invalid},
		{"negative page size", f.admin(t), identity.ListRequest{PageSize: -1}, apperr.Invalid},
		{"undefined role", f.admin(t), identity.ListRequest{Filter: identity.Filter{Role: "root"}}, apperr.Invalid},
		{"malformed token", f.admin(t), identity.ListRequest{PageToken: "!!"}, apperr.Invalid},
		{"token of other filters", f.admin(t), identity.ListRequest{PageToken: first.NextPageToken, Filter: identity.Filter{Search: "x"}}, apperr.Invalid},
		{"token of same filters", f.admin(t), identity.ListRequest{PageToken: first.NextPageToken, PageSize: 1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.ListUsers(tt.ctx, tt.req)
			apperrtest.WantCode(t, "ListUsers", err, tt.want)
		})
	}
}

func TestStreamUsers(t *testing.T) {
	f, cs := newCountingFixture(t)
	ids := f.seedUsers(t, 1100, identity.RoleCustomer)
	var got []string
	err := f.svc.StreamUsers(f.admin(t), identity.Filter{}, func(u identity.User) error {
		got = append(got, u.ID)
		return nil
	})
	if err != nil {
		t.Fatalf("StreamUsers() = %v", err)
	}
	if diff := cmp.Diff(ids, got); diff != "" {
		t.Errorf("streamed ids mismatch (-want +got):\n%s", diff)
	}
	if list, _ := cs.calls(); list != 3 {
		t.Errorf("StreamUsers read the store %d times, want 3 batches", list)
	}
	err = f.svc.StreamUsers(as(t, f.mustUser(t, "disp", identity.RoleDispatcher)), identity.Filter{}, func(identity.User) error { return nil })
	apperrtest.WantCode(t, "StreamUsers(dispatcher)", err, apperr.PermissionDenied)
}

func TestStreamUsersStopsWhenCancelled(t *testing.T) {
	f, cs := newCountingFixture(t)
	f.seedUsers(t, 1100, identity.RoleCustomer)
	ctx, cancel := context.WithCancel(f.admin(t))
	defer cancel()
	sent := 0
	err := f.svc.StreamUsers(ctx, identity.Filter{}, func(identity.User) error {
		if sent++; sent == 10 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("StreamUsers(cancelled) = %v, want context.Canceled", err)
	}
	if sent != 10 {
		t.Errorf("StreamUsers sent %d users, want 10: it must stop at the cancellation", sent)
	}
	if list, _ := cs.calls(); list != 1 {
		t.Errorf("StreamUsers read the store %d times, want 1: no batch after the cancellation", list)
	}
}
