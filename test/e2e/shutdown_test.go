package e2e_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
)

// TestLocationsAcceptedWhileDrainingAreKept checks the shutdown order: a fix that arrives on an open
// ReportLocations stream after SIGTERM, while the server drains, is written to the database before the
// process exits, so the next run knows it.
func TestLocationsAcceptedWhileDrainingAreKept(t *testing.T) {
	dataDir := t.TempDir()
	env := map[string]string{"LASTMILE_ADMIN_EMAIL": adminEmail, "LASTMILE_ADMIN_PASSWORD": adminPassword}
	s := startEnv(t, dataDir, env, "--drain-delay", "1s")
	admin := s.login(t, adminEmail, adminPassword)
	courierID, cora := registerCourier(t, s, admin.access, "drain@example.com")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := courierv1.NewCourierServiceClient(s.grpcConn(t, ""))
	stream, err := client.ReportLocations(bearer(ctx, cora.access))
	if err != nil {
		t.Fatalf("ReportLocations: %v", err)
	}
	start := time.Now().Add(-10 * time.Second)
	if err := stream.Send(&courierv1.ReportLocationsRequest{CourierId: courierID, Fixes: []*courierv1.LocationFix{fix(52.5, 13.4, start)}}); err != nil {
		t.Fatalf("Send first fix: %v", err)
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	watch, err := healthpb.NewHealthClient(s.grpcConn(t, "")).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health Watch: %v", err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first health status = %v, %v; want SERVING", resp.GetStatus(), err)
	}

	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	// The drain has begun once the overall health reports NOT_SERVING; for the next second the server
	// still serves, and the fix below arrives inside that window.
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health status after stop = %v, %v; want NOT_SERVING", resp.GetStatus(), err)
	}
	stopWatch() // an open watch would hold up the graceful stop
	if err := stream.Send(&courierv1.ReportLocationsRequest{CourierId: courierID, Fixes: []*courierv1.LocationFix{fix(52.5001, 13.4, start.Add(5*time.Second))}}); err != nil {
		t.Fatalf("Send fix while draining: %v", err)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("CloseAndRecv while draining: %v", err)
	}
	if got := resp.GetAcceptedCount(); got != 2 {
		t.Fatalf("accepted fixes = %d (%v), want 2", got, resp)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("stop: %v", err)
	}

	again := startEnv(t, dataDir, env)
	code, _, body := again.rest(t, http.MethodGet, "/v1/couriers/"+courierID+"/status", admin.access, "")
	if code != http.StatusOK {
		t.Fatalf("GET status after restart = %d %v", code, body)
	}
	loc, _ := body["lastLocation"].(map[string]any)
	latlng, _ := loc["location"].(map[string]any)
	if got := latlng["latitude"]; got != 52.5001 {
		t.Errorf("last latitude after restart = %v (%v), want 52.5001: the fix accepted while draining was lost", got, body)
	}
}
