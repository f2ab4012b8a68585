package grpcserver_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/grpctest"
)

// asUser returns a call context for user id.
func asUser(t *testing.T, id string) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(grpctest.CallAs(callCtx(t), auth.Principal{Kind: auth.User, Subject: id}))
	t.Cleanup(cancel)
	return ctx
}

// openDuplex opens a FullDuplexCall stream and proves it open: its handler echoed one message.
func openDuplex(ctx context.Context, client testgrpc.TestServiceClient) (testgrpc.TestService_FullDuplexCallClient, error) {
	stream, err := client.FullDuplexCall(ctx)
	if err != nil {
		return nil, err
	}
	// A refused stream may already be closed when Send runs; Recv then reports its status.
	if err := stream.Send(&testgrpc.StreamingOutputCallRequest{}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if _, err := stream.Recv(); err != nil {
		return nil, err
	}
	return stream, nil
}

// closeDuplex half-closes stream and waits for its end. When the client has seen the status, the server
// has released the stream's slot: the stage returns before the status is written.
func closeDuplex(t *testing.T, stream testgrpc.TestService_FullDuplexCallClient) {
	t.Helper()
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("CloseSend() = %v", err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Recv() after CloseSend = %v, want EOF", err)
	}
}

// wantStatus fails unless err is a status with code and message.
func wantStatus(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != code || st.Message() != msg {
		t.Fatalf("%s = %v, want %v %q", what, err, code, msg)
	}
}

func TestStreamLimitPerCallerAndTotal(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := grpcserver.Config{
		Policy:        policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Authenticator: headerAuthenticator{},
		Registerer:    reg,
		Streams:       map[string]grpcserver.StreamLimit{duplexCall: {PerCaller: 2, Total: 3}},
	}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
	client := testgrpc.NewTestServiceClient(conn)

	var ofA []testgrpc.TestService_FullDuplexCallClient
	for i := range 2 {
		s, err := openDuplex(asUser(t, "a"), client)
		if err != nil {
			t.Fatalf("stream %d of caller a: %v", i+1, err)
		}
		ofA = append(ofA, s)
	}
	_, err := openDuplex(asUser(t, "a"), client)
	wantStatus(t, "stream 3 of caller a", err, codes.ResourceExhausted, "too many open streams of FullDuplexCall: at most 2 per caller")

	// Another caller has a budget of its own, up to the total.
	ofB, err := openDuplex(asUser(t, "b"), client)
	if err != nil {
		t.Fatalf("stream 1 of caller b: %v", err)
	}
	if got := openStreams(t, reg, duplexCall); got != 3 {
		t.Errorf("open streams gauge = %v, want 3", got)
	}
	_, err = openDuplex(asUser(t, "c"), client)
	wantStatus(t, "stream 1 of caller c, over the total", err, codes.ResourceExhausted, "too many open streams of FullDuplexCall; try again later")

	// A closed stream frees its slot, for its caller and in the total.
	closeDuplex(t, ofA[0])
	again, err := openDuplex(asUser(t, "a"), client)
	if err != nil {
		t.Fatalf("stream of caller a after closing one: %v", err)
	}
	closeDuplex(t, ofB)
	fromC, err := openDuplex(asUser(t, "c"), client)
	if err != nil {
		t.Fatalf("stream of caller c after b closed its own: %v", err)
	}

	// Other methods are not counted against this one.
	if _, err := client.UnaryCall(asUser(t, "a"), &testgrpc.SimpleRequest{}); err != nil {
		t.Errorf("UnaryCall by a with its streams at the cap: %v", err)
	}
	for _, s := range []testgrpc.TestService_FullDuplexCallClient{ofA[1], again, fromC} {
		closeDuplex(t, s)
	}
	if got := openStreams(t, reg, duplexCall); got != 0 {
		t.Errorf("open streams gauge after closing all = %v, want 0", got)
	}
	refusals := metricValues(t, reg, "lastmile_grpc_server_stream_refusals_total", "cap")
	if refusals["caller"] != 1 || refusals["total"] != 1 {
		t.Errorf("refusals by cap = %v, want caller 1, total 1", refusals)
	}
}

func TestStreamLimitDefaultsBoundEveryStream(t *testing.T) {
	cfg := grpcserver.Config{
		Policy:        policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Authenticator: headerAuthenticator{},
	}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
	client := testgrpc.NewTestServiceClient(conn)
	var open []testgrpc.TestService_FullDuplexCallClient
	for i := range grpcserver.DefaultStreamsPerCaller {
		s, err := openDuplex(asUser(t, "a"), client)
		if err != nil {
			t.Fatalf("stream %d of an unconfigured method: %v", i+1, err)
		}
		open = append(open, s)
	}
	_, err := openDuplex(asUser(t, "a"), client)
	wantStatus(t, "one stream over the default", err, codes.ResourceExhausted, "too many open streams of FullDuplexCall: at most 16 per caller")
	for _, s := range open {
		closeDuplex(t, s)
	}
}

func TestStreamLimitAnonymousCallersByAddress(t *testing.T) {
	cfg := grpcserver.Config{
		Policy:        policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Authenticator: headerAuthenticator{},
		Streams:       map[string]grpcserver.StreamLimit{duplexCall: {PerCaller: 1}},
	}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
	client := testgrpc.NewTestServiceClient(conn)
	first, err := openDuplex(callCtx(t), client)
	if err != nil {
		t.Fatalf("first anonymous stream: %v", err)
	}
	// Over bufconn every anonymous caller has the same address.
	_, err = openDuplex(callCtx(t), client)
	wantStatus(t, "second anonymous stream from the same address", err, codes.ResourceExhausted, "too many open streams of FullDuplexCall: at most 1 per caller")
	closeDuplex(t, first)
}

func TestStreamLimitIdleClientStream(t *testing.T) {
	clock := grpcserver.NewFakeClock()
	started := make(chan struct{}, 1)
	reg := prometheus.NewRegistry()
	cfg := grpcserver.Config{
		Policy:     policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Registerer: reg,
		Streams:    map[string]grpcserver.StreamLimit{inputCall: {Idle: time.Minute}},
	}
	grpcserver.UseClock(&cfg, clock)
	svc := &testService{onCall: func(context.Context) { started <- struct{}{} }}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	client := testgrpc.NewTestServiceClient(conn)

	stream, err := client.StreamingInputCall(callCtx(t))
	if err != nil {
		t.Fatalf("StreamingInputCall() = %v", err)
	}
	<-started // the stream's idle timer is armed before its handler runs
	clock.Advance(time.Minute)
	_, err = stream.CloseAndRecv()
	wantStatus(t, "a client stream that never sent, after its idle time", err, codes.DeadlineExceeded, "stream idle: no message from the client for 1m0s")
	if got := metricValues(t, reg, "lastmile_grpc_server_streams_idle_closed_total", "grpc_method")[inputCall]; got != 1 {
		t.Errorf("idle closures of %s = %v, want 1", inputCall, got)
	}
}

func TestStreamLimitIdleCountsFromTheLastMessage(t *testing.T) {
	clock := grpcserver.NewFakeClock()
	cfg := grpcserver.Config{
		Policy:  policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Streams: map[string]grpcserver.StreamLimit{duplexCall: {Idle: time.Minute}},
	}
	grpcserver.UseClock(&cfg, clock)
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
	client := testgrpc.NewTestServiceClient(conn)

	stream, err := client.FullDuplexCall(callCtx(t))
	if err != nil {
		t.Fatalf("FullDuplexCall() = %v", err)
	}
	echo := func(what string) {
		t.Helper()
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{}); err != nil {
			t.Fatalf("Send() %s = %v", what, err)
		}
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("Recv() %s = %v", what, err)
		}
	}
	echo("at the start") // the handler received it: the stream's timer is armed
	clock.Advance(40 * time.Second)
	echo("after 40s")
	// A minute after the start, but 40s after the last message: the stream stays open.
	clock.Advance(40 * time.Second)
	echo("after 80s, 40s after the last message")
	clock.Advance(time.Minute)
	_, err = stream.Recv()
	wantStatus(t, "Recv() a minute after the last message", err, codes.DeadlineExceeded, "stream idle: no message from the client for 1m0s")
}

