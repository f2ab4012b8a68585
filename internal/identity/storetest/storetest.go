// Package storetest is the conformance suite for identity.Store: the store runs the same tests on SQLite
// and on PostgreSQL through Run, so both engines agree on behaviour, error codes and edge cases. It uses
// only the identity.Store interface, never SQL. It tests storage (what is written and read, atomicity,
// locking), not the rules: those are the Service's and are tested in package identity.
//
// Times are compared after truncation to the microsecond, the precision the SQL stores keep.
package storetest

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"lastmile/internal/identity"
	"lastmile/internal/identity/identitytest"
	"lastmile/internal/platform/apperr"
)

// testTimeout bounds every subtest's store calls.
const testTimeout = 30 * time.Second

// Run runs the conformance suite. newStore must return an empty store for each subtest; it runs inside
// the subtest, so it may use t.Cleanup and t.Skip.
func Run(t *testing.T, newStore func(t *testing.T) identity.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s identity.Store)
	}{
		{"CreateAndGetUser", testCreateAndGetUser},
		{"GetUserNotFound", testGetUserNotFound},
		{"CreateUserConflicts", testCreateUserConflicts},
		{"UsersWithoutUsername", testUsersWithoutUsername},
		{"UpdateUser", testUpdateUser},
		{"UpdateUserErrors", testUpdateUserErrors},
		{"UpdateUserGivesCurrent", testUpdateUserGivesCurrent},
		{"UpdateUserConcurrently", testUpdateUserConcurrently},
		{"CountActiveAdmins", testCountActiveAdmins},
		{"SoftDelete", testSoftDelete},
		{"ListUsersPagination", testListUsersPagination},
		{"ListUsersFilters", testListUsersFilters},
		{"ListUsersConcurrentInserts", testListUsersConcurrentInserts},
		{"ListUsersMaxStoreLimit", testListUsersMaxStoreLimit},
		{"CreateUsers", testCreateUsers},
		{"CreateUsersEmpty", testCreateUsersEmpty},
		{"RefreshTokenCreateGet", testRefreshTokenCreateGet},
		{"UpdateRefreshToken", testUpdateRefreshToken},
		{"UpdateRefreshTokenConcurrently", testUpdateRefreshTokenConcurrently},
		{"RevokeFamily", testRevokeFamily},
		{"RevokeUserTokens", testRevokeUserTokens},
		{"DeleteExpiredRefreshTokens", testDeleteExpiredRefreshTokens},
		{"Activity", testActivity},
		{"ActivityFeedWithConcurrentWriters", testActivityFeedWithConcurrentWriters},
		{"SigningKeys", testSigningKeys},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// base is the suite's clock. Its nanoseconds check that stores keep (at least) microseconds.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897932, time.UTC)

// truncateTimes makes comparisons exact at the precision stores guarantee.
var truncateTimes = cmp.Transformer("TruncateMicro", func(t time.Time) time.Time {
	return t.Truncate(time.Microsecond)
})

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func newID() string { return uuid.Must(uuid.NewV7()).String() }

// newUser returns a valid user whose email, username and display name derive from name.
func newUser(name string) identity.User {
	return identity.User{
		ID:           newID(),
		Email:        name + "@Example.com",
		Username:     name,
		DisplayName:  "User " + name,
		Role:         identity.RoleCustomer,
		Status:       identity.StatusActive,
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
		CreatedAt:    base,
		UpdatedAt:    base,
		Version:      1,
	}
}

func mustCreate(ctx context.Context, t *testing.T, s identity.Store, users ...identity.User) {
	t.Helper()
	for _, u := range users {
		if err := s.CreateUser(ctx, u); err != nil {
			t.Fatalf("CreateUser(%s) = %v, want nil", u.Email, err)
		}
	}
}

func mustGet(ctx context.Context, t *testing.T, s identity.Store, id string) identity.User {
	t.Helper()
	u, err := s.GetUser(ctx, identity.Lookup{ID: id})
	if err != nil {
		t.Fatalf("GetUser(id %s) = %v, want nil", id, err)
	}
	return u
}

func wantCode(t *testing.T, call string, err error, want apperr.Code) {
	t.Helper()
	if got := apperr.CodeOf(err); got != want {
		t.Errorf("%s = %v (code %q), want code %q", call, err, got, want)
	}
}

func testCreateAndGetUser(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	u := newUser("Alice_1")
	u.Email = "Alice.Smith@Example.COM"
	u.DisplayName = "Alice Smith"
	u.Role = identity.RoleDispatcher
	u.LastLoginAt = base.Add(time.Minute)
	u.RevokedBefore = base.Add(30 * time.Second)
	mustCreate(ctx, t, s, u)

	lookups := []identity.Lookup{
		{ID: u.ID},
		{Email: "Alice.Smith@Example.COM"},
		{Email: "alice.smith@example.com"},
		{Email: "ALICE.SMITH@EXAMPLE.COM"},
		{Username: "Alice_1"},
		{Username: "alice_1"},
		{Username: "ALICE_1"},
	}
	for _, l := range lookups {
		got, err := s.GetUser(ctx, l)
		if err != nil {
			t.Errorf("GetUser(%+v) = %v, want nil", l, err)
			continue
		}
		if diff := cmp.Diff(u, got, truncateTimes); diff != "" {
			t.Errorf("GetUser(%+v) mismatch (-want +got):\n%s", l, diff)
		}
	}
}

func testGetUserNotFound(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newUser("bob"))
	for _, l := range []identity.Lookup{
		{ID: newID()},
		{Email: "nobody@example.com"},
		{Email: "bob@example.co"},
		{Username: "bo"},
		{Username: "bob2"},
	} {
		_, err := s.GetUser(ctx, l)
		wantCode(t, fmt.Sprintf("GetUser(%+v)", l), err, apperr.NotFound)
	}
}

