package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/gateway"
	"lastmile/internal/platform/grpcserver/grpctest"
)

// TestInvalidUTF8IsBadRequest: protobuf strings must be UTF-8, so a path or query parameter that is not,
// once percent-decoded, is the client's error. It used to reach the gRPC client, which failed to marshal
// the request with Internal: a 500 that the circuit breaker counted. (Found by FuzzGateway.)
func TestInvalidUTF8IsBadRequest(t *testing.T) {
	s := grpc.NewServer()
	identityv1.RegisterUserServiceServer(s, identityv1.UnimplementedUserServiceServer{})
	courierv1.RegisterCourierServiceServer(s, courierv1.UnimplementedCourierServiceServer{})
	conn := grpctest.ServeGRPC(t, s)
	g, err := gateway.New(t.Context(), gateway.Config{RequestTimeout: 5 * time.Second}, everyService(conn))
	if err != nil {
		t.Fatalf("gateway.New() = %v", err)
	}
	want := errorJSON(400, "INVALID_ARGUMENT", "the request path and query must be UTF-8 once percent-decoded")
	for _, target := range []string{
		"/v1/users/%ff",
		"/v1/couriers/%ff%fe/status",
		"/v1/users?pageToken=%ff",
		"/v1/users?%c3=x",
		"/v1/users?pageToken=ok&pageToken=%80",
	} {
		rec := httptest.NewRecorder()
		g.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code != http.StatusBadRequest {
			t.Errorf("GET %s status = %d, want %d; body %s", target, rec.Code, http.StatusBadRequest, rec.Body.Bytes())
			continue
		}
		if diff := cmp.Diff(want, decode(t, rec.Body.Bytes())); diff != "" {
			t.Errorf("GET %s body mismatch (-want +got):\n%s", target, diff)
		}
	}
	// Valid UTF-8, percent-encoded or not, still reaches the service (which answers Unimplemented here).
	for _, target := range []string{"/v1/users/%C3%A9", "/v1/users?pageToken=%E2%82%AC"} {
		rec := httptest.NewRecorder()
		g.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code != http.StatusNotImplemented {
			t.Errorf("GET %s status = %d, want %d; body %s", target, rec.Code, http.StatusNotImplemented, rec.Body.Bytes())
		}
	}
}
