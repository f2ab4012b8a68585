package grpcserver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/telemetry"
	"lastmile/internal/platform/tlsutil"
)

// waitFor polls cond until it holds, failing the test after testTimeout.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// receive waits for a value from ch, failing the test after testTimeout.
func receive[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

func healthStatus(t *testing.T, conn *grpc.ClientConn, service string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	t.Helper()
	resp, err := healthpb.NewHealthClient(conn).Check(callCtx(t), &healthpb.HealthCheckRequest{Service: service})
	return resp.GetStatus(), err
}

func TestHealthAndReflectionArePublic(t *testing.T) {
	// A policy that admits no one but dispatch: health and reflection stay reachable anonymously.
	cfg := grpcserver.Config{Policy: policyFor(&testgrpc.TestService_ServiceDesc, auth.Internal("dispatch"), nil)}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })

	for _, service := range []string{"", "grpc.testing.TestService"} {
		if got, err := healthStatus(t, conn, service); err != nil || got != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health Check(%q) = %v, %v; want SERVING", service, got, err)
		}
	}
	if _, err := healthStatus(t, conn, "no.such.Service"); status.Code(err) != codes.NotFound {
		t.Errorf("health Check(unknown) error = %v, want NotFound", err)
	}

	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(callCtx(t))
	if err != nil {
		t.Fatalf("ServerReflectionInfo() error = %v", err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatalf("reflection Send() error = %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection Recv() error = %v", err)
	}
	var services []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	if !slices.Contains(services, "grpc.testing.TestService") {
		t.Errorf("reflection lists %v, want grpc.testing.TestService among them", services)
	}
	stream.CloseSend()

	if _, err := testgrpc.NewTestServiceClient(conn).EmptyCall(callCtx(t), &testgrpc.Empty{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("anonymous EmptyCall error = %v, want Unauthenticated", err)
	}
}

func TestReadiness(t *testing.T) {
	var notReady atomic.Pointer[error]
	down := errors.New("database unreachable")
	notReady.Store(&down)
	cfg := grpcserver.Config{
		Policy:            policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		ReadinessInterval: 5 * time.Millisecond,
	}
	srv, conn := newBufServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
	srv.AddReadiness(func(context.Context) error {
		if e := notReady.Load(); e != nil {
			return *e
		}
		return nil
	})
	serve(t, srv)

	wantStatus := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for _, service := range []string{"", "grpc.testing.TestService"} {
			waitFor(t, "health of "+service+" to be "+want.String(), func() bool {
				got, err := healthStatus(t, conn, service)
				return err == nil && got == want
			})
		}
	}
	wantStatus(healthpb.HealthCheckResponse_NOT_SERVING)
	notReady.Store(nil)
	wantStatus(healthpb.HealthCheckResponse_SERVING)
	notReady.Store(&down)
	wantStatus(healthpb.HealthCheckResponse_NOT_SERVING)
}

func TestGracefulShutdown(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	svc := &testService{unary: func(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
		close(started)
		<-release
		return &testgrpc.SimpleResponse{}, nil
	}}
	cfg := grpcserver.Config{
		Policy:          policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		ShutdownTimeout: testTimeout,
	}
	srv, conn := newBufServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	hooked := make(chan struct{})
	srv.OnShutdown(func() { close(hooked) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	watchCtx, stopWatch := context.WithCancel(callCtx(t))
	defer stopWatch()
	watch, err := healthpb.NewHealthClient(conn).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health Watch() error = %v", err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first health status = %v, %v; want SERVING", resp.GetStatus(), err)
	}

	called := make(chan error, 1)
	go func() {
		_, err := testgrpc.NewTestServiceClient(conn).UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
		called <- err
	}()
	receive(t, "the slow call to start", started)

	cancel()
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health status after cancel = %v, %v; want NOT_SERVING", resp.GetStatus(), err)
	}
	// Health-checking grpc-go clients end their watches when they receive the server's GOAWAY (and the
	// server ends those still open after the hooks: TestShutdownEndsStreamsNoServiceDrains).
	stopWatch()
	receive(t, "the OnShutdown hook", hooked)

	close(release)
	if err := receive(t, "the in-flight call", called); err != nil {
		t.Errorf("in-flight UnaryCall error = %v, want nil", err)
	}
	if err := receive(t, "Serve to return", served); err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
}

