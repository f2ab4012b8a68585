package geodesic_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/route"
	"lastmile/internal/route/geodesic"
)

var (
	paris   = geo.LatLng{Lat: 48.8566, Lng: 2.3522}
	london  = geo.LatLng{Lat: 51.5074, Lng: -0.1278}
	berlin  = geo.LatLng{Lat: 52.5200, Lng: 13.4050}
	munich  = geo.LatLng{Lat: 48.1351, Lng: 11.5820}
	newYork = geo.LatLng{Lat: 40.7128, Lng: -74.0060}
	boston  = geo.LatLng{Lat: 42.3601, Lng: -71.0589}
)

// at returns 2026-03-10 at the given hour, UTC.
func at(hour int) time.Time { return time.Date(2026, 3, 10, hour, 0, 0, 0, time.UTC) }

func newProvider(t *testing.T, opts geodesic.Options) *geodesic.Provider {
	t.Helper()
	p, err := geodesic.New(opts)
	if err != nil {
		t.Fatalf("geodesic.New(%+v) = %v", opts, err)
	}
	return p
}

func TestRouteDistanceIsGreatCircleTimesCircuity(t *testing.T) {
	p := newProvider(t, geodesic.Options{})
	for _, mode := range geo.Modes {
		t.Run(mode.String(), func(t *testing.T) {
			est, err := p.Route(t.Context(), paris, london, mode, at(3))
			if err != nil {
				t.Fatalf("Route = %v", err)
			}
			if got, want := est.DistanceMeters, geo.Distance(paris, london)*geodesic.DefaultCircuity[mode]; got != want {
				t.Errorf("DistanceMeters = %v, want %v", got, want)
			}
			if est.Duration%time.Second != 0 {
				t.Errorf("Duration = %v, want whole seconds", est.Duration)
			}
			if est.Provider != "geodesic" || est.Mode != mode || !est.Departure.Equal(at(3)) {
				t.Errorf("estimate = %+v, want provider geodesic, mode %v, departure %v", est, mode, at(3))
			}
		})
	}
}

func TestRouteDurationIsDistanceOverSpeed(t *testing.T) {
	p := newProvider(t, geodesic.Options{Congestion: geodesic.FlatCongestion(), SpeedKMH: map[geo.TransportMode]float64{geo.Car: 60}})
	est, err := p.Route(t.Context(), berlin, munich, geo.Car, at(8))
	if err != nil {
		t.Fatalf("Route = %v", err)
	}
	seconds := geo.Distance(berlin, munich) * 1.3 / (60 / 3.6)
	if got, want := est.Duration, time.Duration(math.Round(seconds))*time.Second; got != want {
		t.Errorf("Duration = %v, want %v", got, want)
	}
}

func TestRouteIdenticalPoints(t *testing.T) {
	p := newProvider(t, geodesic.Options{})
	est, err := p.Route(t.Context(), paris, paris, geo.Van, at(8))
	if err != nil {
		t.Fatalf("Route = %v", err)
	}
	if est.DistanceMeters != 0 || est.Duration != 0 {
		t.Errorf("Route(paris, paris) = %v m, %v, want 0 m, 0s", est.DistanceMeters, est.Duration)
	}
}

func TestRouteModeOrderingAtNight(t *testing.T) {
	p := newProvider(t, geodesic.Options{})
	dur := map[geo.TransportMode]time.Duration{}
	for _, mode := range geo.Modes {
		est, err := p.Route(t.Context(), newYork, boston, mode, at(3))
		if err != nil {
			t.Fatalf("Route(%v) = %v", mode, err)
		}
		dur[mode] = est.Duration
	}
	slowToFast := []geo.TransportMode{geo.Walking, geo.Bicycle, geo.Scooter, geo.Car}
	for i := 1; i < len(slowToFast); i++ {
		slow, fast := slowToFast[i-1], slowToFast[i]
		if dur[slow] <= dur[fast] {
			t.Errorf("at 03:00 %v takes %v and %v %v, want %v slower", slow, dur[slow], fast, dur[fast], slow)
		}
	}
	if dur[geo.Van] <= dur[geo.Car] {
		t.Errorf("at 03:00 van takes %v and car %v, want van slower", dur[geo.Van], dur[geo.Car])
	}
}

func TestCongestion(t *testing.T) {
	p := newProvider(t, geodesic.Options{})
	tests := []struct {
		mode       geo.TransportMode
		wantSlower bool
	}{
		{geo.Car, true},
		{geo.Van, true},
		{geo.Scooter, true},
		{geo.Bicycle, false},
		{geo.Walking, false},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			night, err := p.Route(t.Context(), paris, london, tt.mode, at(3))
			if err != nil {
				t.Fatalf("Route at 03:00 = %v", err)
			}
			peak, err := p.Route(t.Context(), paris, london, tt.mode, at(8))
			if err != nil {
				t.Fatalf("Route at 08:00 = %v", err)
			}
			if got := peak.Duration > night.Duration; got != tt.wantSlower {
				t.Errorf("08:00 takes %v, 03:00 takes %v: peak slower = %v, want %v", peak.Duration, night.Duration, got, tt.wantSlower)
			}
			if peak.DistanceMeters != night.DistanceMeters {
				t.Errorf("distance changes with the hour: %v at 08:00, %v at 03:00", peak.DistanceMeters, night.DistanceMeters)
			}
		})
	}
}

