package grpcapi_test

import (
	"context"
	"strings"
	"testing"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/dispatch/grpcapi"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
)

func TestPolicyCoversEveryMethod(t *testing.T) {
	sd := dispatchv1.File_lastmile_dispatch_v1_dispatch_proto.Services().ByName("DispatchService")
	methods := grpcauth.Methods(sd)
	if len(methods) != 13 {
		t.Errorf("DispatchService has %d methods, want 13 (update this test and the policy together)", len(methods))
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
	const users = "customer courier dispatcher admin"
	allowed := map[string]string{
		"CreateTask":        "customer dispatcher admin simulator",
		"GetTask":           users + " simulator",
		"ListTasks":         users + " simulator",
		"CancelTask":        "customer dispatcher admin",
		"AssignTask":        "dispatcher admin",
		"ExplainAssignment": "dispatcher admin",
		"WatchTask":         users + " simulator",
		"WatchTasks":        users + " simulator",
		"GetCourierStatus":  "courier dispatcher admin",
		"StreamAssignments": "courier",
		"UploadProof":       "courier",
		"GetUpload":         "courier dispatcher admin",
		"GetProofContent":   users,
	}
	pol := grpcapi.Policy()
	for method, who := range allowed {
		full := "/" + dispatchv1.DispatchService_ServiceDesc.ServiceName + "/" + method
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
