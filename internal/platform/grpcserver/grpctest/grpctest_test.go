package grpctest_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/grpctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServeGRPC(t *testing.T) {
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("lastmile.test", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	conn := grpctest.ServeGRPC(t, srv)
	resp, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: "lastmile.test"})
	if err != nil {
		t.Fatalf("Check() = %v", err)
	}
	if got := resp.GetStatus(); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Check().Status = %v, want SERVING", got)
	}
}

// whoAmI records the principal of each EmptyCall.
type whoAmI struct {
	testgrpc.UnimplementedTestServiceServer
	got chan auth.Principal
}

func (s *whoAmI) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	s.got <- auth.FromContext(ctx)
	return &testgrpc.Empty{}, nil
}

// policy gives every method of grpc.testing.TestService the rule r: the server refuses to serve a
// method without one.
func policy(r auth.Rule) auth.Policy {
	sd := testgrpc.TestService_ServiceDesc
	p := auth.Policy{}
	for _, m := range sd.Methods {
		p["/"+sd.ServiceName+"/"+m.MethodName] = r
	}
	for _, m := range sd.Streams {
		p["/"+sd.ServiceName+"/"+m.StreamName] = r
	}
	return p
}

func TestStartAuthenticatesWithCallAs(t *testing.T) {
	svc := &whoAmI{got: make(chan auth.Principal, 1)}
	_, conn := grpctest.Start(t, grpcserver.Config{
		Policy:        policy(auth.Public()),
		Authenticator: grpctest.HeaderAuthenticator{},
	}, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	client := testgrpc.NewTestServiceClient(conn)

	tests := []struct {
		name string
		p    auth.Principal
	}{
		{"anonymous", auth.Principal{}},
		{"anonymous via the gateway", auth.Principal{Via: "gateway"}},
		{"user without roles", auth.Principal{Kind: auth.User, Subject: "u1"}},
		{"user with roles", auth.Principal{Kind: auth.User, Subject: "u2", Roles: []string{auth.RoleCourier, auth.RoleAdmin}}},
		{"user via the gateway", auth.Principal{Kind: auth.User, Subject: "u3", Roles: []string{auth.RoleCustomer}, Via: "gateway"}},
		{"service", auth.Principal{Kind: auth.Service, Subject: "dispatch"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := client.EmptyCall(grpctest.CallAs(t.Context(), tt.p), &testgrpc.Empty{}); err != nil {
				t.Fatalf("EmptyCall() = %v", err)
			}
			if diff := cmp.Diff(tt.p, <-svc.got); diff != "" {
				t.Errorf("principal mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewServerThenServe(t *testing.T) {
	svc := &whoAmI{got: make(chan auth.Principal, 1)}
	srv, conn := grpctest.NewServer(t, grpcserver.Config{
		Policy: policy(auth.Internal("dispatch")),
	}, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	grpctest.Serve(t, srv)
	// The default authenticator (no certificate here) makes the caller anonymous: the policy refuses.
	_, err := testgrpc.NewTestServiceClient(conn).EmptyCall(t.Context(), &testgrpc.Empty{})
	if got := status.Code(err); got != codes.Unauthenticated {
		t.Errorf("EmptyCall() = %v, want code Unauthenticated", err)
	}
}

func TestHeaderAuthenticator(t *testing.T) {
	tests := []struct {
		name string
		md   metadata.MD
		want auth.Principal
	}{
		{"nothing", nil, auth.Principal{}},
		{"user", metadata.Pairs(grpctest.UserKey, "u1", grpctest.RolesKey, "a,b"),
			auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{"a", "b"}}},
		{"empty roles", metadata.Pairs(grpctest.UserKey, "u1", grpctest.RolesKey, ""),
			auth.Principal{Kind: auth.User, Subject: "u1"}},
		{"user wins over service", metadata.Pairs(grpctest.UserKey, "u1", grpctest.ServiceKey, "route"),
			auth.Principal{Kind: auth.User, Subject: "u1"}},
		{"service via", metadata.Pairs(grpctest.ServiceKey, "route", grpctest.ViaKey, "gateway"),
			auth.Principal{Kind: auth.Service, Subject: "route", Via: "gateway"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := grpctest.HeaderAuthenticator{}.Authenticate(context.Background(), tt.md)
			if err != nil {
				t.Fatalf("Authenticate() = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Authenticate() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
