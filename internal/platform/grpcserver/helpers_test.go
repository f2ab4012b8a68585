package grpcserver_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/telemetry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait of these tests.
const testTimeout = 10 * time.Second

// testService implements every call kind of grpc.testing.TestService. Handlers it does not override
// answer trivially.
type testService struct {
	testgrpc.UnimplementedTestServiceServer
	unary func(context.Context, *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error)
	// onCall, when set, runs first in every handler.
	onCall func(ctx context.Context)
}

func (s *testService) called(ctx context.Context) {
	if s.onCall != nil {
		s.onCall(ctx)
	}
}

func (s *testService) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	s.called(ctx)
	return &testgrpc.Empty{}, nil
}

func (s *testService) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	s.called(ctx)
	if s.unary != nil {
		return s.unary(ctx, req)
	}
	return &testgrpc.SimpleResponse{}, nil
}

func (s *testService) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	s.called(stream.Context())
	for range req.GetResponseParameters() {
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{}); err != nil {
			return err
		}
	}
	return nil
}

func (s *testService) StreamingInputCall(stream testgrpc.TestService_StreamingInputCallServer) error {
	s.called(stream.Context())
	var n int32
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: n})
		}
		if err != nil {
			return err
		}
		n += int32(len(req.GetPayload().GetBody()))
	}
}

func (s *testService) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	s.called(stream.Context())
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{}); err != nil {
			return err
		}
	}
}

// Full method names of the test service.
const (
	emptyCall  = "/grpc.testing.TestService/EmptyCall"
	unaryCall  = "/grpc.testing.TestService/UnaryCall"
	outputCall = "/grpc.testing.TestService/StreamingOutputCall"
	inputCall  = "/grpc.testing.TestService/StreamingInputCall"
	duplexCall = "/grpc.testing.TestService/FullDuplexCall"
)

// policyFor returns a policy giving every method of sd the rule r, then applying overrides.
func policyFor(sd *grpc.ServiceDesc, r auth.Rule, overrides auth.Policy) auth.Policy {
	p := auth.Policy{}
	for _, m := range sd.Methods {
		p["/"+sd.ServiceName+"/"+m.MethodName] = r
	}
	for _, m := range sd.Streams {
		p["/"+sd.ServiceName+"/"+m.StreamName] = r
	}
	for k, v := range overrides {
		p[k] = v
	}
	return p
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// records returns the JSON log records whose msg is msg.
func (b *syncBuffer) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(b.String()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// testLogger returns a debug-level JSON logger writing to a buffer.
func testLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return telemetry.NewLogger(buf, telemetry.LogOptions{Level: slog.LevelDebug}), buf
}

// startServer creates a server over bufconn from cfg, lets register add services, serves it until the
// test ends and returns it with a plaintext client connection.
func startServer(t *testing.T, cfg grpcserver.Config, register func(*grpc.Server)) (*grpcserver.Server, *grpc.ClientConn) {
	t.Helper()
	srv, conn := newBufServer(t, cfg, register)
	serve(t, srv)
	return srv, conn
}

// newBufServer is startServer without serving.
func newBufServer(t *testing.T, cfg grpcserver.Config, register func(*grpc.Server)) (*grpcserver.Server, *grpc.ClientConn) {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	cfg.Listener = lis
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	srv, err := grpcserver.New(cfg)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	if register != nil {
		register(srv.GRPC())
	}
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient() error = %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return srv, conn
}

// serve runs srv.Serve until the test ends and checks that it returns nil.
func serve(t *testing.T, srv *grpcserver.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve() = %v, want nil", err)
			}
		case <-time.After(testTimeout):
			t.Errorf("Serve did not return within %v of cancel", testTimeout)
		}
	})
}

// callCtx returns a context for one call, bounded by testTimeout, carrying the metadata pairs kv.
func callCtx(t *testing.T, kv ...string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	if len(kv) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, kv...)
	}
	return ctx
}

// headerAuthenticator makes test principals from metadata: "x-test-user: id" (with "x-test-roles: a,b")
// is a user, "x-test-service: name" a service, "x-test-via: proxy" an anonymous caller forwarded by an edge
// proxy, anything else anonymous.
type headerAuthenticator struct{}

func (headerAuthenticator) Authenticate(_ context.Context, md metadata.MD) (auth.Principal, error) {
	if v := md.Get("x-test-user"); len(v) == 1 {
		var roles []string
		if r := md.Get("x-test-roles"); len(r) == 1 {
			roles = strings.Split(r[0], ",")
		}
		return auth.Principal{Kind: auth.User, Subject: v[0], Roles: roles}, nil
	}
	if v := md.Get("x-test-service"); len(v) == 1 {
		return auth.Principal{Kind: auth.Service, Subject: v[0]}, nil
	}
	if v := md.Get("x-test-via"); len(v) == 1 {
		return auth.Principal{Via: v[0]}, nil
	}
	return auth.Principal{}, nil
}
