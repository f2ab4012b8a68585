package grpcserver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/telemetry"
)

// wantStages is the documented order of the chain, outermost first, followed by the handler.
var wantStages = []string{
	"request_id", "metrics", "logging", "errors", "recovery",
	"authentication", "authorization", "rate_limit", "stream_limit", "validation", "handler",
}

func TestChainOrder(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]string{}
	record := func(method, stage string) {
		mu.Lock()
		defer mu.Unlock()
		seen[method] = append(seen[method], stage)
	}
	cfg := grpcserver.Config{
		Policy:    policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		RateLimit: grpcserver.RateLimit{RPS: 1000},
	}
	grpcserver.ObserveStages(&cfg, record)
	svc := &testService{onCall: func(ctx context.Context) {
		method, _ := grpc.Method(ctx)
		record(method, "handler")
	}}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	client := testgrpc.NewTestServiceClient(conn)

	calls := map[string]func(ctx context.Context) error{
		unaryCall: func(ctx context.Context) error {
			_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
			return err
		},
		outputCall: func(ctx context.Context) error {
			stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{
				ResponseParameters: []*testgrpc.ResponseParameters{{}, {}},
			})
			if err != nil {
				return err
			}
			for {
				if _, err := stream.Recv(); errors.Is(err, io.EOF) {
					return nil
				} else if err != nil {
					return err
				}
			}
		},
		inputCall: func(ctx context.Context) error {
			stream, err := client.StreamingInputCall(ctx)
			if err != nil {
				return err
			}
			if err := stream.Send(&testgrpc.StreamingInputCallRequest{}); err != nil {
				return err
			}
			_, err = stream.CloseAndRecv()
			return err
		},
		duplexCall: func(ctx context.Context) error {
			stream, err := client.FullDuplexCall(ctx)
			if err != nil {
				return err
			}
			for range 2 {
				if err := stream.Send(&testgrpc.StreamingOutputCallRequest{}); err != nil {
					return err
				}
				if _, err := stream.Recv(); err != nil {
					return err
				}
			}
			if err := stream.CloseSend(); err != nil {
				return err
			}
			if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
				return fmt.Errorf("Recv after CloseSend = %v, want EOF", err)
			}
			return nil
		},
	}
	for method, call := range calls {
		t.Run(method, func(t *testing.T) {
			if err := call(callCtx(t)); err != nil {
				t.Fatalf("%s: %v", method, err)
			}
			mu.Lock()
			got := slices.Clone(seen[method])
			mu.Unlock()
			if diff := cmp.Diff(wantStages, got); diff != "" {
				t.Errorf("stages seen by %s (-want +got):\n%s", method, diff)
			}
		})
	}
}

// TestChainOrderDecidesOutcome checks the consequences of the order: which refusal wins when a call has
// several problems, and what the outer stages see.
func TestChainOrderDecidesOutcome(t *testing.T) {
	reg := prometheus.NewRegistry()
	logger, logs := testLogger()
	cfg := grpcserver.Config{
		Policy: auth.Policy{
			"/lastmile.route.v1.RouteService/EstimateRoute": auth.Users(),
			"/lastmile.route.v1.RouteService/ComputeMatrix": auth.Users(),
		},
		Authenticator: headerAuthenticator{},
		RateLimit:     grpcserver.RateLimit{RPS: 0.001, Burst: 1},
		Registerer:    reg,
		Logger:        logger,
	}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { routev1.RegisterRouteServiceServer(s, &fakeRoute{}) })
	client := routev1.NewRouteServiceClient(conn)
	invalid := estimateRequest(91, 0)

	// Anonymous and invalid: authorization runs before validation.
	_, err := client.EstimateRoute(callCtx(t), invalid)
	if got := status.Code(err); got != codes.Unauthenticated {
		t.Errorf("anonymous invalid EstimateRoute code = %v, want Unauthenticated", got)
	}
	// Authenticated and invalid: validation answers, and takes the principal's only token.
	_, err = client.EstimateRoute(callCtx(t, "x-test-user", "u1"), invalid)
	if got := status.Code(err); got != codes.InvalidArgument {
		t.Errorf("first invalid EstimateRoute code = %v, want InvalidArgument", got)
	}
	// Over the limit and invalid: rate limiting runs before validation.
	_, err = client.EstimateRoute(callCtx(t, "x-test-user", "u1"), invalid)
	if got := status.Code(err); got != codes.ResourceExhausted {
		t.Errorf("second invalid EstimateRoute code = %v, want ResourceExhausted", got)
	}

	// Metrics and logging sit outside error mapping: they saw the mapped codes.
	wantCodes := map[string]float64{"Unauthenticated": 1, "InvalidArgument": 1, "ResourceExhausted": 1}
	if diff := cmp.Diff(wantCodes, handledByCode(t, reg, "EstimateRoute")); diff != "" {
		t.Errorf("grpc_server_handled_total{grpc_method=EstimateRoute} by code (-want +got):\n%s", diff)
	}
	if got := handlingCount(t, reg, "EstimateRoute"); got != 3 {
		t.Errorf("grpc_server_handling_seconds{grpc_method=EstimateRoute} count = %d, want 3", got)
	}
	var gotLogged []string
	for _, rec := range logs.records(t, "gRPC call") {
		gotLogged = append(gotLogged, fmt.Sprint(rec["code"], " ", rec["principal_kind"]))
	}
	wantLogged := []string{"Unauthenticated anonymous", "InvalidArgument user", "ResourceExhausted user"}
	if diff := cmp.Diff(wantLogged, gotLogged); diff != "" {
		t.Errorf("logged calls (-want +got):\n%s", diff)
	}
}

