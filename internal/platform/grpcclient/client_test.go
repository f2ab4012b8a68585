package grpcclient_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/grpcerr"
	"lastmile/internal/platform/grpcclient"
	"lastmile/internal/platform/grpcserver/grpctest"
	"lastmile/internal/platform/telemetry"
	"lastmile/internal/platform/tlsutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds every wait of these tests.
const testTimeout = 10 * time.Second

// server is a test backend: it counts calls and answers UnaryCall with reply.
type server struct {
	testgrpc.UnimplementedTestServiceServer
	id    string
	calls atomic.Int32
	// reply decides the outcome of the n-th UnaryCall (n from 1); nil answers OK.
	reply func(n int32) error
	// hang, when it returns true for the n-th UnaryCall, makes that call wait for its deadline without
	// answering, as a stuck backend would.
	hang func(n int32) bool

	mu   sync.Mutex
	seen []metadata.MD // incoming metadata of each call
	// deadlines records, per call, how long the handler had left (-1 when no deadline).
	deadlines []time.Duration
}

func (s *server) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	left := time.Duration(-1)
	if d, ok := ctx.Deadline(); ok {
		left = time.Until(d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen = append(s.seen, md)
	s.deadlines = append(s.deadlines, left)
}

func (s *server) last() (metadata.MD, time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[len(s.seen)-1], s.deadlines[len(s.deadlines)-1]
}

func (s *server) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	s.record(ctx)
	n := s.calls.Add(1)
	if s.hang != nil && s.hang(n) {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if s.reply != nil {
		if err := s.reply(n); err != nil {
			return nil, err
		}
	}
	return &testgrpc.SimpleResponse{ServerId: s.id}, nil
}

func (s *server) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	s.record(stream.Context())
	s.calls.Add(1)
	return nil
}

// startGRPC serves s on lis with a health service and returns the health server.
func startGRPC(t *testing.T, lis net.Listener, s *server, opts ...grpc.ServerOption) *health.Server {
	t.Helper()
	gs := grpc.NewServer(opts...)
	testgrpc.RegisterTestServiceServer(gs, s)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(gs, hs)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	return hs
}

// bufServer serves s over bufconn and returns dial options reaching it.
func bufServer(t *testing.T, s *server) []grpc.DialOption {
	t.Helper()
	lis := grpctest.Listen()
	startGRPC(t, lis, s)
	return []grpc.DialOption{grpctest.Dialer(lis)}
}

// tcpServer serves s on 127.0.0.1:0 and returns its address and health server.
func tcpServer(t *testing.T, s *server, opts ...grpc.ServerOption) (string, *health.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen() error = %v", err)
	}
	hs := startGRPC(t, lis, s, opts...)
	return lis.Addr().String(), hs
}

func newClient(t *testing.T, cfg grpcclient.Config) testgrpc.TestServiceClient {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	conn, err := grpcclient.New(cfg)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func unavailableUntil(okFrom int32) func(int32) error {
	return func(n int32) error {
		if n < okFrom {
			return status.Error(codes.Unavailable, "warming up")
		}
		return nil
	}
}

func always(code codes.Code) func(int32) error {
	return func(int32) error { return status.Error(code, "no") }
}

func TestRetriesUnavailable(t *testing.T) {
	s := &server{reply: unavailableUntil(3)}
	client := newClient(t, grpcclient.Config{Target: "passthrough:///retry", DialOptions: bufServer(t, s)})
	if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall() error = %v, want success on the third attempt", err)
	}
	if got := s.calls.Load(); got != 3 {
		t.Errorf("attempts = %d, want 3", got)
	}
}

