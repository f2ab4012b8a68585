package courierclient_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/courier"
	"lastmile/internal/courier/couriertest"
	couriergrpc "lastmile/internal/courier/grpcapi"
	couriersqlite "lastmile/internal/courier/sqlite"
	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/courierclient"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/grpcserver/grpctest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var testNow = time.Date(2031, 3, 14, 9, 20, 0, 0, time.UTC)

func userID(n int) string { return fmt.Sprintf("0190b000-0000-7000-8000-%012d", n) }
func taskID(n int) string { return fmt.Sprintf("0190c000-0000-7000-8000-%012d", n) }

var (
	dispatcher = auth.Principal{Kind: auth.User, Subject: userID(900), Roles: []string{auth.RoleDispatcher}}
	dispatchP  = auth.Principal{Kind: auth.Service, Subject: "dispatch"}
)

// env is the real courier service (SQLite store, full interceptor chain with courier's policy) and a
// Client calling it as dispatch.
type env struct {
	api    courierv1.CourierServiceClient
	client *courierclient.Client
	ctx    context.Context // calls as dispatch
}

func start(t *testing.T) *env {
	t.Helper()
	db := databasetest.SQLite(t)
	if err := database.MigrateSQLite(context.Background(), db, couriersqlite.Migrations()); err != nil {
		t.Fatal(err)
	}
	users := couriertest.NewUsers()
	for n := 1; n <= 3; n++ {
		users.Put(courier.UserInfo{ID: userID(n), Role: auth.RoleCourier, Status: courier.UserActive, DisplayName: fmt.Sprintf("Courier %d", n)})
	}
	svc := courier.NewService(couriersqlite.New(db), users, courier.Options{Now: func() time.Time { return testNow }})
	if err := svc.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, conn := grpctest.Start(t, grpcserver.Config{Policy: couriergrpc.Policy(), Authenticator: grpctest.HeaderAuthenticator{}},
		func(s *grpc.Server) { couriergrpc.Register(s, couriergrpc.NewServer(svc)) })
	grpctest.Go(t, "courier.Service.Run", svc.Run)
	api := courierv1.NewCourierServiceClient(conn)
	return &env{api: api, client: courierclient.New(api), ctx: as(t, dispatchP)}
}

func as(t *testing.T, p auth.Principal) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return grpctest.CallAs(ctx, p)
}