// handledByCode returns grpc_server_handled_total of method by grpc_code.
func handledByCode(t *testing.T, reg *prometheus.Registry, method string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "grpc_server_handled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["grpc_method"] == method && m.GetCounter().GetValue() > 0 {
				out[labels["grpc_code"]] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// handlingCount returns the number of observations of grpc_server_handling_seconds for method.
func handlingCount(t *testing.T, reg *prometheus.Registry, method string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	var n uint64
	for _, mf := range mfs {
		if mf.GetName() != "grpc_server_handling_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "grpc_method" && l.GetValue() == method {
					n += m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	return n
}

type fakeRoute struct {
	routev1.UnimplementedRouteServiceServer
}

func (fakeRoute) EstimateRoute(_ context.Context, req *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error) {
	return &routev1.RouteEstimate{DistanceMeters: 1000, Provider: "fake", TransportMode: req.GetTransportMode()}, nil
}

func estimateRequest(lat, lng float64) *routev1.EstimateRouteRequest {
	return &routev1.EstimateRouteRequest{
		Origin:        &geov1.LatLng{Latitude: lat, Longitude: lng},
		Destination:   &geov1.LatLng{Latitude: 52.5, Longitude: 13.4},
		TransportMode: geov1.TransportMode_TRANSPORT_MODE_BICYCLE,
	}
}

func TestValidation(t *testing.T) {
	cfg := grpcserver.Config{Policy: policyFor(&routev1.RouteService_ServiceDesc, auth.Public(), nil)}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { routev1.RegisterRouteServiceServer(s, &fakeRoute{}) })
	client := routev1.NewRouteServiceClient(conn)

	if _, err := client.EstimateRoute(callCtx(t), estimateRequest(52.4, 13.3)); err != nil {
		t.Fatalf("valid EstimateRoute error = %v", err)
	}

	tests := []struct {
		name       string
		req        *routev1.EstimateRouteRequest
		wantFields []string
	}{
		{"latitude 91", estimateRequest(91, 0), []string{"origin.latitude"}},
		{"two bad fields", estimateRequest(-91, 181), []string{"origin.latitude", "origin.longitude"}},
		{"missing destination and mode", &routev1.EstimateRouteRequest{Origin: &geov1.LatLng{}},
			[]string{"destination", "transport_mode"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.EstimateRoute(callCtx(t), tt.req)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("EstimateRoute code = %v (%v), want InvalidArgument", st.Code(), err)
			}
			var got []string
			for _, d := range st.Details() {
				if br, ok := d.(*errdetails.BadRequest); ok {
					for _, v := range br.GetFieldViolations() {
						got = append(got, v.GetField())
						if v.GetDescription() == "" {
							t.Errorf("violation of %s has no description", v.GetField())
						}
					}
				}
			}
			slices.Sort(got)
			if diff := cmp.Diff(tt.wantFields, got); diff != "" {
				t.Errorf("BadRequest field violations (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPanicBecomesInternal(t *testing.T) {
	const secret = "secret-panic-text"
	logger, logs := testLogger()
	svc := &testService{
		unary: func(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) { panic(secret) },
		onCall: func(ctx context.Context) {
			if m, _ := grpc.Method(ctx); m == duplexCall {
				panic(secret)
			}
		},
	}
	cfg := grpcserver.Config{
		Policy: policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Logger: logger,
	}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	client := testgrpc.NewTestServiceClient(conn)

	_, unaryErr := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
	stream, err := client.FullDuplexCall(callCtx(t))
	if err != nil {
		t.Fatalf("FullDuplexCall() error = %v", err)
	}
	_, streamErr := stream.Recv()

	for name, err := range map[string]error{"unary": unaryErr, "bidi stream": streamErr} {
		st := status.Convert(err)
		if st.Code() != codes.Internal || st.Message() != "internal error" {
			t.Errorf("%s panic status = %v %q, want Internal %q", name, st.Code(), st.Message(), "internal error")
		}
		if strings.Contains(fmt.Sprint(st.Proto()), secret) {
			t.Errorf("%s status %v contains the panic text", name, st.Proto())
		}
	}
	panics := logs.records(t, "panic in gRPC handler")
	if len(panics) != 2 {
		t.Fatalf("logged %d panics, want 2", len(panics))
	}
	for _, rec := range panics {
		if stack, _ := rec["stack"].(string); !strings.Contains(stack, "chain_test.go") {
			t.Errorf("panic log stack does not show the panicking handler:\n%s", stack)
		}
	}
}

func TestInternalDetailsNotReturned(t *testing.T) {
	const secret = "password=hunter2"
	logger, logs := testLogger()
	tests := []struct {
		name string
		err  error
	}{
		{"plain error", fmt.Errorf("query couriers: %s", secret)},
		{"apperr Internal", apperr.Wrap(apperr.Internal, errors.New(secret), "something broke")},
		{"handler-built Internal status", status.Error(codes.Internal, secret)},
		{"handler-built Unknown status", status.Error(codes.Unknown, secret)},
	}
	var mu sync.Mutex
	var current error
	svc := &testService{unary: func(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
		mu.Lock()
		defer mu.Unlock()
		return nil, current
	}}
	cfg := grpcserver.Config{Policy: policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil), Logger: logger}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	client := testgrpc.NewTestServiceClient(conn)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			current = tt.err
			mu.Unlock()
			_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
			st := status.Convert(err)
			if st.Code() != codes.Internal || st.Message() != "internal error" {
				t.Errorf("UnaryCall status = %v %q, want Internal %q", st.Code(), st.Message(), "internal error")
			}
		})
	}
	calls := logs.records(t, "gRPC call")
	if len(calls) != len(tests) {
		t.Fatalf("logged %d calls, want %d", len(calls), len(tests))
	}
	for _, rec := range calls {
		if e, _ := rec["error"].(string); !strings.Contains(e, secret) || rec["level"] != "ERROR" {
			t.Errorf("call log = %v, want level ERROR and the cause in error", rec)
		}
	}
}

func TestDomainErrorsMapped(t *testing.T) {
	svc := &testService{unary: func(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
		return nil, fmt.Errorf("load task: %w", apperr.Errorf(apperr.NotFound, "task t1 not found"))
	}}
	cfg := grpcserver.Config{Policy: policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil)}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	_, err := testgrpc.NewTestServiceClient(conn).UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
	if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "task t1 not found" {
		t.Errorf("UnaryCall status = %v %q, want NotFound %q", st.Code(), st.Message(), "task t1 not found")
	}
}

