package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/types/known/durationpb"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/gateway"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/grpcerr"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const estimatePath = "/v1/routes:estimate"

// validBody is an EstimateRouteRequest the fake answers with cannedEstimate.
const validBody = `{"origin":{"latitude":52.52,"longitude":13.405},"destination":{"latitude":52.5,"longitude":13.4},"transportMode":"TRANSPORT_MODE_BICYCLE"}`

// fakeRoute is a RouteServiceServer whose answer each test chooses, and which records the metadata of the
// last call it received.
type fakeRoute struct {
	routev1.UnimplementedRouteServiceServer
	estimate func(ctx context.Context, req *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error)

	mu    sync.Mutex
	md    metadata.MD
	calls int
}

func (f *fakeRoute) EstimateRoute(ctx context.Context, req *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	f.md, f.calls = md, f.calls+1
	f.mu.Unlock()
	// Echo the request id the way the platform's interceptor does, plus a header the gateway must not leak.
	_ = grpc.SetHeader(ctx, metadata.Pairs("x-request-id", first(md, "x-request-id"), "x-internal-shard", "7"))
	if f.estimate != nil {
		return f.estimate(ctx, req)
	}
	return cannedEstimate(), nil
}

func (f *fakeRoute) lastMetadata() (metadata.MD, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.md, f.calls
}

func cannedEstimate() *routev1.RouteEstimate {
	return &routev1.RouteEstimate{
		DistanceMeters: 1234.5,
		Duration:       durationpb.New(90 * time.Second),
		Provider:       "fake",
		TransportMode:  geov1.TransportMode_TRANSPORT_MODE_BICYCLE,
	}
}

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// startGRPC serves fake over bufconn and returns a client connection to it.
func startGRPC(t *testing.T, fake *fakeRoute) *grpc.ClientConn {
	t.Helper()
	conn, _ := serveBufconn(t, func(s *grpc.Server) { routev1.RegisterRouteServiceServer(s, fake) })
	return conn
}

// serveBufconn serves the services register adds on a plain gRPC server over bufconn and returns a client
// connection to it and a stop function (idempotent, also run at cleanup) that closes the connection and
// stops the server.
func serveBufconn(t *testing.T, register func(*grpc.Server)) (*grpc.ClientConn, func()) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	register(srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		srv.Stop()
		<-done
		t.Fatalf("grpc.NewClient: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = conn.Close()
			srv.Stop()
			<-done
		})
	}
	t.Cleanup(stop)
	return conn, stop
}

// routeService exposes the route service reachable through conn.
func routeService(conn *grpc.ClientConn) []gateway.Service {
	return []gateway.Service{{Name: "lastmile.route.v1.RouteService", Conn: conn, Register: gateway.Routes(routev1.RegisterRouteServiceHandlerClient, routev1.NewRouteServiceClient)}}
}

// startGateway runs a gateway in front of fake on an httptest server.
func startGateway(t *testing.T, fake *fakeRoute, cfg gateway.Config) *httptest.Server {
	t.Helper()
	conn := startGRPC(t, fake)
	g, err := gateway.New(t.Context(), cfg, routeService(conn))
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, srv *httptest.Server, method, path string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, srv.URL+path, body)
	if err != nil {
		t.Fatalf("NewRequest: %v", err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %s %s: %v", method, path, err)
	}
	return resp, b
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("response is not a JSON object: %v\n%s", err, b)
	}
	return v
}

func TestEstimateRoute(t *testing.T) {
	srv := startGateway(t, &fakeRoute{}, gateway.Config{})

	resp, body := do(t, srv, http.MethodPost, estimatePath, strings.NewReader(validBody), nil)

	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Fatalf("POST %s status = %d, want %d; body %s", estimatePath, got, want, body)
	}
	want := map[string]any{
		"distanceMeters": 1234.5,
		"duration":       "90s",
		"provider":       "fake",
		"transportMode":  "TRANSPORT_MODE_BICYCLE",
	}
	if diff := cmp.Diff(want, decode(t, body)); diff != "" {
		t.Errorf("POST %s body mismatch (-want +got):\n%s", estimatePath, diff)
	}
	for header, want := range map[string]string{
		"Content-Type":                   "application/json",
		"Cache-Control":                  "no-store",
		"X-Content-Type-Options":         "nosniff",
		"Referrer-Policy":                "no-referrer",
		"Grpc-Metadata-X-Internal-Shard": "",
		"Access-Control-Allow-Origin":    "",
	} {
		if got := resp.Header.Get(header); got != want {
			t.Errorf("header %s = %q, want %q", header, got, want)
		}
	}
}

