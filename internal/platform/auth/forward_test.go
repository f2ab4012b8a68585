package auth_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/tlsutil"
)

// serverCtx returns the context a handler sees: p authenticated from the incoming metadata md.
func serverCtx(p auth.Principal, md metadata.MD) context.Context {
	ctx := context.Background()
	if md != nil {
		ctx = metadata.NewIncomingContext(ctx, md)
	}
	return auth.WithPrincipal(ctx, p)
}

func TestTokenFrom(t *testing.T) {
	user := auth.Principal{Kind: auth.User, Subject: "u1"}
	tests := []struct {
		name   string
		ctx    context.Context
		want   string
		wantOK bool
	}{
		{"nothing", context.Background(), "", false},
		{"user authenticated by the request's token", serverCtx(user, bearer("tok")), "tok", true},
		{"user, lower-case scheme", serverCtx(user, metadata.Pairs("authorization", "bearer tok")), "tok", true},
		{"user without a token", serverCtx(user, nil), "", false},
		{"user with a malformed entry", serverCtx(user, metadata.Pairs("authorization", "Basic dXNlcjpwdw==")), "", false},
		{"user with two entries", serverCtx(user, metadata.Pairs("authorization", "Bearer a", "authorization", "Bearer b")), "", false},
		{"service", serverCtx(auth.Principal{Kind: auth.Service, Subject: "dispatch"}, bearer("tok")), "", false},
		{"anonymous", serverCtx(auth.Principal{}, bearer("tok")), "", false},
		{"WithToken", auth.WithToken(context.Background(), "given"), "given", true},
		{"WithToken wins", auth.WithToken(serverCtx(user, bearer("tok")), "given"), "given", true},
		{"WithToken empty", auth.WithToken(context.Background(), ""), "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := auth.TokenFrom(tt.ctx)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("TokenFrom() = %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestTokenForwarderMetadata(t *testing.T) {
	user := auth.Principal{Kind: auth.User, Subject: "u1"}
	tests := []struct {
		name string
		ctx  context.Context
		want map[string]string
	}{
		{"user token", serverCtx(user, bearer("tok")), map[string]string{"authorization": "Bearer tok"}},
		{"no token: the service calls as itself", serverCtx(auth.Principal{Kind: auth.Service, Subject: "dispatch"}, nil), nil},
		{"caller set its own", metadata.AppendToOutgoingContext(serverCtx(user, bearer("tok")), "authorization", "Bearer mine"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := auth.TokenForwarder{}.GetRequestMetadata(tt.ctx, "https://route.lastmile/")
			if err != nil {
				t.Fatalf("GetRequestMetadata() error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("GetRequestMetadata() mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if !(auth.TokenForwarder{}).RequireTransportSecurity() {
		t.Errorf("RequireTransportSecurity() = false, want true")
	}
}

// recordingHealth is a downstream server: it records the authorization metadata and the principal of
// each call.
type recordingHealth struct {
	healthpb.UnimplementedHealthServer
	mu         sync.Mutex
	auths      [][]string
	principals []auth.Principal
}

func (h *recordingHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.auths = append(h.auths, md.Get("authorization"))
	h.principals = append(h.principals, auth.FromContext(ctx))
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

// forwardingHealth is a middle server: its handler calls the downstream server with its own context, as
// a service handler acting for the user does.
type forwardingHealth struct {
	healthpb.UnimplementedHealthServer
	down healthpb.HealthClient
}

func (h *forwardingHealth) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	return h.down.Check(ctx, req)
}

// authenticating does what grpcserver's authentication stage does: Authenticate, then WithPrincipal.
func authenticating(a auth.Authenticator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		p, err := a.Authenticate(ctx, md)
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, apperr.MessageOf(err))
		}
		return handler(auth.WithPrincipal(ctx, p), req)
	}
}

// serveTLS serves srv on 127.0.0.1:0 until the test ends and returns its address.
func serveTLS(t *testing.T, srv *grpc.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			t.Errorf("Serve() error = %v", err)
		}
	})
	return lis.Addr().String()
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config, opts ...grpc.DialOption) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))...)
	if err != nil {
		t.Fatalf("NewClient(%s) error = %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}

// TestForwardTokenOverTLS runs client -> middle service "dispatch" -> downstream service over mTLS. The
// downstream server receives the user's bearer token unchanged and runs the call as that user, via
// dispatch; a call without a user token runs as dispatch itself.
func TestForwardTokenOverTLS(t *testing.T) {
	pki, err := tlsutil.EnsureDevPKI(t.TempDir(), nil, "dispatch")
	if err != nil {
		t.Fatalf("EnsureDevPKI() error = %v", err)
	}
	serverCert, serverKey := pki.ServerCert()
	serverTLS, err := tlsutil.ServerConfig(serverCert, serverKey, pki.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	dispatchCert, dispatchKey := pki.ClientCert("dispatch")
	dispatchTLS, err := tlsutil.ClientConfig(dispatchCert, dispatchKey, pki.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	appTLS, err := tlsutil.ClientConfig("", "", pki.CAFile()) // a courier app: no client certificate
	if err != nil {
		t.Fatal(err)
	}
	authn := &auth.ServiceAuthenticator{Verifier: fakeVerifier{}}

	down := &recordingHealth{}
	downSrv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)), grpc.UnaryInterceptor(authenticating(authn)))
	healthpb.RegisterHealthServer(downSrv, down)
	downAddr := serveTLS(t, downSrv)

	midSrv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)), grpc.UnaryInterceptor(authenticating(authn)))
	healthpb.RegisterHealthServer(midSrv, &forwardingHealth{down: dialTLS(t, downAddr, dispatchTLS, auth.ForwardToken())})
	midAddr := serveTLS(t, midSrv)

	app := dialTLS(t, midAddr, appTLS)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := app.Check(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer good"), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check(with token) error = %v", err)
	}
	if _, err := app.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check(without token) error = %v", err)
	}

	down.mu.Lock()
	defer down.mu.Unlock()
	if diff := cmp.Diff([][]string{{"Bearer good"}, nil}, down.auths); diff != "" {
		t.Errorf("authorization received downstream mismatch (-want +got):\n%s", diff)
	}
	want := []auth.Principal{
		{Kind: auth.User, Subject: "u1", Roles: []string{"ROLE_COURIER"}, Via: "dispatch"},
		{Kind: auth.Service, Subject: "dispatch"},
	}
	if diff := cmp.Diff(want, down.principals); diff != "" {
		t.Errorf("principals downstream mismatch (-want +got):\n%s", diff)
	}
}

