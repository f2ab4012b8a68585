package identity_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"testing"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

// bulk yields users as valid bulk items.
func bulk(users ...identity.NewUser) iter.Seq2[identity.BulkItem, error] {
	return func(yield func(identity.BulkItem, error) bool) {
		for _, u := range users {
			if !yield(identity.BulkItem{User: u}, nil) {
				return
			}
		}
	}
}

func items(list ...identity.BulkItem) iter.Seq2[identity.BulkItem, error] {
	return func(yield func(identity.BulkItem, error) bool) {
		for _, it := range list {
			if !yield(it, nil) {
				return
			}
		}
	}
}

func TestBulkCreateUsersMixedItems(t *testing.T) {
	f, cs := newCountingFixture(t)
	f.mustUser(t, "taken", identity.RoleCustomer)
	newUser := func(name string) identity.NewUser {
		return identity.NewUser{Email: name + "@example.com", Password: password, DisplayName: name}
	}
	courier := newUser("courier")
	courier.Role = identity.RoleCourier
	badEmail := newUser("bad")
	badEmail.Email = "bad@"
	transportErr := apperr.InvalidFields("invalid item", apperr.FieldViolation{Field: "role", Description: "must be a defined value"})
	in := []identity.BulkItem{
		{User: newUser("first")},
		{User: newUser("taken")}, // duplicate of a stored user
		{User: badEmail},         // invalid in the domain
		{User: courier},          // admins may set roles
		{Err: transportErr},      // invalid in the transport
		{User: newUser("first")}, // duplicate within the call
		{User: identity.NewUser{Email: "x@example.com", Password: "short", DisplayName: "x"}},
	}
	results, err := f.svc.BulkCreateUsers(f.admin(t), items(in...))
	if err != nil {
		t.Fatalf("BulkCreateUsers() = %v", err)
	}
	type result struct {
		Index      int
		Created    bool
		Code       apperr.Code
		Violations []apperr.FieldViolation
	}
	var got []result
	for _, r := range results {
		res := result{Index: r.Index, Created: r.UserID != "", Code: apperr.CodeOf(r.Err)}
		if e := apperr.As(r.Err); e != nil {
			res.Violations = e.Violations
		}
		got = append(got, res)
	}
	want := []result{
		{0, true, "", nil},
		{1, false, apperr.Conflict, nil},
		{2, false, apperr.Invalid, []apperr.FieldViolation{{Field: "email", Description: "must be a valid email address"}}},
		{3, true, "", nil},
		{4, false, apperr.Invalid, []apperr.FieldViolation{{Field: "role", Description: "must be a defined value"}}},
		{5, false, apperr.Conflict, nil},
		{6, false, apperr.Invalid, []apperr.FieldViolation{{Field: "password", Description: "must be at least 12 characters"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results mismatch (-want +got):\n%s", diff)
	}
	if u := f.mustGet(t, results[3].UserID); u.Role != identity.RoleCourier || u.Email != "courier@example.com" {
		t.Errorf("created courier = %+v, want role courier", u)
	}
	// The four items valid in the domain went to the store in one transaction, which found the duplicates.
	if _, create := cs.calls(); !cmp.Equal(create, []int{4}) {
		t.Errorf("CreateUsers batch sizes = %v, want [4]", create)
	}
}

func TestBulkCreateUsersBatches(t *testing.T) {
	f, cs := newCountingFixture(t)
	ids := f.seedUsers(t, 250, identity.RoleCustomer)
	if len(ids) != 250 {
		t.Fatalf("created %d users, want 250", len(ids))
	}
	if _, create := cs.calls(); !cmp.Equal(create, []int{100, 100, 50}) {
		t.Errorf("CreateUsers batch sizes = %v, want [100 100 50]", create)
	}
}

func TestBulkCreateUsersLimits(t *testing.T) {
	f, cs := newCountingFixture(t)
	tooMany := make([]identity.NewUser, identity.MaxBulkItems+1)
	for i := range tooMany {
		tooMany[i] = identity.NewUser{Email: fmt.Sprintf("many%d@example.com", i), Password: password, DisplayName: "Many"}
	}
	_, err := f.svc.BulkCreateUsers(f.admin(t), bulk(tooMany...))
	apperrtest.WantCode(t, "BulkCreateUsers(1001 items)", err, apperr.Invalid)
	if _, create := cs.calls(); len(create) != identity.MaxBulkItems/100 {
		t.Errorf("CreateUsers ran %d batches before the limit, want %d", len(create), identity.MaxBulkItems/100)
	}

	_, err = f.svc.BulkCreateUsers(as(t, f.mustUser(t, "disp", identity.RoleDispatcher)), bulk(tooMany[:1]...))
	apperrtest.WantCode(t, "BulkCreateUsers(dispatcher)", err, apperr.PermissionDenied)

	broken := errors.New("stream broke")
	_, err = f.svc.BulkCreateUsers(f.admin(t), func(yield func(identity.BulkItem, error) bool) {
		if yield(identity.BulkItem{User: identity.NewUser{Email: "one@example.com", Password: password, DisplayName: "One"}}, nil) {
			yield(identity.BulkItem{}, broken)
		}
	})
	if !errors.Is(err, broken) {
		t.Errorf("BulkCreateUsers(broken stream) = %v, want %v", err, broken)
	}

	ctx, cancel := context.WithCancel(f.admin(t))
	cancel()
	_, err = f.svc.BulkCreateUsers(ctx, bulk(tooMany[:5]...))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("BulkCreateUsers(cancelled) = %v, want context.Canceled", err)
	}
}