func testCreateUserConflicts(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	existing := newUser("carol")
	existing.Email = "Carol@Example.com"
	deleted := newUser("dave")
	mustCreate(ctx, t, s, existing, deleted)
	deleted.Status, deleted.DeletedAt, deleted.UpdatedAt, deleted.Version = identity.StatusDeleted, base.Add(time.Hour), base.Add(time.Hour), 2
	if err := s.UpdateUser(ctx, deleted.ID, replace(deleted, nil)); err != nil {
		t.Fatalf("UpdateUser(delete dave) = %v, want nil", err)
	}

	tests := []struct {
		name     string
		email    string
		username string
		wantKey  string // the key the Conflict message must name
	}{
		{"same email", "Carol@Example.com", "other1", "email"},
		{"email in other case", "CAROL@example.COM", "other2", "email"},
		{"username in other case", "new1@example.com", "CAROL", "username"},
		{"email of a deleted user", "dave@example.com", "other3", "email"},
		{"username of a deleted user", "new2@example.com", "Dave", "username"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := newUser(tt.username)
			u.Email = tt.email
			err := s.CreateUser(ctx, u)
			wantCode(t, "CreateUser", err, apperr.Conflict)
			if msg := apperr.MessageOf(err); !strings.Contains(msg, tt.wantKey) {
				t.Errorf("CreateUser message = %q, want it to name %q", msg, tt.wantKey)
			}
			_, err = s.GetUser(ctx, identity.Lookup{ID: u.ID})
			wantCode(t, "GetUser(rejected user)", err, apperr.NotFound)
		})
	}
	n, err := s.CountUsers(ctx, identity.Filter{})
	if err != nil || n != 1 {
		t.Errorf("CountUsers() = %d, %v, want 1, nil", n, err)
	}
}

func testUsersWithoutUsername(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	a, b := newUser("erin"), newUser("frank")
	a.Username, b.Username = "", ""
	mustCreate(ctx, t, s, a, b)
	for _, u := range []identity.User{a, b} {
		if diff := cmp.Diff(u, mustGet(ctx, t, s, u.ID), truncateTimes); diff != "" {
			t.Errorf("GetUser(%s) mismatch (-want +got):\n%s", u.ID, diff)
		}
	}
}

func testUpdateUser(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	u := newUser("grace")
	mustCreate(ctx, t, s, u)

	u.Email = "Grace.Hopper@Example.org"
	u.Username = "GHopper"
	u.DisplayName = "Grace Hopper"
	u.Role = identity.RoleAdmin
	u.Status = identity.StatusSuspended
	u.PasswordHash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3aGFzaA"
	u.UpdatedAt = base.Add(2 * time.Hour)
	u.LastLoginAt = base.Add(time.Hour)
	u.RevokedBefore = base.Add(2 * time.Hour)
	u.Version = 2
	if err := s.UpdateUser(ctx, u.ID, replace(u, nil)); err != nil {
		t.Fatalf("UpdateUser(version 2) = %v, want nil", err)
	}
	if diff := cmp.Diff(u, mustGet(ctx, t, s, u.ID), truncateTimes); diff != "" {
		t.Errorf("GetUser after update mismatch (-want +got):\n%s", diff)
	}
	// The old keys are free again, the new ones find the user.
	got, err := s.GetUser(ctx, identity.Lookup{Email: "grace.hopper@example.org"})
	if err != nil || got.ID != u.ID {
		t.Errorf("GetUser(new email) = %s, %v, want %s, nil", got.ID, err, u.ID)
	}
	got, err = s.GetUser(ctx, identity.Lookup{Username: "ghopper"})
	if err != nil || got.ID != u.ID {
		t.Errorf("GetUser(new username) = %s, %v, want %s, nil", got.ID, err, u.ID)
	}
	_, err = s.GetUser(ctx, identity.Lookup{Email: "grace@example.com"})
	wantCode(t, "GetUser(old email)", err, apperr.NotFound)
	mustCreate(ctx, t, s, newUser("grace"))

	// Removing the username.
	u.Username, u.Version = "", 3
	if err := s.UpdateUser(ctx, u.ID, replace(u, nil)); err != nil {
		t.Fatalf("UpdateUser(version 3) = %v, want nil", err)
	}
	if diff := cmp.Diff(u, mustGet(ctx, t, s, u.ID), truncateTimes); diff != "" {
		t.Errorf("GetUser after removing the username mismatch (-want +got):\n%s", diff)
	}
}

func testUpdateUserErrors(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	u, other := newUser("heidi"), newUser("ivan")
	mustCreate(ctx, t, s, u, other)
	activity := func() []identity.Activity {
		return []identity.Activity{{ID: newID(), UserID: u.ID, Type: identity.ActivityProfileChanged, At: base, ChangedFields: []string{"email"}}}
	}

	tests := []struct {
		name    string
		change  func(u *identity.User)
		want    apperr.Code
		wantKey string
	}{
		{"taken email", func(u *identity.User) { u.Email = "IVAN@example.com"; u.Version = 2 }, apperr.Conflict, "email"},
		{"taken username", func(u *identity.User) { u.Username = "Ivan"; u.Version = 2 }, apperr.Conflict, "username"},
		{"unknown role", func(u *identity.User) { u.Role = "pilot"; u.Version = 2 }, apperr.Invalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changed := u
			tt.change(&changed)
			err := s.UpdateUser(ctx, u.ID, replace(changed, activity()))
			wantCode(t, "UpdateUser", err, tt.want)
			if msg := apperr.MessageOf(err); !strings.Contains(msg, tt.wantKey) {
				t.Errorf("UpdateUser message = %q, want it to name %q", msg, tt.wantKey)
			}
		})
	}
	t.Run("incomplete activity", func(t *testing.T) {
		changed := u
		changed.DisplayName, changed.Version = "x", 2
		err := s.UpdateUser(ctx, u.ID, replace(changed, []identity.Activity{{ID: newID()}}))
		wantCode(t, "UpdateUser", err, apperr.Invalid)
	})
	t.Run("closure error", func(t *testing.T) {
		refusal := apperr.Errorf(apperr.FailedPrecondition, "refused by the closure")
		changed := u
		changed.DisplayName, changed.Version = "x", 2
		err := s.UpdateUser(ctx, u.ID, func(_ identity.UserTx, cur identity.User) (identity.User, []identity.Activity, error) {
			return changed, activity(), refusal
		})
		if !errors.Is(err, refusal) {
			t.Errorf("UpdateUser() = %v, want the closure's error", err)
		}
	})
	t.Run("same version", func(t *testing.T) {
		changed := u
		changed.DisplayName = "x" // but the version says nothing changed
		if err := s.UpdateUser(ctx, u.ID, replace(changed, activity())); err != nil {
			t.Errorf("UpdateUser() = %v, want nil", err)
		}
	})
	t.Run("missing user", func(t *testing.T) {
		calls := 0
		err := s.UpdateUser(ctx, newID(), func(_ identity.UserTx, cur identity.User) (identity.User, []identity.Activity, error) {
			calls++
			return cur, nil, nil
		})
		wantCode(t, "UpdateUser", err, apperr.NotFound)
		if calls != 0 {
			t.Errorf("UpdateUser(missing user) called the closure %d times, want 0", calls)
		}
	})
	// Nothing changed, and no failed update left activity behind.
	if diff := cmp.Diff(u, mustGet(ctx, t, s, u.ID), truncateTimes); diff != "" {
		t.Errorf("GetUser after failed updates mismatch (-want +got):\n%s", diff)
	}
	got, err := s.ActivitySince(ctx, 0, 100)
	if err != nil || len(got) != 0 {
		t.Errorf("ActivitySince(0, 100) = %v, %v, want no entries", got, err)
	}
}

