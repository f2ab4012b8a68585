package auth_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

const (
	estimate = "/lastmile.route.v1.RouteService/EstimateRoute"
	matrix   = "/lastmile.route.v1.RouteService/ComputeMatrix"
	claim    = "/lastmile.courier.v1.CourierService/ClaimCourier"
	login    = "/lastmile.identity.v1.AuthService/Login"
	delUser  = "/lastmile.identity.v1.UserService/DeleteUser"
	getTask  = "/lastmile.dispatch.v1.DispatchService/GetTask"
	watch    = "/lastmile.dispatch.v1.DispatchService/WatchTask"
	nobody   = "/lastmile.x.v1.X/Nobody"
)

var policy = auth.Policy{
	login:    auth.Public(),
	estimate: auth.Users().Or(auth.Internal("dispatch")),
	matrix:   auth.Internal("dispatch"),
	claim:    auth.Internal("dispatch"),
	delUser:  auth.Users("ROLE_ADMIN"),
	getTask:  auth.Users("ROLE_DISPATCHER", "ROLE_ADMIN"),
	watch:    auth.Users("ROLE_CUSTOMER").Or(auth.CapabilityHolders()),
	nobody:   {},
}

func TestPolicyAuthorize(t *testing.T) {
	anon := auth.Principal{}
	viaGateway := auth.Principal{Kind: auth.Anonymous, Via: "gateway"}
	customer := auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{"ROLE_CUSTOMER"}}
	admin := auth.Principal{Kind: auth.User, Subject: "u2", Roles: []string{"ROLE_ADMIN"}, Via: "gateway"}
	dispatch := auth.Principal{Kind: auth.Service, Subject: "dispatch"}
	gatewaySvc := auth.Principal{Kind: auth.Service, Subject: "gateway"}
	// A user whose token dispatch forwarded: the user, not dispatch, is judged.
	forwardedByDispatch := auth.Principal{Kind: auth.User, Subject: "u3", Roles: []string{"ROLE_COURIER"}, Via: "dispatch"}

	tests := []struct {
		name   string
		method string
		p      auth.Principal
		want   apperr.Code
	}{
		{"public admits anonymous", login, anon, ""},
		{"public admits service", login, dispatch, ""},
		{"any user admits customer", estimate, customer, ""},
		{"combined rule admits listed service", estimate, dispatch, ""},
		{"combined rule refuses other service", estimate, gatewaySvc, apperr.PermissionDenied},
		{"anonymous must authenticate", estimate, anon, apperr.Unauthenticated},
		{"anonymous via gateway must authenticate", claim, viaGateway, apperr.Unauthenticated},
		{"internal admits its service", claim, dispatch, ""},
		{"internal refuses users, even admins", claim, admin, apperr.PermissionDenied},
		{"internal refuses a user forwarded by the allowed service", claim, forwardedByDispatch, apperr.PermissionDenied},
		{"role rule admits role", delUser, admin, ""},
		{"role rule refuses other role", delUser, customer, apperr.PermissionDenied},
		{"role rule refuses services", delUser, dispatch, apperr.PermissionDenied},
		{"any of several roles", getTask, admin, ""},
		{"capability rule admits anonymous", watch, anon, ""},
		{"capability rule admits anonymous via gateway", watch, viaGateway, ""},
		{"capability rule keeps its roles", watch, customer, ""},
		{"capability rule refuses other roles", watch, admin, apperr.PermissionDenied},
		{"capability rule refuses services", watch, dispatch, apperr.PermissionDenied},
		{"zero rule admits nobody", nobody, dispatch, apperr.PermissionDenied},
		{"missing method denied to users", "/lastmile.x.v1.X/Unknown", admin, apperr.PermissionDenied},
		{"missing method denied to anonymous", "/lastmile.x.v1.X/Unknown", anon, apperr.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := policy.Authorize(context.Background(), tt.method, tt.p)
			if got := apperr.CodeOf(err); got != tt.want {
				t.Fatalf("Authorize(%s, %+v) = %v, want code %q", tt.method, tt.p, err, tt.want)
			}
			if err != nil && strings.Contains(apperr.MessageOf(err), "ROLE_") {
				t.Errorf("Authorize message %q reveals the policy", apperr.MessageOf(err))
			}
		})
	}
}

func TestRuleOr(t *testing.T) {
	tests := []struct {
		name string
		got  auth.Rule
		want auth.Rule
	}{
		{"roles and services", auth.Users("A").Or(auth.Internal("dispatch")),
			auth.Rule{Authenticated: true, Roles: []string{"A"}, Services: []string{"dispatch"}}},
		{"roles union", auth.Users("A", "B").Or(auth.Users("B", "C")),
			auth.Rule{Authenticated: true, Roles: []string{"A", "B", "C"}}},
		{"any user absorbs roles", auth.Users("A").Or(auth.Users()),
			auth.Rule{Authenticated: true}},
		{"public wins", auth.Internal("route").Or(auth.Public()),
			auth.Rule{Public: true, Services: []string{"route"}}},
		{"capability holders", auth.Users("A").Or(auth.CapabilityHolders()),
			auth.Rule{Authenticated: true, Roles: []string{"A"}, Capability: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.got); diff != "" {
				t.Errorf("Or() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPolicyCheck(t *testing.T) {
	methods := []string{estimate, matrix}
	if err := policy.Check(methods); err != nil {
		t.Errorf("Check(RouteService) = %v, want nil", err)
	}
	err := auth.Policy{estimate: auth.Public()}.Check(append(methods, "/a.B/C", "/a.B/C"))
	want := "authorization policy has no rule for 2 method(s): /a.B/C, " + matrix
	if err == nil || err.Error() != want {
		t.Errorf("Check with gaps = %v, want %q", err, want)
	}
}

func TestFromContext(t *testing.T) {
	if got := auth.FromContext(context.Background()); got.Kind != auth.Anonymous || got.Subject != "" {
		t.Errorf("FromContext(empty) = %+v, want anonymous", got)
	}
	p := auth.Principal{Kind: auth.Service, Subject: "route"}
	if got := auth.FromContext(auth.WithPrincipal(context.Background(), p)); !cmp.Equal(got, p) {
		t.Errorf("FromContext(WithPrincipal(%+v)) = %+v", p, got)
	}
}
