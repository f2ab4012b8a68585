package grpcclient

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
)

// These tests play watch's part by hand, calling changed, so that they choose when it learns of a change:
// as late as a goroutine on a loaded machine may.

// testConn is a connection to a gRPC server that serves nothing.
type testConn struct {
	*grpc.ClientConn
	lis    atomic.Pointer[bufconn.Listener]
	srv    *grpc.Server
	refuse atomic.Bool // dials fail while set
}

// newTestConn returns a connection that stays IDLE until Connect.
func newTestConn(t *testing.T) *testConn {
	t.Helper()
	c := &testConn{}
	c.serve()
	t.Cleanup(func() { c.srv.Stop() })
	conn, err := grpc.NewClient("passthrough:///breaker-internal",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			if c.refuse.Load() {
				return nil, errors.New("connection refused")
			}
			return c.lis.Load().DialContext(ctx)
		}),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient() error = %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c.ClientConn = conn
	return c
}

func (c *testConn) serve() {
	c.lis.Store(bufconn.Listen(1 << 16))
	c.srv = grpc.NewServer()
	go func(srv *grpc.Server, lis *bufconn.Listener) { _ = srv.Serve(lis) }(c.srv, c.lis.Load())
}

// restart stops the server (the connection leaves READY) and starts another one that it reaches next.
func (c *testConn) restart() {
	c.srv.Stop()
	c.serve()
}

// wait connects c and waits until it is in state want.
func (c *testConn) wait(t *testing.T, want connectivity.State) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c.Connect()
	for s := c.GetState(); s != want; s = c.GetState() {
		if !c.WaitForStateChange(ctx, s) {
			t.Fatalf("connection still %v after 30 s, want %v", s, want)
		}
	}
}

// trippedBreaker returns a breaker on conn (as follow leaves it, without the watch goroutine), opened by
// one failure.
func trippedBreaker(t *testing.T, conn *testConn) *breaker {
	t.Helper()
	m, err := registerBreakerMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	b := newBreaker("passthrough:///breaker-internal", BreakerConfig{ConsecutiveFailures: 1, Timeout: time.Hour}, m, slog.New(slog.DiscardHandler))
	b.conn.Store(conn.ClientConn)
	done, err := b.allow()
	if err != nil {
		t.Fatalf("allow() on a new breaker = %v, want nil", err)
	}
	done(status.Error(codes.Unavailable, "no"))
	wantOpen(t, b, "after a failure")
	return b
}

func wantOpen(t *testing.T, b *breaker, when string) {
	t.Helper()
	if _, err := b.allow(); status.Code(err) != codes.Unavailable {
		t.Fatalf("allow() %s = %v, want the breaker open", when, err)
	}
}

func wantClosed(t *testing.T, b *breaker, when string) {
	t.Helper()
	done, err := b.allow()
	if err != nil {
		t.Fatalf("allow() %s = %v, want the breaker closed", when, err)
	}
	done(nil)
}

// TestBreakerIgnoresAReadyFromBeforeItOpened: calls over a READY connection were answered Unavailable
// and opened the breaker; watch then learns of the READY (it last saw the connection IDLE). That READY
// came before the failures and says nothing new, so the breaker stays open. Before, watch reset it: with
// -race beside the rest of the suite TestBreakerOpensOnServerFailures and
// TestBreakerCountsOnlyServerFailures/Unavailable found their breaker closed again (3 failures in 300
// runs of the breaker tests).
func TestBreakerIgnoresAReadyFromBeforeItOpened(t *testing.T) {
	conn := newTestConn(t)
	conn.wait(t, connectivity.Ready)
	b := trippedBreaker(t, conn)
	if now := b.changed(conn.ClientConn); now != connectivity.Ready {
		t.Fatalf("changed() = %v, want READY", now)
	}
	wantOpen(t, b, "after watch learnt late of a READY from before the breaker opened")
}

