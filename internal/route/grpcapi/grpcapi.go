// Package grpcapi adapts the route domain to the lastmile.route.v1 gRPC contract: it decodes requests,
// calls route.Service and encodes the answers. Errors come back as domain errors, unchanged; the server's
// error interceptor maps them to gRPC status codes (grpcerr.ToStatus).
package grpcapi

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/geo"
	"lastmile/internal/geo/geoproto"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/route"
)

// Server implements routev1.RouteServiceServer over a route.Service.
type Server struct {
	routev1.UnimplementedRouteServiceServer
	svc *route.Service
}

var _ routev1.RouteServiceServer = (*Server)(nil)

// NewServer returns a Server answering with svc.
func NewServer(svc *route.Service) *Server { return &Server{svc: svc} }

// Register registers srv on s.
func Register(s grpc.ServiceRegistrar, srv *Server) { routev1.RegisterRouteServiceServer(s, srv) }

// EstimateRoute implements routev1.RouteServiceServer.
func (s *Server) EstimateRoute(ctx context.Context, req *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error) {
	var d decoder
	in := route.EstimateRequest{
		Origin:      d.point("origin", req.GetOrigin()),
		Destination: d.point("destination", req.GetDestination()),
		Mode:        geoproto.Mode(req.GetTransportMode()),
		Departure:   d.timestamp("departure_time", req.GetDepartureTime()),
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	est, err := s.svc.EstimateRoute(ctx, in)
	if err != nil {
		return nil, err
	}
	return &routev1.RouteEstimate{
		DistanceMeters: est.DistanceMeters,
		Duration:       durationpb.New(est.Duration),
		Provider:       est.Provider,
		TransportMode:  geoproto.ModeProto(est.Mode),
		DepartureTime:  timestamppb.New(est.Departure),
	}, nil
}

// ComputeMatrix implements routev1.RouteServiceServer.
func (s *Server) ComputeMatrix(ctx context.Context, req *routev1.ComputeMatrixRequest) (*routev1.ComputeMatrixResponse, error) {
	var d decoder
	in := route.MatrixRequest{
		Origins:      d.points("origins", req.GetOrigins()),
		Destinations: d.points("destinations", req.GetDestinations()),
		Mode:         geoproto.Mode(req.GetTransportMode()),
		Departure:    d.timestamp("departure_time", req.GetDepartureTime()),
	}
	if err := d.err(); err != nil {
		return nil, err
	}
	m, err := s.svc.ComputeMatrix(ctx, in)
	if err != nil {
		return nil, err
	}
	return encodeMatrix(m), nil
}

// encodeMatrix returns the API message of m. A matrix has up to 2,500 elements, each a message with a
// duration message: they are allocated in two arrays (one element and one duration per element), not
// one at a time, so a matrix costs four allocations whatever its size.
func encodeMatrix(m route.Matrix) *routev1.ComputeMatrixResponse {
	out := &routev1.ComputeMatrixResponse{
		Elements:      make([]*routev1.MatrixElement, len(m.Elements)),
		Provider:      m.Provider,
		DepartureTime: timestamppb.New(m.Departure),
	}
	elems := make([]routev1.MatrixElement, len(m.Elements))
	durs := make([]durationpb.Duration, len(m.Elements))
	for i, e := range m.Elements {
		el := &elems[i]
		// Indexes are below the service's limits (at most 100 by default), far inside int32.
		el.OriginIndex = int32(e.OriginIndex)
		el.DestinationIndex = int32(e.DestinationIndex)
		el.Condition = routev1.RouteCondition_ROUTE_CONDITION_ROUTE_NOT_FOUND
		if e.Found {
			el.Condition = routev1.RouteCondition_ROUTE_CONDITION_ROUTE_EXISTS
			el.DistanceMeters = e.DistanceMeters
			d := &durs[i]
			// durationpb.New's arithmetic, without its allocation.
			nanos := e.Duration.Nanoseconds()
			d.Seconds, d.Nanos = nanos/1e9, int32(nanos%1e9)
			el.Duration = d
		}
		out.Elements[i] = el
	}
	return out
}

// decoder collects what the domain cannot see once the request is decoded: missing messages and malformed
// timestamps. Coordinate ranges and the mode are the domain's to check.
type decoder struct {
	violations []apperr.FieldViolation
}

func (d *decoder) point(field string, p *geov1.LatLng) geo.LatLng {
	if p == nil {
		d.violations = append(d.violations, apperr.FieldViolation{Field: field, Description: "is required"})
		return geo.LatLng{}
	}
	return geoproto.LatLng(p)
}

func (d *decoder) points(field string, ps []*geov1.LatLng) []geo.LatLng {
	out := make([]geo.LatLng, len(ps))
	for i, p := range ps {
		if p == nil { // the field's name formatted only when it is needed
			out[i] = d.point(fmt.Sprintf("%s[%d]", field, i), p)
			continue
		}
		out[i] = geoproto.LatLng(p)
	}
	return out
}

// timestamp returns the zero time for an absent timestamp, which the domain reads as "now".
func (d *decoder) timestamp(field string, ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	if err := ts.CheckValid(); err != nil {
		d.violations = append(d.violations, apperr.FieldViolation{Field: field, Description: "is not a valid timestamp"})
		return time.Time{}
	}
	return ts.AsTime()
}

func (d *decoder) err() error {
	if len(d.violations) == 0 {
		return nil
	}
	return apperr.InvalidRequest(d.violations...)
}
