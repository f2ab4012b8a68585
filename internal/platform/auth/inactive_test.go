package auth_test

import (
	"errors"
	"testing"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// TestCheckSaysWhenTheAccountIsInactive: every refusal of Check is Unauthenticated, and only the one for
// a suspended, deleted or unknown user wraps auth.ErrInactive (a courier's dispatch session tells its app
// not to reconnect then, and to sign in again otherwise).
func TestCheckSaysWhenTheAccountIsInactive(t *testing.T) {
	p := auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{auth.RoleCourier}, IssuedAt: issued}
	for _, tt := range []struct {
		name     string
		st       auth.SubjectState
		inactive bool
	}{
		{"suspended", auth.SubjectState{Roles: p.Roles}, true},
		{"roles changed", auth.SubjectState{Active: true, Roles: []string{auth.RoleCustomer}}, false},
		{"revoked", auth.SubjectState{Active: true, Roles: p.Roles, RevokedBefore: issued}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.st.Check(p)
			if got := apperr.CodeOf(err); got != apperr.Unauthenticated {
				t.Errorf("Check() = %v (code %s), want Unauthenticated", err, got)
			}
			if got := errors.Is(err, auth.ErrInactive); got != tt.inactive {
				t.Errorf("errors.Is(Check(), ErrInactive) = %v, want %v", got, tt.inactive)
			}
		})
	}
}
