package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
)

// violation is one field violation in a REST error body.
type violation struct{ field, description string }

// restError returns the message and the field violations of a REST error body.
func restError(body map[string]any) (string, []violation) {
	var vs []violation
	details, _ := str2(body, "error", "details").([]any)
	for _, d := range details {
		fvs, _ := d.(map[string]any)["fieldViolations"].([]any)
		for _, fv := range fvs {
			m := fv.(map[string]any)
			f, _ := m["field"].(string)
			desc, _ := m["description"].(string)
			vs = append(vs, violation{f, desc})
		}
	}
	return str(body, "error", "message"), vs
}

// str2 returns the value at path inside a decoded JSON object.
func str2(v map[string]any, path ...string) any {
	var cur any = v
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

// TestRESTErrorsReadAsSentences is issue 10's "A REST API that feels native", tried as a new user would:
// validation errors are sentences that name fields by their JSON names (the gRPC API keeps proto names),
// enum errors list the values, bad JSON says where, and update masks accept JSON names and refuse fields
// that cannot change.
func TestRESTErrorsReadAsSentences(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s := startWithAdmin(t)
	admin := s.login(t, adminEmail, adminPassword)
	courierID, rider := registerCourier(t, s, admin.access, "rider@example.com")
	userID := s.createUser(t, admin.access, "second.rider@example.com", "second rider's long password", "ROLE_COURIER")

	tests := []struct {
		name, method, path, token, body string
		wantStatus                      int
		wantMessage                     string
		wantViolations                  []violation
	}{
		{"required enum", http.MethodPost, "/v1/couriers", admin.access, fmt.Sprintf(`{"userId":%q,"capacity":0}`, userID),
			400, "transportMode is required; capacity must be between 1 and 100",
			[]violation{{"transportMode", "transportMode is required"}, {"capacity", "capacity must be between 1 and 100"}}},
		{"enum values by name", http.MethodPost, "/v1/couriers/" + courierID + ":setStatus", rider.access, `{"status":"COURIER_STATUS_BUSY"}`,
			400, "status must be one of COURIER_STATUS_OFFLINE, COURIER_STATUS_AVAILABLE, COURIER_STATUS_ON_BREAK",
			[]violation{{"status", "status must be one of COURIER_STATUS_OFFLINE, COURIER_STATUS_AVAILABLE, COURIER_STATUS_ON_BREAK"}}},
		{"nested and repeated paths", http.MethodPost, "/v1/routes:computeMatrix", "",
			`{"origins":[{"latitude":1,"longitude":1},{"latitude":91,"longitude":0}],"destinations":[{"latitude":1,"longitude":2}],"transportMode":"TRANSPORT_MODE_CAR"}`,
			400, "origins[1].latitude must be between -90 and 90", []violation{{"origins[1].latitude", "origins[1].latitude must be between -90 and 90"}}},
		{"a domain rule's violation", http.MethodPatch, "/v1/couriers/" + courierID, admin.access, `{"displayName":"   "}`,
			400, "displayName is required", []violation{{"displayName", "displayName is required"}}},
		{"an unknown mask path", http.MethodPatch, "/v1/couriers/" + courierID + "?updateMask=shoeSize", admin.access, `{}`,
			400, "updateMask may only name displayName, transportMode, capacity, etag",
			[]violation{{"updateMask", "updateMask may only name displayName, transportMode, capacity, etag"}}},
		// An output-only path is refused as an unknown one: the answer lists only the paths that may be
		// named, so a client PATCHing back what it read learns what to send.
		{"an output-only mask path", http.MethodPatch, "/v1/couriers/" + courierID + "?updateMask=id", admin.access, `{}`,
			400, "updateMask may only name displayName, transportMode, capacity, etag",
			[]violation{{"updateMask", "updateMask may only name displayName, transportMode, capacity, etag"}}},
		{"a courier PATCHed back as read", http.MethodPatch, "/v1/couriers/" + courierID, admin.access,
			`{"id":"` + courierID + `","displayName":"Rider","status":"COURIER_STATUS_OFFLINE","createTime":"2026-01-01T00:00:00Z","etag":"1"}`,
			400, "updateMask may only name displayName, transportMode, capacity, etag",
			[]violation{{"updateMask", "updateMask may only name displayName, transportMode, capacity, etag"}}},
		{"a user's output-only mask path", http.MethodPatch, "/v1/users/" + userID + "?updateMask=lastLoginTime", admin.access, `{}`,
			400, "updateMask may only name displayName, username, email, role, status, etag",
			[]violation{{"updateMask", "updateMask may only name displayName, username, email, role, status, etag"}}},
		// A PATCH whose body names no field (and no updateMask) says so, and which fields may be named.
		{"a courier PATCH naming nothing", http.MethodPatch, "/v1/couriers/" + courierID, admin.access, `{}`,
			400, "updateMask names no field to change: name at least one of displayName, transportMode, capacity",
			[]violation{{"", "updateMask names no field to change: name at least one of displayName, transportMode, capacity"}}},
		{"a courier PATCH with an empty updateMask", http.MethodPatch, "/v1/couriers/" + courierID + "?updateMask=", admin.access, `{"capacity":2}`,
			400, "updateMask names no field to change: name at least one of displayName, transportMode, capacity",
			[]violation{{"", "updateMask names no field to change: name at least one of displayName, transportMode, capacity"}}},
		{"a user PATCH naming nothing", http.MethodPatch, "/v1/users/" + userID, admin.access, `{}`,
			400, "updateMask names no field to change: name at least one of displayName, username, email, role, status",
			[]violation{{"", "updateMask names no field to change: name at least one of displayName, username, email, role, status"}}},
		{"bad JSON", http.MethodPost, "/v1/couriers/" + courierID + ":setStatus", rider.access, "{\n  \"status\": COURIER_STATUS_OFFLINE\n}",
			400, "the request body is not valid JSON: invalid value COURIER_STATUS_OFFLINE (line 2, column 13)", nil},
		{"an enum value that does not exist", http.MethodPost, "/v1/couriers/" + courierID + ":setStatus", rider.access, `{"status":"AVAILABLE"}`,
			400, `the request body does not match the request: status must be one of COURIER_STATUS_OFFLINE, COURIER_STATUS_AVAILABLE, COURIER_STATUS_ON_BREAK, COURIER_STATUS_BUSY (got "AVAILABLE") (line 1, column 11)`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := s.rest(t, tt.method, tt.path, tt.token, tt.body)
			if code != tt.wantStatus {
				t.Fatalf("%s %s = %d %v, want %d", tt.method, tt.path, code, body, tt.wantStatus)
			}
			msg, vs := restError(body)
			if msg != tt.wantMessage {
				t.Errorf("message = %q, want %q", msg, tt.wantMessage)
			}
			if diff := cmp.Diff(tt.wantViolations, vs, cmp.AllowUnexported(violation{})); diff != "" {
				t.Errorf("field violations (-want +got):\n%s", diff)
			}
		})
	}

	// Masks name fields by their JSON names, their proto names, or not at all (the body's fields).
	for _, patch := range []struct{ query, name string }{
		{"?updateMask=displayName", "Ada"}, {"?updateMask=display_name", "Bea"}, {"", "Cleo"},
	} {
		code, _, body := s.rest(t, http.MethodPatch, "/v1/couriers/"+courierID+patch.query, rider.access, fmt.Sprintf(`{"displayName":%q}`, patch.name))
		if code != http.StatusOK || str(body, "displayName") != patch.name {
			t.Errorf("PATCH courier%s {displayName: %s} = %d %v, want 200 and the new name", patch.query, patch.name, code, body)
		}
	}

	// The gRPC API keeps the contract's proto names.
	client := courierv1.NewCourierServiceClient(s.grpcConn(t, ""))
	_, err := client.RegisterCourier(bearer(ctx, admin.access), &courierv1.RegisterCourierRequest{UserId: userID, Capacity: 1})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument || st.Message() != "transport_mode is required" {
		t.Errorf("RegisterCourier over gRPC = %v, want InvalidArgument %q", err, "transport_mode is required")
	}
	want := []any{&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: "transport_mode", Description: "transport_mode is required"},
	}}}
	if diff := cmp.Diff(want, st.Details(), protocmp.Transform()); diff != "" {
		t.Errorf("RegisterCourier over gRPC details (-want +got):\n%s", diff)
	}
	_, err = client.UpdateCourier(bearer(ctx, admin.access), &courierv1.UpdateCourierRequest{
		Courier:    &courierv1.Courier{Id: courierID, TransportMode: geov1.TransportMode_TRANSPORT_MODE_CAR},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"transport_mode", "create_time"}},
	})
	if want := "update_mask may only name display_name, transport_mode, capacity, etag"; status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != want {
		t.Errorf("UpdateCourier(create_time) over gRPC = %v, want InvalidArgument %q", err, want)
	}

	// A mask that names nothing says so, and which fields may be named.
	_, err = client.UpdateCourier(bearer(ctx, admin.access), &courierv1.UpdateCourierRequest{
		Courier: &courierv1.Courier{Id: courierID}, UpdateMask: &fieldmaskpb.FieldMask{}})
	if want := "update_mask names no field to change: name at least one of display_name, transport_mode, capacity"; status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != want {
		t.Errorf("UpdateCourier(empty mask) over gRPC = %v, want InvalidArgument %q", err, want)
	}
	_, err = identityv1.NewUserServiceClient(s.grpcConn(t, "")).UpdateUser(bearer(ctx, admin.access), &identityv1.UpdateUserRequest{
		User: &identityv1.User{Id: userID}, UpdateMask: &fieldmaskpb.FieldMask{}})
	if want := "update_mask names no field to change: name at least one of display_name, username, email, role, status"; status.Code(err) != codes.InvalidArgument || status.Convert(err).Message() != want {
		t.Errorf("UpdateUser(empty mask) over gRPC = %v, want InvalidArgument %q", err, want)
	}
}
