package grpcserver_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcserver/grpctest"
	"lastmile/internal/platform/telemetry"
	"lastmile/internal/platform/telemetry/logtest"
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

// syncBuffer is a log sink safe for concurrent writers, with the records of its JSON lines.
type syncBuffer struct{ logtest.Buffer }

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

// startServer, newBufServer and serve are the shared bufconn helpers: a server from a config over an
// in-memory listener with a client connection, served (startServer) or not yet (newBufServer, then serve)
// until the test ends.
var (
	startServer  = grpctest.Start
	newBufServer = grpctest.NewServer
	serve        = grpctest.Serve
)

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
// is a user, "x-test-service: name" a service, "x-test-via: proxy" sets Via (an anonymous caller forwarded
// by an edge proxy when alone), anything else anonymous.
type headerAuthenticator = grpctest.HeaderAuthenticator