// TestShutdownEndsStreamsNoServiceDrains: streams that wait on an idle client and that no OnShutdown hook
// ends (grpcurl's reflection stream, a health watch of a client that ignores GOAWAY, a client stream of a
// method with EndAtShutdown that nobody feeds) are ended at shutdown with Unavailable, so that they do not
// hold the graceful stop until its deadline (an hour here: a stop that waited for it fails the test).
func TestShutdownEndsStreamsNoServiceDrains(t *testing.T) {
	inputStarted := make(chan struct{})
	svc := &testService{onCall: func(ctx context.Context) { close(inputStarted) }}
	logger, logs := testLogger()
	cfg := grpcserver.Config{
		Policy:          policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Streams:         map[string]grpcserver.StreamLimit{inputCall: {EndAtShutdown: true}},
		ShutdownTimeout: time.Hour,
		Logger:          logger,
	}
	srv, conn := newBufServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	// Reflection, as grpcurl leaves it: one answer, then idle.
	refl, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(callCtx(t))
	if err != nil {
		t.Fatalf("ServerReflectionInfo() error = %v", err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatalf("reflection Send() error = %v", err)
	}
	if _, err := refl.Recv(); err != nil {
		t.Fatalf("reflection Recv() error = %v", err)
	}
	// A health watch whose client does not end it on GOAWAY.
	watch, err := healthpb.NewHealthClient(conn).Watch(callCtx(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health Watch() error = %v", err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first health status = %v, %v; want SERVING", resp.GetStatus(), err)
	}
	// A client stream fed once, then idle.
	input, err := testgrpc.NewTestServiceClient(conn).StreamingInputCall(callCtx(t))
	if err != nil {
		t.Fatalf("StreamingInputCall() error = %v", err)
	}
	if err := input.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: []byte("x")}}); err != nil {
		t.Fatalf("StreamingInputCall Send() error = %v", err)
	}
	receive(t, "the client stream's handler to start", inputStarted)

	cancel()
	if err := receive(t, "Serve to return", served); err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	wantEnd := func(what string, err error) {
		t.Helper()
		if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "the server is shutting down; reconnect" {
			t.Errorf("%s ended with %v, want Unavailable \"the server is shutting down; reconnect\"", what, err)
		}
	}
	_, err = refl.Recv()
	wantEnd("the reflection stream", err)
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health status at shutdown = %v, %v; want NOT_SERVING", resp.GetStatus(), err)
	}
	_, err = watch.Recv()
	wantEnd("the health watch", err)
	_, err = input.CloseAndRecv()
	wantEnd("the client stream", err)
	if got := logs.records(t, "gRPC graceful stop timed out; cutting off remaining calls"); len(got) != 0 {
		t.Errorf("timeout warnings = %v, want none", got)
	}
}

func TestShutdownCutsOffStuckCalls(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(release) })
	svc := &testService{unary: func(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
		close(started)
		<-release // ignores its context: only Stop ends the call
		return &testgrpc.SimpleResponse{}, nil
	}}
	logger, logs := testLogger()
	cfg := grpcserver.Config{
		Policy:          policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		ShutdownTimeout: 50 * time.Millisecond,
		Logger:          logger,
	}
	srv, conn := newBufServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	called := make(chan error, 1)
	go func() {
		_, err := testgrpc.NewTestServiceClient(conn).UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
		called <- err
	}()
	receive(t, "the stuck call to start", started)
	cancel()
	if err := receive(t, "Serve to return", served); err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	if err := receive(t, "the stuck call to fail", called); status.Code(err) != codes.Unavailable {
		t.Errorf("stuck UnaryCall error = %v, want Unavailable", err)
	}
	// The warning names what was cut off: one UnaryCall.
	warnings := logs.records(t, "gRPC graceful stop timed out; cutting off remaining calls")
	if len(warnings) != 1 {
		t.Fatalf("timeout warnings = %v, want one", warnings)
	}
	if diff := cmp.Diff(map[string]any{unaryCall: float64(1)}, warnings[0]["open_calls"]); diff != "" {
		t.Errorf("open_calls of the timeout warning (-want +got):\n%s", diff)
	}
}

