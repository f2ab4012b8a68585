package grpcapi_test

import (
	"testing"

	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/platform/auth/grpcauth"
	"lastmile/internal/route/grpcapi"
)

// TestPolicyCoversEveryMethod fails when an RPC is added to the contract without an authorization rule:
// such a method would be denied to everyone at run time.
func TestPolicyCoversEveryMethod(t *testing.T) {
	sd := routev1.File_lastmile_route_v1_route_proto.Services().ByName("RouteService")
	if err := grpcapi.Policy().Check(grpcauth.Methods(sd)); err != nil {
		t.Fatal(err)
	}
}
