package grpcapi

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/courier"
	"lastmile/internal/geo"
	"lastmile/internal/geo/geoproto"
)

// oneByOne is encodeSnapshot as it was before encodeSnapshots: every message allocated on its own.
func oneByOne(s courier.Snapshot) *courierv1.CourierSnapshot {
	out := &courierv1.CourierSnapshot{
		CourierId:       s.Courier.ID,
		TransportMode:   geoproto.ModeProto(s.Courier.Mode),
		Status:          encodeStatus(s.Status()),
		AvailableNow:    s.AvailableNow,
		ActiveTaskCount: int32(s.Courier.ActiveTasks),
		Capacity:        int32(s.Courier.Capacity),
		ActiveTaskIds:   slices.Clone(s.TaskIDs),
		DisplayName:     s.Courier.DisplayName,
	}
	if s.HasLocation {
		f := s.Location
		out.LastLocation = &courierv1.LocationFix{
			Location:       &geov1.LatLng{Latitude: f.Lat, Longitude: f.Lng},
			RecordedAt:     timestamppb.New(f.RecordedAt),
			AccuracyMeters: f.AccuracyMeters,
		}
		if f.SpeedMPS >= 0 {
			out.LastLocation.Speed = &f.SpeedMPS
		}
		if f.Heading >= 0 {
			out.LastLocation.Heading = &f.Heading
		}
		out.LocationAge = durationpb.New(s.LocationAge)
	}
	return out
}

func randomSnapshot(r *rand.Rand) courier.Snapshot {
	modes := []geo.TransportMode{geo.Bicycle, geo.Car, geo.Walking, ""}
	statuses := []courier.Status{courier.StatusAvailable, courier.StatusOffline, courier.StatusOnBreak}
	s := courier.Snapshot{
		Courier: courier.Courier{
			ID: "c-" + string(rune('a'+r.IntN(26))), DisplayName: []string{"", "Ana", "Zoë ☃"}[r.IntN(3)],
			Mode: modes[r.IntN(len(modes))], Status: statuses[r.IntN(len(statuses))],
			Capacity: r.IntN(12), ActiveTasks: r.IntN(12),
		},
		AvailableNow: r.IntN(2) == 0,
		HasLocation:  r.IntN(4) > 0,
		LocationAge:  time.Duration(r.Int64N(int64(time.Hour))) - time.Minute,
	}
	switch r.IntN(3) {
	case 0:
	case 1:
		s.TaskIDs = []string{}
	default:
		for range 1 + r.IntN(10) {
			s.TaskIDs = append(s.TaskIDs, "t-"+string(rune('a'+r.IntN(26))))
		}
	}
	s.Location = courier.LocationFix{
		Lat: r.Float64()*180 - 90, Lng: r.Float64()*360 - 180, AccuracyMeters: r.Float64() * 50,
		RecordedAt: time.Unix(r.Int64N(4e9)-1e9, r.Int64N(1e9)).UTC(),
		SpeedMPS:   r.Float64()*30 - 10, Heading: r.Float64()*400 - 40,
	}
	return s
}

// TestEncodeSnapshots: the snapshots encoded in arrays are the messages encoded one by one.
func TestEncodeSnapshots(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 500 {
		snaps := make([]courier.Snapshot, r.IntN(30))
		for i := range snaps {
			snaps[i] = randomSnapshot(r)
		}
		got := encodeSnapshots(len(snaps), func(i int) *courier.Snapshot { return &snaps[i] })
		for i, s := range snaps {
			if want := oneByOne(s); !proto.Equal(&got[i], want) {
				t.Fatalf("encodeSnapshots(...)[%d] = %v, want %v", i, &got[i], want)
			}
			if got := encodeSnapshot(s); !proto.Equal(got, oneByOne(s)) {
				t.Fatalf("encodeSnapshot(%+v) = %v, want %v", s, got, oneByOne(s))
			}
		}
	}
}