func TestServiceErrors(t *testing.T) {
	badRequest, err := status.New(codes.InvalidArgument, "invalid request").WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "origin.latitude", Description: "must be between -90 and 90"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantBody   map[string]any
	}{
		{
			name:       "invalid argument with field violation",
			err:        badRequest.Err(),
			wantStatus: http.StatusBadRequest,
			wantBody: errorJSON(400, "INVALID_ARGUMENT", "invalid request", map[string]any{
				"@type": "type.googleapis.com/google.rpc.BadRequest",
				"fieldViolations": []any{map[string]any{
					"field": "origin.latitude", "description": "must be between -90 and 90",
				}},
			}),
		},
		{
			name:       "permission denied",
			err:        status.Error(codes.PermissionDenied, "not your task"),
			wantStatus: http.StatusForbidden,
			wantBody:   errorJSON(403, "PERMISSION_DENIED", "not your task"),
		},
		{
			name:       "not found",
			err:        status.Error(codes.NotFound, "task not found"),
			wantStatus: http.StatusNotFound,
			wantBody:   errorJSON(404, "NOT_FOUND", "task not found"),
		},
		{
			name:       "already exists",
			err:        status.Error(codes.AlreadyExists, "email taken"),
			wantStatus: http.StatusConflict,
			wantBody:   errorJSON(409, "ALREADY_EXISTS", "email taken"),
		},
		{
			name:       "internal hides the message",
			err:        status.Error(codes.Internal, "pq: relation tasks does not exist"),
			wantStatus: http.StatusInternalServerError,
			wantBody:   errorJSON(500, "INTERNAL", "internal error"),
		},
		{
			// The gateway's client could not reach the service: the message names the service, not the address.
			name:       "unavailable names the service and hides the message",
			err:        status.Error(codes.Unavailable, "dial tcp 10.1.2.3:9090: connection refused"),
			wantStatus: http.StatusServiceUnavailable,
			wantBody:   errorJSON(503, "UNAVAILABLE", "the route service is unavailable; try again"),
		},
		{
			// The service answered that something it needs is unavailable: its message says what.
			name:       "unavailable answered by the service keeps its message",
			err:        grpcerr.ToStatus(apperr.Wrap(apperr.Unavailable, errors.New("dial tcp 10.1.2.3:9090"), "the courier service is unavailable; try again")).Err(),
			wantStatus: http.StatusServiceUnavailable,
			wantBody:   errorJSON(503, "UNAVAILABLE", "the courier service is unavailable; try again"),
		},
		{
			name:       "debug info never leaves",
			err:        withDetails(t, status.New(codes.FailedPrecondition, "task already delivered"), &errdetails.DebugInfo{Detail: "secret stack"}),
			wantStatus: http.StatusBadRequest,
			wantBody:   errorJSON(400, "FAILED_PRECONDITION", "task already delivered"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeRoute{estimate: func(context.Context, *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error) {
				return nil, tt.err
			}}
			srv := startGateway(t, fake, gateway.Config{})

			resp, body := do(t, srv, http.MethodPost, estimatePath, strings.NewReader(validBody), nil)

			if got := resp.StatusCode; got != tt.wantStatus {
				t.Errorf("status = %d, want %d", got, tt.wantStatus)
			}
			if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
				t.Errorf("Content-Type = %q, want %q", got, want)
			}
			if diff := cmp.Diff(tt.wantBody, decode(t, body)); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func withDetails(t *testing.T, st *status.Status, details ...*errdetails.DebugInfo) error {
	t.Helper()
	for _, d := range details {
		var err error
		if st, err = st.WithDetails(d); err != nil {
			t.Fatal(err)
		}
	}
	return st.Err()
}

func errorJSON(code float64, status, message string, details ...any) map[string]any {
	e := map[string]any{"code": code, "status": status, "message": message}
	if len(details) > 0 {
		e["details"] = details
	}
	return map[string]any{"error": e}
}

func TestUnauthenticated(t *testing.T) {
	fake := &fakeRoute{estimate: func(context.Context, *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error) {
		return nil, status.Error(codes.Unauthenticated, "token expired")
	}}
	srv := startGateway(t, fake, gateway.Config{})

	resp, body := do(t, srv, http.MethodPost, estimatePath, strings.NewReader(validBody),
		http.Header{"Authorization": {"Bearer stale"}})

	if got, want := resp.StatusCode, http.StatusUnauthorized; got != want {
		t.Errorf("status = %d, want %d", got, want)
	}
	if got, want := resp.Header.Get("WWW-Authenticate"), `Bearer realm="lastmile", error="invalid_token"`; got != want {
		t.Errorf("WWW-Authenticate = %q, want %q", got, want)
	}
	if diff := cmp.Diff(errorJSON(401, "UNAUTHENTICATED", "token expired"), decode(t, body)); diff != "" {
		t.Errorf("body mismatch (-want +got):\n%s", diff)
	}
}

func TestResourceExhausted(t *testing.T) {
	st, err := status.New(codes.ResourceExhausted, "too many requests").WithDetails(&errdetails.RetryInfo{
		RetryDelay: durationpb.New(2500 * time.Millisecond),
	})
	if err != nil {
		t.Fatal(err)
	}
	fake := &fakeRoute{estimate: func(context.Context, *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error) {
		return nil, st.Err()
	}}
	srv := startGateway(t, fake, gateway.Config{})

	resp, body := do(t, srv, http.MethodPost, estimatePath, strings.NewReader(validBody), nil)

	if got, want := resp.StatusCode, http.StatusTooManyRequests; got != want {
		t.Errorf("status = %d, want %d", got, want)
	}
	// 2.5 s rounds up: a client that honors Retry-After must not come back early.
	if got, want := resp.Header.Get("Retry-After"), "3"; got != want {
		t.Errorf("Retry-After = %q, want %q", got, want)
	}
	want := errorJSON(429, "RESOURCE_EXHAUSTED", "too many requests", map[string]any{
		"@type":      "type.googleapis.com/google.rpc.RetryInfo",
		"retryDelay": "2.500s",
	})
	if diff := cmp.Diff(want, decode(t, body)); diff != "" {
		t.Errorf("body mismatch (-want +got):\n%s", diff)
	}
}

// TestBadRequestBody: a body that is not JSON, or not the request's JSON, is refused by the gateway with a
// sentence that says what is wrong and where (line and column counted from the body's first byte), never
// protojson's "proto: (line 1:102)".
func TestBadRequestBody(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		wantMessage string
	}{
		{name: "malformed JSON", body: `{"origin": {"latitude": 52.5,`,
			wantMessage: "the request body is not valid JSON: it ends before the JSON value is complete"},
		{name: "not an object", body: `[1, 2]`,
			wantMessage: "the request body does not match the request: a value has the wrong type: unexpected token [ (line 1, column 1)"},
		{name: "a number for a timestamp", body: `{"departureTime": 3600}`,
			wantMessage: "the request body does not match the request: departureTime must be a time in RFC 3339 format, such as 2026-01-02T15:04:05Z (got 3600) (line 1, column 19)"},
		{name: "a date for a timestamp", body: `{"origin":{"latitude":1,"longitude":2},"departure_time":"2026-12-03"}`,
			wantMessage: `the request body does not match the request: departureTime must be a time in RFC 3339 format, such as 2026-01-02T15:04:05Z (got "2026-12-03") (line 1, column 57)`},
		{name: "a time without its zone", body: `{"departureTime":"2026-12-03T10:00:00"}`,
			wantMessage: `the request body does not match the request: departureTime must be a time in RFC 3339 format, such as 2026-01-02T15:04:05Z (got "2026-12-03T10:00:00") (line 1, column 18)`},
		{name: "not JSON at all", body: `{"departureTime": }`,
			wantMessage: "the request body is not valid JSON: unexpected token } (line 1, column 19)"},
		{name: "position counts from the first byte", body: "\n\n  {\"origin\": {\"latitude\": 1,, }}",
			wantMessage: "the request body is not valid JSON: unexpected token , (line 3, column 29)"},
		{name: "data after the value", body: `{"origin":{"latitude":1,"longitude":2}} {}`,
			wantMessage: "the request body is not valid JSON: unexpected data after the JSON value (line 1, column 41)"},
		{name: "data after the value on another line", body: "{\"origin\":{\"latitude\":1}}\n\n  x",
			wantMessage: "the request body is not valid JSON: unexpected data after the JSON value (line 3, column 3)"},
		{name: "unknown field", body: `{"origin":{"latitude":1,"longitude":2},"isAdmin":true}`,
			wantMessage: `the request body does not match the request: unknown field "isAdmin" (line 1, column 40)`},
		{name: "snake_case is not the JSON name of a nested unknown", body: `{"origin":{"lat":1}}`,
			wantMessage: `the request body does not match the request: unknown field "lat" (line 1, column 12)`},
		{name: "wrong type", body: `{"transportMode":{"x":1}}`,
			wantMessage: "the request body does not match the request: transportMode must be one of TRANSPORT_MODE_BICYCLE, TRANSPORT_MODE_SCOOTER, TRANSPORT_MODE_CAR, TRANSPORT_MODE_VAN, TRANSPORT_MODE_WALKING (got {) (line 1, column 18)"},
		{name: "unknown enum value", body: `{"transportMode":"CAR"}`,
			wantMessage: `the request body does not match the request: transportMode must be one of TRANSPORT_MODE_BICYCLE, TRANSPORT_MODE_SCOOTER, TRANSPORT_MODE_CAR, TRANSPORT_MODE_VAN, TRANSPORT_MODE_WALKING (got "CAR") (line 1, column 18)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeRoute{}
			srv := startGateway(t, fake, gateway.Config{})

			resp, body := do(t, srv, http.MethodPost, estimatePath, strings.NewReader(tt.body), nil)

			if got, want := resp.StatusCode, http.StatusBadRequest; got != want {
				t.Errorf("status = %d, want %d; body %s", got, want, body)
			}
			var got struct {
				Error struct {
					Code    int    `json:"code"`
					Status  string `json:"status"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body is not JSON: %v\n%s", err, body)
			}
			if got.Error.Code != 400 || got.Error.Status != "INVALID_ARGUMENT" {
				t.Errorf("error = {code %d, status %q}, want {code 400, status INVALID_ARGUMENT}", got.Error.Code, got.Error.Status)
			}
			if got.Error.Message != tt.wantMessage {
				t.Errorf("message = %q, want %q", got.Error.Message, tt.wantMessage)
			}
			if _, calls := fake.lastMetadata(); calls != 0 {
				t.Errorf("service called %d times, want 0: a bad body must not reach it", calls)
			}
		})
	}
}

