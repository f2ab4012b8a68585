package grpcserver_test

import (
	"testing"

	"google.golang.org/grpc"

	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
	"lastmile/internal/platform/grpcserver"
)

// TestLogShowsForwardedClient: the log line of a call an edge proxy forwarded names the end client (the
// proxy's last x-forwarded-for entry), while a direct caller's x-forwarded-for is never believed.
func TestLogShowsForwardedClient(t *testing.T) {
	logger, logs := testLogger()
	cfg := grpcserver.Config{
		Policy: auth.Policy{
			"/lastmile.route.v1.RouteService/EstimateRoute": auth.Public(),
			"/lastmile.route.v1.RouteService/ComputeMatrix": auth.Public(),
		},
		Authenticator: headerAuthenticator{},
		Logger:        logger,
	}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { routev1.RegisterRouteServiceServer(s, &fakeRoute{}) })
	client := routev1.NewRouteServiceClient(conn)

	if _, err := client.EstimateRoute(callCtx(t, "x-test-via", "gateway", grpcauth.ForwardedForKey, "203.0.113.9"), estimateRequest(52, 13)); err != nil {
		t.Fatalf("forwarded EstimateRoute: %v", err)
	}
	if _, err := client.EstimateRoute(callCtx(t, grpcauth.ForwardedForKey, "203.0.113.9"), estimateRequest(52, 13)); err != nil {
		t.Fatalf("direct EstimateRoute: %v", err)
	}

	recs := logs.records(t, "gRPC call")
	if len(recs) != 2 {
		t.Fatalf("logged %d calls, want 2", len(recs))
	}
	if got, want := recs[0]["client"], "203.0.113.9"; got != want {
		t.Errorf("forwarded call: client = %v, want %q", got, want)
	}
	if got, want := recs[0]["via"], "gateway"; got != want {
		t.Errorf("forwarded call: via = %v, want %q", got, want)
	}
	// A direct call's client is its peer, never its claim; the test's bufconn peer has no IP address, so
	// there is none to log.
	if got, ok := recs[1]["client"]; ok {
		t.Errorf("direct call: client = %v, want none (the peer has no IP address)", got)
	}
}