func TestRequestID(t *testing.T) {
	var mu sync.Mutex
	var inHandler string
	svc := &testService{onCall: func(ctx context.Context) {
		mu.Lock()
		defer mu.Unlock()
		inHandler = telemetry.RequestID(ctx)
	}}
	logger, logs := testLogger()
	cfg := grpcserver.Config{Policy: policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil), Logger: logger}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	client := testgrpc.NewTestServiceClient(conn)

	tests := []struct {
		name    string
		sent    []string
		want    string // "" means a generated id
		notWant string
	}{
		{"adopted", []string{"req-123.a:b"}, "req-123.a:b", ""},
		{"generated", nil, "", ""},
		{"forged log field replaced", []string{`x" injected="1`}, "", `x" injected="1`},
		{"too long replaced", []string{strings.Repeat("a", 129)}, "", strings.Repeat("a", 129)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := callCtx(t)
			for _, id := range tt.sent {
				ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", id)
			}
			var header metadata.MD
			if _, err := client.EmptyCall(ctx, &testgrpc.Empty{}, grpc.Header(&header)); err != nil {
				t.Fatalf("EmptyCall() error = %v", err)
			}
			mu.Lock()
			got := inHandler
			mu.Unlock()
			if tt.want != "" && got != tt.want {
				t.Errorf("request id in handler = %q, want %q", got, tt.want)
			}
			if got == "" || got == tt.notWant {
				t.Errorf("request id in handler = %q, want a generated id", got)
			}
			if h := header.Get("x-request-id"); len(h) != 1 || h[0] != got {
				t.Errorf("x-request-id response header = %q, want [%q]", h, got)
			}
			calls := logs.records(t, "gRPC call")
			if last := calls[len(calls)-1]; last["request_id"] != got {
				t.Errorf("logged request_id = %v, want %q", last["request_id"], got)
			}
		})
	}

	t.Run("stream", func(t *testing.T) {
		stream, err := client.FullDuplexCall(metadata.AppendToOutgoingContext(callCtx(t), "x-request-id", "stream-1"))
		if err != nil {
			t.Fatalf("FullDuplexCall() error = %v", err)
		}
		stream.CloseSend()
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			t.Errorf("Recv() = %v, want EOF", err)
		}
		header, err := stream.Header()
		if err != nil {
			t.Fatalf("Header() error = %v", err)
		}
		if h := header.Get("x-request-id"); !cmp.Equal(h, []string{"stream-1"}) {
			t.Errorf("stream x-request-id response header = %q, want [stream-1]", h)
		}
		mu.Lock()
		defer mu.Unlock()
		if inHandler != "stream-1" {
			t.Errorf("request id in stream handler = %q, want stream-1", inHandler)
		}
	})
}