func TestDoesNotRetryOtherCodes(t *testing.T) {
	for _, code := range []codes.Code{codes.InvalidArgument, codes.Internal, codes.DeadlineExceeded, codes.ResourceExhausted} {
		t.Run(code.String(), func(t *testing.T) {
			s := &server{reply: always(code)}
			client := newClient(t, grpcclient.Config{Target: "passthrough:///noretry", DialOptions: bufServer(t, s)})
			_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
			if got := status.Code(err); got != code {
				t.Fatalf("UnaryCall code = %v, want %v", got, code)
			}
			if got := s.calls.Load(); got != 1 {
				t.Errorf("attempts = %d, want 1", got)
			}
		})
	}
}

func TestBreakerOpensOnServerFailures(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := &server{reply: always(codes.Unavailable)}
	const target = "passthrough:///breaker"
	client := newClient(t, grpcclient.Config{
		Target:      target,
		MaxAttempts: 1,
		Breaker:     grpcclient.BreakerConfig{ConsecutiveFailures: 3, Timeout: time.Hour},
		Registerer:  reg,
		DialOptions: bufServer(t, s),
	})
	for range 3 {
		if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); status.Code(err) != codes.Unavailable {
			t.Fatalf("UnaryCall error = %v, want Unavailable from the server", err)
		}
	}
	_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
	st := status.Convert(err)
	if want := "circuit open for " + target; st.Code() != codes.Unavailable || st.Message() != want {
		t.Errorf("UnaryCall with an open breaker = %v %q, want Unavailable %q", st.Code(), st.Message(), want)
	}
	// Streams are refused too.
	stream, err := client.FullDuplexCall(callCtx(t))
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Errorf("FullDuplexCall with an open breaker error = %v, want Unavailable", err)
	}
	if got := s.calls.Load(); got != 3 {
		t.Errorf("calls that reached the server = %d, want 3", got)
	}
	if got := breakerState(t, reg, target); got != 2 {
		t.Errorf("lastmile_grpc_client_breaker_state{target=%q} = %v, want 2 (open)", target, got)
	}
}

// TestBreakerCountsOnlyServerFailures checks, code by code, whether one failure that the server answered
// opens a breaker that trips on the first failure: only Unavailable does. A handler's answer to one
// request, even Internal or a DeadlineExceeded of its own, says the peer is up.
func TestBreakerCountsOnlyServerFailures(t *testing.T) {
	tests := []struct {
		code     codes.Code
		wantOpen bool
	}{
		{codes.Unavailable, true},
		{codes.DeadlineExceeded, false},
		{codes.Internal, false},
		{codes.Unknown, false},
		{codes.DataLoss, false},
		{codes.InvalidArgument, false},
		{codes.NotFound, false},
		{codes.AlreadyExists, false},
		{codes.PermissionDenied, false},
		{codes.Unauthenticated, false},
		{codes.FailedPrecondition, false},
		{codes.Aborted, false},
		{codes.OutOfRange, false},
		{codes.ResourceExhausted, false},
		{codes.Unimplemented, false},
		{codes.Canceled, false},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			s := &server{reply: func(n int32) error {
				if n == 1 {
					return status.Error(tt.code, "first call fails")
				}
				return nil
			}}
			client := newClient(t, grpcclient.Config{
				Target:      "passthrough:///codes",
				MaxAttempts: 1,
				Breaker:     grpcclient.BreakerConfig{ConsecutiveFailures: 1, Timeout: time.Hour},
				DialOptions: bufServer(t, s),
			})
			if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); status.Code(err) != tt.code {
				t.Fatalf("first UnaryCall error = %v, want %v", err, tt.code)
			}
			_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
			open := status.Code(err) == codes.Unavailable && strings.HasPrefix(status.Convert(err).Message(), "circuit open")
			if open != tt.wantOpen {
				t.Errorf("after one %v: second call error = %v; breaker open = %v, want %v", tt.code, err, open, tt.wantOpen)
			}
		})
	}
}