// replace returns an UpdateUser closure that writes u and activity whatever the stored user is.
func replace(u identity.User, activity []identity.Activity) func(identity.UserTx, identity.User) (identity.User, []identity.Activity, error) {
	return func(identity.UserTx, identity.User) (identity.User, []identity.Activity, error) {
		return u, activity, nil
	}
}

// testUpdateUserGivesCurrent checks that the closure is given the stored user.
func testUpdateUserGivesCurrent(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	u := newUser("kate")
	u.LastLoginAt = base.Add(time.Minute)
	mustCreate(ctx, t, s, u)
	var got identity.User
	err := s.UpdateUser(ctx, u.ID, func(_ identity.UserTx, cur identity.User) (identity.User, []identity.Activity, error) {
		got = cur
		return cur, nil, nil
	})
	if err != nil {
		t.Fatalf("UpdateUser() = %v, want nil", err)
	}
	if diff := cmp.Diff(u, got, truncateTimes); diff != "" {
		t.Errorf("UpdateUser() gave the closure (-want +got):\n%s", diff)
	}
}

// testUpdateUserConcurrently checks that UpdateUser closures on one user run one after another, each on
// what the one before wrote: no update is lost.
func testUpdateUserConcurrently(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	u := newUser("lena")
	mustCreate(ctx, t, s, u)
	const n = 10
	errs := make([]error, n)
	identitytest.Race(n, func(i int) {
		errs[i] = s.UpdateUser(ctx, u.ID, func(_ identity.UserTx, cur identity.User) (identity.User, []identity.Activity, error) {
			next := cur
			next.DisplayName = fmt.Sprintf("%s %d", cur.DisplayName, i)
			next.Version = cur.Version + 1
			return next, nil, nil
		})
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("UpdateUser() #%d = %v, want nil", i, err)
		}
	}
	got := mustGet(ctx, t, s, u.ID)
	if got.Version != 1+n || len(strings.Fields(got.DisplayName)) != 2+n {
		t.Errorf("after %d concurrent updates: version %d, display name %q; want version %d and every update's mark", n, got.Version, got.DisplayName, 1+n)
	}
}

// testCountActiveAdmins checks UserTx.CountActiveAdmins, and that it locks: of two updates that each
// demote one of the last two admins when another is left, one wins and the other sees its change.
func testCountActiveAdmins(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	admin := func(name string, status identity.Status) identity.User {
		u := newUser(name)
		u.Role, u.Status = identity.RoleAdmin, status
		return u
	}
	a1, a2 := admin("root1", identity.StatusActive), admin("root2", identity.StatusActive)
	mustCreate(ctx, t, s, a1, a2, admin("root3", identity.StatusSuspended), admin("root4", identity.StatusDeleted), newUser("cust"))
	var n int
	err := s.UpdateUser(ctx, a1.ID, func(tx identity.UserTx, cur identity.User) (identity.User, []identity.Activity, error) {
		var err error
		n, err = tx.CountActiveAdmins(ctx)
		return cur, nil, err
	})
	if err != nil || n != 2 {
		t.Fatalf("CountActiveAdmins() = %d, %v, want 2, nil", n, err)
	}

	lastAdmin := apperr.Errorf(apperr.FailedPrecondition, "the last active admin")
	demote := func(tx identity.UserTx, cur identity.User) (identity.User, []identity.Activity, error) {
		n, err := tx.CountActiveAdmins(ctx)
		if err != nil {
			return identity.User{}, nil, err
		}
		if n <= 1 {
			return identity.User{}, nil, lastAdmin
		}
		next := cur
		next.Role, next.Version = identity.RoleCustomer, cur.Version+1
		return next, nil, nil
	}
	errs := make([]error, 2)
	ids := []string{a1.ID, a2.ID}
	identitytest.Race(len(ids), func(i int) { errs[i] = s.UpdateUser(ctx, ids[i], demote) })
	won := 0
	for i, err := range errs {
		switch {
		case err == nil:
			won++
		case !errors.Is(err, lastAdmin):
			t.Errorf("UpdateUser(demote admin %d) = %v, want nil or the closure's refusal", i+1, err)
		}
	}
	if won != 1 {
		t.Errorf("%d of two concurrent demotions of the last two admins succeeded, want 1", won)
	}
	left := a1.ID // the admin whose demotion was refused
	if errs[0] == nil {
		left = a2.ID
	}
	checkList(ctx, t, s, identity.Filter{Role: identity.RoleAdmin, Status: identity.StatusActive}, []string{left})
}

func testSoftDelete(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	keep, del := newUser("judy"), newUser("mallory")
	mustCreate(ctx, t, s, keep, del)
	del.Status, del.DeletedAt, del.UpdatedAt, del.Version = identity.StatusDeleted, base.Add(time.Hour), base.Add(time.Hour), 2
	if err := s.UpdateUser(ctx, del.ID, replace(del, nil)); err != nil {
		t.Fatalf("UpdateUser(delete) = %v, want nil", err)
	}
	got, err := s.GetUser(ctx, identity.Lookup{Email: "MALLORY@example.com"})
	if err != nil {
		t.Fatalf("GetUser(deleted user) = %v, want nil", err)
	}
	if diff := cmp.Diff(del, got, truncateTimes); diff != "" {
		t.Errorf("GetUser(deleted user) mismatch (-want +got):\n%s", diff)
	}
	for _, tt := range []struct {
		status identity.Status
		want   []string
	}{
		{"", []string{keep.ID}},
		{identity.StatusActive, []string{keep.ID}},
		{identity.StatusDeleted, []string{del.ID}},
	} {
		checkList(ctx, t, s, identity.Filter{Status: tt.status}, tt.want)
	}
}

// checkList checks that ListUsers (in one page) and CountUsers select exactly the users want.
func checkList(ctx context.Context, t *testing.T, s identity.Store, f identity.Filter, want []string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	users, err := s.ListUsers(ctx, f, "", 100)
	if err != nil {
		t.Errorf("ListUsers(%+v) = %v, want nil", f, err)
		return
	}
	got := make([]string, 0, len(users))
	for _, u := range users {
		got = append(got, u.ID)
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("ListUsers(%+v) ids mismatch (-want +got):\n%s", f, diff)
	}
	n, err := s.CountUsers(ctx, f)
	if err != nil || n != len(want) {
		t.Errorf("CountUsers(%+v) = %d, %v, want %d, nil", f, n, err, len(want))
	}
}

