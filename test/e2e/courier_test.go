package e2e_test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
)

// registerCourier creates a user with role COURIER as admin, registers its courier profile (a bicycle
// courier with capacity 2) and returns the courier id and the courier's session.
func registerCourier(t *testing.T, s *system, adminToken, email string) (string, session) {
	t.Helper()
	password := "courier long password " + email
	userID := s.createUser(t, adminToken, email, password, "ROLE_COURIER")
	code, hdr, body := s.rest(t, http.MethodPost, "/v1/couriers", adminToken,
		fmt.Sprintf(`{"userId": %q, "transportMode": "TRANSPORT_MODE_BICYCLE", "capacity": 2}`, userID))
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/couriers for %s = %d %v, want 201", email, code, body)
	}
	if got, want := hdr.Get("Location"), "/v1/couriers/"+str(body, "id"); got != want {
		t.Errorf("POST /v1/couriers Location = %q, want %q", got, want)
	}
	if got, want := str(body, "userId"), userID; got != want {
		t.Errorf("registered courier userId = %q, want %q", got, want)
	}
	if got, want := str(body, "status"), "COURIER_STATUS_OFFLINE"; got != want {
		t.Errorf("registered courier status = %q, want %q", got, want)
	}
	return str(body, "id"), s.login(t, email, password)
}

// fix is a location fix at lat, lng recorded at at.
func fix(lat, lng float64, at time.Time) *courierv1.LocationFix {
	return &courierv1.LocationFix{
		Location:       &geov1.LatLng{Latitude: lat, Longitude: lng},
		RecordedAt:     timestamppb.New(at),
		AccuracyMeters: 5,
	}
}

// report streams one batch of fixes for courierID with ctx's credentials and returns the summary.
func report(ctx context.Context, client courierv1.CourierServiceClient, courierID string, fixes ...*courierv1.LocationFix) (*courierv1.ReportLocationsResponse, error) {
	stream, err := client.ReportLocations(ctx)
	if err != nil {
		return nil, err
	}
	// A refused stream ends at once; Send then reports io.EOF and CloseAndRecv the real status.
	_ = stream.Send(&courierv1.ReportLocationsRequest{CourierId: courierID, Fixes: fixes})
	return stream.CloseAndRecv()
}

