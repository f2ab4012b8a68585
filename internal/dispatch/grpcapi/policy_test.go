package grpcapi_test

import (
	"testing"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/dispatch/grpcapi"
	"lastmile/internal/platform/auth/authtest"
	"lastmile/internal/platform/auth/grpcauth"
)

func TestPolicyCoversEveryMethod(t *testing.T) {
	sd := dispatchv1.File_lastmile_dispatch_v1_dispatch_proto.Services().ByName("DispatchService")
	methods := grpcauth.Methods(sd)
	if len(methods) != 14 {
		t.Errorf("DispatchService has %d methods, want 14 (update this test and the policy together)", len(methods))
	}
	if err := grpcapi.Policy().Check(methods); err != nil {
		t.Error(err)
	}
}

func TestPolicy(t *testing.T) {
	const users = "customer courier dispatcher admin"
	allowed := map[string]string{
		"CreateTask":          "customer dispatcher admin simulator",
		"GetTask":             users + " simulator anonymous",
		"ListTasks":           users + " simulator",
		"CancelTask":          "customer dispatcher admin",
		"AssignTask":          "dispatcher admin",
		"ExplainAssignment":   "dispatcher admin",
		"WatchTask":           users + " simulator anonymous",
		"WatchTasks":          users + " simulator",
		"GetCourierStatus":    "courier dispatcher admin",
		"StreamAssignments":   "courier",
		"UploadProof":         "courier",
		"GetUpload":           users,
		"GetProofContent":     users,
		"CreateTaskShareLink": "customer dispatcher admin",
	}
	authtest.CheckPolicy(t, grpcapi.Policy(), dispatchv1.DispatchService_ServiceDesc.ServiceName, allowed)
}
