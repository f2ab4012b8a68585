package route_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/route"
)

// fakeProvider counts calls and answers a fixed estimate, or err when set.
type fakeProvider struct {
	mu            sync.Mutex
	routeCalls    int
	matrixCalls   int
	lastDeparture time.Time
	err           error
	dropElement   bool // Matrix returns one element too few
}

func (f *fakeProvider) Name() string { return "fake" }

func (f *fakeProvider) Route(_ context.Context, _, _ geo.LatLng, mode geo.TransportMode, departure time.Time) (route.Estimate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routeCalls++
	f.lastDeparture = departure
	if f.err != nil {
		return route.Estimate{}, f.err
	}
	return route.Estimate{DistanceMeters: 1000, Duration: 2 * time.Minute, Provider: "fake", Mode: mode, Departure: departure}, nil
}

func (f *fakeProvider) Matrix(_ context.Context, origins, destinations []geo.LatLng, _ geo.TransportMode, departure time.Time) (route.Matrix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.matrixCalls++
	f.lastDeparture = departure
	if f.err != nil {
		return route.Matrix{}, f.err
	}
	var elems []route.MatrixElement
	for i := range origins {
		for j := range destinations {
			elems = append(elems, route.MatrixElement{OriginIndex: i, DestinationIndex: j, Found: true, DistanceMeters: 1, Duration: time.Second})
		}
	}
	if f.dropElement {
		elems = elems[1:]
	}
	return route.Matrix{Elements: elems, Provider: "fake", Departure: departure}, nil
}

