// Package routeclient adapts the route service's gRPC client to the dispatch domain's Routes port: the
// assignment engine asks it for the travel from candidate couriers to a pickup.
//
// It has a circuit breaker of its own, beside the connection's (grpcclient): the connection's breaker
// counts only failures that say the route process is unreachable, while this one also counts answers
// that say route cannot route right now (its provider, such as OSRM, is down: Unavailable, Internal), and
// calls that run out of this client's own short per-call timeout. After ConsecutiveFailures of them in a
// row it opens, and Matrix fails at once with Unavailable "route service circuit breaker open" until
// OpenTimeout has passed and a probe call succeeds. The engine then uses its local estimate and marks the
// decision degraded, so that a slow or broken route never holds up assignment. Each change of the
// breaker's state is logged and told to Options.Observer (dispatch's metrics).
package routeclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
	"lastmile/internal/geo/geoproto"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/grpcerr"
)

// Defaults of Options.
const (
	DefaultCallTimeout         = 2 * time.Second
	DefaultConsecutiveFailures = 3
	DefaultOpenTimeout         = 30 * time.Second
)

// maxOrigins is the contract's bound on a matrix's origins (ComputeMatrixRequest.origins): larger
// requests are split.
const maxOrigins = 100

// Options configures a Client. The zero value is usable.
type Options struct {
	// CallTimeout bounds one ComputeMatrix call, whatever the caller's deadline: an engine waiting for a
	// slow route is worse than a degraded decision.
	CallTimeout time.Duration
	// ConsecutiveFailures opens the breaker after this many failed calls in a row.
	ConsecutiveFailures uint32
	// OpenTimeout is how long the breaker stays open before it lets a probe call through.
	OpenTimeout time.Duration
	// Logger receives the breaker's state changes; nil means slog.Default().
	Logger *slog.Logger
	// Observer hears of the breaker's state changes too; nil for none.
	Observer BreakerObserver
}

// BreakerObserver hears of the changes of a Client's circuit breaker (dispatch's metrics implement it).
type BreakerObserver interface {
	// RouteBreakerChanged says the breaker is now in state to: "closed", "half-open" or "open". It is
	// called in the order of the changes, and must not block.
	RouteBreakerChanged(to string)
}

// Client implements dispatch.Routes over route's RouteService.
type Client struct {
	routes  routev1.RouteServiceClient
	timeout time.Duration
	cb      *gobreaker.CircuitBreaker[*routev1.ComputeMatrixResponse]
}

var _ dispatch.MatrixRoutes = (*Client)(nil)

// New returns a Client calling routes with its own circuit breaker.
func New(routes routev1.RouteServiceClient, opts Options) *Client {
	if opts.CallTimeout <= 0 {
		opts.CallTimeout = DefaultCallTimeout
	}
	if opts.ConsecutiveFailures == 0 {
		opts.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if opts.OpenTimeout <= 0 {
		opts.OpenTimeout = DefaultOpenTimeout
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	failures := opts.ConsecutiveFailures
	// last is the latest failure's error, which the opening's log line carries: the decisions it degrades
	// say only what failed (unavailableMessage).
	var last atomic.Pointer[string]
	cb := gobreaker.NewCircuitBreaker[*routev1.ComputeMatrixResponse](gobreaker.Settings{
		Name:        "route",
		MaxRequests: 1,
		Timeout:     opts.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsSuccessful: func(err error) bool {
			if err == nil || !failure(err) {
				return true
			}
			msg := err.Error()
			last.Store(&msg)
			return false
		},
		IsExcluded: func(err error) bool { return errors.Is(err, context.Canceled) },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			level, attrs := slog.LevelInfo, []any{"from", from.String(), "to", to.String()}
			if to == gobreaker.StateOpen {
				level = slog.LevelWarn
				if msg := last.Load(); msg != nil {
					attrs = append(attrs, "error", *msg)
				}
			}
			logger.Log(context.Background(), level, "dispatch: route circuit breaker changed state", attrs...)
			if opts.Observer != nil {
				opts.Observer.RouteBreakerChanged(to.String())
			}
		},
	})
	return &Client{routes: routes, timeout: opts.CallTimeout, cb: cb}
}

// failure reports whether a call's error says route cannot serve matrices now, rather than that this
// request was wrong: it is unreachable, broken, overloaded, or too slow.
func failure(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown, codes.Unimplemented,
		codes.DataLoss, codes.ResourceExhausted:
		return true
	}
	return false
}

// unavailableMessage says why route could not serve a call that failed with err (failure), in the words
// of the decision it degrades (Decision.DegradationDetail, which dispatchers read): not route's or the
// transport's own, which may name addresses. They stay in the error it wraps, and the breaker's opening
// logs them.
func unavailableMessage(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded), status.Code(err) == codes.DeadlineExceeded:
		return "route service did not answer in time"
	case status.Code(err) == codes.ResourceExhausted:
		return "route service overloaded"
	}
	return "route service unavailable"
}

// State returns the breaker's state, for tests and diagnostics: "closed", "half-open" or "open".
func (c *Client) State() string { return c.cb.State().String() }

