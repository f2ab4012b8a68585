// Package route is the domain of the route service: how far and how long a trip is for a transport mode.
//
// The Service validates requests, applies defaults and caches single-pair estimates; the distances and
// durations themselves come from a Provider (package geodesic for the built-in model, package osrm for an
// OSRM server). Points and transport modes are package geo's, shared with every service. The package
// knows nothing about protobuf or gRPC (internal/layering_test.go checks it); package grpcapi adapts it to
// route.v1.
package route

import (
	"context"
	"time"

	"lastmile/internal/geo"
)

// Estimate is the distance and duration of one trip.
type Estimate struct {
	// DistanceMeters is the travel distance along the route.
	DistanceMeters float64
	// Duration is the expected travel time.
	Duration time.Duration
	// Provider names the Provider that produced the estimate.
	Provider string
	// Mode is the transport mode the estimate is for.
	Mode geo.TransportMode
	// Departure is the departure time the estimate assumed.
	Departure time.Time
}

// MatrixElement is the trip from one origin to one destination of a Matrix.
type MatrixElement struct {
	// OriginIndex is the index of the origin in the request.
	OriginIndex int
	// DestinationIndex is the index of the destination in the request.
	DestinationIndex int
	// Found reports whether a route exists; DistanceMeters and Duration are zero when it is false.
	Found bool
	// DistanceMeters is the travel distance along the route.
	DistanceMeters float64
	// Duration is the expected travel time.
	Duration time.Duration
}

// Matrix holds the trips from every origin to every destination.
type Matrix struct {
	// Elements are in row-major order: all destinations for origin 0, then for origin 1, and so on, so the
	// element for origin i and destination j is Elements[i*len(destinations)+j].
	Elements []MatrixElement
	// Provider names the Provider that produced the matrix.
	Provider string
	// Departure is the departure time the matrix assumed.
	Departure time.Time
}

// Provider computes distances and durations. Implementations must be safe for concurrent use. The Service
// validates every request before calling a Provider, but a Provider must still reject what it cannot handle
// rather than return nonsense.
type Provider interface {
	// Name identifies the provider in estimates and cache keys, such as "geodesic" or "osrm".
	Name() string

	// Route returns the estimate for one trip.
	//
	// Errors: apperr.Invalid when the provider rejects the input (an unsupported mode, a coordinate it
	// cannot use); apperr.NotFound when no route connects the two points; apperr.Unavailable when the
	// provider cannot be reached or answers garbage (retryable); the context's error when ctx ends first.
	Route(ctx context.Context, from, to geo.LatLng, mode geo.TransportMode, departure time.Time) (Estimate, error)

	// Matrix returns one element per origin and destination pair, in row-major order. A pair without a
	// route is an element with Found false, not an error.
	//
	// Errors: apperr.Invalid when the provider rejects the input; apperr.Unavailable when the provider
	// cannot be reached or answers garbage (retryable); the context's error when ctx ends first.
	Matrix(ctx context.Context, origins, destinations []geo.LatLng, mode geo.TransportMode, departure time.Time) (Matrix, error)
}