func testListUsersPagination(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	var want []identity.User
	for i := range 7 {
		u := newUser(fmt.Sprintf("page%d", i))
		u.CreatedAt = base.Add(time.Duration(i) * time.Second)
		want = append(want, u)
	}
	// Inserted out of id order: pages follow ids, not insertion order.
	mustCreate(ctx, t, s, want[3], want[0], want[6], want[1], want[5], want[2], want[4])
	for _, size := range []int{2, 3, 7, 100} {
		t.Run(fmt.Sprintf("page size %d", size), func(t *testing.T) {
			var got []identity.User
			after := ""
			for pages := 0; ; pages++ {
				if pages > len(want) {
					t.Fatalf("ListUsers did not finish after %d pages", pages)
				}
				page, err := s.ListUsers(ctx, identity.Filter{}, after, size)
				if err != nil {
					t.Fatalf("ListUsers(after %q, %d) = %v, want nil", after, size, err)
				}
				if len(page) > size {
					t.Fatalf("ListUsers(after %q, %d) returned %d users", after, size, len(page))
				}
				got = append(got, page...)
				if len(page) < size {
					break
				}
				after = page[len(page)-1].ID
			}
			if diff := cmp.Diff(want, got, truncateTimes); diff != "" {
				t.Errorf("users over all pages mismatch (-want +got):\n%s", diff)
			}
		})
	}
	n, err := s.CountUsers(ctx, identity.Filter{})
	if err != nil || n != len(want) {
		t.Errorf("CountUsers() = %d, %v, want %d, nil", n, err, len(want))
	}
}

func testListUsersFilters(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	user := func(name, display string, role identity.Role, status identity.Status) identity.User {
		u := newUser(name)
		u.DisplayName, u.Role, u.Status = display, role, status
		if status == identity.StatusDeleted {
			u.DeletedAt = base
		}
		return u
	}
	alice := user("alice", "Alice Liddell", identity.RoleCustomer, identity.StatusActive)
	bob := user("bob", "Bob 100%_sure", identity.RoleCourier, identity.StatusActive)
	carol := user("carol", "Carol 100 percent sure", identity.RoleCourier, identity.StatusSuspended)
	dan := user("dan_the_man", "Dan", identity.RoleDispatcher, identity.StatusActive)
	eve := user("eve", "Eve Alice-fan", identity.RoleCustomer, identity.StatusDeleted)
	zed := user("zed", `Zed back\slash`, identity.RoleAdmin, identity.StatusActive)
	zed.Username = ""
	mustCreate(ctx, t, s, alice, bob, carol, dan, eve, zed)

	tests := []struct {
		name string
		f    identity.Filter
		want []string
	}{
		{"all but deleted", identity.Filter{}, []string{alice.ID, bob.ID, carol.ID, dan.ID, zed.ID}},
		{"active", identity.Filter{Status: identity.StatusActive}, []string{alice.ID, bob.ID, dan.ID, zed.ID}},
		{"suspended", identity.Filter{Status: identity.StatusSuspended}, []string{carol.ID}},
		{"deleted", identity.Filter{Status: identity.StatusDeleted}, []string{eve.ID}},
		{"couriers", identity.Filter{Role: identity.RoleCourier}, []string{bob.ID, carol.ID}},
		{"active couriers", identity.Filter{Role: identity.RoleCourier, Status: identity.StatusActive}, []string{bob.ID}},
		{"deleted customers", identity.Filter{Role: identity.RoleCustomer, Status: identity.StatusDeleted}, []string{eve.ID}},
		{"search display name any case", identity.Filter{Search: "aLiCe"}, []string{alice.ID}},
		{"search includes deleted when asked", identity.Filter{Search: "alice", Status: identity.StatusDeleted}, []string{eve.ID}},
		{"search email domain", identity.Filter{Search: "@EXAMPLE.com"}, []string{alice.ID, bob.ID, carol.ID, dan.ID, zed.ID}},
		{"search username", identity.Filter{Search: "THE_MAN"}, []string{dan.ID}},
		{"search percent literally", identity.Filter{Search: "100%"}, []string{bob.ID}},
		{"search underscore literally", identity.Filter{Search: "%_s"}, []string{bob.ID}},
		{"search underscore in username", identity.Filter{Search: "n_t"}, []string{dan.ID}},
		{"search lone underscore", identity.Filter{Search: "_"}, []string{bob.ID, dan.ID}},
		{"search backslash literally", identity.Filter{Search: `k\s`}, []string{zed.ID}},
		{"search with role", identity.Filter{Search: "sure", Role: identity.RoleCourier}, []string{bob.ID, carol.ID}},
		{"search no match", identity.Filter{Search: "nobody"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkList(ctx, t, s, tt.f, tt.want)
		})
	}
}

func testListUsersConcurrentInserts(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	// Ids are drawn up front and interleaved, so concurrent inserts land before, between and after the
	// users that exist when paging starts.
	const n = 40
	ids := make([]string, n)
	for i := range ids {
		ids[i] = newID()
	}
	slices.Sort(ids)
	var existing, concurrent []identity.User
	for i, id := range ids {
		u := newUser(fmt.Sprintf("conc%02d", i))
		u.ID = id
		if i%2 == 0 {
			existing = append(existing, u)
		} else {
			concurrent = append(concurrent, u)
		}
	}
	mustCreate(ctx, t, s, existing...)

	// The inserter adds one user per page read, in an order that mixes early and late ids.
	slices.Reverse(concurrent[:len(concurrent)/2])
	pageRead := make(chan struct{})
	var stopOnce sync.Once
	stop := func() { stopOnce.Do(func() { close(pageRead) }) }
	var wg sync.WaitGroup
	var insertErr error
	wg.Go(func() {
		for i, u := range concurrent {
			select {
			case _, ok := <-pageRead:
				if !ok {
					return
				}
			case <-ctx.Done():
				insertErr = ctx.Err()
				return
			}
			if err := s.CreateUser(ctx, u); err != nil {
				insertErr = fmt.Errorf("CreateUser(concurrent %d) = %w", i, err)
				return
			}
		}
	})
	// On t.Fatal as on success: stop the inserter, then wait for it.
	defer wg.Wait()
	defer stop()
	seen := map[string]int{}
	after, inserts := "", len(concurrent)
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatalf("ListUsers did not finish after %d pages", pages)
		}
		page, err := s.ListUsers(ctx, identity.Filter{}, after, 3)
		if err != nil {
			t.Fatalf("ListUsers(after %q, 3) = %v, want nil", after, err)
		}
		if inserts > 0 {
			inserts--
			pageRead <- struct{}{}
		}
		for _, u := range page {
			if u.ID <= after {
				t.Errorf("ListUsers(after %q) returned %s, not after the cursor", after, u.ID)
			}
			seen[u.ID]++
			after = u.ID
		}
		if len(page) < 3 {
			break
		}
	}
	stop()
	wg.Wait()
	if insertErr != nil {
		t.Fatal(insertErr)
	}
	for id, count := range seen {
		if count != 1 {
			t.Errorf("user %s listed %d times, want once", id, count)
		}
	}
	for _, u := range existing {
		if seen[u.ID] != 1 {
			t.Errorf("pre-existing user %s listed %d times, want once", u.ID, seen[u.ID])
		}
	}
}