// TestBreakerResetsWhenTheConnectionRecovers: a breaker that opened while the connection failed
// (TRANSIENT_FAILURE: the server unreachable, or with health checking a service NOT_SERVING) is reset
// once the connection is READY, whether or not watch saw the failure itself.
func TestBreakerResetsWhenTheConnectionRecovers(t *testing.T) {
	conn := newTestConn(t)
	conn.refuse.Store(true)
	conn.wait(t, connectivity.TransientFailure)
	b := trippedBreaker(t, conn)
	conn.refuse.Store(false)
	conn.ResetConnectBackoff()
	conn.wait(t, connectivity.Ready)
	if now := b.changed(conn.ClientConn); now != connectivity.Ready {
		t.Fatalf("changed() = %v, want READY", now)
	}
	wantClosed(t, b, "after the connection recovered")
}

// TestBreakerResetsWhenTheConnectionComesBack: a breaker that opened while the connection was READY is
// reset when watch has seen the connection leave READY since, and then sees it READY again.
func TestBreakerResetsWhenTheConnectionComesBack(t *testing.T) {
	conn := newTestConn(t)
	conn.wait(t, connectivity.Ready)
	b := trippedBreaker(t, conn)
	conn.restart()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if !conn.WaitForStateChange(ctx, connectivity.Ready) {
		t.Fatal("connection still READY 30 s after its server stopped")
	}
	if now := b.changed(conn.ClientConn); now == connectivity.Ready {
		t.Fatal("changed() = READY just after the server stopped, want another state")
	}
	wantOpen(t, b, "after the connection left READY")
	conn.wait(t, connectivity.Ready)
	if now := b.changed(conn.ClientConn); now != connectivity.Ready {
		t.Fatalf("changed() = %v, want READY", now)
	}
	wantClosed(t, b, "after the connection came back")
}

// TestBreakerWatchStartedLate: the breaker opened while the connection failed, and watch first runs once
// the connection is READY again. Before, watch took the state it first read as its starting point, saw
// no change to READY and left the breaker open for its whole timeout: TestBreakerClosesWhenHealthReturns
// failed with "circuit open" 10 s after its service reported SERVING, 8 times in 150 s of -race runs on
// the loaded machine.
func TestBreakerWatchStartedLate(t *testing.T) {
	conn := newTestConn(t)
	conn.refuse.Store(true)
	conn.wait(t, connectivity.TransientFailure)
	b := trippedBreaker(t, conn)
	conn.refuse.Store(false)
	conn.ResetConnectBackoff()
	conn.wait(t, connectivity.Ready)
	b.follow(conn.ClientConn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		done, err := b.allow()
		if err == nil {
			done(nil)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("allow() 30 s after watch started on a READY connection = %v, want the breaker closed", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDefaultDeadlineCountsHoweverLateTheBreakerLooks checks that a call given the connection's default
// deadline counts as a normal call when it runs out unanswered, even if the breaker measures the time
// left only after a pause (a loaded machine between the two interceptors): the time left then looks like
// a shorter deadline a caller chose, which the breaker must not count. This failed
// TestBreakerOpensOnUnansweredDeadline under load.
func TestDefaultDeadlineCountsHoweverLateTheBreakerLooks(t *testing.T) {
	const timeout = 300 * time.Millisecond
	unanswered := status.Error(codes.DeadlineExceeded, "context deadline exceeded")
	var verdict error
	invoker := func(ctx context.Context, _ string, _, _ any, _ *grpc.ClientConn, _ ...grpc.CallOption) error {
		time.Sleep(50 * time.Millisecond) // the pause, longer than the 5 % slack (15 ms)
		budget := deadlineBudget(ctx)
		<-ctx.Done() // the peer never answers
		verdict = judged(ctx, budget, timeout, unanswered)
		return unanswered
	}
	if err := defaultDeadline(timeout)(context.Background(), "/test/Call", nil, nil, nil, invoker); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("call = %v, want DeadlineExceeded", err)
	}
	if verdict != unanswered {
		t.Errorf("breaker's verdict on a default deadline that ran out = %v, want the failure %v", verdict, unanswered)
	}
	// A deadline the caller chose, as short as the time that was left, is still not counted.
	ctx, cancel := context.WithTimeout(context.Background(), timeout-50*time.Millisecond)
	defer cancel()
	budget := deadlineBudget(ctx)
	<-ctx.Done()
	if got := judged(ctx, budget, timeout, unanswered); got != errNotPeerHealth {
		t.Errorf("breaker's verdict on a caller's shorter deadline = %v, want %v", got, errNotPeerHealth)
	}
}
