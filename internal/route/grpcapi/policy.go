package grpcapi

import (
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/platform/auth"
)

// Policy says who may call each RouteService method. Estimates are public: they reveal nothing about users
// or couriers, the REST edge offers them to anyone, and the per-caller rate limit and the matrix size limit
// bound what one caller can spend. Dispatch calls ComputeMatrix with its service identity, which a public
// rule admits as well.
func Policy() auth.Policy {
	return auth.Policy{
		routev1.RouteService_EstimateRoute_FullMethodName: auth.Public(),
		routev1.RouteService_ComputeMatrix_FullMethodName: auth.Public(),
	}
}
