package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"

	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/gateway"
	"lastmile/internal/platform/grpcserver/grpctest"
)

// BenchmarkEstimateRouteREST measures one REST call through the gateway's handler (every edge layer: request
// id, security headers, CORS, gzip decision, access log, strict checks, metrics off) to a fake route service
// over bufconn, the cost the edge adds on top of the gRPC call.
func BenchmarkEstimateRouteREST(b *testing.B) {
	srv := grpcFake(b)
	g, err := gateway.New(b.Context(), gateway.Config{}, routeService(srv))
	if err != nil {
		b.Fatal(err)
	}
	h := g.Handler()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, estimatePath, strings.NewReader(validBody))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body.Bytes())
		}
	}
}

func grpcFake(tb testing.TB) *grpc.ClientConn {
	s := grpc.NewServer()
	routev1.RegisterRouteServiceServer(s, &fakeRoute{})
	return grpctest.ServeGRPC(tb, s)
}