// TestBodyWithAByteOrderMark: a UTF-8 byte order mark before the JSON is skipped (RFC 8259 lets a
// parser ignore it), so a body some JSON writers start with one reaches the service as without it.
func TestBodyWithAByteOrderMark(t *testing.T) {
	fake := &fakeRoute{}
	srv := startGateway(t, fake, gateway.Config{})
	body := "\ufeff" + `{"origin":{"latitude":1,"longitude":2},"destination":{"latitude":1,"longitude":2.1},"transportMode":"TRANSPORT_MODE_CAR"}`
	resp, got := do(t, srv, http.MethodPost, estimatePath, strings.NewReader(body), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d, want 200; body %s", resp.StatusCode, got)
	}
	if _, calls := fake.lastMetadata(); calls != 1 {
		t.Errorf("service called %d times, want 1", calls)
	}
	// One inside the JSON is still an error.
	resp, got = do(t, srv, http.MethodPost, estimatePath, strings.NewReader(`{"origin":`+"\ufeff"+`{}}`), nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("byte order mark inside the JSON: status = %d, want 400; body %s", resp.StatusCode, got)
	}
}

// chunkedReader hides its length so that the client sends the body chunked, without Content-Length.
type chunkedReader struct{ r io.Reader }

func (c chunkedReader) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestBodyTooLarge(t *testing.T) {
	big := `{"origin":{"latitude":1,"longitude":2},"pad":"` + strings.Repeat("x", 2<<20) + `"}`
	tests := []struct {
		name string
		body func() io.Reader
	}{
		{name: "content-length", body: func() io.Reader { return strings.NewReader(big) }},
		{name: "chunked", body: func() io.Reader { return chunkedReader{strings.NewReader(big)} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeRoute{}
			srv := startGateway(t, fake, gateway.Config{})

			resp, body := do(t, srv, http.MethodPost, estimatePath, tt.body(), nil)

			if got, want := resp.StatusCode, http.StatusRequestEntityTooLarge; got != want {
				t.Errorf("status = %d, want %d", got, want)
			}
			want := errorJSON(413, "RESOURCE_EXHAUSTED", "request body exceeds 1048576 bytes")
			if diff := cmp.Diff(want, decode(t, body)); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
			if _, calls := fake.lastMetadata(); calls != 0 {
				t.Errorf("service called %d times, want 0", calls)
			}
		})
	}
}

