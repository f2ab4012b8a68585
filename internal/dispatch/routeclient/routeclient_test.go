package routeclient_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/grpcapi"
	"lastmile/internal/dispatch/routeclient"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/grpcserver/grpctest"
	"lastmile/internal/platform/telemetry/logtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeRoute answers ComputeMatrix with fail's code when set, else one element per origin i and
// destination j whose duration is i minutes and j seconds and whose distance is 1000 i + j meters (origin
// 1 has no route); a request beyond the contract's bounds (100 origins, 100 destinations, 2,500 elements)
// is InvalidArgument. It counts the calls that reach it.
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
	no, nd := len(req.GetOrigins()), len(req.GetDestinations())
	if no > 100 || nd > 100 || no*nd > 2500 {
		return nil, status.Errorf(codes.InvalidArgument, "%d x %d elements", no, nd)
	}
	out := &routev1.ComputeMatrixResponse{Provider: "fake"}
	for i := range no {
		for j := range nd {
			cond := routev1.RouteCondition_ROUTE_CONDITION_ROUTE_EXISTS
			if i == 1 {
				cond = routev1.RouteCondition_ROUTE_CONDITION_ROUTE_NOT_FOUND
			}
			out.Elements = append(out.Elements, &routev1.MatrixElement{
				OriginIndex: int32(i), DestinationIndex: int32(j), Condition: cond, DistanceMeters: float64(1000*i + j),
				Duration: durationpb.New(time.Duration(i)*time.Minute + time.Duration(j)*time.Second),
			})
		}
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

func TestMatricesMapsOriginsAndDestinations(t *testing.T) {
	c, f := newClient(t, routeclient.Options{})
	dests := []geo.LatLng{pickup, {Lat: 52.54, Lng: 13.43}}
	legs, provider, err := c.Matrices(ctx(t), origins, dests, geo.Bicycle, time.Date(2031, 1, 1, 9, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]dispatch.Leg{
		{{Duration: 0, Distance: 0, Found: true}, {Duration: time.Second, Distance: 1, Found: true}},
		{{Duration: time.Minute, Distance: 1000, Found: false}, {Duration: time.Minute + time.Second, Distance: 1001, Found: false}},
		{{Duration: 2 * time.Minute, Distance: 2000, Found: true}, {Duration: 2*time.Minute + time.Second, Distance: 2001, Found: true}},
	}
	if diff := cmp.Diff(want, legs); diff != "" || provider != "fake" {
		t.Errorf("Matrices provider %q (-want +got):\n%s", provider, diff)
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("calls = %d, want 1", n)
	}
}

// Matrices splits a matrix beyond the contract's bounds into calls within them (up to 100 destinations,
// and as many origins as 2,500 elements allow, up to 100) and numbers each part back into place.
func TestMatricesSplitsLargeRequests(t *testing.T) {
	c, f := newClient(t, routeclient.Options{})
	points := func(n int) []geo.LatLng {
		out := make([]geo.LatLng, n)
		for i := range out {
			out[i] = geo.LatLng{Lat: 52, Lng: 13 + float64(i)/1000}
		}
		return out
	}
	legs, _, err := c.Matrices(ctx(t), points(60), points(130), geo.Car, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(legs) != 60 {
		t.Fatalf("Matrices(60 x 130) = %d rows, want 60", len(legs))
	}
	for _, row := range legs {
		if len(row) != 130 {
			t.Fatalf("Matrices(60 x 130) row of %d legs, want 130", len(row))
		}
	}
	// With the first 100 destinations, origin 26 is the second of its call (25 origins each); with the
	// last 30, 83 origins fit in a call, and origin 59 and destination 129 are the 60th and 30th of it.
	if got, want := legs[26][1], (dispatch.Leg{Duration: time.Minute + time.Second, Distance: 1001, Found: false}); got != want {
		t.Errorf("leg [26][1] = %v, want %v", got, want)
	}
	if got, want := legs[59][129], (dispatch.Leg{Duration: 59*time.Minute + 29*time.Second, Distance: 59029, Found: true}); got != want {
		t.Errorf("leg [59][129] = %v, want %v", got, want)
	}
	// 100 destinations: 3 calls of 25 origins (60 = 25 + 25 + 10); 30 destinations: 83 origins per call, 1.
	if n := f.calls.Load(); n != 4 {
		t.Errorf("calls = %d, want 4", n)
	}
	if legs, _, err := c.Matrices(ctx(t), nil, points(3), geo.Car, time.Time{}); err != nil || len(legs) != 0 || f.calls.Load() != 4 {
		t.Errorf("Matrices(no origins) = %v, %v after %d calls; want nothing and no call", legs, err, f.calls.Load())
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
	logs := &logtest.Buffer{}
	c := routeclient.New(routev1.NewRouteServiceClient(conn), routeclient.Options{ConsecutiveFailures: 2, OpenTimeout: time.Hour, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	for range 2 {
		// The message names route, not the address the transport failed to reach (it stays in the chain).
		if _, _, err := c.Matrix(ctx(t), origins, pickup, geo.Car, time.Time{}); apperr.CodeOf(err) != apperr.Unavailable || apperr.MessageOf(err) != "route service unavailable" {
			t.Fatalf("Matrix = %v, want Unavailable: route service unavailable", err)
		}
	}
	if _, _, err := c.Matrix(ctx(t), origins, pickup, geo.Car, time.Time{}); apperr.MessageOf(err) != "route service circuit breaker open" {
		t.Errorf("Matrix after 2 transport failures = %v, want the breaker open", err)
	}
	// The opening's log line carries the failure's own words, for the operator.
	var line struct{ Level, Msg, To, Error string }
	if err := json.Unmarshal([]byte(logs.String()), &line); err != nil || line.Level != "WARN" || line.To != "open" ||
		!strings.Contains(line.Error, "code = Unavailable") {
		t.Errorf("log = %s (%v), want one WARN line of the opening with the error", logs, err)
	}
}

// TestBreakerMetrics: dispatch's metrics follow the breaker (its Observer): the state gauge is 0 (closed)
// from the start, 2 once failures open it, 1 when its timeout lets a probe through, 0 when the probe
// succeeds; the opens counter counts each opening.
func TestBreakerMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := grpcapi.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	c, f := newClient(t, routeclient.Options{ConsecutiveFailures: 2, OpenTimeout: 50 * time.Millisecond, Observer: m})
	want := func(step string, state, opens float64) {
		t.Helper()
		err := testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(`
# HELP lastmile_dispatch_route_breaker_state State of dispatch's circuit breaker around the route service: 0 closed, 1 half-open, 2 open (ETAs from the local estimate).
# TYPE lastmile_dispatch_route_breaker_state gauge
lastmile_dispatch_route_breaker_state %v
# HELP lastmile_dispatch_route_breaker_opens_total How many times dispatch's circuit breaker around the route service opened.
# TYPE lastmile_dispatch_route_breaker_opens_total counter
lastmile_dispatch_route_breaker_opens_total %v
`, state, opens)), "lastmile_dispatch_route_breaker_state", "lastmile_dispatch_route_breaker_opens_total")
		if err != nil {
			t.Errorf("%s: %v", step, err)
		}
	}
	fail := func() {
		t.Helper()
		f.fail.Store(int32(codes.Unavailable))
		for range 2 {
			if _, _, err := c.Matrix(ctx(t), origins, pickup, geo.Car, time.Time{}); apperr.CodeOf(err) != apperr.Unavailable {
				t.Fatalf("Matrix = %v, want Unavailable", err)
			}
		}
		f.fail.Store(0)
	}
	want("at the start", 0, 0)
	fail()
	want("after 2 failures", 2, 1)
	// The state is worked out when the breaker is used: poll until its timeout let it half-open
	// (bounded by the test's deadline).
	for c.State() != "half-open" {
		if ctx(t).Err() != nil {
			t.Fatal("breaker never half-opened")
		}
		time.Sleep(5 * time.Millisecond)
	}
	want("once the timeout passed", 1, 1)
	if _, _, err := c.Matrix(ctx(t), origins, pickup, geo.Car, time.Time{}); err != nil {
		t.Fatalf("the probe: %v", err)
	}
	want("after a probe succeeded", 0, 1)
	fail()
	want("after 2 more failures", 2, 2)
}
