package grpcserver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/telemetry"
)

// seen is what a handler of the in-process tests saw of its call.
type seen struct {
	principal auth.Principal
	clientKey string
	requestID string
	deadline  time.Time
	leaked    any // a value of the caller's context, which must not reach the server
	method    string
}

type leakKey struct{}

// inProcessServer returns a served server with the test service registered on it (for in-process calls)
// and the standard authenticator, whose EmptyCall requires a user and every other method is public; the
// handlers record what they see in *got. Its call log goes to the returned buffer.
func inProcessServer(t *testing.T, got *seen, stages *[]string, ready ...func(context.Context) error) (*grpcserver.Server, *syncBuffer) {
	t.Helper()
	logger, logs := testLogger()
	cfg := grpcserver.Config{
		Logger:        logger,
		Authenticator: &grpcauth.ServiceAuthenticator{},
		Policy:        policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), auth.Policy{emptyCall: auth.Users()}),
	}
	if stages != nil {
		grpcserver.ObserveStages(&cfg, func(_, stage string) { *stages = append(*stages, stage) })
	}
	srv, _ := newBufServer(t, cfg, nil)
	svc := &testService{onCall: func(ctx context.Context) {
		got.principal = auth.FromContext(ctx)
		got.clientKey = grpcauth.ClientKey(ctx)
		got.requestID = telemetry.RequestID(ctx)
		got.deadline, _ = ctx.Deadline()
		got.leaked = ctx.Value(leakKey{})
		got.method, _ = grpc.Method(ctx)
	}}
	testgrpc.RegisterTestServiceServer(srv, svc)
	for _, check := range ready {
		srv.AddReadiness(check, testgrpc.TestService_ServiceDesc.ServiceName)
	}
	serve(t, srv)
	// Wait for the first readiness poll, which sets the health statuses.
	for deadline := time.Now().Add(testTimeout); len(ready) == 0 && srv.Ready(t.Context()) != nil; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server did not become ready")
		}
	}
	return srv, logs
}

// TestInProcessGatewayIdentity: a call through InProcess("gateway") is, for the chain, a call forwarded
// by the gateway: an anonymous principal via "gateway" whose client key and logged client address are
// the forwarded x-forwarded-for, exactly as over mTLS with the gateway's certificate.
func TestInProcessGatewayIdentity(t *testing.T) {
	var got seen
	var stages []string
	srv, logs := inProcessServer(t, &got, &stages)
	client := testgrpc.NewTestServiceClient(srv.InProcess("gateway"))

	ctx := context.WithValue(callCtx(t, "x-forwarded-for", "203.0.113.7", "x-request-id", "req-inproc-1"), leakKey{}, "client value")
	want, _ := ctx.Deadline()
	var header, trailer metadata.MD
	if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 3}, grpc.Header(&header), grpc.Trailer(&trailer)); err != nil {
		t.Fatalf("UnaryCall() = %v, want nil", err)
	}
	if got.principal.Kind != auth.Anonymous || got.principal.Via != "gateway" || got.principal.Subject != "" {
		t.Errorf("principal = %+v, want anonymous via gateway", got.principal)
	}
	if got.clientKey != "ip:203.0.113.7" {
		t.Errorf("ClientKey = %q, want ip:203.0.113.7", got.clientKey)
	}
	if got.requestID != "req-inproc-1" {
		t.Errorf("request id = %q, want req-inproc-1", got.requestID)
	}
	if !got.deadline.Equal(want) {
		t.Errorf("deadline = %v, want the caller's %v", got.deadline, want)
	}
	if got.leaked != nil {
		t.Errorf("the handler saw the caller's context value %v, want none", got.leaked)
	}
	if got.method != unaryCall {
		t.Errorf("grpc.Method = %q, want %q", got.method, unaryCall)
	}
	if v := header.Get("x-request-id"); !slices.Equal(v, []string{"req-inproc-1"}) {
		t.Errorf("header x-request-id = %q, want [req-inproc-1]", v)
	}
	wantStages := []string{"request_id", "metrics", "logging", "errors", "recovery", "authentication", "authorization", "rate_limit", "stream_limit", "validation"}
	if !slices.Equal(stages, wantStages) {
		t.Errorf("stages = %q, want %q", stages, wantStages)
	}
	recs := logs.records(t, "gRPC call")
	if len(recs) != 1 {
		t.Fatalf("%d call log lines, want 1", len(recs))
	}
	for k, v := range map[string]any{"method": unaryCall, "code": "OK", "via": "gateway", "client": "203.0.113.7", "peer": "inprocess", "principal_kind": "anonymous"} {
		if recs[0][k] != v {
			t.Errorf("log line %s = %v, want %v", k, recs[0][k], v)
		}
	}

	// The chain refuses as it does over the network: EmptyCall needs a user.
	_, err := client.EmptyCall(callCtx(t, "x-forwarded-for", "203.0.113.7"), &testgrpc.Empty{})
	if code := status.Code(err); code != codes.Unauthenticated {
		t.Errorf("EmptyCall() code = %v (%v), want Unauthenticated", code, err)
	}
	// A bearer token the server cannot verify is refused, never ignored.
	_, err = client.UnaryCall(callCtx(t, "authorization", "Bearer abc"), &testgrpc.SimpleRequest{})
	if code := status.Code(err); code != codes.Unauthenticated {
		t.Errorf("UnaryCall(token) code = %v (%v), want Unauthenticated", code, err)
	}
}

