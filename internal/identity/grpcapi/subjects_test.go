package grpcapi_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/platform/auth"
)

// TestWatchSubjects follows a courier process's watch: a reset first, then the new standing of a user an
// admin suspends and of a user who logs out, each equal to what GetSubject answers; users and other
// services may not watch.
func TestWatchSubjects(t *testing.T) {
	e := start(t)
	courierSvc := callAs(t, auth.Principal{Kind: auth.Service, Subject: "courier"})

	for _, p := range []auth.Principal{
		{Kind: auth.User, Subject: adminID, Roles: []string{auth.RoleAdmin}},
		{Kind: auth.Service, Subject: "payments"},
	} {
		stream, err := e.auth.WatchSubjects(callAs(t, p), &identityv1.WatchSubjectsRequest{})
		if err == nil {
			_, err = stream.Recv()
		}
		wantStatus(t, "WatchSubjects("+p.Subject+")", err, codes.PermissionDenied)
	}

	stream, err := e.auth.WatchSubjects(courierSvc, &identityv1.WatchSubjectsRequest{})
	if err != nil {
		t.Fatalf("WatchSubjects() = %v", err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatalf("WatchSubjects first Recv() = %v", err)
	}
	if diff := cmp.Diff(&identityv1.WatchSubjectsResponse{Reset_: true}, first, protocmp.Transform()); diff != "" {
		t.Errorf("first message mismatch (-want +got):\n%s", diff)
	}

	// next receives until a message names user id, and returns that user's last state in it.
	next := func(id string) *identityv1.Subject {
		t.Helper()
		for {
			msg, err := stream.Recv()
			if err != nil {
				t.Fatalf("WatchSubjects Recv() = %v", err)
			}
			if msg.GetReset_() {
				t.Fatalf("WatchSubjects sent a reset after the first message: %v", msg)
			}
			var got *identityv1.Subject
			for _, s := range msg.GetSubjects() {
				if s.GetUserId() == id {
					got = s
				}
			}
			if got != nil {
				return got
			}
		}
	}

	victim := e.signUp(t, "victim")
	if _, err := e.users.UpdateUser(asAdmin(t), &identityv1.UpdateUserRequest{
		User:       &identityv1.User{Id: victim.GetId(), Status: identityv1.UserStatus_USER_STATUS_SUSPENDED},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"status"}},
	}); err != nil {
		t.Fatalf("UpdateUser(suspend) = %v", err)
	}
	got := next(victim.GetId())
	if got.GetActive() || !cmp.Equal(got.GetRoles(), []identityv1.Role{identityv1.Role_ROLE_CUSTOMER}) {
		t.Errorf("streamed subject = %v, want an inactive customer", got)
	}
	now, err := e.auth.GetSubject(courierSvc, &identityv1.GetSubjectRequest{UserId: victim.GetId()})
	if err != nil {
		t.Fatalf("GetSubject(victim) = %v", err)
	}
	if diff := cmp.Diff(now, got, protocmp.Transform()); diff != "" {
		t.Errorf("streamed subject differs from GetSubject (-GetSubject +streamed):\n%s", diff)
	}

	leaver := e.signUp(t, "leaver")
	login, err := e.auth.Login(call(t), &identityv1.LoginRequest{Identifier: &identityv1.LoginRequest_Email{Email: "leaver@example.com"}, Password: password})
	if err != nil {
		t.Fatalf("Login(leaver) = %v", err)
	}
	if _, err := e.auth.Logout(call(t), &identityv1.LogoutRequest{RefreshToken: login.GetRefreshToken()}); err != nil {
		t.Fatalf("Logout(leaver) = %v", err)
	}
	got = next(leaver.GetId())
	if !got.GetActive() || got.GetRevokedBefore() == nil {
		t.Errorf("streamed subject after logout = %v, want active with revoked_before set", got)
	}
	now, err = e.auth.GetSubject(courierSvc, &identityv1.GetSubjectRequest{UserId: leaver.GetId()})
	if err != nil {
		t.Fatalf("GetSubject(leaver) = %v", err)
	}
	if diff := cmp.Diff(now, got, protocmp.Transform()); diff != "" {
		t.Errorf("streamed subject differs from GetSubject (-GetSubject +streamed):\n%s", diff)
	}
}

// TestGetSubject reads an unknown user as inactive, refuses a malformed id, and admits only the
// verifying services.
func TestGetSubject(t *testing.T) {
	e := start(t)
	const unknown = "00000000-0000-7000-8000-0000000000ff"
	routeSvc := callAs(t, auth.Principal{Kind: auth.Service, Subject: "route"})
	got, err := e.auth.GetSubject(routeSvc, &identityv1.GetSubjectRequest{UserId: unknown})
	if err != nil {
		t.Fatalf("GetSubject(unknown) = %v", err)
	}
	if diff := cmp.Diff(&identityv1.Subject{UserId: unknown}, got, protocmp.Transform()); diff != "" {
		t.Errorf("GetSubject(unknown) mismatch (-want +got):\n%s", diff)
	}
	_, err = e.auth.GetSubject(routeSvc, &identityv1.GetSubjectRequest{UserId: "not-a-uuid"})
	wantStatus(t, "GetSubject(not a uuid)", err, codes.InvalidArgument)
	_, err = e.auth.GetSubject(asAdmin(t), &identityv1.GetSubjectRequest{UserId: unknown})
	wantStatus(t, "GetSubject(as admin)", err, codes.PermissionDenied)
}
