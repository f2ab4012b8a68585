// Package grpctest serves gRPC in tests: over an in-memory bufconn listener, with a plaintext client
// connection, stopped and checked when the test ends, and with a fake authenticator that takes the
// caller's principal from request metadata, so that a test can call as any user or service without
// certificates or tokens.
//
// It is the one copy of these helpers; transport tests of every service and of the platform use it.
//
//	srv, conn := grpctest.Start(t, grpcserver.Config{Policy: pol, Authenticator: grpctest.HeaderAuthenticator{}},
//		func(s *grpc.Server) { routev1.RegisterRouteServiceServer(s, api) })
//	ctx := grpctest.CallAs(t.Context(), auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{auth.RoleCourier}})
package grpctest

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"lastmile/internal/platform/grpcserver"
)

// Timeout bounds how long the cleanup of a test waits for a server to stop.
const Timeout = 10 * time.Second

// bufSize is the in-memory listener's buffer: large enough for any message the tests send.
const bufSize = 1 << 20

// Listen returns a new in-memory listener.
func Listen() *bufconn.Listener { return bufconn.Listen(bufSize) }

// Dialer returns the dial option that reaches lis, for grpc.NewClient or grpcclient.Config.DialOptions
// (whose target is then any passthrough name, such as "passthrough:///bufconn").
func Dialer(lis *bufconn.Listener) grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })
}

// Dial returns a plaintext client connection to lis, with opts added, closed when the test ends.
func Dial(t testing.TB, lis *bufconn.Listener, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{Dialer(lis), grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	conn, err := grpc.NewClient("passthrough:///bufconn", opts...)
	if err != nil {
		t.Fatalf("grpc.NewClient(bufconn) = %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// ServeGRPC serves srv, a bare grpc-go server, on a new in-memory listener and returns a client connection
// to it. When the test ends it closes the connection, stops srv and reports an error if Serve fails or
// does not return within Timeout.
func ServeGRPC(t testing.TB, srv *grpc.Server) *grpc.ClientConn {
	t.Helper()
	lis := Listen()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	conn := Dial(t, lis)
	t.Cleanup(func() {
		// Cleanups run last-registered first: the server stops here, then Dial's cleanup closes the
		// connection.
		srv.Stop()
		select {
		case err := <-served:
			if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				t.Errorf("grpc.Server.Serve() = %v, want nil", err)
			}
		case <-time.After(Timeout):
			t.Errorf("grpc.Server.Serve did not return within %v of Stop", Timeout)
		}
	})
	return conn
}

// NewServer creates a grpcserver.Server from cfg on a new in-memory listener (cfg.Listener is replaced;
// a nil cfg.Logger discards), lets register add services, and returns it with a client connection. It
// does not serve: see Serve and Start.
func NewServer(t testing.TB, cfg grpcserver.Config, register func(*grpc.Server)) (*grpcserver.Server, *grpc.ClientConn) {
	t.Helper()
	lis := Listen()
	cfg.Listener = lis
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := grpcserver.New(cfg)
	if err != nil {
		t.Fatalf("grpcserver.New() = %v", err)
	}
	if register != nil {
		register(srv.GRPC())
	}
	return srv, Dial(t, lis)
}

// Serve runs srv.Serve until the test ends, then cancels it and reports an error if Serve does not
// return nil within Timeout.
func Serve(t testing.TB, srv *grpcserver.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("grpcserver.Server.Serve() = %v, want nil", err)
			}
		case <-time.After(Timeout):
			t.Errorf("grpcserver.Server.Serve did not return within %v of cancel", Timeout)
		}
	})
}

// Start is NewServer and Serve: a grpcserver.Server with the full interceptor chain, serving over an
// in-memory listener until the test ends, and a client connection to it.
func Start(t testing.TB, cfg grpcserver.Config, register func(*grpc.Server)) (*grpcserver.Server, *grpc.ClientConn) {
	t.Helper()
	srv, conn := NewServer(t, cfg, register)
	Serve(t, srv)
	return srv, conn
}