// TestUnavailableFromAStoppingServerIsInformation checks the level of a call's log line when it ends with
// UNAVAILABLE: a warning while the server serves (a dependency or the load is in trouble), information once
// its shutdown started, when the server's own hooks end the calls and streams that tell clients to
// reconnect, which is expected and would otherwise be the one warning of every clean stop.
func TestUnavailableFromAStoppingServerIsInformation(t *testing.T) {
	started, release := make(chan struct{}), make(chan struct{})
	svc := &testService{unary: func(_ context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
		if req.GetResponseSize() == 0 {
			return nil, status.Error(codes.Unavailable, "test dependency unreachable")
		}
		close(started)
		<-release
		return nil, status.Error(codes.Unavailable, "test service is shutting down; reconnect")
	}}
	logger, logs := testLogger()
	cfg := grpcserver.Config{
		Policy:          policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		ShutdownTimeout: testTimeout,
		Logger:          logger,
	}
	srv, conn := newBufServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	srv.OnShutdown(func() { close(release) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	client := testgrpc.NewTestServiceClient(conn)
	if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("UnaryCall while serving = %v, want Unavailable", err)
	}
	called := make(chan error, 1)
	go func() {
		_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{ResponseSize: 1})
		called <- err
	}()
	receive(t, "the call to start", started)
	cancel()
	if err := receive(t, "the call the shutdown ends", called); status.Code(err) != codes.Unavailable {
		t.Errorf("UnaryCall ended by the shutdown = %v, want Unavailable", err)
	}
	if err := receive(t, "Serve to return", served); err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	var got []string
	for _, rec := range logs.records(t, "gRPC call") {
		if rec["method"] == unaryCall {
			got = append(got, fmt.Sprint(rec["level"], " ", rec["code"]))
		}
	}
	if want := []string{"WARN Unavailable", "INFO Unavailable"}; !slices.Equal(got, want) {
		t.Errorf("UnaryCall log lines = %q, want %q (serving, then stopping)", got, want)
	}
}

func TestServeRequiresCompletePolicy(t *testing.T) {
	cfg := grpcserver.Config{Policy: auth.Policy{emptyCall: auth.Public()}}
	srv, _ := newBufServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	err := srv.Serve(ctx)
	if err == nil || !strings.Contains(err.Error(), unaryCall) || strings.Contains(err.Error(), emptyCall) {
		t.Errorf("Serve() with gaps in the policy = %v, want an error naming %s and not %s", err, unaryCall, emptyCall)
	}
	// A process that stops after such a failure must not hang in Shutdown.
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() after a failed Serve = %v, want nil", err)
	}
}

func TestNewFailsFast(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() error = %v", err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	_, err = grpcserver.New(grpcserver.Config{Addr: addr, Logger: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), addr) {
		t.Errorf("New(Addr: taken %s) = %v, want an error naming the address", addr, err)
	}

	bad := []grpcserver.Config{
		{},
		{Addr: "127.0.0.1:0", ShutdownTimeout: -time.Second},
		{Addr: "127.0.0.1:0", RateLimit: grpcserver.RateLimit{RPS: -1}},
	}
	for _, cfg := range bad {
		if _, err := grpcserver.New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
}