// TestBreakerIgnoresAnsweredUnavailable: a handler that answers Unavailable because something the request
// needs is down (its database) marks the status (grpcerr.ToStatus); the service itself is up and serves
// other requests on the same connection, so fifty such answers leave the breaker closed.
func TestBreakerIgnoresAnsweredUnavailable(t *testing.T) {
	s := &server{reply: func(int32) error {
		return grpcerr.ToStatus(apperr.Errorf(apperr.Unavailable, "database unreachable")).Err()
	}}
	client := newClient(t, grpcclient.Config{
		Target:      "passthrough:///answered",
		MaxAttempts: 1,
		Breaker:     grpcclient.BreakerConfig{ConsecutiveFailures: 3, Timeout: time.Hour},
		DialOptions: bufServer(t, s),
	})
	for i := range 50 {
		_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
		if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "database unreachable" {
			t.Fatalf("call %d: error = %v, want the handler's Unavailable %q (breaker closed)", i+1, err, "database unreachable")
		}
	}
	if got := s.calls.Load(); got != 50 {
		t.Errorf("calls that reached the server = %d, want 50", got)
	}
}

// TestBreakerOpensOnUnansweredDeadline checks that a backend that does not answer within a normal call's
// deadline (here the connection's default deadline) counts as a failure: one such call opens a breaker
// that trips on the first failure.
func TestBreakerOpensOnUnansweredDeadline(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := &server{hang: func(n int32) bool { return n == 1 }}
	const target = "passthrough:///unanswered"
	client := newClient(t, grpcclient.Config{
		Target:      target,
		Timeout:     300 * time.Millisecond,
		MaxAttempts: 1,
		Breaker:     grpcclient.BreakerConfig{ConsecutiveFailures: 1, Timeout: time.Hour},
		Registerer:  reg,
		DialOptions: bufServer(t, s),
	})
	if _, err := client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{}); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("UnaryCall to a hanging server = %v, want DeadlineExceeded", err)
	}
	_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
	st := status.Convert(err)
	if want := "circuit open for " + target; st.Code() != codes.Unavailable || st.Message() != want {
		t.Errorf("UnaryCall after an unanswered deadline = %v %q, want Unavailable %q", st.Code(), st.Message(), want)
	}
	if got := breakerState(t, reg, target); got != 2 {
		t.Errorf("lastmile_grpc_client_breaker_state{target=%q} = %v, want 2 (open)", target, got)
	}
}

// TestBreakerIgnoresDeadlinesShorterThanNormal checks that a caller who picks a deadline shorter than a
// normal call's (a REST client's "Grpc-Timeout: 200m" on a call that hashes a password) cannot open the
// breaker, however often its calls run out of time.
func TestBreakerIgnoresDeadlinesShorterThanNormal(t *testing.T) {
	reg := prometheus.NewRegistry()
	var hang atomic.Bool
	s := &server{hang: func(int32) bool { return hang.Load() }}
	const target = "passthrough:///short-deadlines"
	client := newClient(t, grpcclient.Config{
		Target:      target,
		MaxAttempts: 1,
		Breaker:     grpcclient.BreakerConfig{ConsecutiveFailures: 1, Timeout: time.Hour},
		Registerer:  reg,
		DialOptions: bufServer(t, s),
	})
	// Connected first, so that the short deadlines below are spent waiting for the server, not for the
	// connection (which a loaded machine may take longer than 200 ms to make).
	if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("first UnaryCall = %v, want success", err)
	}
	hang.Store(true)
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*grpcclient.MinCountedDeadline)
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		cancel()
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("UnaryCall #%d with a 200ms deadline = %v, want DeadlineExceeded from the hanging server", i+1, err)
		}
	}
	hang.Store(false)
	if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Errorf("UnaryCall after 5 short deadlines ran out = %v, want success (breaker closed)", err)
	}
	if got := s.calls.Load(); got != 7 {
		t.Errorf("calls that reached the server = %d, want 7", got)
	}
	if got := breakerOpens(t, reg, target); got != 0 {
		t.Errorf("lastmile_grpc_client_breaker_opens_total = %v, want 0", got)
	}
}

