package routeclient_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/routeclient"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/grpcserver/grpctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeRoute answers ComputeMatrix with fail's code when set, else one element per origin whose duration
// is the origin's index in minutes. It counts the calls that reach it.
type fakeRoute struct {
	routev1.UnimplementedRouteServiceServer
	calls atomic.Int64
	fail  atomic.Int32 // a codes.Code; 0 answers
}

func (f *fakeRoute) ComputeMatrix(_ context.Context, req *routev1.ComputeMatrixRequest) (*routev1.ComputeMatrixResponse, error) {
	f.calls.Add(1)
	if c := codes.Code(f.fail.Load()); c != codes.OK {
		return nil, status.Error(c, "provider down")
	}
	out := &routev1.ComputeMatrixResponse{Provider: "fake"}
	for i := range req.GetOrigins() {
		cond := routev1.RouteCondition_ROUTE_CONDITION_ROUTE_EXISTS
		if i == 1 {
			cond = routev1.RouteCondition_ROUTE_CONDITION_ROUTE_NOT_FOUND
		}
		out.Elements = append(out.Elements, &routev1.MatrixElement{
			OriginIndex: int32(i), Condition: cond, DistanceMeters: float64(1000 * i),
			Duration: durationpb.New(time.Duration(i) * time.Minute),
		})
	}
	return out, nil
}

func newClient(t *testing.T, opts routeclient.Options) (*routeclient.Client, *fakeRoute) {
	t.Helper()
	f := &fakeRoute{}
	srv := grpc.NewServer()
	routev1.RegisterRouteServiceServer(srv, f)
	conn := grpctest.ServeGRPC(t, srv)
	opts.Logger = slog.New(slog.DiscardHandler)
	return routeclient.New(routev1.NewRouteServiceClient(conn), opts), f
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

var (
	pickup  = geo.LatLng{Lat: 52.52, Lng: 13.405}
	origins = []geo.LatLng{{Lat: 52.5, Lng: 13.4}, {Lat: 52.51, Lng: 13.41}, {Lat: 52.53, Lng: 13.42}}
)

func TestMatrixMapsElementsInOriginOrder(t *testing.T) {
	c, f := newClient(t, routeclient.Options{})
	legs, provider, err := c.Matrix(ctx(t), origins, pickup, geo.Bicycle, time.Date(2031, 1, 1, 9, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	want := []dispatch.Leg{{Duration: 0, Distance: 0, Found: true}, {Duration: time.Minute, Distance: 1000, Found: false}, {Duration: 2 * time.Minute, Distance: 2000, Found: true}}
	if provider != "fake" || len(legs) != 3 || legs[0] != want[0] || legs[1] != want[1] || legs[2] != want[2] {
		t.Errorf("Matrix = %v, %q; want %v, fake", legs, provider, want)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("calls = %d, want 1", n)
	}
}

func TestMatrixSplitsLargeRequests(t *testing.T) {
	c, f := newClient(t, routeclient.Options{})
	many := make([]geo.LatLng, 250)
	for i := range many {
		many[i] = geo.LatLng{Lat: 52, Lng: 13 + float64(i)/1000}
	}
	legs, _, err := c.Matrix(ctx(t), many, pickup, geo.Car, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	// Each of the three calls numbers its origins from 0: origin 101 is the second of the second call.
	if len(legs) != 250 || legs[101].Duration != time.Minute || legs[249].Duration != 49*time.Minute {
		t.Errorf("Matrix(250 origins) = %d legs, [101] %v, [249] %v; want 250, 1m, 49m", len(legs), legs[101], legs[249])
	}
	if n := f.calls.Load(); n != 3 {
		t.Errorf("calls = %d, want 3", n)
	}
}

func TestBreakerOpensWhenRouteIsDownAndFailsFast(t *testing.T) {
	c, f := newClient(t, routeclient.Options{ConsecutiveFailures: 3, OpenTimeout: time.Hour})
	f.fail.Store(int32(codes.Unavailable))
	for i := range 3 {
		_, _, err := c.Matrix(ctx(t), origins, pickup, geo.Car, time.Time{})
		if apperr.CodeOf(err) != apperr.Unavailable {
			t.Fatalf("call %d: Matrix error = %v, want Unavailable", i, err)
		}
	}
	if c.State() != "open" {
		t.Fatalf("breaker %s after 3 failures, want open", c.State())
	}
	for range 10 {
		_, _, err := c.Matrix(ctx(t), origins, pickup, geo.Car, time.Time{})
		if apperr.CodeOf(err) != apperr.Unavailable || apperr.MessageOf(err) != "route service circuit breaker open" {
			t.Fatalf("Matrix with the breaker open = %v, want Unavailable: route service circuit breaker open", err)
		}
	}
	if n := f.calls.Load(); n != 3 {
		t.Errorf("calls that reached route = %d, want 3 (none while open)", n)
	}
}

func TestBreakerProbesAfterTimeoutAndCloses(t *testing.T) {
	c, f := newClient(t, routeclient.Options{ConsecutiveFailures: 1, OpenTimeout: time.Millisecond})
	f.fail.Store(int32(codes.Internal))
	if _, _, err := c.Matrix(ctx(t), origins, pickup, geo.Car, time.Time{}); apperr.CodeOf(err) != apperr.Unavailable {
		t.Fatalf("Matrix = %v, want Unavailable", err)
	}
	f.fail.Store(0)
	// The open state lasts a millisecond: poll until a probe goes through (bounded by the test's deadline).
	for c.State() != "closed" {
		if ctx(t).Err() != nil {
			t.Fatal("breaker never closed")
		}
		time.Sleep(2 * time.Millisecond)
		_, _, _ = c.Matrix(ctx(t), origins, pickup, geo.Car, time.Time{})
	}
	if _, _, err := c.Matrix(ctx(t), origins, pickup, geo.Car, time.Time{}); err != nil {
		t.Errorf("Matrix after recovery = %v", err)
	}
}

func TestCallerErrorsDoNotOpenTheBreaker(t *testing.T) {
	c, f := newClient(t, routeclient.Options{ConsecutiveFailures: 2, OpenTimeout: time.Hour})
	f.fail.Store(int32(codes.InvalidArgument))
	for range 5 {
		_, _, err := c.Matrix(ctx(t), origins, pickup, geo.Car, time.Time{})
		if apperr.CodeOf(err) != apperr.Invalid {
			t.Fatalf("Matrix = %v, want Invalid", err)
		}
	}
	if c.State() != "closed" || f.calls.Load() != 5 {
		t.Errorf("breaker %s after 5 invalid requests, %d calls; want closed, 5", c.State(), f.calls.Load())
	}
}

func TestUnreachableRouteOpensTheBreaker(t *testing.T) {
	// A connection to a listener nobody serves: every call fails in the transport.
	lis := grpctest.Listen()
	_ = lis.Close()
	conn := grpctest.Dial(t, lis)
	c := routeclient.New(routev1.NewRouteServiceClient(conn), routeclient.Options{ConsecutiveFailures: 2, OpenTimeout: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	for range 2 {
		if _, _, err := c.Matrix(ctx(t), origins, pickup, geo.Car, time.Time{}); apperr.CodeOf(err) != apperr.Unavailable {
			t.Fatalf("Matrix = %v, want Unavailable", err)
		}
	}
	if _, _, err := c.Matrix(ctx(t), origins, pickup, geo.Car, time.Time{}); apperr.MessageOf(err) != "route service circuit breaker open" {
		t.Errorf("Matrix after 2 transport failures = %v, want the breaker open", err)
	}
}
