package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/gateway"
)

// TestFieldViolationsUseJSONNames: a service names fields as the gRPC contract does (transport_mode,
// departure_time); REST clients read their JSON names in the field violations and the message, nested
// and repeated paths included, while words that are not field names of the request stay as they are.
func TestFieldViolationsUseJSONNames(t *testing.T) {
	st, err := status.New(codes.InvalidArgument,
		"transport_mode is required; departure_time must be after 2000-01-01T00:00:00Z; not_a_field stays").
		WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "transport_mode", Description: "transport_mode is required"},
			{Field: "departure_time", Description: "departure_time must be after 2000-01-01T00:00:00Z"},
			{Field: "origin.latitude", Description: "origin.latitude must match the pattern `^a_b$`"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeRoute{estimate: func(context.Context, *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error) {
		return nil, st.Err()
	}}
	srv := startGateway(t, fake, gateway.Config{})

	resp, body := do(t, srv, http.MethodPost, estimatePath, strings.NewReader(`{}`), nil)

	if got, want := resp.StatusCode, http.StatusBadRequest; got != want {
		t.Errorf("status = %d, want %d", got, want)
	}
	want := errorJSON(400, "INVALID_ARGUMENT",
		"transportMode is required; departureTime must be after 2000-01-01T00:00:00Z; not_a_field stays",
		map[string]any{
			"@type": "type.googleapis.com/google.rpc.BadRequest",
			"fieldViolations": []any{
				map[string]any{"field": "transportMode", "description": "transportMode is required"},
				map[string]any{"field": "departureTime", "description": "departureTime must be after 2000-01-01T00:00:00Z"},
				map[string]any{"field": "origin.latitude", "description": "origin.latitude must match the pattern `^a_b$`"},
			},
		})
	if diff := cmp.Diff(want, decode(t, body)); diff != "" {
		t.Errorf("body mismatch (-want +got):\n%s", diff)
	}
}