// TestInProcessWithoutIdentity: InProcess("") presents no service identity, as a plaintext client: the
// call is anonymous, not via the gateway, and x-forwarded-for is not read.
func TestInProcessWithoutIdentity(t *testing.T) {
	var got seen
	srv, _ := inProcessServer(t, &got, nil)
	client := testgrpc.NewTestServiceClient(srv.InProcess(""))
	if _, err := client.UnaryCall(callCtx(t, "x-forwarded-for", "203.0.113.7"), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall() = %v, want nil", err)
	}
	if got.principal.Kind != auth.Anonymous || got.principal.Via != "" || got.principal.Subject != "" {
		t.Errorf("principal = %+v, want the zero (anonymous) principal", got.principal)
	}
	if got.clientKey != "" {
		t.Errorf("ClientKey = %q, want none (x-forwarded-for is only read from a forwarding service)", got.clientKey)
	}
}

// TestInProcessStreams: server, client and bidirectional streams, through the stream chain.
func TestInProcessStreams(t *testing.T) {
	var got seen
	srv, _ := inProcessServer(t, &got, nil)
	client := testgrpc.NewTestServiceClient(srv.InProcess("gateway"))

	out, err := client.StreamingOutputCall(callCtx(t, "x-forwarded-for", "198.51.100.2"), &testgrpc.StreamingOutputCallRequest{
		ResponseParameters: make([]*testgrpc.ResponseParameters, 3),
	})
	if err != nil {
		t.Fatalf("StreamingOutputCall() = %v", err)
	}
	n := 0
	for {
		_, err := out.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv() = %v", err)
		}
		n++
	}
	if n != 3 {
		t.Errorf("received %d messages, want 3", n)
	}
	if got.principal.Via != "gateway" || got.clientKey != "ip:198.51.100.2" || got.method != outputCall {
		t.Errorf("stream saw principal %+v, client key %q, method %q; want via gateway, ip:198.51.100.2, %s", got.principal, got.clientKey, got.method, outputCall)
	}

	// A server stream the chain refuses before the handler reads the request: the status, not io.EOF.
	deny := testgrpc.NewTestServiceClient(srv.InProcess("gateway"))
	refused, err := deny.StreamingOutputCall(callCtx(t, "authorization", "Bearer abc"), &testgrpc.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatalf("StreamingOutputCall(token) = %v, want the error from Recv", err)
	}
	if _, err := refused.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Recv() of a refused stream = %v, want Unauthenticated", err)
	}

	in, err := client.StreamingInputCall(callCtx(t))
	if err != nil {
		t.Fatalf("StreamingInputCall() = %v", err)
	}
	for _, body := range []string{"ab", "cde"} {
		if err := in.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: []byte(body)}}); err != nil {
			t.Fatalf("Send() = %v", err)
		}
	}
	resp, err := in.CloseAndRecv()
	if err != nil || resp.GetAggregatedPayloadSize() != 5 {
		t.Errorf("CloseAndRecv() = %v, %v; want size 5, nil", resp, err)
	}

	// A bidirectional stream the caller abandons by cancelling: both sides end (goleak checks the server's).
	ctx, cancel := context.WithCancel(callCtx(t))
	duplex, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatalf("FullDuplexCall() = %v", err)
	}
	if err := duplex.Send(&testgrpc.StreamingOutputCallRequest{}); err != nil {
		t.Fatalf("Send() = %v", err)
	}
	if _, err := duplex.Recv(); err != nil {
		t.Fatalf("Recv() = %v", err)
	}
	if _, err := duplex.Header(); err != nil {
		t.Errorf("Header() = %v", err)
	}
	cancel()
	if _, err := duplex.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("Recv() after cancel = %v, want Canceled", err)
	}
}

// TestInProcessRefusals: an unknown method is Unimplemented; a server shutting down (its services NOT_SERVING)
// refuses with Unavailable, as a health-checking client does.
func TestInProcessRefusals(t *testing.T) {
	var got seen
	srv, _ := inProcessServer(t, &got, nil)
	if !srv.ServesInProcess(testgrpc.TestService_ServiceDesc.ServiceName) || srv.ServesInProcess("grpc.health.v1.Health") {
		t.Errorf("ServesInProcess: want the test service (registered on the Server) only, not health (registered on GRPC())")
	}
	conn := srv.InProcess("gateway")
	err := conn.Invoke(callCtx(t), "/grpc.testing.TestService/NoSuchCall", &testgrpc.Empty{}, &testgrpc.Empty{})
	if code := status.Code(err); code != codes.Unimplemented {
		t.Errorf("Invoke(unknown method) code = %v (%v), want Unimplemented", code, err)
	}
	if err := srv.Shutdown(callCtx(t)); err != nil {
		t.Fatalf("Shutdown() = %v", err)
	}
	_, err = testgrpc.NewTestServiceClient(conn).UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
	if code := status.Code(err); code != codes.Unavailable {
		t.Errorf("UnaryCall() after Shutdown code = %v (%v), want Unavailable", code, err)
	}
}

// TestInProcessNotServing: a service whose readiness check fails (NOT_SERVING) is refused with Unavailable.
func TestInProcessNotServing(t *testing.T) {
	var got seen
	srv, _ := inProcessServer(t, &got, nil, func(context.Context) error { return errors.New("database down") })
	for deadline := time.Now().Add(testTimeout); fmt.Sprint(srv.Ready(t.Context())) != "database down"; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the readiness check did not run")
		}
	}
	_, err := testgrpc.NewTestServiceClient(srv.InProcess("gateway")).UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
	if code := status.Code(err); code != codes.Unavailable {
		t.Errorf("UnaryCall() code = %v (%v), want Unavailable", code, err)
	}
}