func (f *fakeProvider) calls() (routeCalls, matrixCalls int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.routeCalls, f.matrixCalls
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

var (
	paris  = geo.LatLng{Lat: 48.8566, Lng: 2.3522}
	london = geo.LatLng{Lat: 51.5074, Lng: -0.1278}
	t0     = time.Date(2026, 3, 10, 8, 15, 0, 0, time.UTC)
)

func points(n int) []geo.LatLng {
	ps := make([]geo.LatLng, n)
	for i := range ps {
		ps[i] = geo.LatLng{Lat: 48 + float64(i)/1000, Lng: 2}
	}
	return ps
}

// fields returns the field paths of err's violations, failing the test unless err is an Invalid *apperr.Error.
func fields(t *testing.T, err error) []string {
	t.Helper()
	e := apperr.As(err)
	if e == nil || e.Code != apperr.Invalid {
		t.Fatalf("error = %v, want an apperr.Invalid error", err)
	}
	var fs []string
	for _, v := range e.Violations {
		fs = append(fs, v.Field)
	}
	return fs
}

func TestEstimateRouteValidation(t *testing.T) {
	tests := []struct {
		name string
		req  route.EstimateRequest
		want []string
	}{
		{"NaN origin latitude", route.EstimateRequest{Origin: geo.LatLng{Lat: math.NaN()}, Destination: london, Mode: geo.Car}, []string{"origin.latitude"}},
		{"+Inf destination longitude", route.EstimateRequest{Origin: paris, Destination: geo.LatLng{Lng: math.Inf(1)}, Mode: geo.Car}, []string{"destination.longitude"}},
		{"-Inf origin latitude", route.EstimateRequest{Origin: geo.LatLng{Lat: math.Inf(-1)}, Destination: london, Mode: geo.Car}, []string{"origin.latitude"}},
		{"latitude 91", route.EstimateRequest{Origin: geo.LatLng{Lat: 91}, Destination: london, Mode: geo.Car}, []string{"origin.latitude"}},
		{"longitude -181", route.EstimateRequest{Origin: paris, Destination: geo.LatLng{Lng: -181}, Mode: geo.Walking}, []string{"destination.longitude"}},
		{"unspecified mode", route.EstimateRequest{Origin: paris, Destination: london}, []string{"transport_mode"}},
		{"unknown mode", route.EstimateRequest{Origin: paris, Destination: london, Mode: geo.TransportMode("hovercraft")}, []string{"transport_mode"}},
		{
			"everything wrong",
			route.EstimateRequest{Origin: geo.LatLng{Lat: -90.5, Lng: 180.5}, Destination: geo.LatLng{Lat: math.NaN(), Lng: math.NaN()}},
			[]string{"origin.latitude", "origin.longitude", "destination.latitude", "destination.longitude", "transport_mode"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &fakeProvider{}
			svc := route.NewService(p, route.Options{})
			_, err := svc.EstimateRoute(t.Context(), tt.req)
			if diff := cmp.Diff(tt.want, fields(t, err)); diff != "" {
				t.Errorf("EstimateRoute(%+v) violations mismatch (-want +got):\n%s", tt.req, diff)
			}
			if got, _ := p.calls(); got != 0 {
				t.Errorf("provider Route calls = %d, want 0", got)
			}
		})
	}
}

func TestEstimateRouteAcceptsBoundaries(t *testing.T) {
	svc := route.NewService(&fakeProvider{}, route.Options{})
	req := route.EstimateRequest{Origin: geo.LatLng{Lat: -90, Lng: -180}, Destination: geo.LatLng{Lat: 90, Lng: 180}, Mode: geo.Bicycle}
	if _, err := svc.EstimateRoute(t.Context(), req); err != nil {
		t.Errorf("EstimateRoute(%+v) = %v, want nil error", req, err)
	}
}

func TestComputeMatrixValidation(t *testing.T) {
	badOrigins := points(5)
	badOrigins[3].Lng = 200
	badDests := points(2)
	badDests[1].Lat = math.NaN()
	tests := []struct {
		name string
		req  route.MatrixRequest
		want []string
	}{
		{"101 origins", route.MatrixRequest{Origins: points(101), Destinations: points(1), Mode: geo.Car}, []string{"origins"}},
		{"101 destinations", route.MatrixRequest{Origins: points(1), Destinations: points(101), Mode: geo.Car}, []string{"destinations"}},
		{"60x60 over 2500 elements", route.MatrixRequest{Origins: points(60), Destinations: points(60), Mode: geo.Car}, []string{"origins"}},
		{"no origins", route.MatrixRequest{Destinations: points(1), Mode: geo.Car}, []string{"origins"}},
		{"no destinations", route.MatrixRequest{Origins: points(1), Mode: geo.Car}, []string{"destinations"}},
		{"bad origin longitude", route.MatrixRequest{Origins: badOrigins, Destinations: points(1), Mode: geo.Van}, []string{"origins[3].longitude"}},
		{"NaN destination latitude", route.MatrixRequest{Origins: points(1), Destinations: badDests, Mode: geo.Van}, []string{"destinations[1].latitude"}},
		{"unspecified mode", route.MatrixRequest{Origins: points(1), Destinations: points(1)}, []string{"transport_mode"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &fakeProvider{}
			svc := route.NewService(p, route.Options{})
			_, err := svc.ComputeMatrix(t.Context(), tt.req)
			if diff := cmp.Diff(tt.want, fields(t, err)); diff != "" {
				t.Errorf("ComputeMatrix(%d x %d) violations mismatch (-want +got):\n%s", len(tt.req.Origins), len(tt.req.Destinations), diff)
			}
			if _, got := p.calls(); got != 0 {
				t.Errorf("provider Matrix calls = %d, want 0", got)
			}
		})
	}
}

func TestComputeMatrixAcceptsLimits(t *testing.T) {
	tests := []struct {
		name         string
		origins      int
		destinations int
	}{
		{"100x25", 100, 25},
		{"25x100", 25, 100},
		{"50x50", 50, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := route.NewService(&fakeProvider{}, route.Options{})
			m, err := svc.ComputeMatrix(t.Context(), route.MatrixRequest{Origins: points(tt.origins), Destinations: points(tt.destinations), Mode: geo.Car})
			if err != nil {
				t.Fatalf("ComputeMatrix(%s) = %v, want nil error", tt.name, err)
			}
			if got, want := len(m.Elements), tt.origins*tt.destinations; got != want {
				t.Errorf("len(Elements) = %d, want %d", got, want)
			}
		})
	}
}

func TestComputeMatrixCustomLimits(t *testing.T) {
	svc := route.NewService(&fakeProvider{}, route.Options{MaxOrigins: 3, MaxDestinations: 3, MaxElements: 4})
	_, err := svc.ComputeMatrix(t.Context(), route.MatrixRequest{Origins: points(3), Destinations: points(2), Mode: geo.Car})
	if diff := cmp.Diff([]string{"origins"}, fields(t, err)); diff != "" {
		t.Errorf("3x2 with MaxElements 4: violations mismatch (-want +got):\n%s", diff)
	}
	_, err = svc.ComputeMatrix(t.Context(), route.MatrixRequest{Origins: points(4), Destinations: points(1), Mode: geo.Car})
	if diff := cmp.Diff([]string{"origins"}, fields(t, err)); diff != "" {
		t.Errorf("4 origins with MaxOrigins 3: violations mismatch (-want +got):\n%s", diff)
	}
}

