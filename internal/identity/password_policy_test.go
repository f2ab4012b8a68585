package identity_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
	pwpolicy "lastmile/internal/platform/auth/password"
)

// wantPasswordViolation checks that err is Invalid with exactly one violation: field, described by want.
func wantPasswordViolation(t *testing.T, call string, err error, field string, want error) {
	t.Helper()
	e := apperr.As(err)
	if e == nil || e.Code != apperr.Invalid {
		t.Fatalf("%s = %v, want an Invalid error", call, err)
	}
	if diff := cmp.Diff([]apperr.FieldViolation{{Field: field, Description: want.Error()}}, e.Violations); diff != "" {
		t.Errorf("%s violations mismatch (-want +got):\n%s", call, diff)
	}
}

func TestCreateUserRefusesWeakPasswords(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, password string
		want           error
	}{
		{"leaked", "password1234", pwpolicy.ErrTooCommon},
		{"service name and year", "lastmile2026", pwpolicy.ErrTooGuessable},
		{"the email", "grace.hopper@example.com", pwpolicy.ErrTooGuessable},
		{"the email's local part and digits", "grace.hopper1906", pwpolicy.ErrTooGuessable},
		{"the username and digits", "amazinggrace1906", pwpolicy.ErrTooGuessable},
		{"the display name and digits", "RearAdmiral1906", pwpolicy.ErrTooGuessable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.CreateUser(anonymous(t), identity.NewUser{
				Email: "Grace.Hopper@example.com", Username: "amazinggrace", DisplayName: "Rear Admiral", Password: tt.password,
			})
			wantPasswordViolation(t, "CreateUser()", err, "password", tt.want)
		})
	}
	if _, err := f.svc.CreateUser(anonymous(t), identity.NewUser{
		Email: "grace.hopper@example.com", Username: "amazinggrace", DisplayName: "Rear Admiral", Password: "cobol compiler nanosecond wire",
	}); err != nil {
		t.Errorf("CreateUser(a long random passphrase) = %v, want nil", err)
	}
}

func TestChangePasswordRefusesWeakPasswords(t *testing.T) {
	f := newFixture(t)
	u := f.mustUser(t, "alan", identity.RoleCustomer)
	err := f.svc.ChangePassword(as(t, u), u.ID, password, "qwerty123456")
	wantPasswordViolation(t, "ChangePassword(leaked)", err, "new_password", pwpolicy.ErrTooCommon)
}

func TestEnsureAdminRefusesWeakPassword(t *testing.T) {
	f := newFixture(t)
	_, _, err := f.svc.EnsureAdmin(context.Background(), "", "lastmile2026")
	wantPasswordViolation(t, "EnsureAdmin(lastmile2026)", err, "password", pwpolicy.ErrTooGuessable)
}
