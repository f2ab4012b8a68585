package grpcapi_test

import (
	"context"
	"lastmile/internal/courier/sqlite"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/courier"
	"lastmile/internal/courier/couriertest"
	"lastmile/internal/courier/grpcapi"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/grpctest"
)

// FuzzReportLocations sends one arbitrary ReportLocationsRequest (any protobuf the wire format admits:
// missing, NaN, infinite or out-of-range coordinates, timestamps beyond year 9999, negative nanos, any
// number of fixes) on a courier's ReportLocations stream, through the full interceptor chain. The codec
// and the domain must never panic (the chain would answer Internal) nor answer Internal or Unknown; a
// report that is answered counts every fix it carried, accepted or rejected.
func FuzzReportLocations(f *testing.F) {
	ts := timestamppb.New(fuzzNow.Add(-time.Second))
	nan, inf := math.NaN(), math.Inf(1)
	loc := func(lat, lng float64) *geov1.LatLng { return &geov1.LatLng{Latitude: lat, Longitude: lng} }
	many := make([]*courierv1.LocationFix, courier.MaxFixesPerReport+1)
	for i := range many {
		many[i] = &courierv1.LocationFix{Location: loc(52.5, 13.4), RecordedAt: ts}
	}
	for _, seed := range []*courierv1.ReportLocationsRequest{
		{Fixes: []*courierv1.LocationFix{{Location: loc(52.5, 13.4), RecordedAt: ts, AccuracyMeters: 5}}},
		{},
		{Fixes: []*courierv1.LocationFix{{}}},
		{Fixes: []*courierv1.LocationFix{{Location: loc(nan, 13.4), RecordedAt: ts}}},
		{Fixes: []*courierv1.LocationFix{{Location: loc(91, inf), RecordedAt: ts, AccuracyMeters: -inf}}},
		{Fixes: []*courierv1.LocationFix{{Location: loc(52.5, 13.4), RecordedAt: &timestamppb.Timestamp{Seconds: math.MaxInt64, Nanos: -1}}}},
		{Fixes: []*courierv1.LocationFix{{Location: loc(52.5, 13.4), RecordedAt: &timestamppb.Timestamp{Seconds: math.MinInt64}}}},
		{Fixes: []*courierv1.LocationFix{{Location: loc(52.5, 13.4), RecordedAt: ts, Speed: &nan, Heading: &inf}}},
		{Fixes: many},
		{CourierId: "not-a-uuid", Fixes: []*courierv1.LocationFix{{Location: loc(0, 0), RecordedAt: ts}}},
	} {
		b, err := proto.Marshal(seed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, true)
		f.Add(b, false)
	}

	client, self := startFuzzCourier(f)
	ctx := grpctest.CallAs(context.Background(), auth.Principal{Kind: auth.User, Subject: self.GetUserId(), Roles: []string{auth.RoleCourier}})
	f.Fuzz(func(t *testing.T, msg []byte, ownCourier bool) {
		var req courierv1.ReportLocationsRequest
		if err := proto.Unmarshal(msg, &req); err != nil {
			return // not a message; grpc-go refuses it before any of our code runs
		}
		if ownCourier {
			req.CourierId = self.GetId()
		}
		callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		stream, err := client.ReportLocations(callCtx)
		if err != nil {
			t.Fatalf("ReportLocations() = %v", err)
		}
		// Send fails only when the server has already answered; CloseAndRecv returns that answer.
		_ = stream.Send(&req)
		res, err := stream.CloseAndRecv()
		switch code := status.Code(err); code {
		case codes.Internal, codes.Unknown, codes.DeadlineExceeded:
			t.Fatalf("ReportLocations(%v) = %v, want no %v", &req, err, code)
		case codes.OK:
			if got, want := int(res.GetAcceptedCount()+res.GetRejectedCount()), len(req.GetFixes()); got != want {
				t.Errorf("ReportLocations(%d fixes) counted %d accepted + %d rejected", want, res.GetAcceptedCount(), res.GetRejectedCount())
			}
		}
	})
}

// fuzzNow is the courier service's clock in FuzzReportLocations. A fixed clock, and a token bucket
// that never runs dry, keep what one input covers from depending on the time and the inputs before it,
// which the fuzzer's minimisation needs.
var fuzzNow = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

// startFuzzCourier serves a courier service with one registered courier through the full interceptor
// chain and returns a client and the courier.
func startFuzzCourier(f *testing.F) (courierv1.CourierServiceClient, *courierv1.Courier) {
	users := couriertest.NewUsers()
	db := databasetest.SQLite(f)
	if err := database.MigrateSQLite(context.Background(), db, sqlite.Migrations()); err != nil {
		f.Fatal(err)
	}
	svc := courier.NewService(sqlite.New(db), users, courier.Options{
		Now: func() time.Time { return fuzzNow }, FixesPerSecond: 1, FixBurst: math.MaxInt32,
	})
	if err := svc.Load(context.Background()); err != nil {
		f.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- svc.Run(runCtx) }()
	f.Cleanup(func() {
		stopRun()
		if err := <-runDone; err != nil {
			f.Errorf("Run() = %v, want nil", err)
		}
	})
	_, conn := grpctest.Start(f, grpcserver.Config{Policy: grpcapi.Policy(), Authenticator: grpctest.HeaderAuthenticator{}},
		func(s *grpc.Server) { grpcapi.Register(s, grpcapi.NewServer(svc)) })
	client := courierv1.NewCourierServiceClient(conn)

	const userID = "0190b000-0000-7000-8000-00000000f022"
	users.Put(courier.UserInfo{ID: userID, Role: auth.RoleCourier, Status: courier.UserActive, DisplayName: "Fuzzed courier"})
	ctx := grpctest.CallAs(context.Background(), auth.Principal{Kind: auth.User, Subject: "0190b000-0000-7000-8000-000000000901", Roles: []string{auth.RoleDispatcher}})
	c, err := client.RegisterCourier(ctx, &courierv1.RegisterCourierRequest{UserId: userID, TransportMode: geov1.TransportMode_TRANSPORT_MODE_BICYCLE, Capacity: 1})
	if err != nil {
		f.Fatalf("RegisterCourier() = %v", err)
	}
	return client, c
}