func testCreateUsers(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	existing := newUser("oscar")
	mustCreate(ctx, t, s, existing)

	valid1, valid2, valid3 := newUser("peggy"), newUser("rupert"), newUser("sybil")
	valid3.Username = ""
	dupExisting := newUser("trent")
	dupExisting.Email = "OSCAR@example.COM"
	dupInBatch := newUser("PEGGY")
	dupInBatch.Email = "other-peggy@example.com"
	dupEmailInBatch := newUser("victor")
	dupEmailInBatch.Email = "Rupert@EXAMPLE.com"
	batch := []identity.User{valid1, dupExisting, valid2, dupInBatch, dupEmailInBatch, valid3}
	want := []apperr.Code{"", apperr.Conflict, "", apperr.Conflict, apperr.Conflict, ""}

	errs, err := s.CreateUsers(ctx, batch)
	if err != nil {
		t.Fatalf("CreateUsers() = %v, want nil", err)
	}
	if len(errs) != len(batch) {
		t.Fatalf("CreateUsers() returned %d errors, want %d", len(errs), len(batch))
	}
	for i, err := range errs {
		wantCode(t, fmt.Sprintf("CreateUsers() item %d", i), err, want[i])
	}
	for _, u := range []identity.User{existing, valid1, valid2, valid3} {
		if diff := cmp.Diff(u, mustGet(ctx, t, s, u.ID), truncateTimes); diff != "" {
			t.Errorf("GetUser(%s) mismatch (-want +got):\n%s", u.Email, diff)
		}
	}
	for _, u := range []identity.User{dupExisting, dupInBatch, dupEmailInBatch} {
		_, err := s.GetUser(ctx, identity.Lookup{ID: u.ID})
		wantCode(t, fmt.Sprintf("GetUser(rejected %s)", u.Email), err, apperr.NotFound)
	}
	n, err := s.CountUsers(ctx, identity.Filter{})
	if err != nil || n != 4 {
		t.Errorf("CountUsers() = %d, %v, want 4, nil", n, err)
	}
}

func testCreateUsersEmpty(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	errs, err := s.CreateUsers(ctx, nil)
	if err != nil || len(errs) != 0 {
		t.Errorf("CreateUsers(nil) = %v, %v, want no errors", errs, err)
	}
}

// tokenSeq makes token hashes unique within a test run.
var tokenSeq struct {
	sync.Mutex
	n int
}

func newToken(u identity.User, family string, issued time.Time) identity.RefreshToken {
	tokenSeq.Lock()
	tokenSeq.n++
	n := tokenSeq.n
	tokenSeq.Unlock()
	h := sha256.Sum256(fmt.Appendf(nil, "token-%d-%s", n, newID()))
	return identity.RefreshToken{
		Hash:      h[:],
		FamilyID:  family,
		UserID:    u.ID,
		IssuedAt:  issued,
		ExpiresAt: base.Add(24 * time.Hour),
	}
}

func mustCreateToken(ctx context.Context, t *testing.T, s identity.Store, tok identity.RefreshToken) {
	t.Helper()
	if err := s.CreateRefreshToken(ctx, tok); err != nil {
		t.Fatalf("CreateRefreshToken() = %v, want nil", err)
	}
}

func checkToken(ctx context.Context, t *testing.T, s identity.Store, want identity.RefreshToken) {
	t.Helper()
	got, err := s.GetRefreshToken(ctx, want.Hash)
	if err != nil {
		t.Errorf("GetRefreshToken(%x) = %v, want nil", want.Hash[:4], err)
		return
	}
	if diff := cmp.Diff(want, got, truncateTimes); diff != "" {
		t.Errorf("GetRefreshToken(%x) mismatch (-want +got):\n%s", want.Hash[:4], diff)
	}
}

func testRefreshTokenCreateGet(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	u := newUser("walter")
	mustCreate(ctx, t, s, u)
	tok := newToken(u, newID(), base)
	mustCreateToken(ctx, t, s, tok)
	checkToken(ctx, t, s, tok)

	unknown := sha256.Sum256([]byte("unknown"))
	_, err := s.GetRefreshToken(ctx, unknown[:])
	wantCode(t, "GetRefreshToken(unknown)", err, apperr.NotFound)
}

// seen records the token and owner a Store.UpdateRefreshToken closure was given.
type seen struct {
	token identity.RefreshToken
	owner identity.User
	calls int
}

// decide returns a closure for Store.UpdateRefreshToken that records what it is given in sn and returns
// ch and err.
func decide(sn *seen, ch identity.TokenChange, err error) func(identity.RefreshToken, identity.User) (identity.TokenChange, error) {
	return func(t identity.RefreshToken, owner identity.User) (identity.TokenChange, error) {
		sn.token, sn.owner = t, owner
		sn.calls++
		return ch, err
	}
}

