package grpcapi_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/courier"
	"lastmile/internal/platform/auth"
)

func TestUnaryCalls(t *testing.T) {
	e := start(t, courier.Options{})
	c := e.courierUser(t, 1, 2)
	other := e.courierUser(t, 2, 2)
	self := as(1, auth.RoleCourier)

	if c.GetStatus() != courierv1.CourierStatus_COURIER_STATUS_OFFLINE || c.GetDisplayName() != "Courier 1" || c.GetEtag() != "1" {
		t.Errorf("RegisterCourier = %v, want offline, named after the user, etag 1", c)
	}
	got, err := e.client.GetCourier(callCtx(t, self), &courierv1.GetCourierRequest{Lookup: &courierv1.GetCourierRequest_UserId{UserId: userID(1)}})
	if diff := cmp.Diff(c, got, protocmp.Transform()); err != nil || diff != "" {
		t.Errorf("GetCourier(own user id): %v (-want +got):\n%s", err, diff)
	}
	_, err = e.client.GetCourier(callCtx(t, self), &courierv1.GetCourierRequest{Lookup: &courierv1.GetCourierRequest_Id{Id: other.GetId()}})
	wantStatus(t, "GetCourier(other) as courier", err, codes.NotFound)
	_, err = e.client.GetCourier(callCtx(t, as(3, auth.RoleCustomer)), &courierv1.GetCourierRequest{Lookup: &courierv1.GetCourierRequest_Id{Id: c.GetId()}})
	wantStatus(t, "GetCourier as customer", err, codes.PermissionDenied)
	_, err = e.client.GetCourier(callCtx(t, anonymous), &courierv1.GetCourierRequest{Lookup: &courierv1.GetCourierRequest_Id{Id: c.GetId()}})
	wantStatus(t, "GetCourier anonymously", err, codes.Unauthenticated)

	// A mask naming a field the server sets would succeed while changing nothing: it is refused, and
	// nothing changes.
	for _, path := range []string{"status", "id", "user_id", "create_time", "update_time", "displayName"} {
		_, err = e.client.UpdateCourier(callCtx(t, self), &courierv1.UpdateCourierRequest{
			Courier:    &courierv1.Courier{Id: c.GetId(), DisplayName: "Ada", Capacity: 2, Status: courierv1.CourierStatus_COURIER_STATUS_BUSY, Etag: "1"},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name", path, "etag"}},
		})
		wantStatus(t, "UpdateCourier(mask naming "+path+")", err, codes.InvalidArgument)
		if v := violations(err); len(v) != 1 || v[0].GetField() != "update_mask" {
			t.Errorf("UpdateCourier(mask naming %s) violations = %v, want one on update_mask", path, v)
		}
	}
	_, err = e.client.UpdateCourier(callCtx(t, self), &courierv1.UpdateCourierRequest{
		Courier:    &courierv1.Courier{Id: c.GetId(), Etag: "1"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"etag"}},
	})
	wantStatus(t, "UpdateCourier(mask naming only etag)", err, codes.InvalidArgument)
	// The etag is a precondition: naming it along with a change is fine.
	up, err := e.client.UpdateCourier(callCtx(t, self), &courierv1.UpdateCourierRequest{
		Courier:    &courierv1.Courier{Id: c.GetId(), DisplayName: "Ada", Capacity: 2, Etag: "1"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name", "capacity", "etag"}},
	})
	if err != nil || up.GetDisplayName() != "Ada" || up.GetEtag() != "2" || up.GetStatus() != courierv1.CourierStatus_COURIER_STATUS_OFFLINE {
		t.Errorf("UpdateCourier(self, PATCH back) = %v, %v; want renamed, etag 2, status untouched", up, err)
	}
	_, err = e.client.UpdateCourier(callCtx(t, self), &courierv1.UpdateCourierRequest{
		Courier:    &courierv1.Courier{Id: c.GetId(), Capacity: 9},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"capacity"}},
	})
	wantStatus(t, "UpdateCourier(self raises capacity)", err, codes.PermissionDenied)

	snap, err := e.client.SetStatus(callCtx(t, self), &courierv1.SetStatusRequest{CourierId: c.GetId(), Status: courierv1.CourierStatus_COURIER_STATUS_AVAILABLE})
	if err != nil || snap.GetStatus() != courierv1.CourierStatus_COURIER_STATUS_AVAILABLE {
		t.Errorf("SetStatus(available) = %v, %v", snap, err)
	}
	_, err = e.client.SetStatus(callCtx(t, self), &courierv1.SetStatusRequest{CourierId: c.GetId(), Status: courierv1.CourierStatus_COURIER_STATUS_BUSY})
	wantStatus(t, "SetStatus(busy)", err, codes.InvalidArgument)
	_, err = e.client.SetStatus(callCtx(t, self), &courierv1.SetStatusRequest{CourierId: other.GetId(), Status: courierv1.CourierStatus_COURIER_STATUS_AVAILABLE})
	wantStatus(t, "SetStatus(other) as courier", err, codes.PermissionDenied)

	now := testNow
	hour := now.Truncate(time.Hour)
	slots, err := e.client.SetAvailability(callCtx(t, self), &courierv1.SetAvailabilityRequest{
		CourierId: c.GetId(), Hours: []*timestamppb.Timestamp{timestamppb.New(now), timestamppb.New(hour.Add(time.Hour))}, Available: true})
	if err != nil || len(slots.GetSlots()) != 2 || !slots.GetSlots()[1].GetStartTime().AsTime().Equal(hour.Add(time.Hour)) {
		t.Errorf("SetAvailability = %v, %v; want 2 slots from this hour", slots, err)
	}
	_, err = e.client.SetAvailability(callCtx(t, self), &courierv1.SetAvailabilityRequest{
		CourierId: c.GetId(), Hours: []*timestamppb.Timestamp{timestamppb.New(hour.Add(-time.Hour))}, Available: true})
	wantStatus(t, "SetAvailability(past hour)", err, codes.InvalidArgument)
	avail, err := e.client.IsAvailable(callCtx(t, dispatcher), &courierv1.IsAvailableRequest{CourierId: c.GetId()})
	if err != nil || !avail.GetAvailable() {
		t.Errorf("IsAvailable(now) = %v, %v; want available", avail, err)
	}
	got2, err := e.client.GetAvailability(callCtx(t, self), &courierv1.GetAvailabilityRequest{
		CourierId: c.GetId(), StartTime: timestamppb.New(hour), EndTime: timestamppb.New(hour.Add(3 * time.Hour))})
	if err != nil || len(got2.GetSlots()) != 3 || !got2.GetSlots()[1].GetAvailable() || got2.GetSlots()[2].GetAvailable() {
		t.Errorf("GetAvailability = %v, %v; want 3 slots, the first two available", got2, err)
	}

	page, err := e.client.ListCouriers(callCtx(t, admin), &courierv1.ListCouriersRequest{Status: courierv1.CourierStatus_COURIER_STATUS_OFFLINE})
	if err != nil || page.GetTotalSize() != 1 || page.GetCouriers()[0].GetId() != other.GetId() {
		t.Errorf("ListCouriers(offline) = %v, %v; want only courier 2", page, err)
	}
	_, err = e.client.ListCouriers(callCtx(t, self), &courierv1.ListCouriersRequest{})
	wantStatus(t, "ListCouriers as courier", err, codes.PermissionDenied)
}

