package grpcapi

import (
	"math"
	"math/rand/v2"
	"testing"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
)

// edgy draws values at and around the edges of the contract's rules, and ordinary ones.
type edgy struct{ r *rand.Rand }

func (e edgy) float(edges ...float64) float64 {
	if e.r.IntN(2) == 0 {
		x := edges[e.r.IntN(len(edges))]
		switch e.r.IntN(3) {
		case 0:
			return math.Nextafter(x, math.Inf(1))
		case 1:
			return math.Nextafter(x, math.Inf(-1))
		}
		return x
	}
	return []float64{math.NaN(), math.Inf(1), math.Inf(-1), 0, 1, -1, 52.5, 13.4}[e.r.IntN(8)]
}

func (e edgy) int32(edges ...int32) int32 {
	if e.r.IntN(2) == 0 {
		return edges[e.r.IntN(len(edges))] + int32(e.r.IntN(3)) - 1
	}
	return int32(e.r.IntN(300)) - 100
}

func (e edgy) id() string {
	return []string{"0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6a", "0190E0C4-7B1A-7C3E-9A55-3F1E2D4C5B6A", "", "x",
		"0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6", "0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6g", "0190e0c47b1a-7c3e-9a55-3f1e2d4c5b6a-",
		"0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6b", "0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6c"}[e.r.IntN(9)]
}

func (e edgy) latLng() *geov1.LatLng {
	if e.r.IntN(10) == 0 {
		return nil
	}
	return &geov1.LatLng{Latitude: e.float(-90, 90), Longitude: e.float(-180, 180)}
}

func (e edgy) timestamp() *timestamppb.Timestamp {
	if e.r.IntN(4) == 0 {
		return nil
	}
	s := []int64{946684800, 4102444800, 1_800_000_000, 0, -1}[e.r.IntN(5)] + int64(e.r.IntN(3)) - 1
	n := []int32{0, 999_999_999, 1_000_000_000, -1, 5}[e.r.IntN(5)]
	return &timestamppb.Timestamp{Seconds: s, Nanos: n}
}

func (e edgy) duration() *durationpb.Duration {
	if e.r.IntN(4) == 0 {
		return nil
	}
	s := []int64{0, 3600, 300, -1}[e.r.IntN(4)] + int64(e.r.IntN(3)) - 1
	n := []int32{0, 999_999_999, 1_000_000_000, -1, 1}[e.r.IntN(5)]
	return &durationpb.Duration{Seconds: s, Nanos: n}
}

func (e edgy) nearby() *courierv1.FindNearbyCouriersRequest {
	r := &courierv1.FindNearbyCouriersRequest{
		Location:        e.latLng(),
		RadiusMeters:    e.float(0, 50000),
		Limit:           e.int32(0, 100),
		MinFreeCapacity: e.int32(0, 100),
		MaxLocationAge:  e.duration(),
	}
	for range e.r.IntN(7) {
		r.TransportModes = append(r.TransportModes, geov1.TransportMode(e.r.IntN(8)-1))
	}
	for range []int{0, 1, 2, 3, 16, 17, 101}[e.r.IntN(7)] {
		r.ExcludeCourierIds = append(r.ExcludeCourierIds, e.id())
	}
	return r
}

// checkPrevalid fails when Prevalid accepts a request protovalidate refuses, and counts the verdicts.
func checkPrevalid(t *testing.T, s *Server, req proto.Message, accepted *int) {
	t.Helper()
	if !s.Prevalid(req) {
		return
	}
	*accepted++
	if err := protovalidate.Validate(req); err != nil {
		t.Fatalf("Prevalid(%v) = true, but protovalidate: %v", req, err)
	}
}

// TestPrevalid: Prevalid accepts no request that protovalidate refuses, among requests drawn at and around
// the edges of every rule, and accepts the requests dispatch sends.
func TestPrevalid(t *testing.T) {
	s, e := &Server{}, edgy{rand.New(rand.NewPCG(7, 8))}
	nearby, claims := 0, 0
	for range 50000 {
		checkPrevalid(t, s, e.nearby(), &nearby)
		checkPrevalid(t, s, &courierv1.ClaimCourierRequest{CourierId: e.id(), TaskId: e.id(), ExpectedReleaseTime: e.timestamp()}, &claims)
	}
	if nearby < 20 || claims < 1000 {
		t.Errorf("Prevalid accepted %d searches and %d claims of 50,000 each: want at least 20 and 1,000", nearby, claims)
	}
	typical := []proto.Message{
		&courierv1.FindNearbyCouriersRequest{
			Location: &geov1.LatLng{Latitude: 52.52, Longitude: 13.405}, RadiusMeters: 3000, Limit: 20, MinFreeCapacity: 1,
			TransportModes:    []geov1.TransportMode{geov1.TransportMode_TRANSPORT_MODE_BICYCLE, geov1.TransportMode_TRANSPORT_MODE_CAR},
			ExcludeCourierIds: []string{"0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6a", "0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6b"},
			MaxLocationAge:    durationpb.New(300e9),
		},
		&courierv1.ClaimCourierRequest{CourierId: "0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6a", TaskId: "0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6b",
			ExpectedReleaseTime: &timestamppb.Timestamp{Seconds: 1_800_000_000}},
	}
	for _, req := range typical {
		if !s.Prevalid(req) {
			t.Errorf("Prevalid(%v) = false, want true", req)
		}
	}
	if s.Prevalid(&courierv1.ReleaseCourierRequest{CourierId: "0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6a", TaskId: "0190e0c4-7b1a-7c3e-9a55-3f1e2d4c5b6b"}) {
		t.Error("Prevalid(ReleaseCourierRequest) = true, want false: only the hot requests are prevalidated")
	}
}