func TestClose(t *testing.T) {
	lis := bufconn.Listen(1 << 10)
	srv, err := grpcserver.New(grpcserver.Config{Listener: lis, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("Close() error = %v", err)
	}
	if _, err := lis.Dial(); err == nil {
		t.Errorf("Dial after Close succeeded, want the listener closed")
	}
	if err := srv.Serve(context.Background()); err == nil {
		t.Errorf("Serve after Close = nil, want an error")
	}
}

// TestShutdownBeforeServe: a process told to stop while it starts up may call Shutdown before Serve; Serve
// then returns nil at once instead of failing the process.
func TestShutdownBeforeServe(t *testing.T) {
	lis := bufconn.Listen(1 << 10)
	srv, err := grpcserver.New(grpcserver.Config{Listener: lis, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown() error = %v", err)
	}
	if err := srv.Serve(context.Background()); err != nil {
		t.Errorf("Serve after Shutdown = %v, want nil", err)
	}
	if _, err := lis.Dial(); err == nil {
		t.Errorf("Dial after Shutdown succeeded, want the listener closed")
	}
}

// tlsServer serves the test service over TLS on 127.0.0.1:0 with certificates from pki.
func tlsServer(t *testing.T, pki *tlsutil.PKI, policy auth.Policy) string {
	t.Helper()
	certFile, keyFile := pki.ServerCert()
	serverTLS, err := tlsutil.ServerConfig(certFile, keyFile, pki.CAFile())
	if err != nil {
		t.Fatalf("tlsutil.ServerConfig() error = %v", err)
	}
	srv, err := grpcserver.New(grpcserver.Config{
		Addr:   "127.0.0.1:0",
		TLS:    serverTLS,
		Policy: policy,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	testgrpc.RegisterTestServiceServer(srv.GRPC(), &testService{})
	serve(t, srv)
	return srv.Addr().String()
}

func TestTLS(t *testing.T) {
	pki, err := tlsutil.EnsureDevPKI(t.TempDir(), nil, "dispatch", "gateway", "route")
	if err != nil {
		t.Fatalf("EnsureDevPKI() error = %v", err)
	}
	foreign, err := tlsutil.EnsureDevPKI(t.TempDir(), nil, "dispatch", "gateway", "route")
	if err != nil {
		t.Fatalf("EnsureDevPKI(foreign) error = %v", err)
	}
	addr := tlsServer(t, pki, policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), auth.Policy{
		unaryCall: auth.Internal("dispatch"),
	}))

	clientTLS := func(certFile, keyFile string) credentials.TransportCredentials {
		cfg, err := tlsutil.ClientConfig(certFile, keyFile, pki.CAFile())
		if err != nil {
			t.Fatalf("tlsutil.ClientConfig() error = %v", err)
		}
		return credentials.NewTLS(cfg)
	}
	dispatchCert, dispatchKey := pki.ClientCert("dispatch")
	gatewayCert, gatewayKey := pki.ClientCert("gateway")
	routeCert, routeKey := pki.ClientCert("route")
	foreignCert, foreignKey := foreign.ClientCert("dispatch")

	tests := []struct {
		name      string
		creds     credentials.TransportCredentials
		wantEmpty codes.Code // public EmptyCall
		wantUnary codes.Code // UnaryCall, Internal("dispatch")
	}{
		{"dispatch certificate", clientTLS(dispatchCert, dispatchKey), codes.OK, codes.OK},
		{"no certificate", clientTLS("", ""), codes.OK, codes.Unauthenticated},
		{"gateway certificate is an edge proxy", clientTLS(gatewayCert, gatewayKey), codes.OK, codes.Unauthenticated},
		{"route certificate", clientTLS(routeCert, routeKey), codes.OK, codes.PermissionDenied},
		{"foreign CA fails the handshake", clientTLS(foreignCert, foreignKey), codes.Unavailable, codes.Unavailable},
		{"plaintext", insecure.NewCredentials(), codes.Unavailable, codes.Unavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(tt.creds))
			if err != nil {
				t.Fatalf("grpc.NewClient() error = %v", err)
			}
			defer conn.Close()
			client := testgrpc.NewTestServiceClient(conn)
			_, err = client.EmptyCall(callCtx(t), &testgrpc.Empty{})
			if got := status.Code(err); got != tt.wantEmpty {
				t.Errorf("EmptyCall code = %v (%v), want %v", got, err, tt.wantEmpty)
			}
			_, err = client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
			if got := status.Code(err); got != tt.wantUnary {
				t.Errorf("UnaryCall code = %v (%v), want %v", got, err, tt.wantUnary)
			}
		})
	}
}

func TestInsecureServerWarns(t *testing.T) {
	logger, logs := testLogger()
	srv, err := grpcserver.New(grpcserver.Config{Listener: bufconn.Listen(1 << 10), Logger: logger})
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	defer srv.Close()
	warnings := logs.records(t, "gRPC server is running WITHOUT TLS: traffic is plaintext and no caller can prove a service identity; never do this outside local experiments")
	if len(warnings) != 1 || warnings[0]["level"] != "WARN" {
		t.Errorf("insecure warnings = %v, want one WARN record", warnings)
	}
}

// TestReadyFromTheFirstHealthCheck checks that a server whose readiness check passes answers SERVING to
// the very first health check: the status is known before the server answers anything, so a probe or a
// client-side health check never sees a NOT_SERVING that only meant "not checked yet".
func TestReadyFromTheFirstHealthCheck(t *testing.T) {
	cfg := grpcserver.Config{
		Policy:            policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		ReadinessInterval: time.Hour, // only the first check can have run when the test asks
	}
	srv, conn := newBufServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
	// A check that takes a while, like a database ping on a cold connection: the status must wait for it.
	srv.AddReadiness(func(context.Context) error { time.Sleep(100 * time.Millisecond); return nil })
	serve(t, srv)
	for _, service := range []string{"", "grpc.testing.TestService"} {
		got, err := healthStatus(t, conn, service)
		if err != nil || got != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("first health check of %q = %v, %v; want SERVING", service, got, err)
		}
	}
}

