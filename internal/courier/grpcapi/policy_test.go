package grpcapi_test

import (
	"context"
	"strings"
	"testing"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	"lastmile/internal/courier/grpcapi"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
)

func TestPolicyCoversEveryMethod(t *testing.T) {
	sd := courierv1.File_lastmile_courier_v1_courier_proto.Services().ByName("CourierService")
	methods := grpcauth.Methods(sd)
	if len(methods) != 14 {
		t.Errorf("CourierService has %d methods, want 14 (update this test and the policy together)", len(methods))
	}
	if err := grpcapi.Policy().Check(methods); err != nil {
		t.Error(err)
	}
}

func TestPolicy(t *testing.T) {
	user := func(role string) auth.Principal {
		return auth.Principal{Kind: auth.User, Subject: "u", Roles: []string{role}}
	}
	service := func(name string) auth.Principal { return auth.Principal{Kind: auth.Service, Subject: name} }
	principals := map[string]auth.Principal{
		"anonymous":  {},
		"customer":   user(auth.RoleCustomer),
		"courier":    user(auth.RoleCourier),
		"dispatcher": user(auth.RoleDispatcher),
		"admin":      user(auth.RoleAdmin),
		"dispatch":   service("dispatch"),
		"simulator":  service("simulator"),
		"gateway":    service("gateway"),
	}
	// Who may call each method; everyone else is refused.
	allowed := map[string]string{
		"RegisterCourier":    "dispatcher admin",
		"GetCourier":         "courier dispatcher admin dispatch",
		"ListCouriers":       "dispatcher admin",
		"UpdateCourier":      "courier dispatcher admin",
		"SetAvailability":    "courier dispatcher admin",
		"GetAvailability":    "courier dispatcher admin",
		"IsAvailable":        "courier dispatcher admin",
		"SetStatus":          "courier dispatcher admin",
		"ReportLocations":    "courier simulator",
		"GetCourierStatus":   "courier dispatcher admin dispatch",
		"FindNearbyCouriers": "dispatch",
		"ClaimCourier":       "dispatch",
		"ReleaseCourier":     "dispatch",
		"WatchCouriers":      "dispatcher admin dispatch",
	}
	pol := grpcapi.Policy()
	for method, who := range allowed {
		full := "/" + courierv1.CourierService_ServiceDesc.ServiceName + "/" + method
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