func testUpdateRefreshToken(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	u := newUser("wendy")
	mustCreate(ctx, t, s, u)
	family := newID()
	first := newToken(u, family, base)
	mustCreateToken(ctx, t, s, first)

	// The closure gets the token and its owner; what it returns is written, activity included.
	at := base.Add(time.Minute)
	second := newToken(u, family, at)
	login := identity.Activity{ID: newID(), UserID: u.ID, Type: identity.ActivityLogin, At: at, ActorUserID: u.ID}
	var sn seen
	err := s.UpdateRefreshToken(ctx, first.Hash, decide(&sn, identity.TokenChange{UsedAt: at, Next: second, Activity: []identity.Activity{login}}, nil))
	if err != nil {
		t.Fatalf("UpdateRefreshToken(first) = %v, want nil", err)
	}
	if diff := cmp.Diff(first, sn.token, truncateTimes); diff != "" {
		t.Errorf("UpdateRefreshToken(first) gave the closure the token (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(u, sn.owner, truncateTimes); diff != "" {
		t.Errorf("UpdateRefreshToken(first) gave the closure the owner (-want +got):\n%s", diff)
	}
	usedFirst := first
	usedFirst.UsedAt = at
	checkToken(ctx, t, s, usedFirst)
	checkToken(ctx, t, s, second)
	acts, err := s.ActivitySince(ctx, 0, 10)
	if err != nil || len(acts) != 1 || acts[0].ID != login.ID {
		t.Errorf("ActivitySince(0, 10) = %+v, %v, want the login entry", acts, err)
	}

	// The token written is the one the next call reads; a zero change writes nothing.
	sn = seen{}
	if err := s.UpdateRefreshToken(ctx, first.Hash, decide(&sn, identity.TokenChange{}, nil)); err != nil {
		t.Fatalf("UpdateRefreshToken(first, no change) = %v, want nil", err)
	}
	if diff := cmp.Diff(usedFirst, sn.token, truncateTimes); diff != "" {
		t.Errorf("UpdateRefreshToken(first again) gave the closure the token (-want +got):\n%s", diff)
	}
	checkToken(ctx, t, s, usedFirst)

	// A closure's error is returned as is, and nothing it returned is written.
	third := newToken(u, family, at.Add(time.Minute))
	refusal := apperr.Errorf(apperr.FailedPrecondition, "refused by the closure")
	err = s.UpdateRefreshToken(ctx, second.Hash, decide(&sn, identity.TokenChange{UsedAt: at, Next: third, RevokeFamilyAt: at}, refusal))
	if !errors.Is(err, refusal) {
		t.Errorf("UpdateRefreshToken(refused) = %v, want the closure's error", err)
	}
	checkToken(ctx, t, s, usedFirst)
	checkToken(ctx, t, s, second)
	_, err = s.GetRefreshToken(ctx, third.Hash)
	wantCode(t, "GetRefreshToken(next of a refused change)", err, apperr.NotFound)

	// A change that cannot be written is written not at all.
	err = s.UpdateRefreshToken(ctx, second.Hash, decide(&sn, identity.TokenChange{UsedAt: at, Next: first}, nil))
	wantCode(t, "UpdateRefreshToken(next hash taken)", err, apperr.Conflict)
	badNext := third
	badNext.FamilyID = ""
	err = s.UpdateRefreshToken(ctx, second.Hash, decide(&sn, identity.TokenChange{UsedAt: at, Next: badNext}, nil))
	wantCode(t, "UpdateRefreshToken(next without family)", err, apperr.Invalid)
	err = s.UpdateRefreshToken(ctx, second.Hash, decide(&sn, identity.TokenChange{UsedAt: at, Activity: []identity.Activity{{ID: newID()}}}, nil))
	wantCode(t, "UpdateRefreshToken(incomplete activity)", err, apperr.Invalid)
	checkToken(ctx, t, s, second)

	// RevokeUserBefore becomes the owner's RevokedBefore, with nothing else of the owner changed.
	revokedAt := at.Add(2 * time.Minute)
	if err := s.UpdateRefreshToken(ctx, second.Hash, decide(&sn, identity.TokenChange{RevokeFamilyAt: revokedAt, RevokeUserBefore: revokedAt}, nil)); err != nil {
		t.Fatalf("UpdateRefreshToken(revoke the user's access tokens) = %v, want nil", err)
	}
	wantOwner := u
	wantOwner.RevokedBefore = revokedAt
	if diff := cmp.Diff(wantOwner, mustGet(ctx, t, s, u.ID), truncateTimes); diff != "" {
		t.Errorf("owner after RevokeUserBefore mismatch (-want +got):\n%s", diff)
	}

	// Unknown tokens: NotFound, and the closure is not called.
	sn = seen{}
	unknown := sha256.Sum256([]byte("unknown"))
	err = s.UpdateRefreshToken(ctx, unknown[:], decide(&sn, identity.TokenChange{UsedAt: at}, nil))
	wantCode(t, "UpdateRefreshToken(unknown)", err, apperr.NotFound)
	if sn.calls != 0 {
		t.Errorf("UpdateRefreshToken(unknown) called the closure %d times, want 0", sn.calls)
	}
}

// testUpdateRefreshTokenConcurrently checks that UpdateRefreshToken closures on one token run one after
// another, each on what the one before wrote: of closures that rotate only an unused token, one wins.
func testUpdateRefreshTokenConcurrently(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	u := newUser("xavier")
	mustCreate(ctx, t, s, u)
	family := newID()
	tok := newToken(u, family, base)
	mustCreateToken(ctx, t, s, tok)

	const n = 10
	at := base.Add(time.Second)
	nexts := make([]identity.RefreshToken, n)
	errs := make([]error, n)
	for i := range nexts {
		nexts[i] = newToken(u, family, at)
	}
	identitytest.Race(n, func(i int) {
		errs[i] = s.UpdateRefreshToken(ctx, tok.Hash, func(t identity.RefreshToken, _ identity.User) (identity.TokenChange, error) {
			if !t.UsedAt.IsZero() {
				return identity.TokenChange{}, apperr.Errorf(apperr.FailedPrecondition, "used")
			}
			return identity.TokenChange{UsedAt: at, Next: nexts[i]}, nil
		})
	})

	winners := 0
	for i, err := range errs {
		switch apperr.CodeOf(err) {
		case "":
			winners++
			checkToken(ctx, t, s, nexts[i])
		case apperr.FailedPrecondition:
			_, err := s.GetRefreshToken(ctx, nexts[i].Hash)
			wantCode(t, fmt.Sprintf("GetRefreshToken(next of losing rotation %d)", i), err, apperr.NotFound)
		default:
			t.Errorf("UpdateRefreshToken() #%d = %v, want nil or FailedPrecondition", i, err)
		}
	}
	if winners != 1 {
		t.Errorf("%d concurrent rotations succeeded, want exactly 1", winners)
	}
}

func testRevokeFamily(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	u := newUser("yvonne")
	mustCreate(ctx, t, s, u)
	family, otherFamily := newID(), newID()
	a, b, other := newToken(u, family, base), newToken(u, family, base), newToken(u, otherFamily, base)
	for _, tok := range []identity.RefreshToken{a, b, other} {
		mustCreateToken(ctx, t, s, tok)
	}

	revokedAt := base.Add(time.Minute)
	if err := s.RevokeFamily(ctx, family, revokedAt); err != nil {
		t.Fatalf("RevokeFamily() = %v, want nil", err)
	}
	// Idempotent: a second revocation changes nothing, not even the time.
	if err := s.RevokeFamily(ctx, family, revokedAt.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeFamily(again) = %v, want nil", err)
	}
	if err := s.RevokeFamily(ctx, newID(), revokedAt); err != nil {
		t.Errorf("RevokeFamily(unknown family) = %v, want nil", err)
	}
	a.RevokedAt, b.RevokedAt = revokedAt, revokedAt
	checkToken(ctx, t, s, a)
	checkToken(ctx, t, s, b)
	checkToken(ctx, t, s, other)

	// A rotation's closure sees the revocation.
	var sn seen
	if err := s.UpdateRefreshToken(ctx, a.Hash, decide(&sn, identity.TokenChange{}, nil)); err != nil {
		t.Fatalf("UpdateRefreshToken(revoked) = %v, want nil", err)
	}
	if diff := cmp.Diff(a, sn.token, truncateTimes); diff != "" {
		t.Errorf("UpdateRefreshToken(revoked) gave the closure the token (-want +got):\n%s", diff)
	}

	// The same revocation from inside UpdateRefreshToken: the presented token's family only, and earlier
	// revocations keep their time.
	family2 := newID()
	c, d := newToken(u, family2, base), newToken(u, family2, base)
	mustCreateToken(ctx, t, s, c)
	mustCreateToken(ctx, t, s, d)
	if err := s.RevokeFamily(ctx, family2, revokedAt); err != nil {
		t.Fatalf("RevokeFamily(family2) = %v, want nil", err)
	}
	e := newToken(u, family2, base)
	mustCreateToken(ctx, t, s, e)
	later := revokedAt.Add(time.Hour)
	if err := s.UpdateRefreshToken(ctx, c.Hash, decide(&sn, identity.TokenChange{RevokeFamilyAt: later}, nil)); err != nil {
		t.Fatalf("UpdateRefreshToken(revoke family) = %v, want nil", err)
	}
	c.RevokedAt, d.RevokedAt, e.RevokedAt = revokedAt, revokedAt, later
	for _, tok := range []identity.RefreshToken{a, b, other, c, d, e} {
		checkToken(ctx, t, s, tok)
	}
}

func testDeleteExpiredRefreshTokens(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	u := newUser("purge")
	mustCreate(ctx, t, s, u)
	expiring := func(at time.Time) identity.RefreshToken {
		tok := newToken(u, newID(), base)
		tok.ExpiresAt = at
		mustCreateToken(ctx, t, s, tok)
		return tok
	}
	cutoff := base.Add(time.Hour)
	var old []identity.RefreshToken
	for i := range 5 {
		old = append(old, expiring(cutoff.Add(-time.Duration(i)*time.Minute))) // the first at the cutoff
	}
	live := expiring(cutoff.Add(time.Microsecond))

	if _, err := s.DeleteExpiredRefreshTokens(ctx, cutoff, 0); apperr.CodeOf(err) != apperr.Invalid {
		t.Errorf("DeleteExpiredRefreshTokens(limit 0) = %v, want Invalid", err)
	}
	// Batches: oldest expiry first, a short one at the end.
	for _, want := range []int{2, 2, 1, 0} {
		n, err := s.DeleteExpiredRefreshTokens(ctx, cutoff, 2)
		if err != nil || n != want {
			t.Fatalf("DeleteExpiredRefreshTokens(limit 2) = %d, %v, want %d, nil", n, err, want)
		}
	}
	for _, tok := range old {
		_, err := s.GetRefreshToken(ctx, tok.Hash)
		wantCode(t, "GetRefreshToken(expired, deleted)", err, apperr.NotFound)
	}
	checkToken(ctx, t, s, live)
}

func testRevokeUserTokens(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	u, v := newUser("zoe"), newUser("amos")
	mustCreate(ctx, t, s, u, v)
	a, b, other := newToken(u, newID(), base), newToken(u, newID(), base), newToken(v, newID(), base)
	for _, tok := range []identity.RefreshToken{a, b, other} {
		mustCreateToken(ctx, t, s, tok)
	}
	// a's family was revoked earlier: it keeps that time.
	earlier := base.Add(time.Second)
	if err := s.RevokeFamily(ctx, a.FamilyID, earlier); err != nil {
		t.Fatalf("RevokeFamily() = %v, want nil", err)
	}
	revokedAt := base.Add(time.Minute)
	for range 2 {
		if err := s.RevokeUserTokens(ctx, u.ID, revokedAt); err != nil {
			t.Fatalf("RevokeUserTokens() = %v, want nil", err)
		}
	}
	if err := s.RevokeUserTokens(ctx, newID(), revokedAt); err != nil {
		t.Errorf("RevokeUserTokens(unknown user) = %v, want nil", err)
	}
	a.RevokedAt, b.RevokedAt = earlier, revokedAt
	checkToken(ctx, t, s, a)
	checkToken(ctx, t, s, b)
	checkToken(ctx, t, s, other)

	// Rotations' closures see the revocation, and only for u's tokens.
	for _, want := range []identity.RefreshToken{b, other} {
		var sn seen
		if err := s.UpdateRefreshToken(ctx, want.Hash, decide(&sn, identity.TokenChange{}, nil)); err != nil {
			t.Fatalf("UpdateRefreshToken(%s's token) = %v, want nil", want.UserID, err)
		}
		if diff := cmp.Diff(want, sn.token, truncateTimes); diff != "" {
			t.Errorf("UpdateRefreshToken(%s's token) gave the closure the token (-want +got):\n%s", want.UserID, diff)
		}
	}
}

func testActivity(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	u, admin := newUser("claire"), newUser("root")
	mustCreate(ctx, t, s, u, admin)
	got, err := s.ActivitySince(ctx, 0, 100)
	if err != nil || len(got) != 0 {
		t.Fatalf("ActivitySince(0, 100) after CreateUser = %v, %v, want no entries", got, err)
	}

	u.DisplayName, u.Role, u.Version = "Claire C.", identity.RoleCourier, 2
	want := []identity.Activity{
		{ID: newID(), UserID: u.ID, Type: identity.ActivityProfileChanged, At: base.Add(time.Minute), ActorUserID: u.ID, ChangedFields: []string{"display_name"}},
		{ID: newID(), UserID: u.ID, Type: identity.ActivityRoleChanged, At: base.Add(time.Minute), ActorUserID: admin.ID, ChangedFields: []string{"role", "status"}},
	}
	if err := s.UpdateUser(ctx, u.ID, replace(u, want)); err != nil {
		t.Fatalf("UpdateUser() = %v, want nil", err)
	}
	login := []identity.Activity{
		{ID: newID(), UserID: u.ID, Type: identity.ActivityLogin, At: base.Add(2 * time.Minute), ActorUserID: u.ID},
		{ID: newID(), UserID: admin.ID, Type: identity.ActivityLogout, At: base.Add(3 * time.Minute)},
	}
	if err := s.AppendActivity(ctx, login); err != nil {
		t.Fatalf("AppendActivity() = %v, want nil", err)
	}
	want = append(want, login...)

	got, err = s.ActivitySince(ctx, 0, 100)
	if err != nil {
		t.Fatalf("ActivitySince(0, 100) = %v, want nil", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ActivitySince(0, 100) returned %d entries, want %d: %+v", len(got), len(want), got)
	}
	for i := range got {
		if got[i].Seq <= 0 || (i > 0 && got[i].Seq <= got[i-1].Seq) {
			t.Errorf("ActivitySince(0, 100)[%d].Seq = %d, want positive and increasing", i, got[i].Seq)
		}
		want[i].Seq = got[i].Seq // assigned by the store
	}
	opts := cmp.Options{truncateTimes, cmpopts.EquateEmpty()}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("ActivitySince(0, 100) mismatch (-want +got):\n%s", diff)
	}

	got, err = s.ActivitySince(ctx, want[0].Seq, 2)
	if err != nil {
		t.Fatalf("ActivitySince(%d, 2) = %v, want nil", want[0].Seq, err)
	}
	if diff := cmp.Diff(want[1:3], got, opts); diff != "" {
		t.Errorf("ActivitySince(%d, 2) mismatch (-want +got):\n%s", want[0].Seq, diff)
	}
	got, err = s.ActivitySince(ctx, want[3].Seq, 100)
	if err != nil || len(got) != 0 {
		t.Errorf("ActivitySince(last, 100) = %v, %v, want no entries", got, err)
	}
}

// testActivityFeedWithConcurrentWriters reads the feed the way the relay does, by cursor, while writers
// append: because Seq order is commit order, the reader never skips an entry.
func testActivityFeedWithConcurrentWriters(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	u := newUser("feed")
	mustCreate(ctx, t, s, u)
	const writers, perWriter = 8, 10
	var wg sync.WaitGroup
	writeErrs := make([]error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				a := identity.Activity{ID: newID(), UserID: u.ID, Type: identity.ActivityLogin, At: base.Add(time.Duration(i) * time.Second)}
				if err := s.AppendActivity(ctx, []identity.Activity{a}); err != nil {
					writeErrs[w] = err
					return
				}
			}
		})
	}
	writersDone := make(chan struct{})
	go func() {
		wg.Wait()
		close(writersDone)
	}()
	// Registered after newStore's cleanups, so it runs before them: no writer outlives the store.
	t.Cleanup(func() { <-writersDone })

	seen := map[string]int{}
	var cursor int64
	read := func() int {
		got, err := s.ActivitySince(ctx, cursor, 7)
		if err != nil {
			t.Fatalf("ActivitySince(%d, 7) = %v, want nil", cursor, err)
		}
		for _, a := range got {
			if a.Seq <= cursor {
				t.Fatalf("ActivitySince(%d, 7) returned seq %d", cursor, a.Seq)
			}
			cursor = a.Seq
			seen[a.ID]++
		}
		return len(got)
	}
	for done := false; !done; {
		select {
		case <-writersDone:
			done = true
		case <-ctx.Done():
			t.Fatalf("writers did not finish: %v", ctx.Err())
		default:
			read()
		}
	}
	for read() > 0 {
	}
	for w, err := range writeErrs {
		if err != nil {
			t.Errorf("AppendActivity() in writer %d = %v, want nil", w, err)
		}
	}
	if len(seen) != writers*perWriter {
		t.Errorf("reader saw %d distinct entries, want %d: the feed skipped some", len(seen), writers*perWriter)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("entry %s seen %d times, want once", id, n)
		}
	}
}