func TestClaimAndRelease(t *testing.T) {
	e := start(t, courier.Options{})
	c := e.courierUser(t, 1, 1)
	if _, err := e.client.SetStatus(callCtx(t, dispatcher), &courierv1.SetStatusRequest{CourierId: c.GetId(), Status: courierv1.CourierStatus_COURIER_STATUS_AVAILABLE}); err != nil {
		t.Fatal(err)
	}
	req := &courierv1.ClaimCourierRequest{CourierId: c.GetId(), TaskId: taskID(1)}
	res, err := e.client.ClaimCourier(callCtx(t, dispatch), req)
	if err != nil || res.GetAlreadyClaimed() || res.GetCourier().GetStatus() != courierv1.CourierStatus_COURIER_STATUS_BUSY {
		t.Errorf("ClaimCourier = %v, %v; want new claim, busy", res, err)
	}
	res, err = e.client.ClaimCourier(callCtx(t, dispatch), req)
	if err != nil || !res.GetAlreadyClaimed() || res.GetCourier().GetActiveTaskCount() != 1 {
		t.Errorf("ClaimCourier(again) = %v, %v; want already claimed, 1 task", res, err)
	}
	_, err = e.client.ClaimCourier(callCtx(t, dispatch), &courierv1.ClaimCourierRequest{CourierId: c.GetId(), TaskId: taskID(2)})
	wantStatus(t, "ClaimCourier(beyond capacity)", err, codes.FailedPrecondition)
	_, err = e.client.ClaimCourier(callCtx(t, admin), &courierv1.ClaimCourierRequest{CourierId: c.GetId(), TaskId: taskID(3)})
	wantStatus(t, "ClaimCourier as admin user", err, codes.PermissionDenied)

	rel, err := e.client.ReleaseCourier(callCtx(t, dispatch), &courierv1.ReleaseCourierRequest{CourierId: c.GetId(), TaskId: taskID(1)})
	if err != nil || !rel.GetReleased() || rel.GetCourier().GetStatus() != courierv1.CourierStatus_COURIER_STATUS_AVAILABLE {
		t.Errorf("ReleaseCourier = %v, %v; want released, available", rel, err)
	}
	rel, err = e.client.ReleaseCourier(callCtx(t, dispatch), &courierv1.ReleaseCourierRequest{CourierId: c.GetId(), TaskId: taskID(1)})
	if err != nil || rel.GetReleased() {
		t.Errorf("ReleaseCourier(again) = %v, %v; want released = false", rel, err)
	}
}

