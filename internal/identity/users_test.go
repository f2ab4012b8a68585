package identity_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/identity"
	"lastmile/internal/identity/identitytest"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
	"lastmile/internal/platform/auth"
)

func TestCreateUserRoles(t *testing.T) {
	f := newFixture(t)
	customer := f.mustUser(t, "cust", identity.RoleCustomer)
	dispatcher := f.mustUser(t, "disp", identity.RoleDispatcher)
	tests := []struct {
		name     string
		ctx      context.Context
		role     identity.Role
		want     apperr.Code
		wantRole identity.Role
	}{
		{"anonymous sign-up is a customer", anonymous(t), "", "", identity.RoleCustomer},
		{"anonymous may not even ask for customer", anonymous(t), identity.RoleCustomer, apperr.PermissionDenied, ""},
		{"anonymous may not ask for admin", anonymous(t), identity.RoleAdmin, apperr.PermissionDenied, ""},
		{"customer may not set a role", as(t, customer), identity.RoleCourier, apperr.PermissionDenied, ""},
		{"dispatcher may not set a role", as(t, dispatcher), identity.RoleCourier, apperr.PermissionDenied, ""},
		{"admin sets a role", f.admin(t), identity.RoleCourier, "", identity.RoleCourier},
		{"admin creates an admin", f.admin(t), identity.RoleAdmin, "", identity.RoleAdmin},
		{"admin without a role makes a customer", f.admin(t), "", "", identity.RoleCustomer},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			email := fmt.Sprintf("new%d@example.com", i)
			u, err := f.svc.CreateUser(tt.ctx, identity.NewUser{Email: email, Password: password, DisplayName: "New", Role: tt.role})
			apperrtest.WantCode(t, "CreateUser", err, tt.want)
			if err != nil {
				if _, err := f.store.GetUser(context.Background(), identity.Lookup{Email: email}); apperr.CodeOf(err) != apperr.NotFound {
					t.Errorf("refused user was stored (GetUser = %v)", err)
				}
				return
			}
			if u.Role != tt.wantRole || u.Status != identity.StatusActive || u.Version != 1 {
				t.Errorf("CreateUser() = role %q status %q version %d, want role %q, active, version 1", u.Role, u.Status, u.Version, tt.wantRole)
			}
		})
	}
}