// listener is a FullDuplexCall handler in the manner of a subscription: it confirms each message, keeps
// the stream open after the client half-closes, and sends one message for each value of send.
type listener struct {
	testService
	halfClosed chan struct{}
	send       chan struct{}
}

func (l *listener) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	ctx := stream.Context()
	for {
		_, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{}); err != nil {
			return err
		}
	}
	l.halfClosed <- struct{}{}
	for {
		select {
		case <-l.send:
			if err := stream.Send(&testgrpc.StreamingOutputCallResponse{}); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func TestStreamLimitHalfClosedIdle(t *testing.T) {
	clock := grpcserver.NewFakeClock()
	cfg := grpcserver.Config{
		Policy:  policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Streams: map[string]grpcserver.StreamLimit{duplexCall: {HalfClosedIdle: 30 * time.Second}},
	}
	grpcserver.UseClock(&cfg, clock)
	svc := &listener{halfClosed: make(chan struct{}, 1), send: make(chan struct{})}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	client := testgrpc.NewTestServiceClient(conn)

	stream, err := openDuplex(callCtx(t), client)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	// Open and silent, but not half-closed: HalfClosedIdle does not apply.
	clock.Advance(time.Hour)
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("CloseSend() = %v", err)
	}
	<-svc.halfClosed
	// What the server sends keeps a half-closed stream alive.
	clock.Advance(20 * time.Second)
	svc.send <- struct{}{}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("Recv() 20s after the half-close = %v", err)
	}
	clock.Advance(20 * time.Second)
	svc.send <- struct{}{}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("Recv() 40s after the half-close, 20s after the last message = %v", err)
	}
	clock.Advance(30 * time.Second)
	_, err = stream.Recv()
	wantStatus(t, "Recv() 30s after the last message of a half-closed stream", err, codes.DeadlineExceeded, "stream idle: half-closed by the client and nothing sent for 30s")
}