// Matrix implements dispatch.Routes: the travel from each origin to dest, in origin order, and the
// provider's name. Unavailable when the breaker is open or route failed.
func (c *Client) Matrix(ctx context.Context, origins []geo.LatLng, dest geo.LatLng, mode geo.TransportMode, depart time.Time) ([]dispatch.Leg, string, error) {
	out := make([]dispatch.Leg, 0, len(origins))
	provider := ""
	for start := 0; start < len(origins); start += maxOrigins {
		part := origins[start:min(start+maxOrigins, len(origins))]
		legs, p, err := c.matrix(ctx, part, dest, mode, depart)
		if err != nil {
			return nil, "", err
		}
		out = append(out, legs...)
		provider = p
	}
	return out, provider, nil
}

func (c *Client) matrix(ctx context.Context, origins []geo.LatLng, dest geo.LatLng, mode geo.TransportMode, depart time.Time) ([]dispatch.Leg, string, error) {
	legs, provider, err := c.call(ctx, origins, []geo.LatLng{dest}, mode, depart)
	if err != nil {
		return nil, "", err
	}
	out := make([]dispatch.Leg, len(origins))
	for i := range legs {
		out[i] = legs[i][0]
	}
	return out, provider, nil
}

// maxElements is the contract's bound on origins x destinations of one matrix.
const maxElements = 2500

// Matrices implements dispatch.MatrixRoutes: the travel from each origin to each destination
// (legs[o][d]) and the provider's name, in as few ComputeMatrix calls as the contract's bounds allow (up
// to 100 origins, 100 destinations and 2,500 elements each). Unavailable when the breaker is open or
// route failed.
func (c *Client) Matrices(ctx context.Context, origins, dests []geo.LatLng, mode geo.TransportMode, depart time.Time) ([][]dispatch.Leg, string, error) {
	out := make([][]dispatch.Leg, len(origins))
	for o := range out {
		out[o] = make([]dispatch.Leg, 0, len(dests))
	}
	if len(origins) == 0 || len(dests) == 0 {
		return out, "", nil
	}
	provider := ""
	for ds := 0; ds < len(dests); ds += maxOrigins {
		dpart := dests[ds:min(ds+maxOrigins, len(dests))]
		ostep := min(maxOrigins, maxElements/len(dpart))
		for os := 0; os < len(origins); os += ostep {
			opart := origins[os:min(os+ostep, len(origins))]
			legs, p, err := c.call(ctx, opart, dpart, mode, depart)
			if err != nil {
				return nil, "", err
			}
			for i := range legs {
				out[os+i] = append(out[os+i], legs[i]...)
			}
			provider = p
		}
	}
	return out, provider, nil
}

// call makes one ComputeMatrix call (within the contract's bounds) and returns legs[o][d].
func (c *Client) call(ctx context.Context, origins, dests []geo.LatLng, mode geo.TransportMode, depart time.Time) ([][]dispatch.Leg, string, error) {
	req := &routev1.ComputeMatrixRequest{
		Origins:       make([]*geov1.LatLng, len(origins)),
		Destinations:  make([]*geov1.LatLng, len(dests)),
		TransportMode: geoproto.ModeProto(mode),
	}
	for i, o := range origins {
		req.Origins[i] = geoproto.LatLngProto(o)
	}
	for i, d := range dests {
		req.Destinations[i] = geoproto.LatLngProto(d)
	}
	if !depart.IsZero() {
		req.DepartureTime = timestamppb.New(depart)
	}
	res, err := c.cb.Execute(func() (*routev1.ComputeMatrixResponse, error) {
		cctx, cancel := context.WithTimeout(ctx, c.timeout)
		defer cancel()
		res, err := c.routes.ComputeMatrix(cctx, req)
		if err != nil && ctx.Err() != nil {
			// The caller gave up: says nothing about route.
			return nil, ctx.Err()
		}
		return res, err
	})
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return nil, "", apperr.Errorf(apperr.Unavailable, "route service circuit breaker open")
	case err != nil && ctx.Err() != nil:
		return nil, "", fmt.Errorf("compute matrix: %w", ctx.Err())
	case err != nil && failure(err):
		return nil, "", apperr.Wrap(apperr.Unavailable, err, unavailableMessage(err))
	case err != nil:
		return nil, "", fmt.Errorf("compute matrix: %w", grpcerr.FromStatus("route", err))
	}
	legs := make([][]dispatch.Leg, len(origins))
	for i := range legs {
		legs[i] = make([]dispatch.Leg, len(dests))
	}
	for _, e := range res.GetElements() {
		i, j := int(e.GetOriginIndex()), int(e.GetDestinationIndex())
		if i < 0 || i >= len(legs) || j < 0 || j >= len(dests) {
			return nil, "", apperr.Errorf(apperr.Unavailable, "route service answered an element outside the matrix (origin %d, destination %d)", i, j)
		}
		legs[i][j] = dispatch.Leg{
			Duration: e.GetDuration().AsDuration(),
			Distance: e.GetDistanceMeters(),
			Found:    e.GetCondition() == routev1.RouteCondition_ROUTE_CONDITION_ROUTE_EXISTS,
		}
	}
	return legs, res.GetProvider(), nil
}