func TestAuthorization(t *testing.T) {
	var mu sync.Mutex
	var principal auth.Principal
	svc := &testService{onCall: func(ctx context.Context) {
		mu.Lock()
		defer mu.Unlock()
		principal = auth.FromContext(ctx)
	}}
	cfg := grpcserver.Config{
		Policy: policyFor(&testgrpc.TestService_ServiceDesc, auth.Rule{}, auth.Policy{
			emptyCall:  auth.Public(),
			unaryCall:  auth.Users("ROLE_ADMIN").Or(auth.Internal("dispatch")),
			duplexCall: auth.Internal("dispatch"),
		}),
		Authenticator: headerAuthenticator{},
	}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	client := testgrpc.NewTestServiceClient(conn)

	admin := []string{"x-test-user", "u1", "x-test-roles", "ROLE_CUSTOMER,ROLE_ADMIN"}
	customer := []string{"x-test-user", "u2", "x-test-roles", "ROLE_CUSTOMER"}
	dispatch := []string{"x-test-service", "dispatch"}
	tests := []struct {
		name string
		md   []string
		call func(ctx context.Context) error
		want codes.Code
	}{
		{"public anonymous", nil, emptyCallFn(client), codes.OK},
		{"role rule anonymous", nil, unaryCallFn(client), codes.Unauthenticated},
		{"role rule admin", admin, unaryCallFn(client), codes.OK},
		{"role rule customer", customer, unaryCallFn(client), codes.PermissionDenied},
		{"role rule listed service", dispatch, unaryCallFn(client), codes.OK},
		{"internal stream anonymous", nil, duplexCallFn(client), codes.Unauthenticated},
		{"internal stream admin", admin, duplexCallFn(client), codes.PermissionDenied},
		{"internal stream service", dispatch, duplexCallFn(client), codes.OK},
		{"zero rule admits nobody", dispatch, inputCallFn(client), codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			principal = auth.Principal{Subject: "handler not reached"}
			mu.Unlock()
			err := tt.call(callCtx(t, tt.md...))
			if got := status.Code(err); got != tt.want {
				t.Fatalf("call code = %v (%v), want %v", got, err, tt.want)
			}
			mu.Lock()
			defer mu.Unlock()
			reached := principal.Subject != "handler not reached"
			if reached != (tt.want == codes.OK) {
				t.Errorf("handler reached = %v, want %v", reached, tt.want == codes.OK)
			}
		})
	}
}

func emptyCallFn(c testgrpc.TestServiceClient) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.EmptyCall(ctx, &testgrpc.Empty{})
		return err
	}
}

func unaryCallFn(c testgrpc.TestServiceClient) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		return err
	}
}

func duplexCallFn(c testgrpc.TestServiceClient) func(context.Context) error {
	return func(ctx context.Context) error {
		stream, err := c.FullDuplexCall(ctx)
		if err != nil {
			return err
		}
		if err := stream.CloseSend(); err != nil {
			return err
		}
		if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
			return err
		}
		return nil
	}
}

