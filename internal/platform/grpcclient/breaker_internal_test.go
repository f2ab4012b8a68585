package grpcclient

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
)

// These tests play the balancer's part by hand, calling balancerReported with the states round robin
// would report.

// trippedBreaker returns a breaker whose balancer reported the states in reports, then opened by one
// failure.
func trippedBreaker(t *testing.T, reports ...connectivity.State) *breaker {
	t.Helper()
	b := newTestBreaker(t)
	for _, s := range reports {
		b.balancerReported(s)
	}
	trip(t, b)
	return b
}

func newTestBreaker(t *testing.T) *breaker {
	t.Helper()
	m, err := registerBreakerMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return newBreaker("passthrough:///breaker-internal", BreakerConfig{ConsecutiveFailures: 1, Timeout: time.Hour}, m, slog.New(slog.DiscardHandler))
}

// trip fails one call, which opens a breaker that trips on the first failure.
func trip(t *testing.T, b *breaker) {
	t.Helper()
	done, err := b.allow()
	if err != nil {
		t.Fatalf("allow() on a new breaker = %v, want nil", err)
	}
	done(status.Error(codes.Unavailable, "no"))
	wantOpen(t, b, "after a failure")
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
// and opened the breaker; round robin then reports READY again (a new picker, say a second backend
// ready). The connection never left READY, so the breaker stays open.
func TestBreakerIgnoresAReadyFromBeforeItOpened(t *testing.T) {
	b := trippedBreaker(t, connectivity.Connecting, connectivity.Ready)
	b.balancerReported(connectivity.Ready)
	wantOpen(t, b, "after a READY from a connection that was READY as the breaker opened")
}

// TestBreakerResetsWhenTheConnectionRecovers: a breaker that opened while the connection failed
// (TRANSIENT_FAILURE: the server unreachable, or with health checking a service NOT_SERVING) is reset
// once the connection is READY.
func TestBreakerResetsWhenTheConnectionRecovers(t *testing.T) {
	b := trippedBreaker(t, connectivity.Connecting, connectivity.TransientFailure)
	b.balancerReported(connectivity.Ready)
	wantClosed(t, b, "after the connection recovered")
}

// TestBreakerResetsWhenTheConnectionComesBack: a breaker that opened while the connection was READY is
// reset when the connection has left READY since, and is READY again.
func TestBreakerResetsWhenTheConnectionComesBack(t *testing.T) {
	b := trippedBreaker(t, connectivity.Connecting, connectivity.Ready)
	b.balancerReported(connectivity.Idle)
	wantOpen(t, b, "after the connection left READY")
	b.balancerReported(connectivity.Connecting)
	b.balancerReported(connectivity.Ready)
	wantClosed(t, b, "after the connection came back")
	// Open again over the READY connection: the READY it is already in says nothing new.
	trip(t, b)
	b.balancerReported(connectivity.Ready)
	wantOpen(t, b, "after a second opening over a READY connection")
}

// pickerCC stands for grpc-go's side of the balancer: installing a picker lets calls through, here
// one that fails (answered Unavailable) while grpc-go's own state has not caught up yet.
type pickerCC struct {
	balancer.ClientConn
	b         *breaker
	t         *testing.T
	installed []connectivity.State
	tripped   bool
}

func (c *pickerCC) UpdateState(s balancer.State) {
	c.installed = append(c.installed, s.ConnectivityState)
	if s.ConnectivityState == connectivity.Ready && !c.tripped {
		c.tripped = true
		trip(c.t, c.b) // a call the first READY picker let through failed
	}
}

// TestBreakerLearnsAStateBeforeItsPicker: round robin's READY reaches the breaker before grpc-go
// installs the READY picker, so failures over that picker open the breaker with the connection known
// READY, and nothing resets it until the connection leaves READY. Before, the breaker read
// ClientConn.GetState, which grpc-go updates a moment after it installs the picker: the failures
// opened the breaker under CONNECTING and the READY that followed reset it
// (TestBreakerOpensOnServerFailures: "breaker_state = 0, want 2", 1 run in 300 under load).
func TestBreakerLearnsAStateBeforeItsPicker(t *testing.T) {
	b := newTestBreaker(t)
	parent := &pickerCC{b: b, t: t}
	cc := &reportingCC{ClientConn: parent}
	cc.b.Store(b)
	cc.UpdateState(balancer.State{ConnectivityState: connectivity.Connecting})
	cc.UpdateState(balancer.State{ConnectivityState: connectivity.Ready})
	wantOpen(t, b, "after failures over the READY picker")
	cc.UpdateState(balancer.State{ConnectivityState: connectivity.Ready}) // another picker, still READY
	wantOpen(t, b, "after round robin reported READY again")
	if want := []connectivity.State{connectivity.Connecting, connectivity.Ready, connectivity.Ready}; !slices.Equal(parent.installed, want) {
		t.Errorf("states passed on to grpc-go = %v, want %v", parent.installed, want)
	}
}

// TestBreakerConfigNamesAKnownBreaker: the balancer's configuration must name a breaker New registered.
func TestBreakerConfigNamesAKnownBreaker(t *testing.T) {
	if _, err := (breakerBalancerBuilder{}).ParseConfig([]byte(`{"breaker":"no-such"}`)); !errors.Is(err, errUnknownBreaker) {
		t.Errorf("ParseConfig(unknown breaker) error = %v, want %v", err, errUnknownBreaker)
	}
	b := newTestBreaker(t)
	id, forget := registerPending(b)
	cfg, err := (breakerBalancerBuilder{}).ParseConfig([]byte(`{"breaker":"` + id + `"}`))
	forget()
	if err != nil {
		t.Fatalf("ParseConfig(registered breaker) error = %v", err)
	}
	if got := cfg.(*breakerLBConfig).b; got != b {
		t.Errorf("parsed breaker = %p, want %p", got, b)
	}
	if _, err := (breakerBalancerBuilder{}).ParseConfig([]byte(`{"breaker":"` + id + `"}`)); !errors.Is(err, errUnknownBreaker) {
		t.Errorf("ParseConfig(forgotten breaker) error = %v, want %v", err, errUnknownBreaker)
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