// TestBreakerOnlyUnavailableOpens is issue 8's repro at the breaker: fifty Internal answers in a row (a
// request that makes a handler fail, sent by one caller) leave the default breaker closed and every
// call reaching the server, while five Unavailable in a row open it.
func TestBreakerOnlyUnavailableOpens(t *testing.T) {
	reg := prometheus.NewRegistry()
	var unavailable atomic.Bool
	s := &server{reply: func(int32) error {
		if unavailable.Load() {
			return status.Error(codes.Unavailable, "database down")
		}
		return status.Error(codes.Internal, "handler bug")
	}}
	const target = "passthrough:///internal-vs-unavailable"
	client := newClient(t, grpcclient.Config{
		Target:      target,
		MaxAttempts: 1,
		Breaker:     grpcclient.BreakerConfig{Timeout: time.Hour},
		Registerer:  reg,
		DialOptions: bufServer(t, s),
	})
	for i := range 50 {
		if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); status.Code(err) != codes.Internal {
			t.Fatalf("UnaryCall #%d = %v, want Internal from the server", i+1, err)
		}
	}
	if got := s.calls.Load(); got != 50 {
		t.Errorf("calls that reached the server = %d, want 50", got)
	}
	if got := breakerState(t, reg, target); got != 0 {
		t.Fatalf("breaker state after 50 Internal answers = %v, want 0 (closed)", got)
	}
	if got := breakerOpens(t, reg, target); got != 0 {
		t.Errorf("lastmile_grpc_client_breaker_opens_total after 50 Internal answers = %v, want 0", got)
	}

	unavailable.Store(true)
	for i := range grpcclient.DefaultBreakerConsecutiveFailures {
		if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); status.Code(err) != codes.Unavailable {
			t.Fatalf("UnaryCall #%d = %v, want Unavailable from the server", i+1, err)
		}
	}
	_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
	if want := "circuit open for " + target; status.Convert(err).Message() != want {
		t.Errorf("UnaryCall after %d Unavailable = %v, want Unavailable %q", grpcclient.DefaultBreakerConsecutiveFailures, err, want)
	}
	if got := s.calls.Load(); got != 50+grpcclient.DefaultBreakerConsecutiveFailures {
		t.Errorf("calls that reached the server = %d, want %d", got, 50+grpcclient.DefaultBreakerConsecutiveFailures)
	}
	if got := breakerState(t, reg, target); got != 2 {
		t.Errorf("breaker state after %d Unavailable = %v, want 2 (open)", grpcclient.DefaultBreakerConsecutiveFailures, got)
	}
	if got := breakerOpens(t, reg, target); got != 1 {
		t.Errorf("lastmile_grpc_client_breaker_opens_total = %v, want 1", got)
	}
}

func TestBreakerIgnoresCallerErrors(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := &server{reply: always(codes.InvalidArgument)}
	const target = "passthrough:///caller-errors"
	client := newClient(t, grpcclient.Config{
		Target:      target,
		Breaker:     grpcclient.BreakerConfig{ConsecutiveFailures: 3, Timeout: time.Hour},
		Registerer:  reg,
		DialOptions: bufServer(t, s),
	})
	for i := range 6 {
		if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("UnaryCall #%d error = %v, want InvalidArgument from the server", i+1, err)
		}
	}
	if got := s.calls.Load(); got != 6 {
		t.Errorf("calls that reached the server = %d, want 6", got)
	}
	if got := breakerState(t, reg, target); got != 0 {
		t.Errorf("lastmile_grpc_client_breaker_state{target=%q} = %v, want 0 (closed)", target, got)
	}
}

// breakerState reads lastmile_grpc_client_breaker_state for target.
func breakerState(t *testing.T, reg *prometheus.Registry, target string) float64 {
	t.Helper()
	return targetMetric(t, reg, "lastmile_grpc_client_breaker_state", target).GetGauge().GetValue()
}

// breakerOpens reads lastmile_grpc_client_breaker_opens_total for target.
func breakerOpens(t *testing.T, reg *prometheus.Registry, target string) float64 {
	t.Helper()
	return targetMetric(t, reg, "lastmile_grpc_client_breaker_opens_total", target).GetCounter().GetValue()
}

