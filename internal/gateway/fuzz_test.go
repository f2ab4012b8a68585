package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/gateway"
	"lastmile/internal/platform/grpcserver/grpctest"
)

// fuzzMethods are the HTTP methods FuzzGateway picks from.
var fuzzMethods = []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete,
	http.MethodHead, http.MethodOptions}

// FuzzGateway sends arbitrary requests — any method, path, query and body — to the gateway in front of
// fake services: route answers every valid request, identity and courier answer Unimplemented. Whatever
// the request, the gateway must not panic and must not answer 500: a malformed request is the client's
// error (4xx), and a backend's refusal keeps its own code. Every JSON answer must be valid JSON.
func FuzzGateway(f *testing.F) {
	seeds := []struct {
		method uint8
		target string
		body   string
	}{
		{1, estimatePath, validBody},
		{1, estimatePath, `{"origin": {"latitude": 52.5,`},
		{1, estimatePath, `{"origin":{"latitude":1e999,"longitude":-0},"transportMode":"TRANSPORT_MODE_NOPE"}`},
		{1, estimatePath, `{"origin":{"latitude":"NaN","longitude":"Infinity"}}`},
		{1, estimatePath, strings.Repeat("[", 10000)},
		{1, estimatePath, "\xff\xfe{}"},
		{1, "/v1/routes:computeMatrix", `{"origins":[{}],"destinations":[null]}`},
		{1, "/v1/users", `{"email":"a@example.com","password":"correct horse battery staple","displayName":"A"}`},
		{1, "/v1/auth:login", `{"email":"a@example.com","password":"x"}`},
		{1, "/v1/auth:refresh", `{"refreshToken":"` + strings.Repeat("A", 5000) + `"}`},
		{2, "/v1/users/0190b000-0000-7000-8000-000000000001?updateMask=status,role", `{"status":"USER_STATUS_ACTIVE"}`},
		{1, "/v1/users/%2e%2e%2fadmin:changePassword", `{"newPassword":"x"}`},
		{0, "/v1/users?pageSize=-1&pageToken=%ff%00&filter.status=42", ""},
		{0, "/v1/couriers/x/availability?startTime=0001-01-01T00:00:01Z&endTime=9999-12-31T00:00:00Z", ""},
		{0, "/v1/couriers?pageSize=99999999999999999999", ""},
		{0, "/v1/couriers/%zz", ""},
		{4, "/v1/tasks/1", ""},
		{0, "/.well-known/jwks.json", ""},
		{0, "/openapi.json?x=" + strings.Repeat("%", 100), ""},
		{6, "/v1/nothing", ""},
		{3, "//v1//users/../users", "{}"},
	}
	for _, s := range seeds {
		f.Add(s.method, s.target, []byte(s.body))
	}

	handler := startFuzzGateway(f)
	f.Fuzz(func(t *testing.T, method uint8, target string, body []byte) {
		u, err := url.ParseRequestURI(target)
		if err != nil || !strings.HasPrefix(target, "/") {
			return // net/http refuses such a request line before the gateway sees it
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req := (&http.Request{
			Method: fuzzMethods[int(method)%len(fuzzMethods)], URL: u, RequestURI: target,
			Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Host: "gateway.test", RemoteAddr: "192.0.2.1:4711",
			Header:        http.Header{"Content-Type": {"application/json"}},
			Body:          io.NopCloser(bytes.NewReader(body)),
			ContentLength: int64(len(body)),
		}).WithContext(ctx)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code == http.StatusInternalServerError {
			t.Fatalf("%s %q with body %q = 500: %s", req.Method, target, body, rec.Body.Bytes())
		}
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") && req.Method != http.MethodHead &&
			!json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %q with body %q = %d with invalid JSON: %q", req.Method, target, body, rec.Code, rec.Body.Bytes())
		}
	})
}

// startFuzzGateway returns the handler of a gateway in front of fake identity, courier, route and dispatch services.
func startFuzzGateway(f *testing.F) http.Handler {
	conn := grpctest.ServeGRPC(f, func() *grpc.Server {
		s := grpc.NewServer()
		routev1.RegisterRouteServiceServer(s, &fakeRoute{})
		identityv1.RegisterAuthServiceServer(s, identityv1.UnimplementedAuthServiceServer{})
		identityv1.RegisterUserServiceServer(s, identityv1.UnimplementedUserServiceServer{})
		courierv1.RegisterCourierServiceServer(s, courierv1.UnimplementedCourierServiceServer{})
		dispatchv1.RegisterDispatchServiceServer(s, dispatchv1.UnimplementedDispatchServiceServer{})
		return s
	}())
	g, err := gateway.New(f.Context(), gateway.Config{RequestTimeout: 5 * time.Second},
		everyService(conn))
	if err != nil {
		f.Fatalf("gateway.New() = %v", err)
	}
	return g.Handler()
}

// everyService routes every service's REST handlers to conn, as a gateway in front of the whole system.
func everyService(conn *grpc.ClientConn) []gateway.Service {
	return []gateway.Service{
		{Name: "lastmile.identity.v1.UserService", Conn: conn, Register: gateway.Routes(identityv1.RegisterUserServiceHandlerClient, identityv1.NewUserServiceClient)},
		{Name: "lastmile.identity.v1.AuthService", Conn: conn, Register: gateway.Routes(identityv1.RegisterAuthServiceHandlerClient, identityv1.NewAuthServiceClient)},
		{Name: "lastmile.courier.v1.CourierService", Conn: conn, Register: gateway.Routes(courierv1.RegisterCourierServiceHandlerClient, courierv1.NewCourierServiceClient)},
		{Name: "lastmile.route.v1.RouteService", Conn: conn, Register: gateway.Routes(routev1.RegisterRouteServiceHandlerClient, routev1.NewRouteServiceClient)},
		{Name: "lastmile.dispatch.v1.DispatchService", Conn: conn, Register: gateway.Routes(dispatchv1.RegisterDispatchServiceHandlerClient, dispatchv1.NewDispatchServiceClient)},
	}
}