// courierAt registers courier user n (a car, capacity 2), makes them available and reports a fix at p.
func (e *env) courierAt(t *testing.T, n int, p geo.LatLng) string {
	t.Helper()
	c, err := e.api.RegisterCourier(as(t, dispatcher), &courierv1.RegisterCourierRequest{UserId: userID(n), TransportMode: geov1.TransportMode_TRANSPORT_MODE_CAR, Capacity: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.api.SetStatus(as(t, dispatcher), &courierv1.SetStatusRequest{CourierId: c.GetId(), Status: courierv1.CourierStatus_COURIER_STATUS_AVAILABLE}); err != nil {
		t.Fatal(err)
	}
	self := auth.Principal{Kind: auth.User, Subject: userID(n), Roles: []string{auth.RoleCourier}}
	stream, err := e.api.ReportLocations(as(t, self))
	if err != nil {
		t.Fatal(err)
	}
	speed := 4.5
	fix := &courierv1.LocationFix{Location: &geov1.LatLng{Latitude: p.Lat, Longitude: p.Lng}, RecordedAt: timestamppb.New(testNow.Add(-time.Minute)), AccuracyMeters: 5, Speed: &speed}
	if err := stream.Send(&courierv1.ReportLocationsRequest{CourierId: c.GetId(), Fixes: []*courierv1.LocationFix{fix}}); err != nil {
		t.Fatal(err)
	}
	res, err := stream.CloseAndRecv()
	if err != nil || res.GetAcceptedCount() != 1 {
		t.Fatalf("ReportLocations = %v, %v; want 1 accepted", res, err)
	}
	return c.GetId()
}

var pickup = geo.LatLng{Lat: 52.52, Lng: 13.405}

func TestFindNearbyAndStatus(t *testing.T) {
	e := start(t)
	near := e.courierAt(t, 1, geo.LatLng{Lat: 52.521, Lng: 13.405})
	far := e.courierAt(t, 2, geo.LatLng{Lat: 52.53, Lng: 13.405})
	excluded := e.courierAt(t, 3, geo.LatLng{Lat: 52.5205, Lng: 13.405})

	got, err := e.client.FindNearby(e.ctx, dispatch.NearbyQuery{Center: pickup, Radius: 5000, Limit: 10, Modes: []geo.TransportMode{geo.Car, geo.Van}, Exclude: []string{excluded}, MaxAge: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != near || got[1].ID != far {
		t.Fatalf("FindNearby = %+v, want %s then %s", got, near, far)
	}
	c := got[0]
	if c.Mode != geo.Car || c.Status != dispatch.CourierAvailable || c.AvailableNow /* no availability hours set */ || c.Capacity != 2 || c.ActiveTasks != 0 ||
		c.DisplayName != "Courier 1" || c.Fix == nil || c.Fix.Location != (geo.LatLng{Lat: 52.521, Lng: 13.405}) ||
		!c.Fix.Time.Equal(testNow.Add(-time.Minute)) || c.Fix.Speed != 4.5 || c.LocationAge != time.Minute || c.Distance < 100 || c.Distance > 115 {
		t.Errorf("FindNearby[0] = %+v (fix %+v)", c, c.Fix)
	}

	// Modes that cannot carry: nobody travels by bicycle.
	got, err = e.client.FindNearby(e.ctx, dispatch.NearbyQuery{Center: pickup, Radius: 5000, Modes: []geo.TransportMode{geo.Bicycle}})
	if err != nil || len(got) != 0 {
		t.Errorf("FindNearby(bicycles) = %v, %v; want none", got, err)
	}

	st, err := e.client.Status(e.ctx, far)
	if err != nil || st.ID != far || st.Status != dispatch.CourierAvailable || st.Fix == nil {
		t.Errorf("Status = %+v, %v", st, err)
	}
	_, err = e.client.Status(e.ctx, taskID(99))
	if apperr.CodeOf(err) != apperr.NotFound {
		t.Errorf("Status(unknown) = %v, want NotFound", err)
	}
}

func TestCourierOfUser(t *testing.T) {
	e := start(t)
	id := e.courierAt(t, 1, pickup)
	got, err := e.client.CourierOfUser(e.ctx, userID(1))
	if err != nil || got != id {
		t.Errorf("CourierOfUser = %q, %v; want %s (dispatch may look couriers up by user)", got, err, id)
	}
	_, err = e.client.CourierOfUser(e.ctx, userID(7))
	if apperr.CodeOf(err) != apperr.NotFound {
		t.Errorf("CourierOfUser(no profile) = %v, want NotFound", err)
	}
}

// TestUserOfCourier: dispatch, with its service identity, finds the user behind a courier (AssignTask
// checks that user's standing).
func TestUserOfCourier(t *testing.T) {
	e := start(t)
	id := e.courierAt(t, 2, pickup)
	got, err := e.client.UserOfCourier(e.ctx, id)
	if err != nil || got != userID(2) {
		t.Errorf("UserOfCourier = %q, %v; want %s", got, err, userID(2))
	}
	_, err = e.client.UserOfCourier(e.ctx, taskID(99))
	if apperr.CodeOf(err) != apperr.NotFound {
		t.Errorf("UserOfCourier(unknown) = %v, want NotFound", err)
	}
}

func TestClaimAndRelease(t *testing.T) {
	e := start(t)
	id := e.courierAt(t, 1, pickup)
	release := testNow.Add(time.Hour)
	for i := range 2 { // idempotent
		if _, err := e.client.Claim(e.ctx, id, taskID(1), release, 0); err != nil {
			t.Fatalf("Claim #%d = %v", i+1, err)
		}
	}
	if _, err := e.client.Claim(e.ctx, id, taskID(2), release, 0); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.Claim(e.ctx, id, taskID(3), release, 0)
	if apperr.CodeOf(err) != apperr.FailedPrecondition {
		t.Errorf("Claim beyond capacity = %v, want FailedPrecondition", err)
	}
	st, err := e.client.Status(e.ctx, id)
	if err != nil || st.ActiveTasks != 2 || len(st.TaskIDs) != 2 || st.Status != dispatch.CourierBusy {
		t.Errorf("Status after two claims = %+v, %v; want busy with 2 tasks", st, err)
	}
	for i := range 2 {
		if err := e.client.Release(e.ctx, id, taskID(1), 0); err != nil {
			t.Errorf("Release #%d = %v", i+1, err)
		}
	}
	_, err = e.client.Claim(e.ctx, taskID(50), taskID(1), release, 0)
	if apperr.CodeOf(err) != apperr.NotFound {
		t.Errorf("Claim(unknown courier) = %v, want NotFound", err)
	}
}

func TestUnreachableCourierIsUnavailable(t *testing.T) {
	lis := grpctest.Listen()
	_ = lis.Close()
	c := courierclient.New(courierv1.NewCourierServiceClient(grpctest.Dial(t, lis)))
	ctx := as(t, dispatchP)
	if _, err := c.Status(ctx, taskID(1)); apperr.CodeOf(err) != apperr.Unavailable {
		t.Errorf("Status = %v, want Unavailable", err)
	}
	if _, err := c.Claim(ctx, taskID(1), taskID(2), time.Time{}, 0); apperr.CodeOf(err) != apperr.Unavailable {
		t.Errorf("Claim = %v, want Unavailable", err)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	in := dispatch.CourierInfo{ID: userID(1), DisplayName: "Ada", Mode: geo.Van, Status: dispatch.CourierBusy, AvailableNow: true,
		Fix: &dispatch.Fix{Location: pickup, Time: testNow, Accuracy: 3, Speed: 2, Heading: 90}, LocationAge: time.Second,
		ActiveTasks: 1, Capacity: 3, TaskIDs: []string{taskID(1)}}
	out := courierclient.Info(courierclient.Snapshot(in))
	if out.ID != in.ID || out.DisplayName != in.DisplayName || out.Mode != in.Mode || out.Status != in.Status || !out.AvailableNow ||
		*out.Fix != *in.Fix || out.LocationAge != in.LocationAge || out.ActiveTasks != 1 || out.Capacity != 3 || len(out.TaskIDs) != 1 {
		t.Errorf("Info(Snapshot(%+v)) = %+v", in, out)
	}
}

// TestWatchCouriers: dispatch, with its service identity, follows every courier: a snapshot event per
// courier that is not offline, then an event per change (here a claim), until its context ends.
func TestWatchCouriers(t *testing.T) {
	e := start(t)
	id := e.courierAt(t, 1, pickup)
	ctx, cancel := context.WithCancel(e.ctx)
	events := make(chan dispatch.CourierEvent, 16)
	done := make(chan error, 1)
	go func() {
		done <- e.client.WatchCouriers(ctx, func(ev dispatch.CourierEvent) { events <- ev })
	}()
	next := func() dispatch.CourierEvent {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case err := <-done:
			t.Fatalf("WatchCouriers ended: %v", err)
		case <-time.After(30 * time.Second): // a hang guard
			t.Fatal("no courier event")
		}
		return dispatch.CourierEvent{}
	}
	ev := next()
	if c := ev.Courier; !ev.Snapshot || c.ID != id || c.Status != dispatch.CourierAvailable || c.Capacity != 2 || c.ActiveTasks != 0 ||
		c.Fix == nil || c.Fix.Location != pickup {
		t.Fatalf("first event = %+v (fix %+v), want the snapshot of %s: available, capacity 2, at %v", ev, ev.Courier.Fix, id, pickup)
	}
	if _, err := e.client.Claim(e.ctx, id, taskID(1), time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	ev = next()
	if c := ev.Courier; ev.Snapshot || c.ID != id || c.ActiveTasks != 1 || len(c.TaskIDs) != 1 || c.TaskIDs[0] != taskID(1) {
		t.Fatalf("event after a claim = %+v, want a change of %s holding %s", ev, id, taskID(1))
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatalf("WatchCouriers after its context ended = %v, want an error", err)
	}
}

// lateClaims is courier's API whose ClaimCourier calls do not reach the service before the caller gives
// up: each call returns DeadlineExceeded when its context ends and is held back, to land (run against
// the service) only when land is called, as a claim whose transaction commits after dispatch's call timed
// out.
type lateClaims struct {
	courierv1.CourierServiceClient
	held []*courierv1.ClaimCourierRequest
}

func (l *lateClaims) ClaimCourier(ctx context.Context, req *courierv1.ClaimCourierRequest, _ ...grpc.CallOption) (*courierv1.ClaimCourierResponse, error) {
	l.held = append(l.held, req)
	<-ctx.Done()
	return nil, status.FromContextError(ctx.Err()).Err()
}

// land runs the held claims, as dispatch, and returns their answers.
func (l *lateClaims) land(t *testing.T, ctx context.Context) []*courierv1.ClaimCourierResponse {
	t.Helper()
	var out []*courierv1.ClaimCourierResponse
	for _, req := range l.held {
		res, err := l.CourierServiceClient.ClaimCourier(ctx, req)
		if err != nil {
			t.Fatalf("late ClaimCourier(%s, generation %d): %v", req.GetTaskId(), req.GetGeneration(), err)
		}
		out = append(out, res)
	}
	l.held = nil
	return out
}

// A claim whose call timed out lands at the courier service after the release of the task ran (the
// task was cancelled meanwhile): dispatch's client sends the task's versions as generations, so the
// late claim is superseded and the courier keeps no capacity for a task it does not have. Without
// generations the late claim would hold a unit of the courier's capacity for good.
func TestClaimLandingAfterItsReleaseIsSuperseded(t *testing.T) {
	e := start(t)
	id := e.courierAt(t, 1, pickup)
	late := &lateClaims{CourierServiceClient: e.api}
	client := courierclient.New(late)

	// The claim of the task accepted at version 3 times out on dispatch's side.
	ctx, cancel := context.WithTimeout(e.ctx, 50*time.Millisecond)
	_, err := client.Claim(ctx, id, taskID(1), testNow.Add(time.Hour), 3)
	cancel()
	if apperr.CodeOf(err) != apperr.Unavailable {
		t.Fatalf("Claim that timed out = %v, want Unavailable", err)
	}
	// The task is cancelled (version 4): its release runs before the claim lands.
	if err := e.client.Release(e.ctx, id, taskID(1), 4); err != nil {
		t.Fatal(err)
	}
	res := late.land(t, e.ctx)
	if len(res) != 1 || !res[0].GetSuperseded() || res[0].GetAlreadyClaimed() || res[0].GetCourier().GetActiveTaskCount() != 0 {
		t.Fatalf("late claim = %v, want superseded, 0 tasks", res)
	}
	st, err := e.client.Status(e.ctx, id)
	if err != nil || st.ActiveTasks != 0 || len(st.TaskIDs) != 0 || st.Status != dispatch.CourierAvailable {
		t.Fatalf("Status after the late claim = %+v, %v; want available, no task", st, err)
	}

	// The same courier is given the task again at version 6 (a hand-back and a dispatcher's AssignTask
	// bring it back): that claim passes; a release of version 5 landing late leaves it; the claim of
	// version 3 landing later still is superseded.
	if superseded, err := e.client.Claim(e.ctx, id, taskID(1), testNow.Add(time.Hour), 6); err != nil || superseded {
		t.Fatalf("Claim at version 6 = %v, %v; want false, nil", superseded, err)
	}
	if err := e.client.Release(e.ctx, id, taskID(1), 5); err != nil {
		t.Fatal(err)
	}
	if superseded, err := e.client.Claim(e.ctx, id, taskID(1), testNow.Add(time.Hour), 3); err != nil || !superseded {
		t.Fatalf("Claim at version 3 = %v, %v; want superseded", superseded, err)
	}
	st, err = e.client.Status(e.ctx, id)
	if err != nil || st.ActiveTasks != 1 || len(st.TaskIDs) != 1 || st.TaskIDs[0] != taskID(1) {
		t.Fatalf("Status after the late release = %+v, %v; want the task held", st, err)
	}
	// Without generations (an older client), as before: the claim is idempotent, the release frees it.
	if superseded, err := e.client.Claim(e.ctx, id, taskID(2), time.Time{}, 0); err != nil || superseded {
		t.Fatalf("Claim without generation = %v, %v; want false, nil", superseded, err)
	}
	if err := e.client.Release(e.ctx, id, taskID(2), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.api.ClaimCourier(e.ctx, &courierv1.ClaimCourierRequest{CourierId: id, TaskId: taskID(3), Generation: -1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ClaimCourier(generation -1) = %v, want InvalidArgument", err)
	}
	if _, err := e.api.ReleaseCourier(e.ctx, &courierv1.ReleaseCourierRequest{CourierId: id, TaskId: taskID(3), Generation: -1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("ReleaseCourier(generation -1) = %v, want InvalidArgument", err)
	}
}
