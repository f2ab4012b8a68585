package grpcserver_test

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	geov1 "lastmile/gen/go/lastmile/geo/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/grpcserver"
)

// TestValidationMessagesAreSentences: every violation of the real contracts' rules reads as a sentence
// that names the field by its proto path, generated from the rule and the field's descriptor (enum value
// names, bounds), never protovalidate's "must not be in list [0]".
func TestValidationMessagesAreSentences(t *testing.T) {
	uuid := "0190b000-0000-7000-8000-000000000001"
	tests := []struct {
		name string
		msg  proto.Message
		want []apperr.FieldViolation
	}{
		{"required enum, bounds, pattern, uuid", &courierv1.RegisterCourierRequest{UserId: "x", DisplayName: "a\x01", Capacity: 200},
			[]apperr.FieldViolation{
				{Field: "user_id", Description: "user_id must be a UUID"},
				{Field: "display_name", Description: "display_name must not contain control characters"},
				{Field: "transport_mode", Description: "transport_mode is required"},
				{Field: "capacity", Description: "capacity must be between 1 and 100"},
			}},
		{"enum in, empty uuid", &courierv1.SetStatusRequest{Status: courierv1.CourierStatus_COURIER_STATUS_BUSY},
			[]apperr.FieldViolation{
				{Field: "courier_id", Description: "courier_id is required"},
				{Field: "status", Description: "status must be one of COURIER_STATUS_OFFLINE, COURIER_STATUS_AVAILABLE, COURIER_STATUS_ON_BREAK"},
			}},
		{"enum defined_only", &courierv1.SetStatusRequest{CourierId: uuid, Status: 42},
			[]apperr.FieldViolation{
				{Field: "status", Description: "status must be one of COURIER_STATUS_OFFLINE, COURIER_STATUS_AVAILABLE, COURIER_STATUS_ON_BREAK"},
			}},
		{"required oneof", &courierv1.GetCourierRequest{},
			[]apperr.FieldViolation{{Field: "lookup", Description: "lookup is required"}}},
		{"field mask in, message rule", &courierv1.UpdateCourierRequest{
			Courier:    &courierv1.Courier{Id: uuid},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"displayName"}}},
			[]apperr.FieldViolation{{Field: "update_mask", Description: "update_mask may only name display_name, transport_mode, capacity, etag"}}},
		{"nested and repeated paths", &routev1.ComputeMatrixRequest{
			Origins:       []*geov1.LatLng{{Latitude: 1}, {Latitude: 91}},
			Destinations:  []*geov1.LatLng{{}},
			TransportMode: geov1.TransportMode_TRANSPORT_MODE_CAR,
		}, []apperr.FieldViolation{{Field: "origins[1].latitude", Description: "origins[1].latitude must be between -90 and 90"}}},
		{"not a finite number", &routev1.ComputeMatrixRequest{
			Origins:       []*geov1.LatLng{{Latitude: math.NaN()}, {Longitude: math.Inf(-1)}},
			Destinations:  []*geov1.LatLng{{}},
			TransportMode: geov1.TransportMode_TRANSPORT_MODE_CAR,
		}, []apperr.FieldViolation{
			{Field: "origins[0].latitude", Description: "origins[0].latitude must be a finite number"},
			{Field: "origins[1].longitude", Description: "origins[1].longitude must be a finite number"},
		}},
		{"repeated items pattern", &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Hello{
			Hello: &dispatchv1.SessionHello{Capabilities: []string{"ok", "a b"}}}},
			[]apperr.FieldViolation{
				{Field: "hello.capabilities[1]", Description: "hello.capabilities[1] must be printable ASCII characters without spaces"},
			}},
		{"string length", &identityv1.CreateUserRequest{Email: "someone@example.com", Password: "short", DisplayName: "x"},
			[]apperr.FieldViolation{{Field: "password", Description: "password must be at least 12 characters"}}},
		// A window missing a bound says only that, not also that its end is not after its start.
		{"a window without its end", &dispatchv1.CreateTaskRequest{RequestId: "r",
			Pickup: &dispatchv1.Stop{Location: &geov1.LatLng{}, Address: "a",
				TimeWindow: &dispatchv1.TimeWindow{StartTime: &timestamppb.Timestamp{Seconds: 1796000000}}},
			Dropoff: &dispatchv1.Stop{Location: &geov1.LatLng{}, Address: "b",
				TimeWindow: &dispatchv1.TimeWindow{StartTime: &timestamppb.Timestamp{Seconds: 1796000000}}},
		}, []apperr.FieldViolation{
			{Field: "pickup.time_window.end_time", Description: "pickup.time_window.end_time is required"},
			{Field: "dropoff.time_window.end_time", Description: "dropoff.time_window.end_time is required"},
		}},
		{"one sentence per field", &dispatchv1.CreateTaskRequest{}, []apperr.FieldViolation{
			{Field: "request_id", Description: "request_id is required"},
			{Field: "pickup", Description: "pickup is required"},
			{Field: "dropoff", Description: "dropoff is required"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := grpcserver.Validate(tt.msg)
			e := apperr.As(err)
			if e == nil {
				t.Fatalf("Validate(%v) = %v, want violations", tt.msg, err)
			}
			if diff := cmp.Diff(tt.want, e.Violations); diff != "" {
				t.Errorf("Validate violations (-want +got):\n%s", diff)
			}
		})
	}
}

