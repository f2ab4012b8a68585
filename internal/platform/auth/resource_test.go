package auth_test

import (
	"context"
	"strings"
	"testing"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// Principals of the resource tests. The owner of the resource is user "u1".
var (
	owner      = auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{auth.RoleCourier}}
	otherUser  = auth.Principal{Kind: auth.User, Subject: "u2", Roles: []string{auth.RoleCourier}, Via: "gateway"}
	dispatcher = auth.Principal{Kind: auth.User, Subject: "u3", Roles: []string{auth.RoleDispatcher}}
	admin      = auth.Principal{Kind: auth.User, Subject: "u4", Roles: []string{auth.RoleCustomer, auth.RoleAdmin}}
	anonymous  = auth.Principal{}
	anonViaGW  = auth.Principal{Kind: auth.Anonymous, Via: "gateway"}
	// A service whose name happens to equal the owner's id owns nothing.
	serviceU1 = auth.Principal{Kind: auth.Service, Subject: "u1"}
	dispatch  = auth.Principal{Kind: auth.Service, Subject: "dispatch"}
)

func as(p auth.Principal) context.Context { return auth.WithPrincipal(context.Background(), p) }

func TestSelfOrRoles(t *testing.T) {
	tests := []struct {
		name  string
		p     auth.Principal
		owner string
		want  apperr.Code
	}{
		{"owner", owner, "u1", ""},
		{"holder of a listed role", admin, "u1", ""},
		{"holder of another listed role", dispatcher, "u1", ""},
		{"other user", otherUser, "u1", apperr.PermissionDenied},
		{"anonymous", anonymous, "u1", apperr.Unauthenticated},
		{"anonymous via gateway", anonViaGW, "u1", apperr.Unauthenticated},
		{"service named like the owner", serviceU1, "u1", apperr.PermissionDenied},
		{"service", dispatch, "u1", apperr.PermissionDenied},
		{"empty owner matches no one", owner, "", apperr.PermissionDenied},
		{"empty owner still admits roles", admin, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := auth.SelfOrRoles(as(tt.p), tt.owner, auth.RoleAdmin, auth.RoleDispatcher)
			if got := apperr.CodeOf(err); got != tt.want {
				t.Fatalf("SelfOrRoles(%+v, %q) = %v, want code %q", tt.p, tt.owner, err, tt.want)
			}
			if err != nil && strings.Contains(apperr.MessageOf(err), auth.RoleAdmin) {
				t.Errorf("SelfOrRoles message %q reveals the roles", apperr.MessageOf(err))
			}
		})
	}
}

func TestOwnerOrRolesNotFound(t *testing.T) {
	tests := []struct {
		name    string
		p       auth.Principal
		want    apperr.Code
		wantMsg string
	}{
		{"owner", owner, "", ""},
		{"holder of a listed role", admin, "", ""},
		{"other user sees nothing", otherUser, apperr.NotFound, "task not found"},
		{"user with an unlisted role", dispatcher, apperr.NotFound, "task not found"},
		{"service sees nothing", serviceU1, apperr.NotFound, "task not found"},
		{"anonymous must authenticate", anonymous, apperr.Unauthenticated, "authentication required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := auth.OwnerOrRolesNotFound(as(tt.p), "u1", "task", auth.RoleAdmin)
			if got, msg := apperr.CodeOf(err), apperr.MessageOf(err); got != tt.want || msg != tt.wantMsg {
				t.Errorf("OwnerOrRolesNotFound(%+v) = %v, want code %q, message %q", tt.p, err, tt.want, tt.wantMsg)
			}
		})
	}
}

func TestRequireRoles(t *testing.T) {
	tests := []struct {
		name  string
		p     auth.Principal
		roles []string
		want  apperr.Code
	}{
		{"listed role", dispatcher, []string{auth.RoleDispatcher, auth.RoleAdmin}, ""},
		{"another listed role", admin, []string{auth.RoleDispatcher, auth.RoleAdmin}, ""},
		{"unlisted role", owner, []string{auth.RoleDispatcher, auth.RoleAdmin}, apperr.PermissionDenied},
		{"service", dispatch, []string{auth.RoleDispatcher}, apperr.PermissionDenied},
		{"anonymous", anonymous, []string{auth.RoleDispatcher}, apperr.Unauthenticated},
		{"no roles admits nobody", admin, nil, apperr.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := auth.RequireRoles(as(tt.p), tt.roles...)
			if got := apperr.CodeOf(err); got != tt.want {
				t.Errorf("RequireRoles(%+v, %q) = %v, want code %q", tt.p, tt.roles, err, tt.want)
			}
		})
	}
}

func TestIsService(t *testing.T) {
	forwarded := auth.Principal{Kind: auth.User, Subject: "u1", Via: "dispatch"}
	anonViaDispatch := auth.Principal{Kind: auth.Anonymous, Via: "dispatch"}
	tests := []struct {
		name  string
		p     auth.Principal
		names []string
		want  bool
	}{
		{"any service", dispatch, nil, true},
		{"named service", dispatch, []string{"route", "dispatch"}, true},
		{"other service", dispatch, []string{"route"}, false},
		{"user forwarded by the service", forwarded, []string{"dispatch"}, false},
		{"anonymous via the service", anonViaDispatch, nil, false},
		{"user", admin, nil, false},
		{"anonymous", anonymous, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := auth.IsService(as(tt.p), tt.names...); got != tt.want {
				t.Errorf("IsService(%+v, %q) = %v, want %v", tt.p, tt.names, got, tt.want)
			}
		})
	}
}