func fix(lat, lng float64, at time.Time) *courierv1.LocationFix {
	return &courierv1.LocationFix{Location: &geov1.LatLng{Latitude: lat, Longitude: lng}, RecordedAt: timestamppb.New(at), AccuracyMeters: 5}
}

func TestReportLocations(t *testing.T) {
	e := start(t, courier.Options{})
	c := e.courierUser(t, 1, 1)
	e.courierUser(t, 2, 1)
	now := testNow

	stream, err := e.client.ReportLocations(callCtx(t, as(1, auth.RoleCourier)))
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*courierv1.ReportLocationsRequest{
		{CourierId: c.GetId(), Fixes: []*courierv1.LocationFix{
			fix(52.5, 13.4, now.Add(-3*time.Second)),
			{RecordedAt: timestamppb.New(now)}, // no location: invalid, not fatal
			fix(52.5001, 13.4, now.Add(-2*time.Second)),
		}},
		{CourierId: c.GetId(), Fixes: []*courierv1.LocationFix{fix(52.5, 13.4, now.Add(-3*time.Second))}}, // out of order
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	res, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("ReportLocations: %v", err)
	}
	want := &courierv1.ReportLocationsResponse{AcceptedCount: 2, RejectedCount: 2, Rejections: []*courierv1.FixRejection{
		{Reason: courierv1.FixRejectionReason_FIX_REJECTION_REASON_INVALID, Count: 1},
		{Reason: courierv1.FixRejectionReason_FIX_REJECTION_REASON_OUT_OF_ORDER, Count: 1},
	}}
	if diff := cmp.Diff(want, res, protocmp.Transform()); diff != "" {
		t.Errorf("ReportLocations (-want +got):\n%s", diff)
	}
	snap, err := e.client.GetCourierStatus(callCtx(t, dispatch), &courierv1.GetCourierStatusRequest{CourierId: c.GetId()})
	if diff := cmp.Diff(fix(52.5001, 13.4, now.Add(-2*time.Second)), snap.GetLastLocation(), protocmp.Transform()); err != nil || diff != "" {
		t.Errorf("GetCourierStatus last location: %v (-want +got):\n%s", err, diff)
	}

	// A courier cannot report for another courier.
	stream, err = e.client.ReportLocations(callCtx(t, as(2, auth.RoleCourier)))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(msgs[0]); err != nil {
		t.Fatal(err)
	}
	_, err = stream.CloseAndRecv()
	wantStatus(t, "ReportLocations for another courier", err, codes.PermissionDenied)

	// Every message must name the stream's courier.
	stream, err = e.client.ReportLocations(callCtx(t, service("simulator")))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*courierv1.ReportLocationsRequest{
		{CourierId: c.GetId(), Fixes: []*courierv1.LocationFix{fix(52.5002, 13.4, now)}},
		{CourierId: userID(2), Fixes: []*courierv1.LocationFix{fix(52.5, 13.4, now)}},
	} {
		if err := stream.Send(m); err != nil {
			break // the server may already have ended the stream
		}
	}
	_, err = stream.CloseAndRecv()
	wantStatus(t, "ReportLocations naming two couriers", err, codes.InvalidArgument)

	stream, err = e.client.ReportLocations(callCtx(t, dispatcher))
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(msgs[0])
	_, err = stream.CloseAndRecv()
	wantStatus(t, "ReportLocations as dispatcher", err, codes.PermissionDenied)
}