// TestEmptyMaskIsWordedByItsRule: a contract's own rule whose id ends in "_empty" (an update mask naming
// nothing, a UserActivity message without ids) answers its own message, which names the fields and, for a
// mask, those it may name; not the "is required" of the standard rules string.uuid_empty and the like,
// which named no field at all.
func TestEmptyMaskIsWordedByItsRule(t *testing.T) {
	uuid := "0190b000-0000-7000-8000-000000000001"
	for _, tc := range []struct {
		msg  proto.Message
		want string
	}{
		{&courierv1.UpdateCourierRequest{Courier: &courierv1.Courier{Id: uuid}, UpdateMask: &fieldmaskpb.FieldMask{}},
			"update_mask names no field to change: name at least one of display_name, transport_mode, capacity"},
		{&identityv1.UpdateUserRequest{User: &identityv1.User{Id: uuid}, UpdateMask: &fieldmaskpb.FieldMask{}},
			"update_mask names no field to change: name at least one of display_name, username, email, role, status"},
		{&identityv1.UserActivityRequest{}, "subscribe_user_ids or unsubscribe_user_ids must not be empty"},
	} {
		err := grpcserver.Validate(tc.msg)
		if got := apperr.MessageOf(err); apperr.CodeOf(err) != apperr.Invalid || got != tc.want {
			t.Errorf("Validate(%T %v) = %v, want Invalid %q", tc.msg, tc.msg, err, tc.want)
		}
		if e := apperr.As(err); e == nil || len(e.Violations) != 1 || e.Violations[0].Description != tc.want {
			t.Errorf("Validate(%T %v) violations = %+v, want one: %q", tc.msg, tc.msg, apperr.As(err), tc.want)
		}
	}
	// The standard rules keep their wording.
	err := grpcserver.Validate(&courierv1.SetStatusRequest{Status: courierv1.CourierStatus_COURIER_STATUS_AVAILABLE})
	if got, want := apperr.MessageOf(err), "courier_id is required"; got != want {
		t.Errorf("Validate(SetStatus without courier_id) message = %q, want %q", got, want)
	}
}

// TestValidationMessageListsTheSentences: the status message is the violations' sentences, so that a
// client that shows only the message still tells its user everything.
func TestValidationMessageListsTheSentences(t *testing.T) {
	err := grpcserver.Validate(&courierv1.RegisterCourierRequest{UserId: "0190b000-0000-7000-8000-000000000001", Capacity: 0})
	want := "transport_mode is required; capacity must be between 1 and 100"
	if got := apperr.MessageOf(err); got != want {
		t.Errorf("Validate message = %q, want %q", got, want)
	}
}
