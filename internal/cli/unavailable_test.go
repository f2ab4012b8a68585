package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
)

// TestUnreachablePeerIsNamed runs identity, dispatch and the gateway with a courier address nothing
// listens on: whether dispatch needs courier (a session's start, a courier's overview) or the gateway
// calls it itself, the answer is UNAVAILABLE and names courier, not an address.
func TestUnreachablePeerIsNamed(t *testing.T) {
	r := startServe(t, map[string]string{"LASTMILE_ADMIN_PASSWORD": e2ePassword},
		"--target", "identity,dispatch,gateway", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--courier-addr", "127.0.0.1:1")
	api := restClient{t: t, base: "http://" + r.HTTP}
	admin := api.login("admin@lastmile.local")
	api.call(http.MethodPost, "/v1/users", admin, map[string]any{"email": "cy@example.com", "password": e2ePassword, "displayName": "Cy", "role": "ROLE_COURIER"})
	courierToken := api.login("cy@example.com")
	const want = "the courier service is unavailable; try again"

	for _, path := range []string{
		"/v1/couriers/0190b000-0000-7000-8000-000000000001/overview", // dispatch answers: it cannot reach courier
		"/v1/couriers/0190b000-0000-7000-8000-000000000001",          // the gateway cannot reach courier
	} {
		req, err := http.NewRequest(http.MethodGet, api.base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		var body struct {
			Error struct {
				Code    int    `json:"code"`
				Status  string `json:"status"`
				Message string `json:"message"`
			} `json:"error"`
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable || body.Error.Status != "UNAVAILABLE" || body.Error.Message != want {
			t.Errorf("GET %s = %d %+v (%v), want 503 UNAVAILABLE %q", path, resp.StatusCode, body.Error, err, want)
		}
	}

	conn, err := grpc.NewClient(r.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	session, err := dispatchv1.NewDispatchServiceClient(conn).StreamAssignments(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+courierToken))
	if err != nil {
		t.Fatal(err)
	}
	if err := session.Send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Hello{Hello: &dispatchv1.SessionHello{AppVersion: "test"}}}); err != nil {
		t.Fatal(err)
	}
	m, err := session.Recv()
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != want {
		t.Fatalf("StreamAssignments = %v, %v; want UNAVAILABLE %q", m, err, want)
	}
}
