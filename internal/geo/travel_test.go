package geo_test

import (
	"math"
	"testing"
	"time"

	"lastmile/internal/geo"
)

func TestEstimateTravel(t *testing.T) {
	to := geo.LatLng{Lat: 52.53, Lng: 13.42}
	gc := geo.Distance(berlin, to)
	tests := []struct {
		mode     geo.TransportMode
		circuity float64
		kmh      float64
	}{
		{geo.Walking, 1.15, 5},
		{geo.Bicycle, 1.2, 15},
		{geo.Scooter, 1.25, 25},
		{geo.Car, 1.3, 30},
		{geo.Van, 1.3, 27},
		{geo.ModeUnspecified, 1.3, 5},
		{geo.TransportMode("hovercraft"), 1.3, 5},
	}
	for _, tt := range tests {
		dur, dist := geo.EstimateTravel(berlin, to, tt.mode)
		if want := gc * tt.circuity; dist != want {
			t.Errorf("%v: distance = %v, want %v", tt.mode, dist, want)
		}
		if want := time.Duration(math.Round(gc*tt.circuity/(tt.kmh/3.6))) * time.Second; dur != want {
			t.Errorf("%v: duration = %v, want %v", tt.mode, dur, want)
		}
	}
	if dur, dist := geo.EstimateTravel(berlin, berlin, geo.Car); dur != 0 || dist != 0 {
		t.Errorf("EstimateTravel(berlin, berlin) = %v, %v, want 0, 0", dur, dist)
	}
}
