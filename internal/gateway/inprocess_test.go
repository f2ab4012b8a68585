package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/gateway"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/grpctest"
)

// TestInProcessConnection: a gateway over a gRPC server's in-process connection (as the all-in-one
// `lastmile serve` wires it) behaves as over the network: the service sees an anonymous caller forwarded
// by the gateway whose client address is the HTTP client's, the request id goes both ways and internal
// headers do not leak, the chain's validation and the handler's errors map to the same HTTP answers.
func TestInProcessConnection(t *testing.T) {
	var mu sync.Mutex
	var principal auth.Principal
	var client string
	fake := &fakeRoute{estimate: func(ctx context.Context, req *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error) {
		mu.Lock()
		principal = auth.FromContext(ctx)
		client = grpcauth.ClientAddr(ctx, principal)
		mu.Unlock()
		if req.GetOrigin().GetLatitude() == 0 {
			return nil, apperr.Errorf(apperr.NotFound, "no route from the equator")
		}
		return cannedEstimate(), nil
	}}
	srv, _ := grpctest.NewServer(t, grpcserver.Config{
		Authenticator: &grpcauth.ServiceAuthenticator{},
		Policy:        auth.Policy{routev1.RouteService_EstimateRoute_FullMethodName: auth.Public(), routev1.RouteService_ComputeMatrix_FullMethodName: auth.Public()},
	}, nil)
	routev1.RegisterRouteServiceServer(srv, fake)
	grpctest.Serve(t, srv)
	g, err := gateway.New(t.Context(), gateway.Config{}, []gateway.Service{{
		Name: routev1.RouteService_ServiceDesc.ServiceName, Conn: srv.InProcess("gateway"),
		Register: gateway.Routes(routev1.RegisterRouteServiceHandlerClient, routev1.NewRouteServiceClient),
	}})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	web := httptest.NewServer(g.Handler())
	t.Cleanup(web.Close)

	resp, body := do(t, web, http.MethodPost, estimatePath, strings.NewReader(validBody), http.Header{"X-Request-Id": {"req-inproc-7"}})
	if resp.StatusCode != http.StatusOK || decode(t, body)["provider"] != "fake" {
		t.Fatalf("POST %s = %d %s, want 200 from the fake", estimatePath, resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "req-inproc-7" {
		t.Errorf("X-Request-Id = %q, want req-inproc-7", got)
	}
	if got := resp.Header.Get("X-Internal-Shard"); got != "" {
		t.Errorf("the service's internal header leaked: X-Internal-Shard = %q", got)
	}
	md, _ := fake.lastMetadata()
	if got := first(md, "x-request-id"); got != "req-inproc-7" {
		t.Errorf("the service saw x-request-id %q, want req-inproc-7", got)
	}
	mu.Lock()
	if principal.Kind != auth.Anonymous || principal.Via != "gateway" || client != "127.0.0.1" {
		t.Errorf("the service saw principal %+v from client %q, want anonymous via gateway from 127.0.0.1", principal, client)
	}
	mu.Unlock()

	// The server's validation stage refuses an out-of-range latitude.
	invalid := strings.Replace(validBody, `"latitude":52.52`, `"latitude":200`, 1)
	resp, body = do(t, web, http.MethodPost, estimatePath, strings.NewReader(invalid), nil)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"INVALID_ARGUMENT"`) {
		t.Errorf("POST invalid = %d %s, want 400 INVALID_ARGUMENT", resp.StatusCode, body)
	}
	// A domain error maps as over the network.
	zero := strings.Replace(validBody, `"latitude":52.52`, `"latitude":0`, 1)
	resp, body = do(t, web, http.MethodPost, estimatePath, strings.NewReader(zero), nil)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), `"NOT_FOUND"`) {
		t.Errorf("POST from the equator = %d %s, want 404 NOT_FOUND", resp.StatusCode, body)
	}
	// A token the server cannot verify is refused, whoever forwards it.
	resp, body = do(t, web, http.MethodPost, estimatePath, strings.NewReader(validBody), http.Header{"Authorization": {"Bearer abc"}})
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("POST with a bad token = %d %s, want 401", resp.StatusCode, body)
	}
}
