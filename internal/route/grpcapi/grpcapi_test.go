package grpcapi_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/grpcerr"
	"lastmile/internal/platform/grpcserver/grpctest"
	"lastmile/internal/route"
	"lastmile/internal/route/geodesic"
	"lastmile/internal/route/grpcapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	now       = time.Date(2026, 3, 10, 3, 0, 0, 0, time.UTC)
	departure = time.Date(2026, 3, 10, 17, 30, 0, 0, time.UTC)
)

// stubProvider answers fixed values and records what the domain asked for.
type stubProvider struct {
	mu      sync.Mutex
	from    geo.LatLng
	to      geo.LatLng
	mode    geo.TransportMode
	depart  time.Time
	origins []geo.LatLng
	err     error
}

func (p *stubProvider) Name() string { return "stub" }

func (p *stubProvider) Route(_ context.Context, from, to geo.LatLng, mode geo.TransportMode, dep time.Time) (route.Estimate, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.from, p.to, p.mode, p.depart = from, to, mode, dep
	if p.err != nil {
		return route.Estimate{}, p.err
	}
	return route.Estimate{DistanceMeters: 1234.5, Duration: 321 * time.Second, Provider: "stub", Mode: mode, Departure: dep}, nil
}

func (p *stubProvider) Matrix(_ context.Context, origins, destinations []geo.LatLng, mode geo.TransportMode, dep time.Time) (route.Matrix, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.origins, p.mode, p.depart = origins, mode, dep
	if p.err != nil {
		return route.Matrix{}, p.err
	}
	var elems []route.MatrixElement
	for i := range origins {
		for j := range destinations {
			e := route.MatrixElement{OriginIndex: i, DestinationIndex: j}
			if i != j { // the diagonal has no route, to exercise ROUTE_NOT_FOUND
				e.Found, e.DistanceMeters, e.Duration = true, float64(100*i+j), time.Duration(10*i+j)*time.Second
			}
			elems = append(elems, e)
		}
	}
	return route.Matrix{Elements: elems, Provider: "stub", Departure: dep}, nil
}

// errorRecorder stands in for the server's error interceptor: it keeps the handler's raw error, so that
// tests can check it is a domain error, and maps it with grpcerr.ToStatus as production does.
type errorRecorder struct {
	mu   sync.Mutex
	last error
}

func (r *errorRecorder) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	r.mu.Lock()
	r.last = err
	r.mu.Unlock()
	if err != nil {
		return nil, grpcerr.ToStatus(err).Err()
	}
	return resp, nil
}

