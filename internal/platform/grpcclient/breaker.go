package grpcclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"lastmile/internal/platform/apperr/grpcerr"
	"lastmile/internal/platform/telemetry"
)

// breaker is the circuit breaker of one connection.
type breaker struct {
	target string
	// countedDeadline is the smallest budget whose expiry counts as a failure.
	countedDeadline time.Duration
	settings        gobreaker.Settings
	state           prometheus.Gauge
	opens           prometheus.Counter
	logger          *slog.Logger
	cb              atomic.Pointer[gobreaker.TwoStepCircuitBreaker[struct{}]]

	// seen orders the connectivity states the connection's balancer reports against the breaker's
	// openings, so that a READY reported before the breaker opened cannot reset it.
	seen sync.Mutex
	// reported is the state the connection's balancer (breakerBalancerName) last reported: it reports
	// each one before grpc-go installs the picker that goes with it, so a call that a READY picker let
	// through ends after reported said READY. IDLE until the first report.
	reported connectivity.State
	// leftReady says the connection was not READY at some moment since the breaker last opened. A
	// READY after that is a connection that works again (with health checking, a backend that passes
	// it); a READY the breaker opened under says nothing new: the calls that opened it reached the server.
	leftReady bool
	// open is set from the breaker's opening until it closes (half-open included).
	open bool
}

func newBreaker(target string, cfg BreakerConfig, m *breakerMetrics, logger *slog.Logger) *breaker {
	state := m.state.WithLabelValues(target)
	state.Set(float64(gobreaker.StateClosed))
	opens := m.opens.WithLabelValues(target)
	b := &breaker{}
	settings := gobreaker.Settings{
		Name:        target,
		MaxRequests: cfg.MaxRequests,
		Interval:    cfg.Interval,
		Timeout:     cfg.Timeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= cfg.ConsecutiveFailures
		},
		// judged has already turned every error that says nothing about the peer's health into
		// Canceled (excluded) or nil (a success).
		IsSuccessful: func(err error) bool { return err == nil },
		IsExcluded:   func(err error) bool { return status.Code(err) == codes.Canceled },
		// Called with the breaker's lock held: it must not call back into the breaker.
		OnStateChange: func(name string, from, to gobreaker.State) {
			state.Set(float64(to))
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
				opens.Inc()
			}
			logger.Log(context.Background(), level, "gRPC circuit breaker changed state",
				"target", name, "from", from.String(), "to", to.String())
		},
	}
	b.target, b.countedDeadline, b.settings = target, cfg.CountedDeadline, settings
	b.state, b.opens, b.logger = state, opens, logger
	b.cb.Store(b.newCB())
	return b
}

// newCB returns a closed circuit breaker with b's settings whose openings and closings, while it is b's
// current one, are recorded for changed.
func (b *breaker) newCB() *gobreaker.TwoStepCircuitBreaker[struct{}] {
	var cb *gobreaker.TwoStepCircuitBreaker[struct{}]
	settings := b.settings
	settings.OnStateChange = func(name string, from, to gobreaker.State) {
		b.settings.OnStateChange(name, from, to)
		b.changedTo(cb, to)
	}
	cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](settings)
	return cb
}

// reset replaces the breaker with a closed one and returns the one it replaced; b.seen must be held.
// The connection calls it when it becomes READY again after it was not: with client-side health
// checking, READY means a backend answers its health check, which is better news than the breaker's
// timer can give. Without it, a service whose database came back would stay refused for up to
// Breaker.Timeout after its health (and the process's /readyz) had recovered.
func (b *breaker) reset() (old *gobreaker.TwoStepCircuitBreaker[struct{}]) {
	old = b.cb.Load()
	b.cb.Store(b.newCB())
	b.open = false
	b.state.Set(float64(gobreaker.StateClosed))
	return old
}

// changedTo records that cb opened (with the connection's state at that moment) or closed, if cb is
// still the current breaker. OnStateChange calls it, with cb's lock held.
func (b *breaker) changedTo(cb *gobreaker.TwoStepCircuitBreaker[struct{}], to gobreaker.State) {
	b.seen.Lock()
	defer b.seen.Unlock()
	if b.cb.Load() != cb {
		return // replaced by reset: its verdicts no longer count
	}
	switch to {
	case gobreaker.StateClosed:
		b.open = false
	case gobreaker.StateOpen:
		b.open = true
		b.leftReady = b.reported != connectivity.Ready
	}
}

// balancerReported records the connectivity state the connection's balancer reports, before grpc-go
// installs the picker that goes with it. When the state is READY and the connection was not READY at
// some moment since the breaker opened (as the breaker opened, or reported since), it resets the
// breaker. The state is recorded, and the breaker reset, under b.seen, which the breaker's opening
// takes too: an opening cannot fall between the verdict and the reset. Before, the breaker read the
// state from ClientConn.GetState, which grpc-go updates a moment after it installs the picker: calls
// answered Unavailable over a READY picker opened the breaker while GetState still said CONNECTING,
// and the READY that followed reset it (TestBreakerOpensOnServerFailures, 1 run in 300 under load).
func (b *breaker) balancerReported(now connectivity.State) {
	b.seen.Lock()
	b.reported = now
	if now != connectivity.Ready {
		b.leftReady = true
	}
	var old *gobreaker.TwoStepCircuitBreaker[struct{}]
	if now == connectivity.Ready && b.leftReady && b.open {
		old = b.reset()
	}
	b.seen.Unlock()
	if old != nil {
		b.logger.Info("gRPC circuit breaker closed: the connection is READY again", "target", b.target, "from", old.State().String())
	}
}