func TestStreamLimitClosedStreamStopsItsTimer(t *testing.T) {
	clock := grpcserver.NewFakeClock()
	cfg := grpcserver.Config{
		Policy:  policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Streams: map[string]grpcserver.StreamLimit{duplexCall: {Idle: time.Minute}},
	}
	grpcserver.UseClock(&cfg, clock)
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
	stream, err := openDuplex(callCtx(t), testgrpc.NewTestServiceClient(conn))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	closeDuplex(t, stream)
	if n := clock.Timers(); n != 0 {
		t.Errorf("idle timers after the stream ended = %d, want 0", n)
	}
}

func TestStreamLimitConfigErrors(t *testing.T) {
	pol := policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil)
	for name, lim := range map[string]map[string]grpcserver.StreamLimit{
		"negative cap":             {duplexCall: {PerCaller: -1}},
		"negative idle":            {duplexCall: {Idle: -time.Second}},
		"per caller above total":   {duplexCall: {PerCaller: 10, Total: 5}},
		"negative half-close idle": {duplexCall: {HalfClosedIdle: -time.Second}},
		"negative send timeout":    {duplexCall: {SendTimeout: -time.Second}},
		"negative reserve":         {duplexCall: {FirstReserve: -1}},
		"reserves fill the total":  {duplexCall: {Total: 10, StaffReserve: 4, FirstReserve: 6}},
	} {
		t.Run("New/"+name, func(t *testing.T) {
			if _, err := grpcserver.New(grpcserver.Config{Listener: grpctest.Listen(), Policy: pol, Streams: lim}); err == nil {
				t.Errorf("New(Streams: %v) = nil error, want one", lim)
			}
		})
	}
	for name, tc := range map[string]struct {
		lim  map[string]grpcserver.StreamLimit
		want string
	}{
		"unknown method":                  {map[string]grpcserver.StreamLimit{"/grpc.testing.TestService/Nope": {}}, "/grpc.testing.TestService/Nope is not served"},
		"unary method":                    {map[string]grpcserver.StreamLimit{unaryCall: {}}, unaryCall + " is not a streaming method"},
		"idle on a server stream":         {map[string]grpcserver.StreamLimit{outputCall: {Idle: time.Minute}}, outputCall + ": Idle needs a method whose client streams"},
		"half-close on a client stream":   {map[string]grpcserver.StreamLimit{inputCall: {HalfClosedIdle: time.Minute}}, inputCall + ": HalfClosedIdle needs a bidirectional method"},
		"send timeout on a client stream": {map[string]grpcserver.StreamLimit{inputCall: {SendTimeout: time.Minute}}, inputCall + ": SendTimeout needs a method whose server streams"},
	} {
		t.Run("Serve/"+name, func(t *testing.T) {
			srv, _ := newBufServer(t, grpcserver.Config{Policy: pol, Streams: tc.lim}, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
			ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
			defer cancel()
			err := srv.Serve(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Serve() = %v, want an error containing %q", err, tc.want)
			}
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown() after a failed Serve = %v, want nil", err)
			}
		})
	}
}

// openStreams returns the lastmile_grpc_server_open_streams gauge of method.
func openStreams(t *testing.T, reg *prometheus.Registry, method string) float64 {
	t.Helper()
	return metricValues(t, reg, "lastmile_grpc_server_open_streams", "grpc_method")[method]
}

// metricValues returns the values of the gauge or counter name, summed by the value of label.
func metricValues(t *testing.T, reg *prometheus.Registry, name, label string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label {
					out[l.GetValue()] += m.GetGauge().GetValue() + m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}

func TestStreamLimitSurvivesAPanickingHandler(t *testing.T) {
	clock := grpcserver.NewFakeClock()
	cfg := grpcserver.Config{
		Policy:  policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Streams: map[string]grpcserver.StreamLimit{inputCall: {PerCaller: 1, Idle: time.Minute}},
	}
	grpcserver.UseClock(&cfg, clock)
	svc := &testService{onCall: func(context.Context) { panic("boom") }}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	client := testgrpc.NewTestServiceClient(conn)
	for i := range 2 { // the second stream proves the first one's slot was released
		stream, err := client.StreamingInputCall(callCtx(t))
		if err != nil {
			t.Fatalf("StreamingInputCall() = %v", err)
		}
		_, err = stream.CloseAndRecv()
		wantStatus(t, fmt.Sprintf("stream %d to a panicking handler", i+1), err, codes.Internal, "internal error")
	}
	if n := clock.Timers(); n != 0 {
		t.Errorf("idle timers after the handlers panicked = %d, want 0", n)
	}
}