func (r *errorRecorder) lastError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// start serves a grpcapi.Server over p on an in-memory listener and returns a client for it.
func start(t *testing.T, p route.Provider) (routev1.RouteServiceClient, *errorRecorder) {
	t.Helper()
	rec := &errorRecorder{}
	srv := grpc.NewServer(grpc.UnaryInterceptor(rec.intercept))
	grpcapi.Register(srv, grpcapi.NewServer(route.NewService(p, route.Options{Now: func() time.Time { return now }})))
	conn := grpctest.ServeGRPC(t, srv)
	return routev1.NewRouteServiceClient(conn), rec
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func latLng(lat, lng float64) *geov1.LatLng { return &geov1.LatLng{Latitude: lat, Longitude: lng} }

func TestEstimateRoute(t *testing.T) {
	p := &stubProvider{}
	client, _ := start(t, p)
	got, err := client.EstimateRoute(callCtx(t), &routev1.EstimateRouteRequest{
		Origin:        latLng(48.8566, 2.3522),
		Destination:   latLng(51.5074, -0.1278),
		TransportMode: geov1.TransportMode_TRANSPORT_MODE_SCOOTER,
		DepartureTime: timestamppb.New(departure),
	})
	if err != nil {
		t.Fatalf("EstimateRoute = %v", err)
	}
	want := &routev1.RouteEstimate{
		DistanceMeters: 1234.5,
		Duration:       durationpb.New(321 * time.Second),
		Provider:       "stub",
		TransportMode:  geov1.TransportMode_TRANSPORT_MODE_SCOOTER,
		DepartureTime:  timestamppb.New(departure),
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("EstimateRoute mismatch (-want +got):\n%s", diff)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.from != (geo.LatLng{Lat: 48.8566, Lng: 2.3522}) || p.to != (geo.LatLng{Lat: 51.5074, Lng: -0.1278}) {
		t.Errorf("provider asked %v -> %v, want Paris -> London", p.from, p.to)
	}
	if p.mode != geo.Scooter || !p.depart.Equal(departure) {
		t.Errorf("provider asked mode %v at %v, want scooter at %v", p.mode, p.depart, departure)
	}
}

func TestEstimateRouteModes(t *testing.T) {
	tests := []struct {
		proto  geov1.TransportMode
		domain geo.TransportMode
	}{
		{geov1.TransportMode_TRANSPORT_MODE_BICYCLE, geo.Bicycle},
		{geov1.TransportMode_TRANSPORT_MODE_SCOOTER, geo.Scooter},
		{geov1.TransportMode_TRANSPORT_MODE_CAR, geo.Car},
		{geov1.TransportMode_TRANSPORT_MODE_VAN, geo.Van},
		{geov1.TransportMode_TRANSPORT_MODE_WALKING, geo.Walking},
	}
	p := &stubProvider{}
	client, _ := start(t, p)
	for _, tt := range tests {
		t.Run(tt.proto.String(), func(t *testing.T) {
			got, err := client.EstimateRoute(callCtx(t), &routev1.EstimateRouteRequest{
				Origin: latLng(1, 1), Destination: latLng(2, 2), TransportMode: tt.proto,
			})
			if err != nil {
				t.Fatalf("EstimateRoute = %v", err)
			}
			if got.GetTransportMode() != tt.proto {
				t.Errorf("response transport_mode = %v, want %v", got.GetTransportMode(), tt.proto)
			}
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.mode != tt.domain {
				t.Errorf("provider asked mode %v, want %v", p.mode, tt.domain)
			}
		})
	}
}

func TestEstimateRouteGeodesicDefaultsDeparture(t *testing.T) {
	provider, err := geodesic.New(geodesic.Options{})
	if err != nil {
		t.Fatalf("geodesic.New = %v", err)
	}
	client, _ := start(t, provider)
	from, to := geo.LatLng{Lat: 52.52, Lng: 13.405}, geo.LatLng{Lat: 48.1351, Lng: 11.582}
	got, err := client.EstimateRoute(callCtx(t), &routev1.EstimateRouteRequest{
		Origin:        latLng(from.Lat, from.Lng),
		Destination:   latLng(to.Lat, to.Lng),
		TransportMode: geov1.TransportMode_TRANSPORT_MODE_CAR,
	})
	if err != nil {
		t.Fatalf("EstimateRoute = %v", err)
	}
	est, err := provider.Route(t.Context(), from, to, geo.Car, now)
	if err != nil {
		t.Fatalf("geodesic Route = %v", err)
	}
	want := &routev1.RouteEstimate{
		DistanceMeters: est.DistanceMeters,
		Duration:       durationpb.New(est.Duration),
		Provider:       "geodesic",
		TransportMode:  geov1.TransportMode_TRANSPORT_MODE_CAR,
		DepartureTime:  timestamppb.New(now),
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("EstimateRoute mismatch (-want +got):\n%s", diff)
	}
}

func TestComputeMatrix(t *testing.T) {
	p := &stubProvider{}
	client, _ := start(t, p)
	got, err := client.ComputeMatrix(callCtx(t), &routev1.ComputeMatrixRequest{
		Origins:       []*geov1.LatLng{latLng(1, 1), latLng(2, 2)},
		Destinations:  []*geov1.LatLng{latLng(3, 3), latLng(4, 4)},
		TransportMode: geov1.TransportMode_TRANSPORT_MODE_VAN,
		DepartureTime: timestamppb.New(departure),
	})
	if err != nil {
		t.Fatalf("ComputeMatrix = %v", err)
	}
	notFound := routev1.RouteCondition_ROUTE_CONDITION_ROUTE_NOT_FOUND
	exists := routev1.RouteCondition_ROUTE_CONDITION_ROUTE_EXISTS
	want := &routev1.ComputeMatrixResponse{
		Elements: []*routev1.MatrixElement{
			{OriginIndex: 0, DestinationIndex: 0, Condition: notFound},
			{OriginIndex: 0, DestinationIndex: 1, Condition: exists, DistanceMeters: 1, Duration: durationpb.New(time.Second)},
			{OriginIndex: 1, DestinationIndex: 0, Condition: exists, DistanceMeters: 100, Duration: durationpb.New(10 * time.Second)},
			{OriginIndex: 1, DestinationIndex: 1, Condition: notFound},
		},
		Provider:      "stub",
		DepartureTime: timestamppb.New(departure),
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("ComputeMatrix mismatch (-want +got):\n%s", diff)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if diff := cmp.Diff([]geo.LatLng{{Lat: 1, Lng: 1}, {Lat: 2, Lng: 2}}, p.origins); diff != "" {
		t.Errorf("provider origins mismatch (-want +got):\n%s", diff)
	}
}

func TestInvalidRequests(t *testing.T) {
	tests := []struct {
		name string
		call func(context.Context, routev1.RouteServiceClient) error
		want []string
	}{
		{
			name: "estimate out of range and no mode",
			call: func(ctx context.Context, c routev1.RouteServiceClient) error {
				_, err := c.EstimateRoute(ctx, &routev1.EstimateRouteRequest{Origin: latLng(91, 0), Destination: latLng(0, -181)})
				return err
			},
			want: []string{"origin.latitude", "destination.longitude", "transport_mode"},
		},
		{
			name: "estimate without origin",
			call: func(ctx context.Context, c routev1.RouteServiceClient) error {
				_, err := c.EstimateRoute(ctx, &routev1.EstimateRouteRequest{Destination: latLng(0, 0), TransportMode: geov1.TransportMode_TRANSPORT_MODE_CAR})
				return err
			},
			want: []string{"origin"},
		},
		{
			name: "estimate with a bad timestamp",
			call: func(ctx context.Context, c routev1.RouteServiceClient) error {
				_, err := c.EstimateRoute(ctx, &routev1.EstimateRouteRequest{
					Origin: latLng(0, 0), Destination: latLng(0, 0), TransportMode: geov1.TransportMode_TRANSPORT_MODE_CAR,
					DepartureTime: &timestamppb.Timestamp{Seconds: 1 << 62},
				})
				return err
			},
			want: []string{"departure_time"},
		},
		{
			name: "estimate with an unknown mode",
			call: func(ctx context.Context, c routev1.RouteServiceClient) error {
				_, err := c.EstimateRoute(ctx, &routev1.EstimateRouteRequest{Origin: latLng(0, 0), Destination: latLng(0, 0), TransportMode: 42})
				return err
			},
			want: []string{"transport_mode"},
		},
		{
			name: "matrix with a bad origin",
			call: func(ctx context.Context, c routev1.RouteServiceClient) error {
				_, err := c.ComputeMatrix(ctx, &routev1.ComputeMatrixRequest{
					Origins:       []*geov1.LatLng{latLng(0, 0), latLng(0, 181)},
					Destinations:  []*geov1.LatLng{latLng(0, 0)},
					TransportMode: geov1.TransportMode_TRANSPORT_MODE_WALKING,
				})
				return err
			},
			want: []string{"origins[1].longitude"},
		},
		{
			name: "matrix without destinations",
			call: func(ctx context.Context, c routev1.RouteServiceClient) error {
				_, err := c.ComputeMatrix(ctx, &routev1.ComputeMatrixRequest{
					Origins: []*geov1.LatLng{latLng(0, 0)}, TransportMode: geov1.TransportMode_TRANSPORT_MODE_WALKING,
				})
				return err
			},
			want: []string{"destinations"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, rec := start(t, &stubProvider{})
			err := tt.call(callCtx(t), client)
			if got, want := status.Code(err), codes.InvalidArgument; got != want {
				t.Fatalf("code = %v, want %v (err %v)", got, want, err)
			}
			if e := apperr.As(rec.lastError()); e == nil || e.Code != apperr.Invalid {
				t.Errorf("handler returned %v, want an *apperr.Error with code Invalid", rec.lastError())
			}
			if diff := cmp.Diff(tt.want, violationFields(t, err)); diff != "" {
				t.Errorf("field violations mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProviderErrorsPassThrough(t *testing.T) {
	client, rec := start(t, &stubProvider{err: apperr.Errorf(apperr.Unavailable, "routing server unavailable")})
	_, err := client.EstimateRoute(callCtx(t), &routev1.EstimateRouteRequest{
		Origin: latLng(0, 0), Destination: latLng(1, 1), TransportMode: geov1.TransportMode_TRANSPORT_MODE_CAR,
	})
	if got, want := status.Code(err), codes.Unavailable; got != want {
		t.Errorf("code = %v, want %v (err %v)", got, want, err)
	}
	if got, want := apperr.CodeOf(rec.lastError()), apperr.Unavailable; got != want {
		t.Errorf("handler error code = %q, want %q", got, want)
	}
}

func violationFields(t *testing.T, err error) []string {
	t.Helper()
	var fields []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return fields
}
