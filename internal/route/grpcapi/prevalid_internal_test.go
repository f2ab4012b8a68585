package grpcapi

import (
	"math"
	"math/rand/v2"
	"testing"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/types/known/timestamppb"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
)

// TestPrevalid: Prevalid accepts no ComputeMatrixRequest that protovalidate refuses, among requests
// drawn at and around the edges of every rule, and accepts the requests dispatch sends.
func TestPrevalid(t *testing.T) {
	s, r := &Server{}, rand.New(rand.NewPCG(9, 10))
	coord := func(edge float64) float64 {
		switch r.IntN(5) {
		case 0:
			return math.Nextafter(edge, math.Inf(1))
		case 1:
			return math.Nextafter(edge, math.Inf(-1))
		case 2:
			return []float64{math.NaN(), math.Inf(1), math.Inf(-1)}[r.IntN(3)]
		case 3:
			return edge
		}
		return r.Float64()*2*edge - edge
	}
	points := func() []*geov1.LatLng {
		n := []int{0, 1, 2, 25, 50, 99, 100, 101}[r.IntN(8)]
		out := make([]*geov1.LatLng, n)
		for i := range out {
			out[i] = &geov1.LatLng{Latitude: 52.5, Longitude: 13.4}
			if r.IntN(n+1) == 0 {
				out[i] = &geov1.LatLng{Latitude: coord(90), Longitude: coord(180)}
			}
		}
		return out
	}
	accepted := 0
	for range 20000 {
		req := &routev1.ComputeMatrixRequest{Origins: points(), Destinations: points(), TransportMode: geov1.TransportMode(r.IntN(8) - 1)}
		if r.IntN(3) > 0 {
			s := []int64{946684800, 4102444800, 1_800_000_000}[r.IntN(3)] + int64(r.IntN(3)) - 1
			req.DepartureTime = &timestamppb.Timestamp{Seconds: s, Nanos: []int32{0, 999_999_999, 1_000_000_000, -1}[r.IntN(4)]}
		}
		if !s.Prevalid(req) {
			continue
		}
		accepted++
		if err := protovalidate.Validate(req); err != nil {
			t.Fatalf("Prevalid(%v) = true, but protovalidate: %v", req, err)
		}
	}
	if accepted < 1000 {
		t.Errorf("Prevalid accepted %d of 20,000: want at least 1,000", accepted)
	}
	typical := &routev1.ComputeMatrixRequest{
		Origins:       []*geov1.LatLng{{Latitude: 52.52, Longitude: 13.405}, {Latitude: 52.5, Longitude: 13.3}},
		Destinations:  []*geov1.LatLng{{Latitude: 52.51, Longitude: 13.41}},
		TransportMode: geov1.TransportMode_TRANSPORT_MODE_CAR,
		DepartureTime: &timestamppb.Timestamp{Seconds: 1_800_000_000},
	}
	if !s.Prevalid(typical) {
		t.Errorf("Prevalid(%v) = false, want true", typical)
	}
	if s.Prevalid(&routev1.EstimateRouteRequest{}) {
		t.Error("Prevalid(EstimateRouteRequest) = true, want false: only the hot request is prevalidated")
	}
}
