package dispatch

import (
	"context"
	"time"
)

// Engine decides which courier should get a task: it searches couriers near the pickup (widening the
// radius up to a bound), asks route for pickup ETAs (falling back to a local geodesic estimate when route
// is unavailable), excludes who cannot or must not take the task (each with its reason), scores the rest
// with the Weights and ranks them. It makes no change: the Service turns its Decision into an offer.
type Engine struct {
	couriers Couriers
	routes   Routes
	opts     Options
}

// NewEngine returns an engine over the courier and route services, with opts' search and score
// settings (defaults applied by NewService).
func NewEngine(couriers Couriers, routes Routes, opts Options) *Engine {
	return &Engine{couriers: couriers, routes: routes, opts: opts}
}

// DecideEnv is what the engine asks of dispatch's own state while deciding.
type DecideEnv struct {
	// Now is the decision's time.
	Now time.Time
	// OfferOpen reports which couriers are answering another offer (excluded: OTHER_OFFER_OPEN).
	OfferOpen func(ctx context.Context, courierIDs []string) (map[string]bool, error)
	// Connected reports which couriers hold a live session (others excluded: NOT_CONNECTED).
	Connected func(ctx context.Context, courierIDs []string) (map[string]bool, error)
}