// targetMetric returns the sample of the metric name whose target label is target.
func targetMetric(t *testing.T, reg *prometheus.Registry, name, target string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "target" && l.GetValue() == target {
					return m
				}
			}
		}
	}
	t.Fatalf("no %s for target %q", name, target)
	return nil
}

func TestDefaultDeadline(t *testing.T) {
	s := &server{}
	client := newClient(t, grpcclient.Config{Target: "passthrough:///deadline", Timeout: 2 * time.Second, DialOptions: bufServer(t, s)})

	if _, err := client.UnaryCall(context.Background(), &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall() error = %v", err)
	}
	if _, left := s.last(); left <= 0 || left > 2*time.Second {
		t.Errorf("unary call without a deadline reached the server with %v left, want a deadline of at most 2s", left)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall() error = %v", err)
	}
	if _, left := s.last(); left <= 2*time.Second {
		t.Errorf("unary call with a 1h deadline reached the server with %v left, want the caller's deadline kept", left)
	}

	stream, err := client.FullDuplexCall(context.Background())
	if err != nil {
		t.Fatalf("FullDuplexCall() error = %v", err)
	}
	if _, err := stream.Recv(); err == nil {
		t.Fatalf("FullDuplexCall Recv() = nil error, want EOF")
	}
	if _, left := s.last(); left != -1 {
		t.Errorf("stream reached the server with a deadline (%v left), want none", left)
	}
}

func TestPropagatesRequestID(t *testing.T) {
	s := &server{}
	client := newClient(t, grpcclient.Config{Target: "passthrough:///rid", DialOptions: bufServer(t, s)})
	ctx := telemetry.WithRequestID(callCtx(t), "rid-42")

	if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall() error = %v", err)
	}
	if md, _ := s.last(); !cmp.Equal(md.Get("x-request-id"), []string{"rid-42"}) {
		t.Errorf("unary x-request-id = %q, want [rid-42]", md.Get("x-request-id"))
	}
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		t.Fatalf("FullDuplexCall() error = %v", err)
	}
	stream.Recv()
	if md, _ := s.last(); !cmp.Equal(md.Get("x-request-id"), []string{"rid-42"}) {
		t.Errorf("stream x-request-id = %q, want [rid-42]", md.Get("x-request-id"))
	}
	// An id the caller set explicitly wins.
	explicit := metadata.AppendToOutgoingContext(ctx, "x-request-id", "mine")
	if _, err := client.UnaryCall(explicit, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("UnaryCall() error = %v", err)
	}
	if md, _ := s.last(); !cmp.Equal(md.Get("x-request-id"), []string{"mine"}) {
		t.Errorf("explicit x-request-id = %q, want [mine]", md.Get("x-request-id"))
	}
}

// serverIDs calls n times and returns how many calls each server answered.
func serverIDs(t *testing.T, client testgrpc.TestServiceClient, n int) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		resp, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
		if err != nil {
			t.Fatalf("UnaryCall() error = %v", err)
		}
		got[resp.GetServerId()]++
	}
	return got
}

// waitBothServe calls until both servers a and b answered, or fails after testTimeout: round robin only
// spreads calls over backends once their connections are ready.
func waitBothServe(t *testing.T, client testgrpc.TestServiceClient) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	seen := map[string]bool{}
	for !seen["a"] || !seen["b"] {
		if time.Now().After(deadline) {
			t.Fatalf("servers that answered = %v, want a and b", seen)
		}
		resp, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
		if err != nil {
			t.Fatalf("UnaryCall() error = %v", err)
		}
		seen[resp.GetServerId()] = true
	}
}