func TestFindNearbyCouriers(t *testing.T) {
	e := start(t, courier.Options{})
	c := e.courierUser(t, 1, 1)
	if _, err := e.client.SetStatus(callCtx(t, as(1, auth.RoleCourier)), &courierv1.SetStatusRequest{CourierId: c.GetId(), Status: courierv1.CourierStatus_COURIER_STATUS_AVAILABLE}); err != nil {
		t.Fatal(err)
	}
	stream, err := e.client.ReportLocations(callCtx(t, as(1, auth.RoleCourier)))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&courierv1.ReportLocationsRequest{CourierId: c.GetId(), Fixes: []*courierv1.LocationFix{fix(52.52, 13.405, testNow)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}

	req := &courierv1.FindNearbyCouriersRequest{Location: &geov1.LatLng{Latitude: 52.53, Longitude: 13.405}, RadiusMeters: 5000}
	for _, who := range []struct {
		name string
		p    auth.Principal
	}{
		{"admin", admin},
		{"dispatcher", dispatcher},
		{"courier", as(1, auth.RoleCourier)},
		{"service gateway", service("gateway")},
		{"service simulator", service("simulator")},
	} {
		_, err := e.client.FindNearbyCouriers(callCtx(t, who.p), req)
		wantStatus(t, "FindNearbyCouriers as "+who.name, err, codes.PermissionDenied)
	}
	res, err := e.client.FindNearbyCouriers(callCtx(t, dispatch), req)
	if err != nil {
		t.Fatalf("FindNearbyCouriers as dispatch: %v", err)
	}
	wantDist := courier.Distance(52.53, 13.405, 52.52, 13.405)
	if len(res.GetCouriers()) != 1 || res.GetCouriers()[0].GetCourier().GetCourierId() != c.GetId() ||
		res.GetCouriers()[0].GetDistanceMeters() != wantDist {
		t.Errorf("FindNearbyCouriers = %v, want courier 1 at %v m", res, wantDist)
	}
	_, err = e.client.FindNearbyCouriers(callCtx(t, dispatch), &courierv1.FindNearbyCouriersRequest{RadiusMeters: 5000})
	wantStatus(t, "FindNearbyCouriers without a location", err, codes.InvalidArgument)
}

func TestWatchCouriers(t *testing.T) {
	e := start(t, courier.Options{})
	c := e.courierUser(t, 1, 1)
	self := as(1, auth.RoleCourier)
	if _, err := e.client.SetStatus(callCtx(t, self), &courierv1.SetStatusRequest{CourierId: c.GetId(), Status: courierv1.CourierStatus_COURIER_STATUS_AVAILABLE}); err != nil {
		t.Fatal(err)
	}

	watch, err := e.client.WatchCouriers(callCtx(t, dispatcher), &courierv1.WatchCouriersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	// The accepted watch says so in its headers before any event (the gateway's event route waits for it).
	if md, err := watch.Header(); err != nil || !cmp.Equal(md.Get("lastmile-watch"), []string{"open"}) {
		t.Errorf("WatchCouriers headers = %v, %v; want lastmile-watch: open", md, err)
	}
	ev, err := watch.Recv()
	if err != nil || ev.GetCourier().GetCourierId() != c.GetId() ||
		!cmp.Equal(ev.GetChanges(), []courierv1.CourierChange{courierv1.CourierChange_COURIER_CHANGE_SNAPSHOT}) {
		t.Fatalf("first event = %v, %v; want the snapshot of courier 1", ev, err)
	}

	at := testNow.Add(-time.Second)
	stream, err := e.client.ReportLocations(callCtx(t, self))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&courierv1.ReportLocationsRequest{CourierId: c.GetId(), Fixes: []*courierv1.LocationFix{fix(48.85, 2.35, at)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	ev, err = watch.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fix(48.85, 2.35, at), ev.GetCourier().GetLastLocation(), protocmp.Transform()); diff != "" ||
		!cmp.Equal(ev.GetChanges(), []courierv1.CourierChange{courierv1.CourierChange_COURIER_CHANGE_LOCATION}) {
		t.Errorf("location event changes %v (-want +got location):\n%s", ev.GetChanges(), diff)
	}

	denied, err := e.client.WatchCouriers(callCtx(t, self), &courierv1.WatchCouriersRequest{})
	if err == nil {
		if md, _ := denied.Header(); len(md.Get("lastmile-watch")) != 0 {
			t.Errorf("a refused WatchCouriers sent lastmile-watch %q", md.Get("lastmile-watch"))
		}
		_, err = denied.Recv()
	}
	wantStatus(t, "WatchCouriers as courier", err, codes.PermissionDenied)

	// Shutdown ends the stream with Unavailable.
	e.stopRun()
	_, err = watch.Recv()
	wantStatus(t, "WatchCouriers after shutdown", err, codes.Unavailable)
}

// TestReportLocationsEndsOnShutdown checks that a shutdown ends an open ReportLocations stream at once with
// the counts of what it accepted, instead of holding the graceful stop until its deadline.
func TestReportLocationsEndsOnShutdown(t *testing.T) {
	e := start(t, courier.Options{})
	c := e.courierUser(t, 1, 1)
	now := testNow
	stream, err := e.client.ReportLocations(callCtx(t, as(1, auth.RoleCourier)))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&courierv1.ReportLocationsRequest{CourierId: c.GetId(), Fixes: []*courierv1.LocationFix{fix(52.5, 13.4, now.Add(-time.Second))}}); err != nil {
		t.Fatal(err)
	}
	// Wait until the fix is in, so the shutdown cannot overtake it.
	deadline := time.Now().Add(testTimeout)
	for {
		snap, err := e.client.GetCourierStatus(callCtx(t, dispatch), &courierv1.GetCourierStatusRequest{CourierId: c.GetId()})
		if err == nil && snap.GetLastLocation() != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fix never showed in GetCourierStatus: %v %v", snap, err)
		}
		time.Sleep(5 * time.Millisecond)
	}

	e.api.Shutdown()
	res, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("ReportLocations after Shutdown: %v, want the counts so far", err)
	}
	if diff := cmp.Diff(&courierv1.ReportLocationsResponse{AcceptedCount: 1}, res, protocmp.Transform()); diff != "" {
		t.Errorf("ReportLocations after Shutdown (-want +got):\n%s", diff)
	}
}

