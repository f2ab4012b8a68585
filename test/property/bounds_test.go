package property_test

import (
	"errors"
	"testing"
	"time"

	"buf.build/go/protovalidate"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
)

// The API's time range: request timestamps lie in [2000-01-01, 2100-01-01) UTC.
var (
	firstInstant = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	endInstant   = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// TestRequestTimestampBounds checks every request timestamp of the landed contracts at the edges of the
// API's time range, and that get_availability.range judges ranges centuries long as violations instead
// of overflowing.
func TestRequestTimestampBounds(t *testing.T) {
	const id = "0b8e6c1e-4d5f-4a8e-9c3b-2f1a7d6e5c4b"
	ll := &geov1.LatLng{Latitude: 1, Longitude: 1}
	requests := map[string]func(time.Time) proto.Message{
		// ReportLocations checks each fix on its own (one bad fix is skipped, not fatal), with these rules.
		"LocationFix.recorded_at": func(at time.Time) proto.Message {
			return &courierv1.LocationFix{Location: ll, RecordedAt: timestamppb.New(at)}
		},
		"SetAvailabilityRequest.hours": func(at time.Time) proto.Message {
			return &courierv1.SetAvailabilityRequest{CourierId: id, Hours: []*timestamppb.Timestamp{timestamppb.New(at)}}
		},
		"GetAvailabilityRequest.start_time": func(at time.Time) proto.Message {
			return &courierv1.GetAvailabilityRequest{CourierId: id, StartTime: timestamppb.New(at), EndTime: timestamppb.New(at.Add(time.Nanosecond))}
		},
		"GetAvailabilityRequest.end_time": func(at time.Time) proto.Message {
			return &courierv1.GetAvailabilityRequest{CourierId: id, StartTime: timestamppb.New(at.Add(-time.Hour)), EndTime: timestamppb.New(at)}
		},
		"IsAvailableRequest.time": func(at time.Time) proto.Message {
			return &courierv1.IsAvailableRequest{CourierId: id, Time: timestamppb.New(at)}
		},
		"ClaimCourierRequest.expected_release_time": func(at time.Time) proto.Message {
			return &courierv1.ClaimCourierRequest{CourierId: id, TaskId: id, ExpectedReleaseTime: timestamppb.New(at)}
		},
		"TimeWindow.start_time": func(at time.Time) proto.Message {
			return &dispatchv1.TimeWindow{StartTime: timestamppb.New(at), EndTime: timestamppb.New(at.Add(time.Nanosecond))}
		},
		"TimeWindow.end_time": func(at time.Time) proto.Message {
			return &dispatchv1.TimeWindow{StartTime: timestamppb.New(at.Add(-time.Hour)), EndTime: timestamppb.New(at)}
		},
		"EstimateRouteRequest.departure_time": func(at time.Time) proto.Message {
			return &routev1.EstimateRouteRequest{Origin: ll, Destination: ll, TransportMode: geov1.TransportMode_TRANSPORT_MODE_CAR, DepartureTime: timestamppb.New(at)}
		},
		"ComputeMatrixRequest.departure_time": func(at time.Time) proto.Message {
			return &routev1.ComputeMatrixRequest{Origins: []*geov1.LatLng{ll}, Destinations: []*geov1.LatLng{ll}, TransportMode: geov1.TransportMode_TRANSPORT_MODE_CAR, DepartureTime: timestamppb.New(at)}
		},
	}
	edges := []struct {
		name      string
		at        time.Time
		wantValid bool
	}{
		{"year 1", time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), false},
		{"just before 2000", firstInstant.Add(-time.Nanosecond), false},
		{"2000-01-01", firstInstant.Add(time.Hour), true},
		{"last hour before 2100", endInstant.Add(-time.Hour), true},
		{"2100-01-01", endInstant.Add(time.Hour), false},
		{"year 9999", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), false},
	}
	for field, build := range requests {
		for _, e := range edges {
			err := protovalidate.Validate(build(e.at))
			var verr *protovalidate.ValidationError
			switch {
			case e.wantValid && err != nil:
				t.Errorf("%s at %s: Validate = %v, want nil", field, e.name, err)
			case !e.wantValid && !errors.As(err, &verr):
				t.Errorf("%s at %s: Validate = %v, want a *protovalidate.ValidationError", field, e.name, err)
			}
		}
	}
}

// TestAvailabilityRangeRule checks get_availability.range at its limits, including ranges whose exact
// difference does not fit a duration.
func TestAvailabilityRangeRule(t *testing.T) {
	start := time.Date(2030, 6, 1, 10, 0, 0, 0, time.UTC)
	const window = 744 * time.Hour
	tests := []struct {
		name       string
		start, end time.Time
		wantValid  bool
	}{
		{"one hour", start, start.Add(time.Hour), true},
		{"exactly 744h", start, start.Add(window), true},
		{"744h and a nanosecond", start, start.Add(window + time.Nanosecond), false},
		{"744h and a half second, from half a second", start.Add(time.Second / 2), start.Add(time.Second/2 + window + time.Second/2), false},
		{"empty", start, start, false},
		{"reversed", start, start.Add(-time.Hour), false},
		{"a century", firstInstant, endInstant.Add(-time.Hour), false},
		{"year 1 to 9999", time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC), time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), false},
	}
	for _, tt := range tests {
		err := protovalidate.Validate(&courierv1.GetAvailabilityRequest{
			CourierId: "0b8e6c1e-4d5f-4a8e-9c3b-2f1a7d6e5c4b",
			StartTime: timestamppb.New(tt.start), EndTime: timestamppb.New(tt.end),
		})
		var verr *protovalidate.ValidationError
		switch {
		case tt.wantValid && err != nil:
			t.Errorf("GetAvailability %s: Validate = %v, want nil", tt.name, err)
		case !tt.wantValid && !errors.As(err, &verr):
			t.Errorf("GetAvailability %s: Validate = %v, want a *protovalidate.ValidationError", tt.name, err)
		}
	}
}
