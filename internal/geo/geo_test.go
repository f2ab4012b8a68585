package geo_test

import (
	"math"
	"testing"

	"lastmile/internal/geo"
)

var (
	paris   = geo.LatLng{Lat: 48.8566, Lng: 2.3522}
	london  = geo.LatLng{Lat: 51.5074, Lng: -0.1278}
	berlin  = geo.LatLng{Lat: 52.5200, Lng: 13.4050}
	munich  = geo.LatLng{Lat: 48.1351, Lng: 11.5820}
	newYork = geo.LatLng{Lat: 40.7128, Lng: -74.0060}
	boston  = geo.LatLng{Lat: 42.3601, Lng: -71.0589}
)

func TestDistanceKnownPairs(t *testing.T) {
	tests := []struct {
		name       string
		a, b       geo.LatLng
		wantMeters float64
	}{
		{"Paris-London", paris, london, 343_500},
		{"Berlin-Munich", berlin, munich, 504_000},
		{"NewYork-Boston", newYork, boston, 306_000},
		{"quarter meridian", geo.LatLng{}, geo.LatLng{Lat: 90}, math.Pi / 2 * geo.EarthRadiusMeters},
		{"antipodes", geo.LatLng{}, geo.LatLng{Lng: 180}, math.Pi * geo.EarthRadiusMeters},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := geo.Distance(tt.a, tt.b)
			if rel := math.Abs(got-tt.wantMeters) / tt.wantMeters; rel > 0.005 {
				t.Errorf("Distance(%v, %v) = %.0f m, want %.0f m ± 0.5%%", tt.a, tt.b, got, tt.wantMeters)
			}
			if back := geo.Distance(tt.b, tt.a); back != got {
				t.Errorf("Distance is not symmetric: %v one way, %v back", got, back)
			}
		})
	}
}

func TestDistanceSamePointIsZero(t *testing.T) {
	for _, p := range []geo.LatLng{paris, {Lat: 90}, {Lat: -90, Lng: 180}, {}} {
		if got := geo.Distance(p, p); got != 0 {
			t.Errorf("Distance(%v, %v) = %v, want 0", p, p, got)
		}
	}
}

func TestDistanceAntipodesStayFinite(t *testing.T) {
	// Rounding pushes the haversine a hair above 1 for (near-)antipodal points.
	a, b := geo.LatLng{Lat: 45, Lng: 10}, geo.LatLng{Lat: -45, Lng: -170}
	if got, want := geo.Distance(a, b), math.Pi*geo.EarthRadiusMeters; math.IsNaN(got) || math.Abs(got-want) > 1e-6 {
		t.Errorf("Distance(%v, %v) = %v, want %v", a, b, got, want)
	}
}

func TestBearing(t *testing.T) {
	tests := []struct {
		name string
		a, b geo.LatLng
		want float64
	}{
		{"north", geo.LatLng{}, geo.LatLng{Lat: 1}, 0},
		{"east on the equator", geo.LatLng{}, geo.LatLng{Lng: 1}, 90},
		{"south", geo.LatLng{Lat: 1}, geo.LatLng{}, 180},
		{"west on the equator", geo.LatLng{}, geo.LatLng{Lng: -1}, 270},
		{"east across the antimeridian", geo.LatLng{Lng: 179.5}, geo.LatLng{Lng: -179.5}, 90},
		{"same point", paris, paris, 0},
		// Reference values computed independently (Python math, the same spherical forward azimuth), to 0.1°.
		{"Paris to London", paris, london, 330.0},
		{"Berlin to Munich", berlin, munich, 195.6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := geo.Bearing(tt.a, tt.b)
			if math.Abs(got-tt.want) > 0.1 {
				t.Errorf("Bearing(%v, %v) = %.3f°, want %.1f°", tt.a, tt.b, got, tt.want)
			}
			if got < 0 || got >= 360 {
				t.Errorf("Bearing(%v, %v) = %v, want within [0, 360)", tt.a, tt.b, got)
			}
		})
	}
}

func TestLatLngValid(t *testing.T) {
	tests := []struct {
		p    geo.LatLng
		want bool
	}{
		{geo.LatLng{}, true},
		{geo.LatLng{Lat: 90, Lng: 180}, true},
		{geo.LatLng{Lat: -90, Lng: -180}, true},
		{geo.LatLng{Lat: 90.0001}, false},
		{geo.LatLng{Lng: -180.0001}, false},
		{geo.LatLng{Lat: math.NaN()}, false},
		{geo.LatLng{Lng: math.NaN()}, false},
		{geo.LatLng{Lat: math.Inf(1)}, false},
	}
	for _, tt := range tests {
		if got := tt.p.Valid(); got != tt.want {
			t.Errorf("%v.Valid() = %v, want %v", tt.p, got, tt.want)
		}
	}
}

func TestBox(t *testing.T) {
	berlinBox := geo.Box{South: 52.3, West: 13.0, North: 52.7, East: 13.8}
	dateLine := geo.Box{South: -1, West: 179.9, North: 1, East: -179.9}
	tests := []struct {
		name string
		box  geo.Box
		p    geo.LatLng
		want bool
	}{
		{"inside", berlinBox, berlin, true},
		{"corner", berlinBox, geo.LatLng{Lat: 52.3, Lng: 13.0}, true},
		{"north of it", berlinBox, geo.LatLng{Lat: 52.8, Lng: 13.4}, false},
		{"west of it", berlinBox, geo.LatLng{Lat: 52.5, Lng: 12.9}, false},
		{"across the antimeridian, east side", dateLine, geo.LatLng{Lng: 179.95}, true},
		{"across the antimeridian, west side", dateLine, geo.LatLng{Lng: -179.95}, true},
		{"across the antimeridian, on 180", dateLine, geo.LatLng{Lng: 180}, true},
		{"across the antimeridian, outside", dateLine, geo.LatLng{Lng: 0}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.box.Contains(tt.p); got != tt.want {
				t.Errorf("%+v.Contains(%v) = %v, want %v", tt.box, tt.p, got, tt.want)
			}
		})
	}
	for _, tt := range []struct {
		box  geo.Box
		want bool
	}{
		{berlinBox, true},
		{dateLine, true},
		{geo.Box{South: 1, North: -1}, false},
		{geo.Box{South: -91, North: 0}, false},
		{geo.Box{West: 181}, false},
		{geo.Box{South: math.NaN()}, false},
	} {
		if got := tt.box.Valid(); got != tt.want {
			t.Errorf("%+v.Valid() = %v, want %v", tt.box, got, tt.want)
		}
	}
}

func TestRadiansDegrees(t *testing.T) {
	if got := geo.Radians(180); got != math.Pi {
		t.Errorf("Radians(180) = %v, want π", got)
	}
	if got := geo.Degrees(math.Pi / 2); got != 90 {
		t.Errorf("Degrees(π/2) = %v, want 90", got)
	}
}
