package grpcapi

import (
	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	"lastmile/internal/geo/geoproto"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/prevalid"
)

var _ grpcserver.Prevalidator = (*Server)(nil)

// Prevalid implements grpcserver.Prevalidator for the calls dispatch makes for every assignment:
// FindNearbyCouriers and ClaimCourier. It checks their contract's rules, or stricter ones (lowercase
// UUIDs, at most 16 excluded couriers), and reports false for every other request.
func (s *Server) Prevalid(req any) bool {
	switch r := req.(type) {
	case *courierv1.FindNearbyCouriersRequest:
		return prevalidNearby(r)
	case *courierv1.ClaimCourierRequest:
		return prevalid.UUID(r.GetCourierId()) && prevalid.UUID(r.GetTaskId()) && prevalid.Timestamp(r.GetExpectedReleaseTime())
	}
	return false
}

// maxPrevalidExcluded bounds the excluded ids Prevalid checks for uniqueness pair by pair.
const maxPrevalidExcluded = 16

func prevalidNearby(r *courierv1.FindNearbyCouriersRequest) bool {
	radius, limit, free := r.GetRadiusMeters(), r.GetLimit(), r.GetMinFreeCapacity()
	if !geoproto.Prevalid(r.GetLocation()) || !(radius > 0 && radius <= 50000) || limit < 0 || limit > 100 ||
		free < 0 || free > 100 || !prevalid.Duration(r.GetMaxLocationAge(), 3600) {
		return false
	}
	modes := r.GetTransportModes()
	if len(modes) > 5 {
		return false
	}
	for i, m := range modes {
		if !geoproto.PrevalidMode(m) {
			return false
		}
		for _, o := range modes[:i] {
			if o == m {
				return false
			}
		}
	}
	ids := r.GetExcludeCourierIds()
	if len(ids) > maxPrevalidExcluded {
		return false
	}
	for i, id := range ids {
		if !prevalid.UUID(id) {
			return false
		}
		for _, o := range ids[:i] {
			if o == id {
				return false
			}
		}
	}
	return true
}