func TestValidationBoundsViolations(t *testing.T) {
	bad := make([]geo.LatLng, 100)
	for i := range bad {
		bad[i] = geo.LatLng{Lat: math.NaN(), Lng: math.NaN()}
	}
	svc := route.NewService(&fakeProvider{}, route.Options{})
	_, err := svc.ComputeMatrix(t.Context(), route.MatrixRequest{Origins: bad, Destinations: points(1), Mode: geo.Car})
	if got, want := len(fields(t, err)), 20; got != want {
		t.Errorf("len(violations) = %d, want %d", got, want)
	}
	if got, want := apperr.MessageOf(err), "(180 more violations not listed)"; !strings.Contains(got, want) {
		t.Errorf("message = %q, want it to contain %q", got, want)
	}
}

func TestEstimateRouteDefaultsDepartureToNow(t *testing.T) {
	p := &fakeProvider{}
	svc := route.NewService(p, route.Options{Now: func() time.Time { return t0 }})
	est, err := svc.EstimateRoute(t.Context(), route.EstimateRequest{Origin: paris, Destination: london, Mode: geo.Car})
	if err != nil {
		t.Fatalf("EstimateRoute = %v, want nil error", err)
	}
	if !est.Departure.Equal(t0) || !p.lastDeparture.Equal(t0) {
		t.Errorf("departure = %v (provider saw %v), want %v", est.Departure, p.lastDeparture, t0)
	}
}

func TestComputeMatrixDefaultsDepartureToNow(t *testing.T) {
	p := &fakeProvider{}
	svc := route.NewService(p, route.Options{Now: func() time.Time { return t0 }})
	m, err := svc.ComputeMatrix(t.Context(), route.MatrixRequest{Origins: points(1), Destinations: points(1), Mode: geo.Car})
	if err != nil {
		t.Fatalf("ComputeMatrix = %v, want nil error", err)
	}
	if !m.Departure.Equal(t0) || !p.lastDeparture.Equal(t0) {
		t.Errorf("departure = %v (provider saw %v), want %v", m.Departure, p.lastDeparture, t0)
	}
}

func TestEstimateRouteCacheHit(t *testing.T) {
	p := &fakeProvider{}
	reg := prometheus.NewRegistry()
	svc := route.NewService(p, route.Options{CacheSize: 10, Now: func() time.Time { return t0 }, Registerer: reg})
	req := route.EstimateRequest{Origin: paris, Destination: london, Mode: geo.Car, Departure: t0}
	first, err := svc.EstimateRoute(t.Context(), req)
	if err != nil {
		t.Fatalf("first EstimateRoute = %v", err)
	}
	// Same hour, points moved by less than the 1e-5 degree rounding.
	again := req
	again.Departure = t0.Add(30 * time.Minute)
	again.Origin.Lat += 3e-6
	second, err := svc.EstimateRoute(t.Context(), again)
	if err != nil {
		t.Fatalf("second EstimateRoute = %v", err)
	}
	if got, _ := p.calls(); got != 1 {
		t.Errorf("provider Route calls = %d, want 1", got)
	}
	want := first
	want.Departure = again.Departure
	if diff := cmp.Diff(want, second); diff != "" {
		t.Errorf("cached estimate mismatch (-want +got):\n%s", diff)
	}
	if got, want := counterValue(t, reg, "lastmile_route_cache_hits_total"), 1.0; got != want {
		t.Errorf("hits = %v, want %v", got, want)
	}
	if got, want := counterValue(t, reg, "lastmile_route_cache_misses_total"), 1.0; got != want {
		t.Errorf("misses = %v, want %v", got, want)
	}
}

func TestEstimateRouteCacheMisses(t *testing.T) {
	base := route.EstimateRequest{Origin: paris, Destination: london, Mode: geo.Car, Departure: t0}
	tests := []struct {
		name   string
		change func(*route.EstimateRequest)
	}{
		{"other mode", func(r *route.EstimateRequest) { r.Mode = geo.Van }},
		{"next hour", func(r *route.EstimateRequest) { r.Departure = t0.Add(time.Hour) }},
		{"other origin", func(r *route.EstimateRequest) { r.Origin.Lat += 2e-5 }},
		{"reversed", func(r *route.EstimateRequest) { r.Origin, r.Destination = r.Destination, r.Origin }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &fakeProvider{}
			svc := route.NewService(p, route.Options{CacheSize: 10})
			other := base
			tt.change(&other)
			for _, req := range []route.EstimateRequest{base, other} {
				if _, err := svc.EstimateRoute(t.Context(), req); err != nil {
					t.Fatalf("EstimateRoute(%+v) = %v", req, err)
				}
			}
			if got, _ := p.calls(); got != 2 {
				t.Errorf("provider Route calls = %d, want 2", got)
			}
		})
	}
}