func TestStaticListRoundRobin(t *testing.T) {
	a, b := &server{id: "a"}, &server{id: "b"}
	addrA, _ := tcpServer(t, a)
	addrB, _ := tcpServer(t, b)
	client := newClient(t, grpcclient.Config{Target: addrA + ", " + addrB})
	waitBothServe(t, client)
	// Once both are ready, round robin alternates.
	if got, want := serverIDs(t, client, 10), map[string]int{"a": 5, "b": 5}; !cmp.Equal(got, want) {
		t.Errorf("calls per server = %v, want %v", got, want)
	}
}

// TestTargetForOutsideClients checks that a client dialing with Target's target and option reaches every
// replica of a static list (with round robin, as the simulator dials), and that Target refuses what New does.
func TestTargetForOutsideClients(t *testing.T) {
	a, b := &server{id: "a"}, &server{id: "b"}
	addrA, _ := tcpServer(t, a)
	addrB, _ := tcpServer(t, b)
	target, resolve, err := grpcclient.Target(addrA + "," + addrB)
	if err != nil || target != "static:///"+addrA+","+addrB {
		t.Fatalf("Target(list) = %q, %v; want static:///%s,%s", target, err, addrA, addrB)
	}
	conn, err := grpc.NewClient(target, resolve, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`))
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	waitBothServe(t, testgrpc.NewTestServiceClient(conn))
	for _, addr := range []string{"", "dispatch", "h1:1,no-port"} {
		if _, _, err := grpcclient.Target(addr); err == nil {
			t.Errorf("Target(%q) = nil error, want one", addr)
		}
	}
}

func TestClientSideHealthChecking(t *testing.T) {
	const service = "grpc.testing.TestService"
	a, b := &server{id: "a"}, &server{id: "b"}
	addrA, healthA := tcpServer(t, a)
	addrB, healthB := tcpServer(t, b)
	healthA.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	healthB.SetServingStatus(service, healthpb.HealthCheckResponse_NOT_SERVING)
	client := newClient(t, grpcclient.Config{Target: "static:///" + addrA + "," + addrB, ServiceName: service})

	if got, want := serverIDs(t, client, 6), map[string]int{"a": 6}; !cmp.Equal(got, want) {
		t.Errorf("calls per server with b NOT_SERVING = %v, want %v", got, want)
	}
	healthB.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	waitBothServe(t, client)
}

func TestTLSStaticList(t *testing.T) {
	pki, err := tlsutil.EnsureDevPKI(t.TempDir(), nil)
	if err != nil {
		t.Fatalf("EnsureDevPKI() error = %v", err)
	}
	certFile, keyFile := pki.ServerCert()
	serverTLS, err := tlsutil.ServerConfig(certFile, keyFile, pki.CAFile())
	if err != nil {
		t.Fatalf("ServerConfig() error = %v", err)
	}
	clientTLS, err := tlsutil.ClientConfig("", "", pki.CAFile())
	if err != nil {
		t.Fatalf("ClientConfig() error = %v", err)
	}
	a, b := &server{id: "a"}, &server{id: "b"}
	addrA, _ := tcpServer(t, a, grpc.Creds(credentials.NewTLS(serverTLS)))
	addrB, _ := tcpServer(t, b, grpc.Creds(credentials.NewTLS(serverTLS)))
	// Each address is checked against the server certificate under its own host name: the list as a
	// whole is no name at all.
	client := newClient(t, grpcclient.Config{Target: addrA + "," + addrB, TLS: clientTLS})
	waitBothServe(t, client)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := &server{}
	opts := bufServer(t, s)
	// Two connections on one registry share the collectors.
	first := newClient(t, grpcclient.Config{Target: "passthrough:///m1", Registerer: reg, DialOptions: opts})
	second := newClient(t, grpcclient.Config{Target: "passthrough:///m2", Registerer: reg, DialOptions: opts})
	for _, c := range []testgrpc.TestServiceClient{first, second} {
		if _, err := c.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
			t.Fatalf("UnaryCall() error = %v", err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	var handled float64
	names := map[string]bool{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetName() != "grpc_client_handled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			handled += m.GetCounter().GetValue()
		}
	}
	if handled != 2 {
		t.Errorf("grpc_client_handled_total = %v, want 2", handled)
	}
	for _, name := range []string{"grpc_client_handling_seconds", "lastmile_grpc_client_breaker_state"} {
		if !names[name] {
			t.Errorf("metric %s not registered", name)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []grpcclient.Config{
		{},
		{Target: "no-port"},
		{Target: "h1:1,no-port"},
		{Target: "static:///h1:1,"},
		{Target: "h:1", MaxAttempts: 6},
		{Target: "h:1", MaxAttempts: -1},
		{Target: "h:1", Timeout: -time.Second},
		{Target: "h:1", Breaker: grpcclient.BreakerConfig{CountedDeadline: -time.Second}},
	}
	for _, cfg := range tests {
		cfg.Logger = slog.New(slog.DiscardHandler)
		if conn, err := grpcclient.New(cfg); err == nil {
			conn.Close()
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
}

// TestBreakerIgnoresCallersTinyDeadlines checks that callers cannot open the breaker for everyone by
// sending calls with deadlines too short to mean anything (a REST client's "Grpc-Timeout: 1n") or by
// cancelling them (TestBreakerOpensOnUnansweredDeadline checks that a reasonable deadline still counts).
func TestBreakerIgnoresCallersTinyDeadlines(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := &server{}
	const target = "passthrough:///tiny-deadlines"
	client := newClient(t, grpcclient.Config{
		Target:      target,
		MaxAttempts: 1,
		Breaker:     grpcclient.BreakerConfig{ConsecutiveFailures: 2, Timeout: time.Hour},
		Registerer:  reg,
		DialOptions: bufServer(t, s),
	})
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
		_, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		cancel()
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("UnaryCall #%d with a 1ns deadline = %v, want DeadlineExceeded", i+1, err)
		}
		ctx, cancel = context.WithCancel(context.Background())
		cancel()
		if _, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{}); status.Code(err) != codes.Canceled {
			t.Fatalf("UnaryCall #%d with a cancelled context = %v, want Canceled", i+1, err)
		}
	}
	if got := breakerState(t, reg, target); got != 0 {
		t.Errorf("breaker state after 10 caller-side failures = %v, want 0 (closed)", got)
	}
	if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); err != nil {
		t.Errorf("UnaryCall with a normal deadline = %v, want success (breaker closed)", err)
	}
}

// TestBreakerClosesWhenHealthReturns reproduces a database outage behind a health-checked connection:
// while the service reports NOT_SERVING, calls fail with Unavailable and open the breaker; once it reports
// SERVING again, the connection becomes READY and the breaker closes at once instead of refusing calls
// until its (here hour-long) timeout.
func TestBreakerClosesWhenHealthReturns(t *testing.T) {
	const service = "grpc.testing.TestService"
	reg := prometheus.NewRegistry()
	s := &server{id: "a"}
	addr, hs := tcpServer(t, s)
	hs.SetServingStatus(service, healthpb.HealthCheckResponse_NOT_SERVING)
	client := newClient(t, grpcclient.Config{
		Target:      addr,
		ServiceName: service,
		MaxAttempts: 1,
		Breaker:     grpcclient.BreakerConfig{ConsecutiveFailures: 3, Timeout: time.Hour},
		Registerer:  reg,
	})
	for i := range 3 {
		if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); status.Code(err) != codes.Unavailable {
			t.Fatalf("call %d while NOT_SERVING: %v, want Unavailable", i, err)
		}
	}
	if got := breakerState(t, reg, addr); got != 2 {
		t.Fatalf("breaker state after 3 failures = %v, want 2 (open)", got)
	}

	hs.SetServingStatus(service, healthpb.HealthCheckResponse_SERVING)
	deadline := time.Now().Add(testTimeout)
	for {
		_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("UnaryCall still fails %v after the service reported SERVING, want success: %v", testTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := breakerState(t, reg, addr); got != 0 {
		t.Errorf("breaker state after recovery = %v, want 0 (closed)", got)
	}
	if got := s.calls.Load(); got != 1 {
		t.Errorf("calls that reached the server = %d, want 1 (none while NOT_SERVING)", got)
	}
}

// TestBreakerClosesWhenTheServerComesBack: calls answered Unavailable over a READY connection open the
// breaker, and it stays open while the connection stays READY; when the server restarts, the connection
// leaves READY and reaches the new server, and that READY closes the breaker (its timeout is an hour).
func TestBreakerClosesWhenTheServerComesBack(t *testing.T) {
	reg := prometheus.NewRegistry()
	var lis atomic.Pointer[bufconn.Listener]
	serve := func(s *server) *grpc.Server {
		l := grpctest.Listen()
		lis.Store(l)
		gs := grpc.NewServer()
		testgrpc.RegisterTestServiceServer(gs, s)
		go gs.Serve(l)
		return gs
	}
	first := serve(&server{id: "first", reply: always(codes.Unavailable)})
	defer first.Stop()
	const target = "passthrough:///comes-back"
	client := newClient(t, grpcclient.Config{
		Target:      target,
		MaxAttempts: 1,
		Breaker:     grpcclient.BreakerConfig{ConsecutiveFailures: 2, Timeout: time.Hour},
		Registerer:  reg,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return lis.Load().DialContext(ctx)
		})},
	})
	for i := range 2 {
		if _, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{}); status.Code(err) != codes.Unavailable {
			t.Fatalf("UnaryCall #%d = %v, want Unavailable from the server", i+1, err)
		}
	}
	_, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
	if want := "circuit open for " + target; status.Convert(err).Message() != want {
		t.Fatalf("UnaryCall after 2 Unavailable = %v, want Unavailable %q", err, want)
	}
	if got := breakerState(t, reg, target); got != 2 {
		t.Fatalf("breaker state = %v, want 2 (open)", got)
	}

	second := serve(&server{id: "second"})
	defer second.Stop()
	first.Stop()
	deadline := time.Now().Add(testTimeout) // a hang guard: the breaker's own timeout is an hour
	for {
		resp, err := client.UnaryCall(callCtx(t), &testgrpc.SimpleRequest{})
		if err == nil {
			if resp.GetServerId() != "second" {
				t.Fatalf("UnaryCall answered by %q, want second", resp.GetServerId())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("UnaryCall still fails %v after the server restarted: %v", testTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := breakerState(t, reg, target); got != 0 {
		t.Errorf("breaker state after the server came back = %v, want 0 (closed)", got)
	}
}

// TestReconnectsSoonAfterALongOutage: a peer that was down for a while is reconnected to within
// seconds of its return. The dialer refuses 8 attempts; with grpc-go's default backoff (1 s growing
// by 1.6 up to 2 min) the 9th would come after about 70 s (at least 56 s with its jitter), after the
// wait below; with reconnectMaxDelay (5 s) after about 29 s.
func TestReconnectsSoonAfterALongOutage(t *testing.T) {
	lis := grpctest.Listen()
	gs := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(gs, &server{id: "back"})
	go gs.Serve(lis)
	defer gs.Stop()
	var attempts atomic.Int32
	client := newClient(t, grpcclient.Config{
		Target:      "passthrough:///down-then-back",
		MaxAttempts: 1,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			if attempts.Add(1) <= 8 {
				return nil, errors.New("connection refused (the peer is down)")
			}
			return lis.DialContext(ctx)
		})},
	})
	deadline := time.Now().Add(45 * time.Second) // a hang guard, below the default backoff's 56 s
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := client.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		cancel()
		if err == nil {
			if resp.GetServerId() != "back" {
				t.Fatalf("UnaryCall answered by %q, want back", resp.GetServerId())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("UnaryCall still fails after %d connection attempts: %v", attempts.Load(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := attempts.Load(); got != 9 {
		t.Errorf("connection attempts = %d, want 9 (8 refused, then the one that connected)", got)
	}
}