// TestCourierAsNewUser is issue 4's "done when", tried as a new user would: an admin creates a courier user
// and registers the courier; the courier publishes availability hours, goes AVAILABLE and streams fixes;
// the fixes show in GetCourierStatus and in a dispatcher's WatchCouriers; dispatch's service identity finds
// the courier nearby, and user tokens are refused that call.
func TestCourierAsNewUser(t *testing.T) {
	// The services' clock reads half past an hour, so the hour slots below cannot end while the test runs.
	s := startClock(t, t.TempDir(), map[string]string{
		"LASTMILE_ADMIN_EMAIL":    adminEmail,
		"LASTMILE_ADMIN_PASSWORD": adminPassword,
	}, halfPastClock())
	admin := s.login(t, adminEmail, adminPassword)
	courierID, cora := registerCourier(t, s, admin.access, "cora@example.com")
	otherID, _ := registerCourier(t, s, admin.access, "oscar@example.com")
	s.createUser(t, admin.access, "dina@example.com", "dina's long password", "ROLE_DISPATCHER")
	dina := s.login(t, "dina@example.com", "dina's long password")

	hour := s.now().UTC().Truncate(time.Hour)
	hours := []time.Time{hour.Add(20 * time.Minute), hour.Add(time.Hour), hour.Add(2*time.Hour + 59*time.Minute)}
	code, _, body := s.rest(t, http.MethodPut, "/v1/couriers/"+courierID+"/availability", cora.access,
		mustJSON(t, map[string]any{"hours": hours, "available": true}))
	if code != http.StatusOK {
		t.Fatalf("PUT availability as the courier = %d %v, want 200", code, body)
	}
	slots, _ := body["slots"].([]any)
	if len(slots) != 3 {
		t.Fatalf("PUT availability answered %d slots, want 3: %v", len(slots), body)
	}
	for i, sl := range slots {
		slot, _ := sl.(map[string]any)
		start, err := time.Parse(time.RFC3339, str(slot, "startTime"))
		if err != nil || !start.Equal(hour.Add(time.Duration(i)*time.Hour)) || slot["available"] != true {
			t.Errorf("slot %d = %v, want start %s (truncated to the hour) and available", i, slot, hour.Add(time.Duration(i)*time.Hour).Format(time.RFC3339))
		}
	}

	code, _, body = s.rest(t, http.MethodPost, "/v1/couriers/"+courierID+":setStatus", cora.access, `{"status": "COURIER_STATUS_AVAILABLE"}`)
	if code != http.StatusOK || str(body, "status") != "COURIER_STATUS_AVAILABLE" || body["availableNow"] != true {
		t.Fatalf("setStatus AVAILABLE as the courier = %d %v, want 200, AVAILABLE and availableNow", code, body)
	}
	code, _, body = s.rest(t, http.MethodPost, "/v1/couriers/"+otherID+":setStatus", cora.access, `{"status": "COURIER_STATUS_AVAILABLE"}`)
	if code != http.StatusForbidden || errStatus(body) != "PERMISSION_DENIED" {
		t.Errorf("setStatus of another courier as a courier = %d %v, want 403 PERMISSION_DENIED", code, body)
	}

	plain := courierv1.NewCourierServiceClient(s.grpcConn(t, ""))
	dispatch := courierv1.NewCourierServiceClient(s.grpcConn(t, "dispatch"))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	// Three fixes ten seconds apart, about 45 m apart: 4.5 m/s, an easy pace for a bicycle.
	now := s.now()
	const lat0, lng0, step = 52.5200, 13.4050, 0.0004
	sum, err := report(bearer(ctx, cora.access), plain, courierID,
		fix(lat0, lng0, now.Add(-30*time.Second)),
		fix(lat0+step, lng0, now.Add(-20*time.Second)),
		fix(lat0+2*step, lng0, now.Add(-10*time.Second)))
	if err != nil {
		t.Fatalf("ReportLocations with the courier's token: %v", err)
	}
	if sum.GetAcceptedCount() != 3 || sum.GetRejectedCount() != 0 {
		t.Fatalf("ReportLocations = %v, want 3 accepted and none rejected", sum)
	}

	code, _, body = s.rest(t, http.MethodGet, "/v1/couriers/"+courierID+"/status", cora.access, "")
	if code != http.StatusOK {
		t.Fatalf("GET status = %d %v, want 200", code, body)
	}
	loc, _ := body["lastLocation"].(map[string]any)
	latLng, _ := loc["location"].(map[string]any)
	recorded, err := time.Parse(time.RFC3339Nano, str(loc, "recordedAt"))
	if latLng["latitude"] != lat0+2*step || latLng["longitude"] != lng0 || err != nil ||
		!recorded.Equal(now.Add(-10*time.Second).Truncate(time.Microsecond)) {
		t.Errorf("GET status lastLocation = %v, want the last fix (%v, %v) at %v", loc, lat0+2*step, lng0, now.Add(-10*time.Second))
	}
	if str(body, "locationAge") == "" || str(body, "status") != "COURIER_STATUS_AVAILABLE" {
		t.Errorf("GET status = %v, want a locationAge and status AVAILABLE", body)
	}

	near := &courierv1.FindNearbyCouriersRequest{Location: &geov1.LatLng{Latitude: lat0, Longitude: lng0}, RadiusMeters: 2000}
	found, err := dispatch.FindNearbyCouriers(ctx, near)
	if err != nil {
		t.Fatalf("FindNearbyCouriers as the dispatch service: %v", err)
	}
	var ids []string
	for _, c := range found.GetCouriers() {
		ids = append(ids, c.GetCourier().GetCourierId())
	}
	if !slices.Equal(ids, []string{courierID}) {
		t.Fatalf("FindNearbyCouriers found %v, want only the available courier %s", ids, courierID)
	}
	// Two steps of 0.0004 degrees of latitude are about 89 m.
	if d := found.GetCouriers()[0].GetDistanceMeters(); math.Abs(d-89) > 2 {
		t.Errorf("FindNearbyCouriers distance = %.1f m, want about 89 m", d)
	}
	for _, c := range []struct {
		name   string
		client courierv1.CourierServiceClient
		ctx    context.Context
		want   codes.Code
	}{
		{"an admin token", plain, bearer(ctx, admin.access), codes.PermissionDenied},
		{"a dispatcher token", plain, bearer(ctx, dina.access), codes.PermissionDenied},
		// The token decides, whoever forwards it: dispatch's certificate must not lend its rights to a user.
		{"a courier token over dispatch's connection", dispatch, bearer(ctx, cora.access), codes.PermissionDenied},
		{"no credentials", plain, ctx, codes.Unauthenticated},
	} {
		if _, err := c.client.FindNearbyCouriers(c.ctx, near); status.Code(err) != c.want {
			t.Errorf("FindNearbyCouriers with %s: %v, want code %v", c.name, err, c.want)
		}
	}

	watchCtx, stopWatch := context.WithCancel(bearer(ctx, dina.access))
	defer stopWatch()
	watch, err := plain.WatchCouriers(watchCtx, &courierv1.WatchCouriersRequest{CourierIds: []string{courierID}})
	if err != nil {
		t.Fatalf("WatchCouriers as a dispatcher: %v", err)
	}
	ev, err := watch.Recv()
	if err != nil {
		t.Fatalf("WatchCouriers first event: %v", err)
	}
	if ev.GetCourier().GetCourierId() != courierID || !slices.Equal(ev.GetChanges(), []courierv1.CourierChange{courierv1.CourierChange_COURIER_CHANGE_SNAPSHOT}) {
		t.Fatalf("WatchCouriers first event = %v, want the snapshot of %s", ev, courierID)
	}
	sum, err = report(bearer(ctx, cora.access), plain, courierID, fix(lat0+3*step, lng0, s.now()))
	if err != nil || sum.GetAcceptedCount() != 1 {
		t.Fatalf("ReportLocations of one more fix = %v, %v; want 1 accepted", sum, err)
	}
	for {
		ev, err := watch.Recv()
		if err != nil {
			t.Fatalf("WatchCouriers after a new fix: %v, want a location event", err)
		}
		if slices.Contains(ev.GetChanges(), courierv1.CourierChange_COURIER_CHANGE_LOCATION) {
			if got := ev.GetCourier().GetLastLocation().GetLocation().GetLatitude(); ev.GetCourier().GetCourierId() != courierID || got != lat0+3*step {
				t.Errorf("WatchCouriers location event = %v, want courier %s at latitude %v", ev, courierID, lat0+3*step)
			}
			break
		}
	}
	stopWatch()

	// Cora may not report for Oscar, and nothing she sent for him counts.
	_, err = report(bearer(ctx, cora.access), plain, otherID, fix(lat0, lng0, s.now()))
	if got := status.Code(err); got != codes.PermissionDenied {
		t.Errorf("ReportLocations for another courier with a courier token: %v, want code PermissionDenied", err)
	}
	code, _, body = s.rest(t, http.MethodGet, "/v1/couriers/"+otherID+"/status", admin.access, "")
	if code != http.StatusOK || body["lastLocation"] != nil {
		t.Errorf("GET status of the other courier = %d %v, want 200 without a lastLocation", code, body)
	}
	_, err = report(bearer(ctx, dina.access), plain, courierID, fix(lat0+4*step, lng0, s.now()))
	if got := status.Code(err); got != codes.PermissionDenied {
		t.Errorf("ReportLocations with a dispatcher token: %v, want code PermissionDenied", err)
	}
}