// allow asks the breaker for permission to call, turning a refusal into the status the caller sees.
func (b *breaker) allow() (done func(error), err error) {
	done, err = b.cb.Load().Allow()
	switch {
	case err == nil:
		return done, nil
	case errors.Is(err, gobreaker.ErrOpenState):
		return nil, status.Errorf(codes.Unavailable, "circuit open for %s", b.target)
	case errors.Is(err, gobreaker.ErrTooManyRequests):
		return nil, status.Errorf(codes.Unavailable, "circuit open for %s: probe calls in flight", b.target)
	}
	return nil, status.Error(codes.Unavailable, fmt.Sprintf("circuit breaker for %s: %v", b.target, err))
}

func (b *breaker) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	done, err := b.allow()
	if err != nil {
		return err
	}
	budget := deadlineBudget(ctx)
	err = invoker(ctx, method, req, reply, cc, opts...)
	done(judged(ctx, budget, b.countedDeadline, err))
	return err
}

// MinCountedDeadline is the floor of BreakerConfig.CountedDeadline: whatever the configuration, a caller
// that gives a call less time than this (a REST client can send "Grpc-Timeout: 1n") learns nothing about
// the server's health.
const MinCountedDeadline = 100 * time.Millisecond

// deadlineBudget returns how long ctx allows a call that starts now; a large value when it has no deadline
// or the connection's default one (defaultDeadline), which is a normal call's by definition.
func deadlineBudget(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok && ctx.Value(defaultDeadlineKey{}) == nil {
		return time.Until(d)
	}
	return time.Duration(1<<63 - 1)
}

// errNotPeerHealth is what judged returns for outcomes the breaker must not count either way.
var errNotPeerHealth = status.Error(codes.Canceled, "outcome says nothing about the peer's health")

// judged returns what the breaker should count for a call that returned err, given the budget its
// context allowed when it started and the smallest budget whose expiry counts: a failure (non-nil, not
// Canceled) only when the outcome says the peer is unhealthy; nil, a success, when the peer answered;
// Canceled, ignored, when the outcome says nothing about the peer. See the package documentation for the
// reasons.
func judged(ctx context.Context, budget, counted time.Duration, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return errNotPeerHealth
	}
	switch status.Code(err) {
	case codes.Unavailable:
		if grpcerr.Answered(err) {
			// The service answered: a dependency of this request is down (its database, say), not the
			// service, which still serves the requests that need nothing else.
			return nil
		}
		return err
	case codes.DeadlineExceeded:
		// A twentieth of slack: the default deadline is set a moment before the budget is measured.
		if budget < counted-counted/20 {
			// The caller chose a deadline shorter than a normal call's: some requests legitimately
			// take longer (a password hash under load), so its expiry says nothing about the peer.
			return errNotPeerHealth
		}
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			// The caller's own deadline ran out while it waited: the peer did not answer in time.
			return err
		}
		// The peer answered DeadlineExceeded before the caller's deadline: its handler ran out of a
		// deadline of its own, such as one of its dependencies', and answered this one request.
		return nil
	}
	// Every other code is an answer to this caller's request (its own mistake, its quota, or a bug the
	// request triggered), which proves the peer is up; a shared breaker must not let one caller's
	// requests refuse everybody else's.
	return nil
}

// stream judges only the opening of a stream: a long-lived stream holding a half-open breaker's probe
// slot for its lifetime would block every other call.
func (b *breaker) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	done, err := b.allow()
	if err != nil {
		return nil, err
	}
	budget := deadlineBudget(ctx)
	cs, err := streamer(ctx, desc, cc, method, opts...)
	done(judged(ctx, budget, b.countedDeadline, err))
	return cs, err
}

// breakerMetrics are the breaker metrics shared by every connection of a process.
type breakerMetrics struct {
	state *prometheus.GaugeVec
	opens *prometheus.CounterVec
}

// registerBreakerMetrics returns the lastmile_grpc_client_breaker_state gauge and the
// lastmile_grpc_client_breaker_opens_total counter registered with reg. With a nil reg they are private.
// The counter exists because the gauge shows only the latest state of the connections sharing a target
// label (in one process, every connection to its own listener), so an open followed by another
// connection's change would be lost; the counter never forgets an open.
func registerBreakerMetrics(reg prometheus.Registerer) (*breakerMetrics, error) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "lastmile_grpc_client_breaker_state",
		Help: "State of the gRPC client circuit breaker per target: 0 closed, 1 half-open, 2 open.",
	}, []string{"target"})
	g, err := telemetry.Register(reg, g)
	if err != nil {
		return nil, fmt.Errorf("register breaker gauge: %w", err)
	}
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lastmile_grpc_client_breaker_opens_total",
		Help: "How many times a gRPC client circuit breaker opened, per target.",
	}, []string{"target"})
	c, err = telemetry.Register(reg, c)
	if err != nil {
		return nil, fmt.Errorf("register breaker counter: %w", err)
	}
	return &breakerMetrics{state: g, opens: c}, nil
}
