package bench_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/courier"
	"lastmile/internal/courier/couriertest"
	couriergrpc "lastmile/internal/courier/grpcapi"
	couriersqlite "lastmile/internal/courier/sqlite"
	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/courierclient"
	"lastmile/internal/dispatch/routeclient"
	"lastmile/internal/geo"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/cputime"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/grpctest"
	"lastmile/internal/route"
	"lastmile/internal/route/geodesic"
	routegrpc "lastmile/internal/route/grpcapi"
)

// BenchmarkAssignmentCalls measures the service-to-service calls of one dispatch assignment as the load
// test (TestDispatchLoad) makes them, without the rest of dispatch: courier (SQLite store, 1,000 located
// couriers, half bicycles and half cars, capacity 10, each holding 5 claims) and route (geodesic) behind
// the full server chain on bufconn, called through courierclient and routeclient as the dispatch service.
// One op is what an assignment costs them: a FindNearbyCouriers of 20 couriers within 3 km of a random
// pickup, a ComputeMatrix from those couriers to 10 pickups (a batch's), a ClaimCourier of the nearest
// courier for a new task and the ReleaseCourier that keeps its claims at 5. It reports the process's CPU
// per op (getrusage: client, servers, runtime) beside the allocations.
//
//	go test -c -o X.test ./bench/ && ./X.test -test.run '^$' -test.bench BenchmarkAssignmentCalls -test.benchtime 3000x
func BenchmarkAssignmentCalls(b *testing.B) {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	db := databasetest.SQLite(b)
	if err := database.MigrateSQLite(ctx, db, couriersqlite.Migrations()); err != nil {
		b.Fatal(err)
	}
	users := couriertest.NewUsers()
	const n = 1000
	userIDs := make([]string, n)
	for i := range userIDs {
		userIDs[i] = uuid.NewString()
		users.Put(courier.UserInfo{ID: userIDs[i], Role: auth.RoleCourier, Status: courier.UserActive, DisplayName: "Courier " + userIDs[i][:8]})
	}
	csvc := courier.NewService(couriersqlite.New(db), users, courier.Options{Logger: quiet})
	if err := csvc.Load(ctx); err != nil {
		b.Fatal(err)
	}
	clis := grpctest.Listen()
	csrv, err := grpcserver.New(grpcserver.Config{Listener: clis, Policy: couriergrpc.Policy(), Authenticator: grpctest.HeaderAuthenticator{}, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	couriergrpc.Register(csrv.GRPC(), couriergrpc.NewServer(csvc))
	grpctest.Serve(b, csrv)
	prov, err := geodesic.New(geodesic.Options{})
	if err != nil {
		b.Fatal(err)
	}
	rlis := grpctest.Listen()
	rsrv, err := grpcserver.New(grpcserver.Config{Listener: rlis, Policy: routegrpc.Policy(), Authenticator: grpctest.HeaderAuthenticator{}, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	routegrpc.Register(rsrv.GRPC(), routegrpc.NewServer(route.NewService(prov, route.Options{})))
	grpctest.Serve(b, rsrv)

	capi := courierv1.NewCourierServiceClient(grpctest.Dial(b, clis))
	couriers := courierclient.New(courierv1.NewCourierServiceClient(grpctest.Dial(b, clis, asDispatch())))
	routes := routeclient.New(routev1.NewRouteServiceClient(grpctest.Dial(b, rlis, asDispatch())), routeclient.Options{Logger: quiet})

	staff := grpctest.CallAs(ctx, auth.Principal{Kind: auth.User, Subject: uuid.NewString(), Roles: []string{auth.RoleDispatcher}})
	simulator := grpctest.CallAs(ctx, auth.Principal{Kind: auth.Service, Subject: "simulator"})
	rng := rand.New(rand.NewPCG(3, 4))
	held := map[string][]string{} // courier id -> its claimed tasks, oldest first
	for i, u := range userIDs {
		mode := geov1.TransportMode_TRANSPORT_MODE_BICYCLE
		if i%2 == 1 {
			mode = geov1.TransportMode_TRANSPORT_MODE_CAR
		}
		c, err := capi.RegisterCourier(staff, &courierv1.RegisterCourierRequest{UserId: u, TransportMode: mode, Capacity: courierCapacity})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := capi.SetStatus(staff, &courierv1.SetStatusRequest{CourierId: c.GetId(), Status: courierv1.CourierStatus_COURIER_STATUS_AVAILABLE}); err != nil {
			b.Fatal(err)
		}
		stream, err := capi.ReportLocations(simulator)
		if err != nil {
			b.Fatal(err)
		}
		p := randomPoint(rng)
		fix := &courierv1.LocationFix{Location: &geov1.LatLng{Latitude: p.Lat, Longitude: p.Lng}, RecordedAt: timestamppb.Now(), AccuracyMeters: 5}
		if err := stream.Send(&courierv1.ReportLocationsRequest{CourierId: c.GetId(), Fixes: []*courierv1.LocationFix{fix}}); err != nil {
			b.Fatal(err)
		}
		if _, err := stream.CloseAndRecv(); err != nil {
			b.Fatal(err)
		}
		for range 5 {
			task := uuid.NewString()
			if _, err := couriers.Claim(ctx, c.GetId(), task, time.Now().Add(time.Hour), 0); err != nil {
				b.Fatal(err)
			}
			held[c.GetId()] = append(held[c.GetId()], task)
		}
	}

	op := func() {
		pickup := randomPoint(rng)
		found, err := couriers.FindNearby(ctx, dispatch.NearbyQuery{
			Center: pickup, Radius: 3000, Limit: 20, Modes: []geo.TransportMode{geo.Bicycle, geo.Car}, MaxAge: 5 * time.Minute,
		})
		if err != nil || len(found) == 0 {
			b.Fatalf("FindNearby() = %d couriers, %v", len(found), err)
		}
		origins := make([]geo.LatLng, len(found))
		for i, c := range found {
			origins[i] = c.Fix.Location
		}
		dests := []geo.LatLng{pickup}
		for len(dests) < 10 {
			dests = append(dests, randomPoint(rng))
		}
		if _, _, err := routes.Matrices(ctx, origins, dests, geo.Car, time.Now()); err != nil {
			b.Fatal(err)
		}
		id, task := found[0].ID, uuid.NewString()
		if _, err := couriers.Claim(ctx, id, task, time.Now().Add(time.Hour), 0); err != nil {
			b.Fatal(err)
		}
		if err := couriers.Release(ctx, id, held[id][0], 0); err != nil {
			b.Fatal(err)
		}
		held[id] = append(held[id][1:], task)
	}
	for range 300 { // warm-up
		op()
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cputime.Process()
	for b.Loop() {
		op()
	}
	b.ReportMetric(float64((cputime.Process()-cpu).Nanoseconds())/float64(b.N), "cpu-ns/op")
}