func bufconnDialer(lis *bufconn.Listener) grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) })
}

// TestForwardTokenRefusesInsecureTransport checks that grpc-go enforces RequireTransportSecurity: a
// connection with insecure credentials cannot be created with ForwardToken, and a call carrying
// TokenForwarder over one fails before anything is sent.
func TestForwardTokenRefusesInsecureTransport(t *testing.T) {
	lis := bufconn.Listen(1 << 20)
	down := &recordingHealth{}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, down)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	defer func() {
		srv.Stop()
		<-done
	}()

	_, err := grpc.NewClient("passthrough:///bufnet", bufconnDialer(lis),
		grpc.WithTransportCredentials(insecure.NewCredentials()), auth.ForwardToken())
	const want = "grpc: the credentials require transport level security (use grpc.WithTransportCredentials() to set)"
	if err == nil || err.Error() != want {
		t.Errorf("NewClient(insecure, ForwardToken) error = %v, want %q", err, want)
	}

	conn, err := grpc.NewClient("passthrough:///bufnet", bufconnDialer(lis), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("NewClient(insecure) error = %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	userCtx := auth.WithToken(ctx, "secret-token")
	_, err = healthpb.NewHealthClient(conn).Check(userCtx, &healthpb.HealthCheckRequest{}, grpc.PerRPCCredentials(auth.TokenForwarder{}))
	const wantMsg = "transport: cannot send secure credentials on an insecure connection"
	if st := status.Convert(err); st.Code() != codes.Unauthenticated || st.Message() != wantMsg {
		t.Errorf("Check(insecure, TokenForwarder) error = %v, want code %v, message %q", err, codes.Unauthenticated, wantMsg)
	}
	down.mu.Lock()
	defer down.mu.Unlock()
	if len(down.auths) != 0 {
		t.Errorf("the server received %d calls, want none", len(down.auths))
	}
}
