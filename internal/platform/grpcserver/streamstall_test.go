package grpcserver_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcserver"
)

// flooder is a StreamingOutputCall handler that sends 32 KiB messages until a send fails, as a watch
// does to a client that stopped reading, and reports that failure.
type flooder struct {
	testService
	sent   atomic.Int64
	failed chan error
}

func (f *flooder) StreamingOutputCall(_ *testgrpc.StreamingOutputCallRequest, stream testgrpc.TestService_StreamingOutputCallServer) error {
	body := make([]byte, 32<<10)
	for {
		if err := stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: body}}); err != nil {
			f.failed <- err
			return err
		}
		f.sent.Add(1)
	}
}

// A stream whose client stopped reading is ended once a message has waited SendTimeout to be sent: the
// handler's send fails at once, its slot is free, and the client, when it reads again, gets what was
// sent and then DEADLINE_EXCEEDED saying why.
func TestStreamLimitSendTimeout(t *testing.T) {
	clock := grpcserver.NewFakeClock()
	reg := prometheus.NewRegistry()
	cfg := grpcserver.Config{
		Policy:     policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Registerer: reg,
		Streams:    map[string]grpcserver.StreamLimit{outputCall: {PerCaller: 1, SendTimeout: 30 * time.Second}},
	}
	grpcserver.UseClock(&cfg, clock)
	svc := &flooder{failed: make(chan error, 2)}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	client := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithCancel(callCtx(t))
	defer cancel()
	stream, err := client.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// Wait until a send is held: its timer is armed and nothing more is sent.
	deadline := time.Now().Add(testTimeout)
	for last := int64(-1); ; {
		n := svc.sent.Load()
		if clock.Timers() == 1 && n == last && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no send held after %d messages", n)
		}
		last = n
		time.Sleep(50 * time.Millisecond)
	}
	held := svc.sent.Load()
	clock.Advance(29 * time.Second)
	select {
	case err := <-svc.failed:
		t.Fatalf("send failed after 29s: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	clock.Advance(time.Second)
	want := "stream stalled: a message waited 30s to be sent; the client is not reading"
	select {
	case err := <-svc.failed:
		wantStatus(t, "the held send after 30s", err, codes.DeadlineExceeded, want)
	case <-time.After(testTimeout):
		t.Fatal("the held send did not fail after 30s")
	}
	waitFor(t, "the slot released", func() bool { return openStreams(t, reg, outputCall) == 0 })
	if got := metricValues(t, reg, "lastmile_grpc_server_streams_stalled_closed_total", "grpc_method")[outputCall]; got != 1 {
		t.Errorf("stalled streams counter = %v, want 1", got)
	}
	// The client reads again: what was sent, then the status.
	var got int64
	for {
		_, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) || status.Code(err) != codes.DeadlineExceeded || status.Convert(err).Message() != want {
				t.Fatalf("Recv() after %d messages = %v, want DeadlineExceeded %q", got, err, want)
			}
			break
		}
		got++
	}
	if got < held {
		t.Errorf("client received %d messages, want at least the %d sent before the held one", got, held)
	}
}