// TestReadinessCheckOutlivesAShortInterval checks that a short ReadinessInterval does not cut a check
// short: a ping that takes 100 ms (a busy machine) under a 5 ms interval still passes, because a check is
// given at least MinReadinessTimeout. Before, its context ended with the interval and the service flapped
// to NOT_SERVING while its database was fine.
func TestReadinessCheckOutlivesAShortInterval(t *testing.T) {
	cfg := grpcserver.Config{
		Policy:            policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		ReadinessInterval: 5 * time.Millisecond,
	}
	srv, conn := newBufServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
	var left atomic.Int64 // the time the latest check had, from its start to its context's deadline
	srv.AddReadiness(func(ctx context.Context) error {
		deadline, ok := ctx.Deadline()
		if !ok {
			return errors.New("check without a deadline")
		}
		left.Store(int64(time.Until(deadline)))
		select {
		case <-time.After(100 * time.Millisecond):
			return nil
		case <-ctx.Done():
			return fmt.Errorf("test database unreachable: %w", ctx.Err())
		}
	})
	serve(t, srv)
	// The first poll ran before Serve answered anything, so the first answer is its verdict.
	if got, err := healthStatus(t, conn, ""); err != nil || got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health Check(\"\") = %v, %v; want SERVING", got, err)
	}
	if err := srv.Ready(t.Context()); err != nil {
		t.Errorf("Ready() after a 100 ms check under a 5 ms interval = %v, want nil", err)
	}
	// Half of it, not all of it: a loaded machine may pause the poll between the deadline and the check;
	// the interval alone would have left 5 ms.
	if got := time.Duration(left.Load()); got <= grpcserver.MinReadinessTimeout/2 || got > grpcserver.MinReadinessTimeout {
		t.Errorf("a check's context had %v left at its start, want about MinReadinessTimeout (%v)", got, grpcserver.MinReadinessTimeout)
	}
}

// reconnectService is a second service for the per-service health tests: it has no readiness check.
type reconnectService struct {
	testgrpc.UnimplementedReconnectServiceServer
}

func (reconnectService) Start(context.Context, *testgrpc.ReconnectParams) (*testgrpc.Empty, error) {
	return &testgrpc.Empty{}, nil
}

// TestReadinessPerService checks that a failing readiness check takes down only the service it names:
// that service reports NOT_SERVING, a neighbour without the dependency keeps SERVING and answering calls,
// the overall status and Ready report the failure, and everything recovers together.
func TestReadinessPerService(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	dbDown := errors.New("test database unreachable")
	cfg := grpcserver.Config{
		Policy: policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(),
			policyFor(&testgrpc.ReconnectService_ServiceDesc, auth.Public(), nil)),
		ReadinessInterval: 5 * time.Millisecond,
	}
	logs := &syncBuffer{}
	cfg.Logger = telemetry.NewLogger(logs, telemetry.LogOptions{Service: "lastmile"})
	srv, conn := newBufServer(t, cfg, func(s *grpc.Server) {
		testgrpc.RegisterTestServiceServer(s, &testService{})
		testgrpc.RegisterReconnectServiceServer(s, reconnectService{})
	})
	srv.AddReadiness(func(context.Context) error {
		if down.Load() {
			return dbDown
		}
		return nil
	}, "grpc.testing.TestService")
	serve(t, srv)

	want := func(wants map[string]healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for service, want := range wants {
			got, err := healthStatus(t, conn, service)
			if err != nil || got != want {
				t.Errorf("health Check(%q) = %v, %v; want %v", service, got, err, want)
			}
		}
	}
	// The first poll ran before Serve answered anything, so no waiting is needed.
	want(map[string]healthpb.HealthCheckResponse_ServingStatus{
		"grpc.testing.TestService":      healthpb.HealthCheckResponse_NOT_SERVING,
		"grpc.testing.ReconnectService": healthpb.HealthCheckResponse_SERVING,
		"":                              healthpb.HealthCheckResponse_NOT_SERVING,
	})
	if err := srv.Ready(t.Context()); !errors.Is(err, dbDown) {
		t.Errorf("Ready() = %v, want %v", err, dbDown)
	}
	if _, err := testgrpc.NewReconnectServiceClient(conn).Start(callCtx(t), &testgrpc.ReconnectParams{}); err != nil {
		t.Errorf("ReconnectService.Start while TestService is not ready: %v, want success", err)
	}

	down.Store(false)
	waitFor(t, "TestService to report SERVING", func() bool {
		got, err := healthStatus(t, conn, "grpc.testing.TestService")
		return err == nil && got == healthpb.HealthCheckResponse_SERVING
	})
	want(map[string]healthpb.HealthCheckResponse_ServingStatus{
		"grpc.testing.ReconnectService": healthpb.HealthCheckResponse_SERVING,
		"":                              healthpb.HealthCheckResponse_SERVING,
	})
	if err := srv.Ready(t.Context()); err != nil {
		t.Errorf("Ready() after recovery = %v, want nil", err)
	}
	// Each transition is logged once, naming the gRPC service under its own key beside the process's
	// "service" (a second "service" key would hide the process's from log tools).
	for msg, level := range map[string]string{"gRPC service not ready": "WARN", "gRPC service ready": "INFO"} {
		recs := logs.records(t, msg)
		if len(recs) != 1 {
			t.Errorf("%d %q lines, want 1; logs:\n%s", len(recs), msg, logs)
			continue
		}
		if got := recs[0]; got["level"] != level || got["service"] != "lastmile" || got["grpc_service"] != "grpc.testing.TestService" {
			t.Errorf("%q line = %v, want level %s, service lastmile, grpc_service grpc.testing.TestService", msg, got, level)
		}
	}
}