func TestCongestionUsesLocalHour(t *testing.T) {
	utc := newProvider(t, geodesic.Options{})
	plus2 := newProvider(t, geodesic.Options{Location: time.FixedZone("UTC+2", 2*60*60)})
	// 06:00 UTC is 08:00 at UTC+2, the morning peak.
	local, err := plus2.Route(t.Context(), paris, london, geo.Car, at(6))
	if err != nil {
		t.Fatalf("Route = %v", err)
	}
	peak, err := utc.Route(t.Context(), paris, london, geo.Car, at(8))
	if err != nil {
		t.Fatalf("Route = %v", err)
	}
	if local.Duration != peak.Duration {
		t.Errorf("06:00 UTC at UTC+2 takes %v, want the 08:00 UTC duration in UTC, %v", local.Duration, peak.Duration)
	}
}

func TestFlatCongestionIgnoresHour(t *testing.T) {
	p := newProvider(t, geodesic.Options{Congestion: geodesic.FlatCongestion()})
	night, err := p.Route(t.Context(), paris, london, geo.Car, at(3))
	if err != nil {
		t.Fatalf("Route at 03:00 = %v", err)
	}
	peak, err := p.Route(t.Context(), paris, london, geo.Car, at(8))
	if err != nil {
		t.Fatalf("Route at 08:00 = %v", err)
	}
	if night.Duration != peak.Duration {
		t.Errorf("flat profile: 03:00 takes %v, 08:00 takes %v, want equal", night.Duration, peak.Duration)
	}
}

func TestMatrixMatchesRoute(t *testing.T) {
	p := newProvider(t, geodesic.Options{})
	origins := []geo.LatLng{paris, berlin}
	destinations := []geo.LatLng{london, munich, paris}
	m, err := p.Matrix(t.Context(), origins, destinations, geo.Scooter, at(17))
	if err != nil {
		t.Fatalf("Matrix = %v", err)
	}
	var want []route.MatrixElement
	for i, o := range origins {
		for j, d := range destinations {
			est, err := p.Route(t.Context(), o, d, geo.Scooter, at(17))
			if err != nil {
				t.Fatalf("Route = %v", err)
			}
			want = append(want, route.MatrixElement{OriginIndex: i, DestinationIndex: j, Found: true, DistanceMeters: est.DistanceMeters, Duration: est.Duration})
		}
	}
	if diff := cmp.Diff(want, m.Elements); diff != "" {
		t.Errorf("Matrix elements mismatch (-want +got):\n%s", diff)
	}
	if m.Provider != "geodesic" || !m.Departure.Equal(at(17)) {
		t.Errorf("Matrix = provider %q, departure %v, want geodesic, %v", m.Provider, m.Departure, at(17))
	}
}

func TestRejectsUnspecifiedMode(t *testing.T) {
	p := newProvider(t, geodesic.Options{})
	_, err := p.Route(t.Context(), paris, london, geo.ModeUnspecified, at(3))
	if got, want := apperr.CodeOf(err), apperr.Invalid; got != want {
		t.Errorf("Route(unspecified) error code = %q, want %q", got, want)
	}
	_, err = p.Matrix(t.Context(), []geo.LatLng{paris}, []geo.LatLng{london}, geo.TransportMode("hovercraft"), at(3))
	if got, want := apperr.CodeOf(err), apperr.Invalid; got != want {
		t.Errorf("Matrix(mode 9) error code = %q, want %q", got, want)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	badProfile := geodesic.FlatCongestion()
	badProfile[7] = math.NaN()
	tests := []struct {
		name string
		opts geodesic.Options
	}{
		{"circuity below 1", geodesic.Options{Circuity: map[geo.TransportMode]float64{geo.Car: 0.9}}},
		{"NaN circuity", geodesic.Options{Circuity: map[geo.TransportMode]float64{geo.Car: math.NaN()}}},
		{"zero speed", geodesic.Options{SpeedKMH: map[geo.TransportMode]float64{geo.Walking: 0}}},
		{"infinite speed", geodesic.Options{SpeedKMH: map[geo.TransportMode]float64{geo.Van: math.Inf(1)}}},
		{"NaN congestion", geodesic.Options{Congestion: badProfile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := geodesic.New(tt.opts); err == nil {
				t.Errorf("geodesic.New(%s) = nil error, want an error", tt.name)
			}
		})
	}
}

func TestRouteHonoursCanceledContext(t *testing.T) {
	p := newProvider(t, geodesic.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := p.Route(ctx, paris, london, geo.Car, at(3)); !errors.Is(err, context.Canceled) {
		t.Errorf("Route with a canceled context = %v, want context.Canceled", err)
	}
}

// TestFlatMatchesLocalEstimate: with a flat congestion profile the provider answers exactly what
// geo.EstimateTravel (dispatch's fallback when route is down) answers, for every mode.
func TestFlatMatchesLocalEstimate(t *testing.T) {
	p := newProvider(t, geodesic.Options{Congestion: geodesic.FlatCongestion()})
	for _, mode := range geo.Modes {
		est, err := p.Route(t.Context(), berlin, geo.LatLng{Lat: 52.55, Lng: 13.30}, mode, at(8))
		if err != nil {
			t.Fatalf("Route(%v) = %v", mode, err)
		}
		dur, dist := geo.EstimateTravel(berlin, geo.LatLng{Lat: 52.55, Lng: 13.30}, mode)
		if est.Duration != dur || est.DistanceMeters != dist {
			t.Errorf("%v: Route = %v, %v m; EstimateTravel = %v, %v m", mode, est.Duration, est.DistanceMeters, dur, dist)
		}
	}
}