// Dispatch finds the courier profile of the courier user calling it: GetCourier by user id as the
// dispatch service, which the domain admits as a privileged caller.
func TestGetCourierByUserAsDispatch(t *testing.T) {
	e := start(t, courier.Options{})
	c := e.courierUser(t, 1, 2)
	got, err := e.client.GetCourier(callCtx(t, dispatch), &courierv1.GetCourierRequest{Lookup: &courierv1.GetCourierRequest_UserId{UserId: userID(1)}})
	if err != nil || got.GetId() != c.GetId() {
		t.Errorf("GetCourier(user id) as dispatch = %v, %v; want courier %s", got, err, c.GetId())
	}
	_, err = e.client.GetCourier(callCtx(t, dispatch), &courierv1.GetCourierRequest{Lookup: &courierv1.GetCourierRequest_UserId{UserId: userID(2)}})
	wantStatus(t, "GetCourier(user without a profile) as dispatch", err, codes.NotFound)
	_, err = e.client.GetCourier(callCtx(t, service("simulator")), &courierv1.GetCourierRequest{Lookup: &courierv1.GetCourierRequest_UserId{UserId: userID(1)}})
	wantStatus(t, "GetCourier as another service", err, codes.PermissionDenied)
}

// violations returns the field violations of err's status.
func violations(err error) []*errdetails.BadRequest_FieldViolation {
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			return br.GetFieldViolations()
		}
	}
	return nil
}