// TestDrainThenShutdown follows the steps a process takes: Drain takes the overall status down while
// every service keeps serving, then Shutdown takes the services down and Serve returns.
func TestDrainThenShutdown(t *testing.T) {
	cfg := grpcserver.Config{Policy: policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil)}
	srv, conn := newBufServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
	served := make(chan error, 1)
	go func() { served <- srv.Serve(t.Context()) }()
	waitFor(t, "the server to serve", func() bool {
		got, err := healthStatus(t, conn, "")
		return err == nil && got == healthpb.HealthCheckResponse_SERVING
	})

	srv.Drain()
	if got, err := healthStatus(t, conn, ""); err != nil || got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health Check(\"\") after Drain = %v, %v; want NOT_SERVING", got, err)
	}
	if got, err := healthStatus(t, conn, "grpc.testing.TestService"); err != nil || got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health Check(TestService) after Drain = %v, %v; want SERVING", got, err)
	}
	if _, err := testgrpc.NewTestServiceClient(conn).UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Errorf("UnaryCall while draining: %v, want success", err)
	}
	if err := srv.Ready(t.Context()); err == nil || err.Error() != "shutting down" {
		t.Errorf("Ready() after Drain = %v, want \"shutting down\"", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() = %v, want nil", err)
	}
	if err := receive(t, "Serve to return", served); err != nil {
		t.Errorf("Serve() = %v, want nil", err)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Errorf("second Shutdown() = %v, want nil", err)
	}
}

// A unary call that came without a deadline, or with a later one than the server's bound, ends with
// DeadlineExceeded at the bound: a caller is not held as long as a dependency hangs. Streams are not
// bounded by it.
func TestUnaryCallsAreBoundedByMaxUnaryTime(t *testing.T) {
	const bound = 200 * time.Millisecond
	svc := &testService{unary: func(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
		<-ctx.Done() // a dependency that never answers
		return nil, ctx.Err()
	}}
	cfg := grpcserver.Config{MaxUnaryTime: bound, Policy: policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil)}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	client := testgrpc.NewTestServiceClient(conn)

	// cancelled returns a context that a cancel ends after testTimeout (which would end a call with
	// Canceled), with a deadline further away when later is set.
	cancelled := func(later bool) context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		if later {
			ctx, cancel = context.WithTimeout(context.Background(), 2*testTimeout)
		}
		t.Cleanup(cancel)
		timer := time.AfterFunc(testTimeout, cancel)
		t.Cleanup(func() { timer.Stop() })
		return ctx
	}
	for _, later := range []bool{false, true} {
		if _, err := client.UnaryCall(cancelled(later), &testgrpc.SimpleRequest{}); status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("UnaryCall (a deadline later than the bound: %v): error = %v, want DeadlineExceeded from the server's bound", later, err)
		}
	}

	// A stream outlives the bound.
	stream, err := client.FullDuplexCall(cancelled(false))
	if err != nil {
		t.Fatalf("FullDuplexCall() error = %v", err)
	}
	time.Sleep(2 * bound)
	if err := stream.Send(&testgrpc.StreamingOutputCallRequest{}); err != nil {
		t.Fatalf("Send() after %v error = %v", 2*bound, err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Errorf("Recv() after %v error = %v, want the answer: streams are not bounded by MaxUnaryTime", 2*bound, err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("CloseSend() error = %v", err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Errorf("Recv() after CloseSend error = %v, want io.EOF", err)
	}
}