func TestMaxBodyBytes(t *testing.T) {
	srv := startGateway(t, &fakeRoute{}, gateway.Config{MaxBodyBytes: 64})

	resp, _ := do(t, srv, http.MethodPost, estimatePath, strings.NewReader(validBody), nil)

	if got, want := resp.StatusCode, http.StatusRequestEntityTooLarge; got != want {
		t.Errorf("status with a %d-byte body and a 64-byte limit = %d, want %d", len(validBody), got, want)
	}
}

func TestRoutingErrors(t *testing.T) {
	tests := []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantAllow  string
		wantBody   map[string]any
	}{
		{
			name: "unknown path", method: http.MethodGet, path: "/v1/nothing",
			wantStatus: http.StatusNotFound,
			wantBody:   errorJSON(404, "NOT_FOUND", "no such route"),
		},
		{
			name: "unknown verb", method: http.MethodPost, path: "/v1/routes:teleport",
			wantStatus: http.StatusNotFound,
			wantBody:   errorJSON(404, "NOT_FOUND", "no such route"),
		},
		{
			name: "GET on a POST route", method: http.MethodGet, path: estimatePath,
			wantStatus: http.StatusMethodNotAllowed, wantAllow: "POST, OPTIONS",
			wantBody: errorJSON(405, "INVALID_ARGUMENT", "method GET is not allowed on this route; allowed: POST, OPTIONS"),
		},
		{
			name: "DELETE on the OpenAPI document", method: http.MethodDelete, path: "/openapi.json",
			wantStatus: http.StatusMethodNotAllowed, wantAllow: "GET, HEAD, OPTIONS",
			wantBody: errorJSON(405, "INVALID_ARGUMENT", "method DELETE is not allowed on this route; allowed: GET, HEAD, OPTIONS"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startGateway(t, &fakeRoute{}, gateway.Config{})

			resp, body := do(t, srv, tt.method, tt.path, nil, nil)

			if got := resp.StatusCode; got != tt.wantStatus {
				t.Errorf("%s %s status = %d, want %d", tt.method, tt.path, got, tt.wantStatus)
			}
			if got := resp.Header.Get("Allow"); got != tt.wantAllow {
				t.Errorf("%s %s Allow = %q, want %q", tt.method, tt.path, got, tt.wantAllow)
			}
			if got, want := resp.Header.Get("X-Content-Type-Options"), "nosniff"; got != want {
				t.Errorf("X-Content-Type-Options = %q, want %q", got, want)
			}
			if diff := cmp.Diff(tt.wantBody, decode(t, body)); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpenAPI(t *testing.T) {
	srv := startGateway(t, &fakeRoute{}, gateway.Config{})

	resp, body := do(t, srv, http.MethodGet, "/openapi.json", nil, nil)

	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Fatalf("status = %d, want %d", got, want)
	}
	if got, want := resp.Header.Get("Content-Type"), "application/json"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	var doc struct {
		Swagger string                     `json:"swagger"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("document is not JSON: %v", err)
	}
	if got, want := doc.Swagger, "2.0"; got != want {
		t.Errorf("swagger = %q, want %q", got, want)
	}
	if _, ok := doc.Paths[estimatePath]; !ok {
		t.Errorf("paths has no %q; got %v", estimatePath, keys(doc.Paths))
	}
}

func keys(m map[string]json.RawMessage) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestRequestID(t *testing.T) {
	tests := []struct {
		name      string
		header    http.Header
		wantGiven bool
	}{
		{name: "client id is kept", header: http.Header{"X-Request-Id": {"req-123.abc"}}, wantGiven: true},
		{name: "missing id is generated", header: nil},
		{name: "id with spaces is replaced", header: http.Header{"X-Request-Id": {"evil id\" level=ERROR"}}},
		{name: "overlong id is replaced", header: http.Header{"X-Request-Id": {strings.Repeat("a", 129)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &fakeRoute{}
			srv := startGateway(t, fake, gateway.Config{})

			resp, _ := do(t, srv, http.MethodPost, estimatePath, strings.NewReader(validBody), tt.header)

			md, _ := fake.lastMetadata()
			sent := md.Get("x-request-id")
			if len(sent) != 1 || sent[0] == "" {
				t.Fatalf("x-request-id metadata = %q, want one non-empty value", sent)
			}
			if tt.wantGiven {
				if got, want := sent[0], tt.header.Get("X-Request-Id"); got != want {
					t.Errorf("x-request-id metadata = %q, want %q", got, want)
				}
			} else if sent[0] == tt.header.Get("X-Request-Id") {
				t.Errorf("x-request-id metadata = %q, want a generated id", sent[0])
			}
			if got, want := resp.Header.Values("X-Request-Id"), sent; !cmp.Equal(got, want) {
				t.Errorf("response X-Request-Id = %q, want %q", got, want)
			}
		})
	}
}

func TestRequestIDOnGatewayErrors(t *testing.T) {
	srv := startGateway(t, &fakeRoute{}, gateway.Config{})

	resp, _ := do(t, srv, http.MethodGet, "/nowhere", nil, http.Header{"X-Request-Id": {"lost-1"}})

	if got, want := resp.Header.Values("X-Request-Id"), []string{"lost-1"}; !cmp.Equal(got, want) {
		t.Errorf("X-Request-Id on a 404 = %q, want %q", got, want)
	}
}

func TestForwardedMetadata(t *testing.T) {
	fake := &fakeRoute{}
	srv := startGateway(t, fake, gateway.Config{})

	do(t, srv, http.MethodPost, estimatePath, strings.NewReader(validBody), http.Header{
		"Authorization":           {"Bearer token-1"},
		"Cookie":                  {"session=secret"},
		"Grpc-Metadata-X-Service": {"dispatch"},
		"X-Custom":                {"1"},
	})

	md, calls := fake.lastMetadata()
	if calls != 1 {
		t.Fatalf("service calls = %d, want 1", calls)
	}
	if got, want := md.Get("authorization"), []string{"Bearer token-1"}; !cmp.Equal(got, want) {
		t.Errorf("authorization metadata = %q, want %q", got, want)
	}
	for _, key := range []string{"grpcgateway-authorization", "cookie", "grpcgateway-cookie", "x-service", "x-custom"} {
		if got := md.Get(key); len(got) != 0 {
			t.Errorf("metadata %q = %q, want it absent", key, got)
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := startGateway(t, &fakeRoute{}, gateway.Config{Registerer: reg})

	do(t, srv, http.MethodPost, estimatePath, strings.NewReader(validBody), nil)
	do(t, srv, http.MethodPost, estimatePath, strings.NewReader(validBody), nil)
	do(t, srv, http.MethodGet, "/random/"+strings.Repeat("x", 10), nil, nil)
	do(t, srv, "BREW", "/openapi.json", nil, nil)

	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	got := map[string]float64{}
	histograms := map[string]uint64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch f.GetName() {
			case "lastmile_http_requests_total":
				got[labels["route"]+" "+labels["method"]+" "+labels["code"]] = m.GetCounter().GetValue()
			case "lastmile_http_request_duration_seconds":
				histograms[labels["route"]+" "+labels["method"]] = m.GetHistogram().GetSampleCount()
			}
		}
	}
	wantCounts := map[string]float64{
		"/v1/routes:estimate POST 200": 2,
		"unmatched GET 404":            1,
		"unmatched OTHER 405":          1,
	}
	if diff := cmp.Diff(wantCounts, got); diff != "" {
		t.Errorf("lastmile_http_requests_total mismatch (-want +got):\n%s", diff)
	}
	wantHistograms := map[string]uint64{
		"/v1/routes:estimate POST": 2,
		"unmatched GET":            1,
		"unmatched OTHER":          1,
	}
	if diff := cmp.Diff(wantHistograms, histograms); diff != "" {
		t.Errorf("lastmile_http_request_duration_seconds sample counts mismatch (-want +got):\n%s", diff)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  gateway.Config
	}{
		{name: "negative body limit", cfg: gateway.Config{MaxBodyBytes: -1}},
		{name: "negative timeout", cfg: gateway.Config{RequestTimeout: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := gateway.New(t.Context(), tt.cfg, nil); err == nil {
				t.Errorf("New(%+v) error = nil, want an error", tt.cfg)
			}
		})
	}
}

func TestNewRejectsDuplicateMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := gateway.New(t.Context(), gateway.Config{Registerer: reg}, nil); err != nil {
		t.Fatalf("first New: %v", err)
	}
	if _, err := gateway.New(t.Context(), gateway.Config{Registerer: reg}, nil); err == nil {
		t.Errorf("second New on the same registry error = nil, want an error")
	}
}

func TestUnconfiguredServiceIs404(t *testing.T) {
	g, err := gateway.New(t.Context(), gateway.Config{}, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)

	resp, _ := do(t, srv, http.MethodPost, estimatePath, strings.NewReader(validBody), nil)

	if got, want := resp.StatusCode, http.StatusNotFound; got != want {
		t.Errorf("status = %d, want %d", got, want)
	}
}

func TestListenAndServe(t *testing.T) {
	conn := startGRPC(t, &fakeRoute{})
	g, err := gateway.New(t.Context(), gateway.Config{Addr: "127.0.0.1:0"}, routeService(conn))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if g.Addr() != nil {
		t.Errorf("Addr() before Listen = %v, want nil", g.Addr())
	}
	if err := g.Listen(t.Context()); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	addr := g.Addr().String()

	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- g.Serve(ctx) }()

	client := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Post("http://"+addr+estimatePath, "application/json", bytes.NewReader([]byte(validBody)))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Errorf("status = %d, want %d", got, want)
	}

	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after its context was canceled")
	}
	if _, err := client.Get("http://" + addr + "/openapi.json"); err == nil {
		t.Errorf("GET after shutdown succeeded, want a connection error")
	}
}

func TestListenFailsFast(t *testing.T) {
	var lc net.ListenConfig
	taken, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	g, err := gateway.New(t.Context(), gateway.Config{Addr: taken.Addr().String()}, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := g.Listen(t.Context()); err == nil {
		t.Errorf("Listen(%s) on a taken port error = nil, want an error", taken.Addr())
	}
	var opErr *net.OpError
	if err := g.Serve(t.Context()); !errors.As(err, &opErr) {
		t.Errorf("Serve on a taken port = %v, want a *net.OpError", err)
	}
}

func TestRequestTimeout(t *testing.T) {
	fake := &fakeRoute{estimate: func(ctx context.Context, _ *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error) {
		select {
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		case <-time.After(10 * time.Second):
			return cannedEstimate(), nil
		}
	}}
	srv := startGateway(t, fake, gateway.Config{RequestTimeout: 50 * time.Millisecond})

	resp, body := do(t, srv, http.MethodPost, estimatePath, strings.NewReader(validBody), nil)

	if got, want := resp.StatusCode, http.StatusGatewayTimeout; got != want {
		t.Errorf("status = %d, want %d", got, want)
	}
	if diff := cmp.Diff(errorJSON(504, "DEADLINE_EXCEEDED", "deadline exceeded"), decode(t, body)); diff != "" {
		t.Errorf("body mismatch (-want +got):\n%s", diff)
	}
}

// TestClientGrpcTimeoutIgnored checks that a client cannot choose the deadline of the internal call with
// a Grpc-Timeout header (a 1ns deadline on every call would fail them on purpose and trip circuit breakers).
func TestClientGrpcTimeoutIgnored(t *testing.T) {
	var sawDeadline time.Duration
	fake := &fakeRoute{estimate: func(ctx context.Context, _ *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error) {
		if d, ok := ctx.Deadline(); ok {
			sawDeadline = time.Until(d)
		}
		return cannedEstimate(), nil
	}}
	srv := startGateway(t, fake, gateway.Config{RequestTimeout: 30 * time.Second})

	resp, body := do(t, srv, http.MethodPost, estimatePath, strings.NewReader(validBody), http.Header{"Grpc-Timeout": {"1n"}})

	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d %s, want 200: the Grpc-Timeout header must be ignored", resp.StatusCode, body)
	}
	if sawDeadline < time.Second {
		t.Errorf("deadline the service saw = %v, want the gateway's RequestTimeout (30s), not the client's 1ns", sawDeadline)
	}
}

// TestShutdownFinishesRequestsInFlight checks that Shutdown stops accepting connections at once but lets a
// request whose body is still arriving finish with its full answer.
func TestShutdownFinishesRequestsInFlight(t *testing.T) {
	conn := startGRPC(t, &fakeRoute{})
	g, err := gateway.New(t.Context(), gateway.Config{Addr: "127.0.0.1:0"}, routeService(conn))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := g.Listen(t.Context()); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	addr := g.Addr().String()
	served := make(chan error, 1)
	go func() { served <- g.Serve(t.Context()) }()

	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+addr+estimatePath, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(validBody))
	req.Header.Set("Content-Type", "application/json")
	// No byte of the body leaves before the handler asks for it: the first write returns once the gateway
	// is handling the request.
	req.Header.Set("Expect", "100-continue")
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, ExpectContinueTimeout: time.Minute}}
	type result struct {
		code int
		body []byte
		err  error
	}
	answered := make(chan result, 1)
	go func() {
		resp, err := client.Do(req)
		if err != nil {
			answered <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		answered <- result{resp.StatusCode, b, err}
	}()
	if _, err := pw.Write([]byte(validBody[:10])); err != nil {
		t.Fatalf("first part of the body: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- g.Shutdown(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the gateway still accepts connections 10s after Shutdown began")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := pw.Write([]byte(validBody[10:])); err != nil {
		t.Fatalf("rest of the body: %v", err)
	}
	pw.Close()

	res := <-answered
	if res.err != nil || res.code != http.StatusOK {
		t.Fatalf("request in flight during Shutdown = %d %q %v, want 200", res.code, res.body, res.err)
	}
	if diff := cmp.Diff(map[string]any{"distanceMeters": 1234.5, "duration": "90s", "provider": "fake", "transportMode": "TRANSPORT_MODE_BICYCLE"}, decode(t, res.body)); diff != "" {
		t.Errorf("answer during Shutdown (-want +got):\n%s", diff)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Shutdown = %v, want nil", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after Shutdown = %v, want nil", err)
	}
}

// TestShutdownClosesUnusedConnections: a connection that has sent no request (a client's spare keep-alive
// connection) does not hold Shutdown. net/http would wait until it is five seconds old; here Shutdown,
// bounded to three, must return nil, and the connection is closed.
func TestShutdownClosesUnusedConnections(t *testing.T) {
	conn := startGRPC(t, &fakeRoute{})
	g, err := gateway.New(t.Context(), gateway.Config{Addr: "127.0.0.1:0"}, routeService(conn))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := g.Listen(t.Context()); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- g.Serve(t.Context()) }()

	// A served request first, so the server certainly runs, then a connection that says nothing.
	resp, err := http.Post("http://"+g.Addr().String()+estimatePath, "application/json", strings.NewReader(validBody))
	if err != nil {
		t.Fatalf("POST %s: %v", estimatePath, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	idle, err := net.Dial("tcp", g.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer idle.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown with an unused connection open = %v, want nil", err)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve after Shutdown = %v, want nil", err)
	}
	idle.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := idle.Read(make([]byte, 1)); err == nil {
		t.Errorf("the unused connection read %d bytes after Shutdown, want it closed", n)
	}
}
