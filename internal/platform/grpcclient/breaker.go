package grpcclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sony/gobreaker/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"

	"lastmile/internal/platform/telemetry"
)

// breaker is the circuit breaker of one connection.
type breaker struct {
	target   string
	settings gobreaker.Settings
	state    prometheus.Gauge
	logger   *slog.Logger
	cb       atomic.Pointer[gobreaker.TwoStepCircuitBreaker[struct{}]]
}

func newBreaker(target string, cfg BreakerConfig, gauge *prometheus.GaugeVec, logger *slog.Logger) *breaker {
	state := gauge.WithLabelValues(target)
	state.Set(float64(gobreaker.StateClosed))
	settings := gobreaker.Settings{
		Name:        target,
		MaxRequests: cfg.MaxRequests,
		Interval:    cfg.Interval,
		Timeout:     cfg.Timeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= cfg.ConsecutiveFailures
		},
		IsSuccessful: func(err error) bool { return !serverFailure(err) },
		IsExcluded:   func(err error) bool { return status.Code(err) == codes.Canceled },
		// Called with the breaker's lock held: it must not call back into the breaker.
		OnStateChange: func(name string, from, to gobreaker.State) {
			state.Set(float64(to))
			level := slog.LevelInfo
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
			}
			logger.Log(context.Background(), level, "gRPC circuit breaker changed state",
				"target", name, "from", from.String(), "to", to.String())
		},
	}
	b := &breaker{target: target, settings: settings, state: state, logger: logger}
	b.cb.Store(gobreaker.NewTwoStepCircuitBreaker[struct{}](settings))
	return b
}

// reset closes an open or half-open breaker. The connection calls it when it becomes READY again after
// it was not: with client-side health checking, READY means a backend answers its health check, which is
// better news than the breaker's timer can give. Without it, a service whose database came back would
// stay refused for up to Breaker.Timeout after its health (and the process's /readyz) had recovered.
func (b *breaker) reset() {
	old := b.cb.Load()
	if old.State() == gobreaker.StateClosed {
		return
	}
	b.cb.Store(gobreaker.NewTwoStepCircuitBreaker[struct{}](b.settings))
	b.state.Set(float64(gobreaker.StateClosed))
	b.logger.Info("gRPC circuit breaker closed: the connection is READY again", "target", b.target, "from", old.State().String())
}

// watch resets the breaker each time conn becomes READY after being in another state, until conn is
// closed.
func (b *breaker) watch(conn *grpc.ClientConn) {
	last := conn.GetState()
	for {
		if last == connectivity.Shutdown {
			return
		}
		conn.WaitForStateChange(context.Background(), last)
		now := conn.GetState()
		if now == connectivity.Ready && last != connectivity.Ready {
			b.reset()
		}
		last = now
	}
}

// serverFailure reports whether err says the server side is in trouble; see the package documentation
// for why each code is or is not one.
func serverFailure(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown, codes.DataLoss:
		return true
	}
	return false
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
	done(judged(ctx, budget, err))
	return err
}

// MinCountedDeadline is the smallest deadline whose expiry counts as a server failure. A caller that gives
// a call less time than this (a REST client can send "Grpc-Timeout: 1n") or that cancels it learns
// nothing about the server's health, and must not be able to open the breaker for everyone else.
const MinCountedDeadline = 100 * time.Millisecond

// deadlineBudget returns how long ctx allows a call that starts now; a large value when it has no deadline.
func deadlineBudget(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}
	return time.Duration(1<<63 - 1)
}

// judged returns the error the breaker should judge: the caller's own cancellation, or a deadline shorter
// than MinCountedDeadline running out, becomes Canceled, which the breaker excludes.
func judged(ctx context.Context, budget time.Duration, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(ctx.Err(), context.Canceled) ||
		(status.Code(err) == codes.DeadlineExceeded && budget < MinCountedDeadline) {
		return status.Error(codes.Canceled, "caller gave up")
	}
	return err
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
	done(judged(ctx, budget, err))
	return cs, err
}

// registerBreakerGauge returns the lastmile_grpc_client_breaker_state gauge registered with reg, shared by
// every connection of the process. With a nil reg the gauge is private.
func registerBreakerGauge(reg prometheus.Registerer) (*prometheus.GaugeVec, error) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "lastmile_grpc_client_breaker_state",
		Help: "State of the gRPC client circuit breaker per target: 0 closed, 1 half-open, 2 open.",
	}, []string{"target"})
	g, err := telemetry.Register(reg, g)
	if err != nil {
		return nil, fmt.Errorf("register breaker gauge: %w", err)
	}
	return g, nil
}
