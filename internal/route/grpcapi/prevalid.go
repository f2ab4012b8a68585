package grpcapi

import (
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/geo/geoproto"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/prevalid"
)

var _ grpcserver.Prevalidator = (*Server)(nil)

// Prevalid implements grpcserver.Prevalidator for the call dispatch makes for every batch of
// assignments, ComputeMatrix: it checks the contract's rules and reports false for every other request.
func (s *Server) Prevalid(req any) bool {
	r, ok := req.(*routev1.ComputeMatrixRequest)
	if !ok {
		return false
	}
	origins, dests := r.GetOrigins(), r.GetDestinations()
	if len(origins) < 1 || len(origins) > 100 || len(dests) < 1 || len(dests) > 100 || len(origins)*len(dests) > 2500 ||
		!geoproto.PrevalidMode(r.GetTransportMode()) || !prevalid.Timestamp(r.GetDepartureTime()) {
		return false
	}
	for _, p := range origins {
		if !geoproto.Prevalid(p) {
			return false
		}
	}
	for _, p := range dests {
		if !geoproto.Prevalid(p) {
			return false
		}
	}
	return true
}