func newSigningKey(kid string, created time.Time) identity.SigningKey {
	seed := sha256.Sum256([]byte(kid))
	priv := ed25519.NewKeyFromSeed(seed[:])
	return identity.SigningKey{
		KID:        kid,
		PrivateKey: priv.Seed(),
		PublicKey:  priv.Public().(ed25519.PublicKey),
		CreatedAt:  created,
	}
}

func testSigningKeys(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	k1 := newSigningKey("k1", base)
	k2 := newSigningKey("k2", base.Add(time.Hour))
	k3 := newSigningKey("k3", base.Add(2*time.Hour))
	for _, k := range []identity.SigningKey{k2, k1, k3} {
		if err := s.SaveSigningKey(ctx, k); err != nil {
			t.Fatalf("SaveSigningKey(%s) = %v, want nil", k.KID, err)
		}
	}
	check := func(at time.Time, want ...identity.SigningKey) {
		t.Helper()
		got, err := s.SigningKeys(ctx, at)
		if err != nil {
			t.Fatalf("SigningKeys(%v) = %v, want nil", at, err)
		}
		if diff := cmp.Diff(want, got, truncateTimes, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("SigningKeys(%v) mismatch (-want +got):\n%s", at, diff)
		}
	}
	check(base.Add(3*time.Hour), k3, k2, k1)

	// Retiring k1 and k2 keeps them published until their RetireAt.
	k1.RetireAt = base.Add(4 * time.Hour)
	k2.RetireAt = base.Add(5 * time.Hour)
	for _, k := range []identity.SigningKey{k1, k2} {
		if err := s.SaveSigningKey(ctx, k); err != nil {
			t.Fatalf("SaveSigningKey(retire %s) = %v, want nil", k.KID, err)
		}
	}
	check(base.Add(3*time.Hour), k3, k2, k1)
	check(k1.RetireAt.Truncate(time.Microsecond).Add(-time.Microsecond), k3, k2, k1)
	check(k1.RetireAt.Add(time.Microsecond), k3, k2)
	check(base.Add(6*time.Hour), k3)
}

// testListUsersMaxStoreLimit checks that a store returns a full MaxStoreLimit rows: the Service asks for
// one row more than its largest page to learn whether another page follows, so a store that capped reads at
// the page size would never report a next page.
func testListUsersMaxStoreLimit(t *testing.T, s identity.Store) {
	ctx := testContext(t)
	users := make([]identity.User, identity.MaxStoreLimit+1)
	for i := range users {
		users[i] = newUser(fmt.Sprintf("bulk%04d", i))
	}
	errs, err := s.CreateUsers(ctx, users)
	if err != nil {
		t.Fatalf("CreateUsers: %v", err)
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("CreateUsers item %d: %v", i, err)
		}
	}
	got, err := s.ListUsers(ctx, identity.Filter{}, "", identity.MaxStoreLimit+50)
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	if len(got) != identity.MaxStoreLimit {
		t.Errorf("ListUsers(limit %d) returned %d users, want MaxStoreLimit = %d", identity.MaxStoreLimit+50, len(got), identity.MaxStoreLimit)
	}
}
