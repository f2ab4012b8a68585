// Package authtest checks a service's authorization Policy against a table of who may call what, for the
// policy tests of every service.
package authtest

import (
	"context"
	"strings"
	"testing"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// principals are the callers every policy is checked with: anonymous, a user of each role, and the
// service identities that call other services.
var principals = map[string]auth.Principal{
	"anonymous":  {},
	"customer":   user(auth.RoleCustomer),
	"courier":    user(auth.RoleCourier),
	"dispatcher": user(auth.RoleDispatcher),
	"admin":      user(auth.RoleAdmin),
	"dispatch":   {Kind: auth.Service, Subject: "dispatch"},
	"simulator":  {Kind: auth.Service, Subject: "simulator"},
	"gateway":    {Kind: auth.Service, Subject: "gateway"},
}

func user(role string) auth.Principal {
	return auth.Principal{Kind: auth.User, Subject: "u", Roles: []string{role}}
}

// CheckPolicy checks pol for the methods of service (a full service name): allowed maps each method name
// to the space-separated callers (keys of the principals above: anonymous, customer, courier, dispatcher,
// admin, dispatch, simulator, gateway) that may call it. Every other caller must be refused: anonymous
// with Unauthenticated, the rest with PermissionDenied.
func CheckPolicy(t *testing.T, pol auth.Policy, service string, allowed map[string]string) {
	t.Helper()
	for method, who := range allowed {
		full := "/" + service + "/" + method
		for name, p := range principals {
			err := pol.Authorize(context.Background(), full, p)
			want := apperr.Code("")
			switch {
			case strings.Contains(" "+who+" ", " "+name+" "):
			case name == "anonymous":
				want = apperr.Unauthenticated
			default:
				want = apperr.PermissionDenied
			}
			if got := apperr.CodeOf(err); got != want {
				t.Errorf("Authorize(%s, %s) = %q, want %q", method, name, got, want)
			}
		}
	}
}