func TestCreateUserNormalises(t *testing.T) {
	f := newFixture(t)
	u, err := f.svc.CreateUser(anonymous(t), identity.NewUser{
		Email: "  Ada.Lovelace@Example.COM ", Password: password, DisplayName: "  Ada  ", Username: "Ada_L",
	})
	if err != nil {
		t.Fatalf("CreateUser() = %v", err)
	}
	want := identity.User{
		ID: u.ID, Email: "ada.lovelace@example.com", Username: "Ada_L", DisplayName: "Ada", Role: identity.RoleCustomer,
		Status: identity.StatusActive, PasswordHash: u.PasswordHash, CreatedAt: start.Truncate(time.Microsecond), UpdatedAt: start.Truncate(time.Microsecond), Version: 1,
	}
	if diff := cmp.Diff(want, u); diff != "" {
		t.Errorf("CreateUser() mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, f.mustGet(t, u.ID)); diff != "" {
		t.Errorf("stored user mismatch (-want +got):\n%s", diff)
	}
	if strings.Contains(u.PasswordHash, password) || u.PasswordHash == "" {
		t.Errorf("PasswordHash = %q, want a hash", u.PasswordHash)
	}
	_, err = f.svc.CreateUser(anonymous(t), identity.NewUser{Email: "ADA.LOVELACE@example.com", Password: password, DisplayName: "Ada 2"})
	apperrtest.WantCode(t, "CreateUser(same email in other case)", err, apperr.Conflict)
	_, err = f.svc.CreateUser(anonymous(t), identity.NewUser{Email: "other@example.com", Password: password, DisplayName: "Ada 3", Username: "ADA_l"})
	apperrtest.WantCode(t, "CreateUser(same username in other case)", err, apperr.Conflict)
}

func TestCreateUserValidation(t *testing.T) {
	f := newFixture(t)
	valid := identity.NewUser{Email: "v@example.com", Password: password, DisplayName: "Valid", Username: "valid"}
	tests := []struct {
		name   string
		change func(*identity.NewUser)
		want   []apperr.FieldViolation
	}{
		{"bad email", func(u *identity.NewUser) { u.Email = "not an email" },
			[]apperr.FieldViolation{{Field: "email", Description: "must be a valid email address"}}},
		{"long email", func(u *identity.NewUser) { u.Email = strings.Repeat("a", 250) + "@x.io" },
			[]apperr.FieldViolation{{Field: "email", Description: "must be at most 254 characters"}}},
		{"short password", func(u *identity.NewUser) { u.Password = "elevenchars" },
			[]apperr.FieldViolation{{Field: "password", Description: "must be at least 12 characters"}}},
		{"long password", func(u *identity.NewUser) { u.Password = strings.Repeat("é", 129) },
			[]apperr.FieldViolation{{Field: "password", Description: "must be at most 128 characters"}}},
		{"blank display name", func(u *identity.NewUser) { u.DisplayName = "   " },
			[]apperr.FieldViolation{{Field: "display_name", Description: "is required"}}},
		{"invisible display name", func(u *identity.NewUser) { u.DisplayName = "\u200b\ufeff" },
			[]apperr.FieldViolation{{Field: "display_name", Description: "is required"}}},
		{"control character", func(u *identity.NewUser) { u.DisplayName = "a\x07b" },
			[]apperr.FieldViolation{{Field: "display_name", Description: "must not contain control characters"}}},
		{"bad username", func(u *identity.NewUser) { u.Username = "-x" },
			[]apperr.FieldViolation{{Field: "username", Description: "must be 3 to 32 letters, digits, '.', '_' or '-', starting with a letter or digit"}}},
		{"several", func(u *identity.NewUser) { u.Email, u.Password = "", "" }, []apperr.FieldViolation{
			{Field: "email", Description: "is required"}, {Field: "password", Description: "must be at least 12 characters"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := valid
			tt.change(&in)
			_, err := f.svc.CreateUser(anonymous(t), in)
			e := apperr.As(err)
			if e == nil || e.Code != apperr.Invalid {
				t.Fatalf("CreateUser() = %v, want an Invalid error", err)
			}
			if diff := cmp.Diff(tt.want, e.Violations); diff != "" {
				t.Errorf("violations mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDisplayNameRefusesBidiControls: a display name, which other people see, may not hold the
// bidirectional embedding, override and isolate controls that make it read as another name (U+202E
// reverses what follows it), whoever creates or changes it; the direction marks LRM and RLM, which Arabic
// and Hebrew names need, are kept.
func TestDisplayNameRefusesBidiControls(t *testing.T) {
	f := newFixture(t)
	const bidi = "must not contain bidirectional control characters (U+202A to U+202E, U+2066 to U+2069)"
	for i, name := range []string{"Ada \u202eevil", "\u2067Ada\u2069", "\u202aAda", "Ada\u2066"} {
		_, err := f.svc.CreateUser(f.admin(t), identity.NewUser{Email: fmt.Sprintf("bidi%d@example.com", i), Password: password, DisplayName: name})
		e := apperr.As(err)
		if e == nil || e.Code != apperr.Invalid {
			t.Errorf("CreateUser(display name %+q) = %v, want Invalid", name, err)
			continue
		}
		if diff := cmp.Diff([]apperr.FieldViolation{{Field: "display_name", Description: bidi}}, e.Violations); diff != "" || e.Message != "display_name "+bidi {
			t.Errorf("CreateUser(display name %+q) = %q, violations (-want +got):\n%s", name, e.Message, diff)
		}
	}
	u, err := f.svc.CreateUser(anonymous(t), identity.NewUser{Email: "marks@example.com", Password: password, DisplayName: "\u200fעדה\u200e"})
	if err != nil || u.DisplayName != "\u200fעדה\u200e" {
		t.Fatalf("CreateUser(display name with RLM and LRM) = %q, %v; want it kept", u.DisplayName, err)
	}
	_, err = f.svc.UpdateUser(as(t, u), identity.UserUpdate{ID: u.ID, Paths: []string{"display_name"}, DisplayName: "\u202bAda"})
	apperrtest.WantViolations(t, "UpdateUser(display name with an embedding)", err, []string{"user.display_name"})
}

func TestGetUserVisibility(t *testing.T) {
	f := newFixture(t)
	alice := f.mustUser(t, "alice", identity.RoleCustomer)
	bob := f.mustUser(t, "bob", identity.RoleCustomer)
	disp := f.mustUser(t, "disp", identity.RoleDispatcher)
	gone := f.mustUser(t, "gone", identity.RoleCustomer)
	if _, err := f.svc.DeleteUser(as(t, gone), gone.ID); err != nil {
		t.Fatalf("DeleteUser(gone) = %v", err)
	}
	svcPrincipal := ctxAs(t, auth.Principal{Kind: auth.Service, Subject: "courier"})
	tests := []struct {
		name   string
		ctx    context.Context
		lookup identity.Lookup
		want   apperr.Code
		wantID string
	}{
		{"self by id", as(t, alice), identity.Lookup{ID: alice.ID}, "", alice.ID},
		{"self by id in upper case", as(t, alice), identity.Lookup{ID: strings.ToUpper(alice.ID)}, "", alice.ID},
		{"self by email in other case", as(t, alice), identity.Lookup{Email: "ALICE@example.com"}, "", alice.ID},
		{"self by username", as(t, alice), identity.Lookup{Username: "ALICE"}, "", alice.ID},
		{"customer reads another by id", as(t, alice), identity.Lookup{ID: bob.ID}, apperr.NotFound, ""},
		{"customer reads another by email", as(t, alice), identity.Lookup{Email: "bob@example.com"}, apperr.NotFound, ""},
		{"customer reads a missing user", as(t, alice), identity.Lookup{Email: "nobody@example.com"}, apperr.NotFound, ""},
		{"dispatcher reads anyone", as(t, disp), identity.Lookup{ID: bob.ID}, "", bob.ID},
		{"service reads anyone", svcPrincipal, identity.Lookup{ID: bob.ID}, "", bob.ID},
		{"dispatcher does not see deleted", as(t, disp), identity.Lookup{ID: gone.ID}, apperr.NotFound, ""},
		{"deleted user does not see themself", as(t, gone), identity.Lookup{ID: gone.ID}, apperr.NotFound, ""},
		{"admin sees deleted", f.admin(t), identity.Lookup{ID: gone.ID}, "", gone.ID},
		{"no key", as(t, alice), identity.Lookup{}, apperr.Invalid, ""},
		{"two keys", as(t, alice), identity.Lookup{ID: alice.ID, Email: "alice@example.com"}, apperr.Invalid, ""},
		{"malformed id", as(t, alice), identity.Lookup{ID: "42"}, apperr.Invalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := f.svc.GetUser(tt.ctx, tt.lookup)
			apperrtest.WantCode(t, "GetUser", err, tt.want)
			if u.ID != tt.wantID {
				t.Errorf("GetUser() id = %q, want %q", u.ID, tt.wantID)
			}
			if tt.want == apperr.NotFound && apperr.MessageOf(err) != "user not found" {
				t.Errorf("GetUser() message = %q, want the one message for every hidden user", apperr.MessageOf(err))
			}
		})
	}
}

func TestUpdateUser(t *testing.T) {
	tests := []struct {
		name string
		// by names the caller: "self", "other" (a customer), "dispatcher" or "admin".
		by      string
		update  identity.UserUpdate
		want    apperr.Code
		changed bool
	}{
		{"self changes display name", "self", identity.UserUpdate{Paths: []string{"display_name"}, DisplayName: "New Name"}, "", true},
		{"self changes email and username", "self", identity.UserUpdate{Paths: []string{"email", "username"}, Email: "New@Example.com", Username: "newname"}, "", true},
		{"self removes username", "self", identity.UserUpdate{Paths: []string{"username"}}, "", true},
		{"self with matching etag", "self", identity.UserUpdate{Paths: []string{"display_name"}, DisplayName: "X", Version: 1}, "", true},
		{"self with stale etag", "self", identity.UserUpdate{Paths: []string{"display_name"}, DisplayName: "X", Version: 7}, apperr.Aborted, false},
		{"self raises own role", "self", identity.UserUpdate{Paths: []string{"role"}, Role: identity.RoleAdmin}, apperr.PermissionDenied, false},
		{"self sends own role back unchanged", "self", identity.UserUpdate{Paths: []string{"role", "display_name"}, Role: identity.RoleCustomer, DisplayName: "Y"}, "", true},
		{"self changes own status", "self", identity.UserUpdate{Paths: []string{"status"}, Status: identity.StatusSuspended}, apperr.PermissionDenied, false},
		{"same values change nothing", "self", identity.UserUpdate{Paths: []string{"display_name"}, DisplayName: "User target"}, "", false},
		{"output-only path", "self", identity.UserUpdate{Paths: []string{"display_name", "id"}, DisplayName: "X"}, apperr.Invalid, false},
		{"output-only paths", "self", identity.UserUpdate{Paths: []string{"create_time", "update_time", "delete_time", "last_login_time"}}, apperr.Invalid, false},
		{"only the etag", "self", identity.UserUpdate{Paths: []string{"etag"}, Version: 1}, apperr.Invalid, false},
		{"etag with a change", "self", identity.UserUpdate{Paths: []string{"display_name", "etag"}, DisplayName: "X", Version: 1}, "", true},
		{"unknown path", "self", identity.UserUpdate{Paths: []string{"password_hash"}}, apperr.Invalid, false},
		{"wildcard", "self", identity.UserUpdate{Paths: []string{"*"}}, apperr.Invalid, false},
		{"empty mask", "self", identity.UserUpdate{}, apperr.Invalid, false},
		{"bad display name", "self", identity.UserUpdate{Paths: []string{"display_name"}, DisplayName: " "}, apperr.Invalid, false},
		{"invisible display name", "self", identity.UserUpdate{Paths: []string{"display_name"}, DisplayName: "\u200b"}, apperr.Invalid, false},
		{"display name with a bidi override", "self", identity.UserUpdate{Paths: []string{"display_name"}, DisplayName: "\u202dAda"}, apperr.Invalid, false},
		{"display name with an RLM", "self", identity.UserUpdate{Paths: []string{"display_name"}, DisplayName: "עדה\u200f"}, "", true},
		{"bad email", "self", identity.UserUpdate{Paths: []string{"email"}, Email: "x"}, apperr.Invalid, false},
		{"taken email", "self", identity.UserUpdate{Paths: []string{"email"}, Email: "OTHER@example.com"}, apperr.Conflict, false},
		{"status deleted is not an update", "admin", identity.UserUpdate{Paths: []string{"status"}, Status: identity.StatusDeleted}, apperr.Invalid, false},
		{"customer changes another", "other", identity.UserUpdate{Paths: []string{"display_name"}, DisplayName: "Hacked"}, apperr.NotFound, false},
		{"dispatcher changes another", "dispatcher", identity.UserUpdate{Paths: []string{"display_name"}, DisplayName: "Hacked"}, apperr.PermissionDenied, false},
		{"admin changes a role", "admin", identity.UserUpdate{Paths: []string{"role"}, Role: identity.RoleCourier}, "", true},
		{"admin suspends", "admin", identity.UserUpdate{Paths: []string{"status"}, Status: identity.StatusSuspended}, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			target := f.mustUser(t, "target", identity.RoleCustomer)
			callers := map[string]context.Context{
				"self":       as(t, target),
				"other":      as(t, f.mustUser(t, "other", identity.RoleCustomer)),
				"dispatcher": as(t, f.mustUser(t, "dispatcher", identity.RoleDispatcher)),
				"admin":      f.admin(t),
			}
			in := tt.update
			in.ID = target.ID
			got, err := f.svc.UpdateUser(callers[tt.by], in)
			apperrtest.WantCode(t, "UpdateUser", err, tt.want)
			stored := f.mustGet(t, target.ID)
			wantVersion := int64(1)
			if tt.changed {
				wantVersion = 2
			}
			if stored.Version != wantVersion {
				t.Errorf("stored version = %d, want %d", stored.Version, wantVersion)
			}
			if err == nil && !cmp.Equal(got, stored) {
				t.Errorf("UpdateUser() = %+v, want the stored user %+v", got, stored)
			}
		})
	}
}

func TestUpdateUserRecordsActivity(t *testing.T) {
	f := newFixture(t)
	u := f.mustUser(t, "act", identity.RoleCustomer)
	admin := f.mustUser(t, "boss", identity.RoleAdmin)
	_, err := f.svc.UpdateUser(as(t, admin), identity.UserUpdate{ID: u.ID, Paths: []string{"display_name", "role", "status", "username", "etag"},
		DisplayName: "Renamed", Role: identity.RoleCourier, Status: identity.StatusSuspended, Username: "act"})
	if err != nil {
		t.Fatalf("UpdateUser() = %v", err)
	}
	acts, err := f.store.ActivitySince(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		User, Actor string
		Type        identity.ActivityType
		Fields      []string
	}
	var got []entry
	for _, a := range acts {
		got = append(got, entry{a.UserID, a.ActorUserID, a.Type, a.ChangedFields})
	}
	want := []entry{
		{u.ID, admin.ID, identity.ActivityProfileChanged, []string{"display_name"}},
		{u.ID, admin.ID, identity.ActivityRoleChanged, []string{"role"}},
		{u.ID, admin.ID, identity.ActivityStatusChanged, []string{"status"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("activity mismatch (-want +got):\n%s", diff)
	}
}

func TestLastAdminGuard(t *testing.T) {
	f := newFixture(t)
	root := f.mustUser(t, "root", identity.RoleAdmin)
	suspend := identity.UserUpdate{ID: root.ID, Paths: []string{"status"}, Status: identity.StatusSuspended}

	// Nobody changes their own status (issue 8: a suspended admin reactivated themselves), the last
	// admin included.
	_, err := f.svc.UpdateUser(as(t, root), suspend)
	apperrtest.WantCode(t, "UpdateUser(last admin suspends self)", err, apperr.PermissionDenied)
	_, err = f.svc.DeleteUser(as(t, root), root.ID)
	apperrtest.WantCode(t, "DeleteUser(last admin)", err, apperr.FailedPrecondition)
	_, err = f.svc.UpdateUser(as(t, root), identity.UserUpdate{ID: root.ID, Paths: []string{"role"}, Role: identity.RoleCustomer})
	apperrtest.WantCode(t, "UpdateUser(admin demotes self)", err, apperr.PermissionDenied)

	second := f.mustUser(t, "second", identity.RoleAdmin)
	_, err = f.svc.UpdateUser(as(t, root), suspend)
	apperrtest.WantCode(t, "UpdateUser(suspend self with another admin)", err, apperr.PermissionDenied)
	if _, err := f.svc.UpdateUser(as(t, second), suspend); err != nil {
		t.Fatalf("UpdateUser(second suspends root) = %v, want nil", err)
	}
	// root is suspended now, so second is the last active admin; a stale admin token does not help.
	_, err = f.svc.UpdateUser(as(t, root), identity.UserUpdate{ID: second.ID, Paths: []string{"role"}, Role: identity.RoleCustomer})
	apperrtest.WantCode(t, "UpdateUser(demote the last active admin)", err, apperr.FailedPrecondition)
	_, err = f.svc.UpdateUser(as(t, root), identity.UserUpdate{ID: second.ID, Paths: []string{"status"}, Status: identity.StatusSuspended})
	apperrtest.WantCode(t, "UpdateUser(suspend the last active admin)", err, apperr.FailedPrecondition)
	if got := f.mustGet(t, second.ID); got.Role != identity.RoleAdmin || got.Status != identity.StatusActive {
		t.Errorf("second admin = %q, %q; want an active admin", got.Role, got.Status)
	}
	// A suspended admin cannot reactivate themselves either (the exact repro of issue 8).
	_, err = f.svc.UpdateUser(as(t, root), identity.UserUpdate{ID: root.ID, Paths: []string{"status"}, Status: identity.StatusActive})
	apperrtest.WantCode(t, "UpdateUser(suspended admin reactivates self)", err, apperr.PermissionDenied)
	if got := f.mustGet(t, root.ID); got.Status != identity.StatusSuspended {
		t.Errorf("root status = %q, want suspended", got.Status)
	}
}

// TestLastAdminGuardConcurrent has the last two admins suspend each other at once: the guard counts
// inside the update's transaction, so one of them stays. (errs[i] is the suspension of admins[i].)
func TestLastAdminGuardConcurrent(t *testing.T) {
	f := newFixture(t)
	admins := []identity.User{f.mustUser(t, "root1", identity.RoleAdmin), f.mustUser(t, "root2", identity.RoleAdmin)}
	errs := make([]error, len(admins))
	identitytest.Race(len(admins), func(i int) {
		a, by := admins[i], admins[1-i]
		_, errs[i] = f.svc.UpdateUser(as(t, by), identity.UserUpdate{ID: a.ID, Paths: []string{"status"}, Status: identity.StatusSuspended})
	})
	active := 0
	for i, a := range admins {
		switch got := f.mustGet(t, a.ID); {
		case errs[i] == nil && got.Status == identity.StatusSuspended:
		case apperr.CodeOf(errs[i]) == apperr.FailedPrecondition && got.Status == identity.StatusActive:
			active++
		default:
			t.Errorf("UpdateUser(suspend %s) = %v, status %q; want suspended, or FailedPrecondition and still active", a.Email, errs[i], got.Status)
		}
	}
	if active != 1 {
		t.Errorf("%d active admins after they suspended each other at once, want 1", active)
	}
}

func TestChangePassword(t *testing.T) {
	const newPassword = "a much better passphrase"
	tests := []struct {
		name    string
		by      string // "self", "other", "dispatcher" or "admin"
		current string
		next    string
		want    apperr.Code
	}{
		{"self with current", "self", password, newPassword, ""},
		{"self without current", "self", "", newPassword, apperr.PermissionDenied},
		{"self with wrong current", "self", "wrong password!", newPassword, apperr.PermissionDenied},
		{"same as current", "self", password, password, apperr.Invalid},
		{"too short", "self", password, "short", apperr.Invalid},
		{"admin resets without current", "admin", "", newPassword, ""},
		{"customer for another", "other", "", newPassword, apperr.NotFound},
		{"dispatcher for another", "dispatcher", "", newPassword, apperr.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			u := f.mustUser(t, "pwuser", identity.RoleCustomer)
			callers := map[string]context.Context{
				"self":       as(t, u),
				"other":      as(t, f.mustUser(t, "other", identity.RoleCustomer)),
				"dispatcher": as(t, f.mustUser(t, "dispatcher", identity.RoleDispatcher)),
				"admin":      f.admin(t),
			}
			session := f.mustLogin(t, "pwuser@example.com")
			err := f.svc.ChangePassword(callers[tt.by], u.ID, tt.current, tt.next)
			apperrtest.WantCode(t, "ChangePassword", err, tt.want)

			_, loginNew := f.svc.Login(anonymous(t), identity.Credentials{Email: "pwuser@example.com", Password: newPassword})
			_, refreshErr := f.svc.RefreshToken(anonymous(t), session.RefreshToken)
			if err == nil {
				apperrtest.WantCode(t, "Login(new password)", loginNew, "")
				apperrtest.WantCode(t, "RefreshToken(session before the change)", refreshErr, apperr.Unauthenticated)
			} else {
				apperrtest.WantCode(t, "Login(new password after refused change)", loginNew, apperr.Unauthenticated)
				apperrtest.WantCode(t, "RefreshToken(session after refused change)", refreshErr, "")
			}
		})
	}
}

func TestChangePasswordIsRateLimited(t *testing.T) {
	f := newFixture(t, func(o *identity.Options) { o.LoginFailures = 2 })
	u := f.mustUser(t, "guess", identity.RoleCustomer)
	for i := range 2 {
		err := f.svc.ChangePassword(as(t, u), u.ID, fmt.Sprintf("wrong guess %d!", i), "a new passphrase")
		apperrtest.WantCode(t, "ChangePassword(wrong current)", err, apperr.PermissionDenied)
	}
	err := f.svc.ChangePassword(as(t, u), u.ID, password, "a new passphrase")
	apperrtest.WantCode(t, "ChangePassword(after the limit)", err, apperr.ResourceExhausted)
}

func TestDeleteUser(t *testing.T) {
	f := newFixture(t)
	u := f.mustUser(t, "leaver", identity.RoleCustomer)
	other := f.mustUser(t, "other", identity.RoleCustomer)
	session := f.mustLogin(t, "leaver@example.com")

	_, err := f.svc.DeleteUser(as(t, other), u.ID)
	apperrtest.WantCode(t, "DeleteUser(by another customer)", err, apperr.NotFound)
	_, err = f.svc.DeleteUser(as(t, other), "not-a-uuid")
	apperrtest.WantCode(t, "DeleteUser(malformed id)", err, apperr.Invalid)

	f.clock.Advance(time.Second)
	deleted, err := f.svc.DeleteUser(as(t, u), u.ID)
	if err != nil {
		t.Fatalf("DeleteUser(self) = %v", err)
	}
	now := f.clock.Now().Truncate(time.Microsecond)
	if deleted.Status != identity.StatusDeleted || !deleted.DeletedAt.Equal(now) || deleted.Version != u.Version+2 {
		// +2: the login recorded its time first.
		t.Errorf("DeleteUser() = status %q deleted %v version %d, want deleted at %v, version %d",
			deleted.Status, deleted.DeletedAt, deleted.Version, now, u.Version+2)
	}
	again, err := f.svc.DeleteUser(as(t, u), u.ID)
	if err != nil || !cmp.Equal(again, deleted) {
		t.Errorf("DeleteUser(again) = %+v, %v; want the deleted user unchanged", again, err)
	}
	byAdmin, err := f.svc.DeleteUser(f.admin(t), u.ID)
	if err != nil || !cmp.Equal(byAdmin, deleted) {
		t.Errorf("DeleteUser(again, by admin) = %+v, %v; want the deleted user unchanged", byAdmin, err)
	}
	_, err = f.svc.RefreshToken(anonymous(t), session.RefreshToken)
	apperrtest.WantCode(t, "RefreshToken(deleted user)", err, apperr.Unauthenticated)
	_, err = f.svc.Login(anonymous(t), identity.Credentials{Email: "leaver@example.com", Password: password})
	apperrtest.WantCode(t, "Login(deleted user)", err, apperr.Unauthenticated)
	_, err = f.svc.CreateUser(anonymous(t), identity.NewUser{Email: "leaver@example.com", Password: password, DisplayName: "Again"})
	apperrtest.WantCode(t, "CreateUser(email of a deleted user)", err, apperr.Conflict)
}

// TestUpdateNamingNothingSaysWhatMayBeNamed: an update whose mask names no field to change (none at all,
// or only the etag) is Invalid with a message saying so and naming the fields that may be changed, the
// words of the contract's own rule (update_user.mask_not_empty).
func TestUpdateNamingNothingSaysWhatMayBeNamed(t *testing.T) {
	f := newFixture(t)
	u := f.mustUser(t, "target", identity.RoleCustomer)
	const want = "update_mask names no field to change: name at least one of display_name, username, email, role, status"
	for _, paths := range [][]string{nil, {}, {identity.PathEtag}} {
		_, err := f.svc.UpdateUser(as(t, u), identity.UserUpdate{ID: u.ID, Paths: paths, Version: 1})
		if got := apperr.MessageOf(err); apperr.CodeOf(err) != apperr.Invalid || got != want {
			t.Errorf("UpdateUser(paths %q) = %v, want Invalid %q", paths, err, want)
		}
	}
}