func TestEstimateRouteCacheExpires(t *testing.T) {
	p := &fakeProvider{}
	clk := &clock{now: t0}
	svc := route.NewService(p, route.Options{CacheSize: 10, CacheTTL: time.Minute, Now: clk.Now})
	req := route.EstimateRequest{Origin: paris, Destination: london, Mode: geo.Car, Departure: t0}
	for _, step := range []time.Duration{0, 59 * time.Second, time.Second} {
		clk.Advance(step)
		if _, err := svc.EstimateRoute(t.Context(), req); err != nil {
			t.Fatalf("EstimateRoute = %v", err)
		}
	}
	// Calls at +0s (miss), +59s (hit), +60s (expired, miss).
	if got, _ := p.calls(); got != 2 {
		t.Errorf("provider Route calls = %d, want 2", got)
	}
}

func TestEstimateRouteCacheDisabled(t *testing.T) {
	p := &fakeProvider{}
	svc := route.NewService(p, route.Options{})
	req := route.EstimateRequest{Origin: paris, Destination: london, Mode: geo.Car, Departure: t0}
	for range 2 {
		if _, err := svc.EstimateRoute(t.Context(), req); err != nil {
			t.Fatalf("EstimateRoute = %v", err)
		}
	}
	if got, _ := p.calls(); got != 2 {
		t.Errorf("provider Route calls = %d, want 2", got)
	}
}

func TestEstimateRouteDoesNotCacheErrors(t *testing.T) {
	p := &fakeProvider{err: apperr.Errorf(apperr.NotFound, "no route")}
	svc := route.NewService(p, route.Options{CacheSize: 10})
	req := route.EstimateRequest{Origin: paris, Destination: london, Mode: geo.Car, Departure: t0}
	for range 2 {
		_, err := svc.EstimateRoute(t.Context(), req)
		if got, want := apperr.CodeOf(err), apperr.NotFound; got != want {
			t.Fatalf("EstimateRoute error code = %q, want %q (err %v)", got, want, err)
		}
	}
	if got, _ := p.calls(); got != 2 {
		t.Errorf("provider Route calls = %d, want 2", got)
	}
}

func TestComputeMatrixBypassesCache(t *testing.T) {
	p := &fakeProvider{}
	svc := route.NewService(p, route.Options{CacheSize: 10})
	req := route.MatrixRequest{Origins: points(2), Destinations: points(3), Mode: geo.Car, Departure: t0}
	for range 2 {
		if _, err := svc.ComputeMatrix(t.Context(), req); err != nil {
			t.Fatalf("ComputeMatrix = %v", err)
		}
	}
	if _, got := p.calls(); got != 2 {
		t.Errorf("provider Matrix calls = %d, want 2", got)
	}
}

func TestComputeMatrixProviderErrors(t *testing.T) {
	t.Run("passes codes through", func(t *testing.T) {
		cause := apperr.Errorf(apperr.Unavailable, "routing server unavailable")
		svc := route.NewService(&fakeProvider{err: cause}, route.Options{})
		_, err := svc.ComputeMatrix(t.Context(), route.MatrixRequest{Origins: points(1), Destinations: points(1), Mode: geo.Car})
		if !errors.Is(err, cause) {
			t.Errorf("ComputeMatrix error = %v, want it to wrap %v", err, cause)
		}
	})
	t.Run("wrong element count is internal", func(t *testing.T) {
		svc := route.NewService(&fakeProvider{dropElement: true}, route.Options{})
		_, err := svc.ComputeMatrix(t.Context(), route.MatrixRequest{Origins: points(2), Destinations: points(2), Mode: geo.Car})
		if got, want := apperr.CodeOf(err), apperr.Internal; got != want {
			t.Errorf("ComputeMatrix error code = %q, want %q (err %v)", got, want, err)
		}
	})
}

func TestNewServiceSharesCountersOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	req := route.EstimateRequest{Origin: paris, Destination: london, Mode: geo.Car, Departure: t0}
	for range 2 {
		svc := route.NewService(&fakeProvider{}, route.Options{CacheSize: 10, Registerer: reg})
		if _, err := svc.EstimateRoute(t.Context(), req); err != nil {
			t.Fatalf("EstimateRoute = %v", err)
		}
	}
	if got, want := counterValue(t, reg, "lastmile_route_cache_misses_total"), 2.0; got != want {
		t.Errorf("misses = %v, want %v", got, want)
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather = %v", err)
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}