// The pool of a method is shared fairly: a caller's second and later streams may not take the last
// FirstReserve + StaffReserve slots, which stay for callers without a stream, and the last StaffReserve
// only staff may take.
func TestStreamLimitReserves(t *testing.T) {
	reg := prometheus.NewRegistry()
	cfg := grpcserver.Config{
		Policy:        policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Authenticator: headerAuthenticator{},
		Registerer:    reg,
		Streams: map[string]grpcserver.StreamLimit{duplexCall: {PerCaller: 4, Total: 6, StaffReserve: 1, FirstReserve: 2,
			Staff: func(p auth.Principal) bool { return p.Subject == "staff-1" || p.Subject == "staff-2" }}},
	}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, &testService{}) })
	client := testgrpc.NewTestServiceClient(conn)
	open := func(who string) error {
		_, err := openDuplex(asUser(t, who), client)
		return err
	}
	for i := range 3 {
		if err := open("a"); err != nil {
			t.Fatalf("stream %d of caller a: %v", i+1, err)
		}
	}
	wantStatus(t, "stream 4 of caller a, with 3 of 6 open", open("a"), codes.ResourceExhausted,
		"too many open streams of FullDuplexCall: the rest are kept for callers without one; close one of yours or try again later")
	if err := open("b"); err != nil {
		t.Fatalf("first stream of caller b: %v", err)
	}
	wantStatus(t, "second stream of caller b, with 4 of 6 open", open("b"), codes.ResourceExhausted,
		"too many open streams of FullDuplexCall: the rest are kept for callers without one; close one of yours or try again later")
	if err := open("c"); err != nil {
		t.Fatalf("first stream of caller c: %v", err)
	}
	wantStatus(t, "first stream of caller d, with 5 of 6 open", open("d"), codes.ResourceExhausted, "too many open streams of FullDuplexCall; try again later")
	if err := open("staff-1"); err != nil {
		t.Fatalf("staff stream with 5 of 6 open: %v", err)
	}
	wantStatus(t, "staff stream with 6 of 6 open", open("staff-2"), codes.ResourceExhausted, "too many open streams of FullDuplexCall; try again later")
	if got := metricValues(t, reg, "lastmile_grpc_server_stream_refusals_total", "cap"); got["shared"] != 2 || got["total"] != 2 {
		t.Errorf("refusals by cap = %v, want 2 shared and 2 total", got)
	}
}

// duplexFlooder is a FullDuplexCall handler that floods the client from a goroutine of its own while it
// waits for the client's next message, and returns what that wait returns: a session-like handler, whose
// receive is what ends it.
type duplexFlooder struct {
	testService
	sent atomic.Int64
}

func (f *duplexFlooder) FullDuplexCall(stream testgrpc.TestService_FullDuplexCallServer) error {
	go func() {
		body := make([]byte, 32<<10)
		for stream.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: body}}) == nil {
			f.sent.Add(1)
		}
	}()
	for {
		if _, err := stream.Recv(); err != nil {
			return err
		}
	}
}

// On a method with both an idle timeout and a send timeout, a stalled send ends the stream for a handler
// that waits on a receive, not only on the send: the receive returns the stream's end at once, long
// before the idle timeout, and the stream ends with the stall's status and counter.
func TestStreamLimitStallEndsAPendingReceive(t *testing.T) {
	clock := grpcserver.NewFakeClock()
	reg := prometheus.NewRegistry()
	cfg := grpcserver.Config{
		Policy:     policyFor(&testgrpc.TestService_ServiceDesc, auth.Public(), nil),
		Registerer: reg,
		Streams:    map[string]grpcserver.StreamLimit{duplexCall: {PerCaller: 1, Idle: time.Hour, SendTimeout: 30 * time.Second}},
	}
	grpcserver.UseClock(&cfg, clock)
	svc := &duplexFlooder{}
	_, conn := startServer(t, cfg, func(s *grpc.Server) { testgrpc.RegisterTestServiceServer(s, svc) })
	stream, err := testgrpc.NewTestServiceClient(conn).FullDuplexCall(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	// Wait until a send is held: the idle timer and the held send's are armed and nothing more is sent.
	deadline := time.Now().Add(testTimeout)
	for last := int64(-1); ; {
		n := svc.sent.Load()
		if clock.Timers() == 2 && n == last && n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no send held after %d messages", n)
		}
		last = n
		time.Sleep(50 * time.Millisecond)
	}
	clock.Advance(30 * time.Second)
	waitFor(t, "the stream ended and its slot released", func() bool { return openStreams(t, reg, duplexCall) == 0 })
	if got := metricValues(t, reg, "lastmile_grpc_server_streams_stalled_closed_total", "grpc_method")[duplexCall]; got != 1 {
		t.Errorf("stalled streams counter = %v, want 1", got)
	}
	if got := metricValues(t, reg, "lastmile_grpc_server_streams_idle_closed_total", "grpc_method")[duplexCall]; got != 0 {
		t.Errorf("idle streams counter = %v, want 0", got)
	}
	for {
		if _, err := stream.Recv(); err != nil {
			wantStatus(t, "the client's Recv", err, codes.DeadlineExceeded, "stream stalled: a message waited 30s to be sent; the client is not reading")
			break
		}
	}
}