func inputCallFn(c testgrpc.TestServiceClient) func(context.Context) error {
	return func(ctx context.Context) error {
		stream, err := c.StreamingInputCall(ctx)
		if err != nil {
			return err
		}
		_, err = stream.CloseAndRecv()
		return err
	}
}

func TestBearerTokenWithoutVerifierRejected(t *testing.T) {
	const token = "secret-token-value"
	logger, logs := testLogger()
	cfg := grpcserver.Config{Policy: policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil), Logger: logger}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
	_, err := testgrpc.NewTestServiceClient(conn).EmptyCall(callCtx(t, "authorization", "Bearer "+token), &testgrpc.Empty{})
	if got := status.Code(err); got != codes.Unauthenticated {
		t.Errorf("EmptyCall with a token and no verifier code = %v, want Unauthenticated", got)
	}
	if strings.Contains(logs.String(), token) {
		t.Errorf("the log contains the bearer token:\n%s", logs)
	}
}

func TestRateLimit(t *testing.T) {
	cfg := grpcserver.Config{
		Policy:        policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Authenticator: headerAuthenticator{},
		// One call per principal, then one per 1000 s: the test never sees a refill.
		RateLimit: grpcserver.RateLimit{RPS: 0.001, Burst: 1},
	}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
	client := testgrpc.NewTestServiceClient(conn)
	u1 := []string{"x-test-user", "u1"}

	if _, err := client.EmptyCall(callCtx(t, u1...), &testgrpc.Empty{}); err != nil {
		t.Fatalf("first EmptyCall error = %v", err)
	}
	_, err := client.EmptyCall(callCtx(t, u1...), &testgrpc.Empty{})
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("second EmptyCall code = %v, want ResourceExhausted", st.Code())
	}
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			retry = ri
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 {
		t.Errorf("ResourceExhausted details = %v, want RetryInfo with a positive delay", st.Details())
	}
	// Buckets are per principal.
	if _, err := client.EmptyCall(callCtx(t, "x-test-user", "u2"), &testgrpc.Empty{}); err != nil {
		t.Errorf("EmptyCall by another user error = %v", err)
	}
	if _, err := client.EmptyCall(callCtx(t), &testgrpc.Empty{}); err != nil {
		t.Errorf("anonymous EmptyCall error = %v", err)
	}
	// lastmile's services are not limited: they call for callers limited where they came in.
	for i := range 3 {
		if _, err := client.EmptyCall(callCtx(t, "x-test-service", "dispatch"), &testgrpc.Empty{}); err != nil {
			t.Errorf("EmptyCall %d by the dispatch service error = %v, want none", i+1, err)
		}
	}
	// Streams are limited when they open.
	if got := status.Code(duplexCallFn(client)(callCtx(t, u1...))); got != codes.ResourceExhausted {
		t.Errorf("FullDuplexCall over the limit code = %v, want ResourceExhausted", got)
	}
}

// TestRateLimitAnonymousByForwardedClient checks that anonymous calls forwarded by an edge proxy are limited
// per client address (the last x-forwarded-for entry, which the proxy itself appended), not all together
// under the proxy's one connection.
func TestRateLimitAnonymousByForwardedClient(t *testing.T) {
	cfg := grpcserver.Config{
		Policy:        policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Authenticator: headerAuthenticator{},
		RateLimit:     grpcserver.RateLimit{RPS: 0.001, Burst: 1},
	}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
	client := testgrpc.NewTestServiceClient(conn)
	from := func(xff string) context.Context {
		return callCtx(t, "x-test-via", "gateway", "x-forwarded-for", xff)
	}
	if _, err := client.EmptyCall(from("198.51.100.7"), &testgrpc.Empty{}); err != nil {
		t.Fatalf("first call from 198.51.100.7 = %v, want OK", err)
	}
	if _, err := client.EmptyCall(from("198.51.100.7"), &testgrpc.Empty{}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second call from 198.51.100.7 = %v, want ResourceExhausted", err)
	}
	// Another client behind the same gateway has its own bucket, whatever it claims earlier in the chain.
	if _, err := client.EmptyCall(from("198.51.100.7, 203.0.113.50"), &testgrpc.Empty{}); err != nil {
		t.Errorf("first call from 203.0.113.50 = %v, want OK: clients behind the gateway must not share a bucket", err)
	}
}
