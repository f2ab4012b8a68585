package grpcapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/platform/auth"
)

func wantStatus(t *testing.T, call string, err error, want codes.Code) {
	t.Helper()
	if got := status.Code(err); got != want {
		t.Errorf("%s = %v, want code %v", call, err, want)
	}
}

// TestNewUserJourney is what a new user does: sign up, log in, read themself, fail on someone else,
// refresh, log out, and find the refresh token dead.
func TestNewUserJourney(t *testing.T) {
	e := start(t)
	other := e.signUp(t, "other")
	_, err := e.users.CreateUser(call(t), &identityv1.CreateUserRequest{
		Email: "sneaky@example.com", Password: password, DisplayName: "Sneaky", Role: identityv1.Role_ROLE_ADMIN,
	})
	wantStatus(t, "CreateUser(anonymous with a role)", err, codes.PermissionDenied)
	me := e.signUp(t, "newbie")
	if me.GetRole() != identityv1.Role_ROLE_CUSTOMER || me.GetStatus() != identityv1.UserStatus_USER_STATUS_ACTIVE || me.GetEtag() != "1" {
		t.Errorf("CreateUser() = %v, want an active customer with etag 1", me)
	}

	login, err := e.auth.Login(call(t), &identityv1.LoginRequest{
		Identifier: &identityv1.LoginRequest_Username{Username: "NEWBIE"}, Password: password,
	})
	if err != nil {
		t.Fatalf("Login() = %v", err)
	}
	if login.GetTokenType() != "Bearer" || login.GetUser().GetId() != me.GetId() || login.GetAccessToken() == "" ||
		!login.GetRefreshTokenExpiresAt().AsTime().After(login.GetExpiresAt().AsTime()) {
		t.Errorf("Login() = %v, want bearer tokens for %s", login, me.GetId())
	}

	self := asUser(t, me.GetId(), auth.RoleCustomer)
	got, err := e.users.GetUser(self, &identityv1.GetUserRequest{Lookup: &identityv1.GetUserRequest_Id{Id: me.GetId()}})
	if err != nil || got.GetEmail() != "newbie@example.com" || got.GetLastLoginTime() == nil {
		t.Errorf("GetUser(self) = %v, %v; want the user with its last login", got, err)
	}
	_, err = e.users.GetUser(self, &identityv1.GetUserRequest{Lookup: &identityv1.GetUserRequest_Id{Id: other.GetId()}})
	wantStatus(t, "GetUser(someone else)", err, codes.NotFound)
	_, err = e.users.GetUser(call(t), &identityv1.GetUserRequest{Lookup: &identityv1.GetUserRequest_Id{Id: me.GetId()}})
	wantStatus(t, "GetUser(anonymous)", err, codes.Unauthenticated)

	refreshed, err := e.auth.RefreshToken(call(t), &identityv1.RefreshTokenRequest{RefreshToken: login.GetRefreshToken()})
	if err != nil {
		t.Fatalf("RefreshToken() = %v", err)
	}
	if _, err := e.auth.Logout(call(t), &identityv1.LogoutRequest{RefreshToken: refreshed.GetRefreshToken()}); err != nil {
		t.Fatalf("Logout() = %v", err)
	}
	_, err = e.auth.RefreshToken(call(t), &identityv1.RefreshTokenRequest{RefreshToken: refreshed.GetRefreshToken()})
	wantStatus(t, "RefreshToken(after logout)", err, codes.Unauthenticated)
}

func TestUpdateUserEtagAndMask(t *testing.T) {
	e := start(t)
	me := e.signUp(t, "editor")
	self := asUser(t, me.GetId(), auth.RoleCustomer)
	update := func(etag string, paths ...string) (*identityv1.User, error) {
		return e.users.UpdateUser(self, &identityv1.UpdateUserRequest{
			User:       &identityv1.User{Id: me.GetId(), DisplayName: "Edited " + etag, Role: identityv1.Role_ROLE_ADMIN, Etag: etag},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: paths},
		})
	}
	_, err := update("1", "display_name", "etag", "create_time")
	wantStatus(t, "UpdateUser(output-only path)", err, codes.InvalidArgument)
	_, err = update("1", "display_name", "id")
	wantStatus(t, "UpdateUser(id)", err, codes.InvalidArgument)
	got, err := update("1", "display_name", "etag")
	if err != nil || got.GetEtag() != "2" || got.GetDisplayName() != "Edited 1" {
		t.Fatalf("UpdateUser(etag 1) = %v, %v; want etag 2", got, err)
	}
	_, err = update("1", "display_name")
	wantStatus(t, "UpdateUser(stale etag)", err, codes.Aborted)
	_, err = update("W/not-ours", "display_name")
	wantStatus(t, "UpdateUser(foreign etag)", err, codes.Aborted)
	_, err = update("", "*")
	wantStatus(t, "UpdateUser(wildcard mask)", err, codes.InvalidArgument)
	_, err = update("", "password_hash")
	wantStatus(t, "UpdateUser(unknown path)", err, codes.InvalidArgument)
	_, err = update("", "role")
	wantStatus(t, "UpdateUser(raise own role)", err, codes.PermissionDenied)
	if u, err := update("", "display_name"); err != nil || u.GetEtag() != "3" {
		t.Errorf("UpdateUser(no etag) = %v, %v; want etag 3", u, err)
	}
}

func TestBulkCreateUsers(t *testing.T) {
	e := start(t)
	e.signUp(t, "taken")
	stream, err := e.users.BulkCreateUsers(asAdmin(t))
	if err != nil {
		t.Fatalf("BulkCreateUsers() = %v", err)
	}
	items := []*identityv1.CreateUserRequest{
		{Email: "one@example.com", Password: password, DisplayName: "One"},
		{Email: "TAKEN@example.com", Password: password, DisplayName: "Dup"},
		{Email: "not-an-email", Password: password, DisplayName: "Bad"},
		{Email: "two@example.com", Password: password, DisplayName: "Two", Role: identityv1.Role_ROLE_COURIER, Username: "two"},
		nil,
		{Email: "three@example.com", Password: password, DisplayName: "Three", Username: "TWO"},
		{Email: "four@example.com", Password: password, DisplayName: "Four", Role: identityv1.Role(42)},
	}
	for _, it := range items {
		if err := stream.Send(&identityv1.BulkCreateUsersRequest{Request: it}); err != nil {
			t.Fatalf("Send() = %v", err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("CloseAndRecv() = %v", err)
	}
	type result struct {
		Index      int32
		Created    bool
		Code       codes.Code
		Violations []string
	}
	var got []result
	for _, r := range resp.GetResults() {
		res := result{Index: r.GetIndex(), Created: r.GetUserId() != "", Code: codes.Code(r.GetCode())}
		for _, v := range r.GetFieldViolations() {
			res.Violations = append(res.Violations, v.GetField())
		}
		if (r.GetCode() == 0) != (r.GetMessage() == "") {
			t.Errorf("result %d: code %d with message %q", r.GetIndex(), r.GetCode(), r.GetMessage())
		}
		got = append(got, res)
	}
	want := []result{
		{0, true, codes.OK, nil},
		{1, false, codes.AlreadyExists, nil},
		{2, false, codes.InvalidArgument, []string{"email"}},
		{3, true, codes.OK, nil},
		{4, false, codes.InvalidArgument, []string{"request"}},
		{5, false, codes.AlreadyExists, nil},
		{6, false, codes.InvalidArgument, []string{"role"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results mismatch (-want +got):\n%s", diff)
	}
	if resp.GetCreatedCount() != 2 || resp.GetFailedCount() != 5 {
		t.Errorf("counts = %d created, %d failed; want 2, 5", resp.GetCreatedCount(), resp.GetFailedCount())
	}
	courier, err := e.users.GetUser(asAdmin(t), &identityv1.GetUserRequest{Lookup: &identityv1.GetUserRequest_Username{Username: "two"}})
	if err != nil || courier.GetRole() != identityv1.Role_ROLE_COURIER {
		t.Errorf("GetUser(two) = %v, %v; want a courier", courier, err)
	}

	stream, err = e.users.BulkCreateUsers(asUser(t, courier.GetId(), auth.RoleDispatcher))
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.CloseAndRecv()
	wantStatus(t, "BulkCreateUsers(dispatcher)", err, codes.PermissionDenied)
}

func TestStreamUsersCancelledMidStream(t *testing.T) {
	e := start(t)
	bulk, err := e.users.BulkCreateUsers(asAdmin(t))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 600 {
		req := &identityv1.CreateUserRequest{Email: fmt.Sprintf("export%d@example.com", i), Password: password, DisplayName: "Export"}
		if err := bulk.Send(&identityv1.BulkCreateUsersRequest{Request: req}); err != nil {
			t.Fatal(err)
		}
	}
	if resp, err := bulk.CloseAndRecv(); err != nil || resp.GetCreatedCount() != 600 {
		t.Fatalf("BulkCreateUsers(600) = %d created, %v", resp.GetCreatedCount(), err)
	}

	ctx, cancel := context.WithCancel(asAdmin(t))
	defer cancel()
	stream, err := e.users.StreamUsers(ctx, &identityv1.StreamUsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := stream.Recv(); err != nil {
			t.Fatalf("Recv() #%d = %v", i, err)
		}
	}
	cancel()
	for {
		_, err := stream.Recv()
		if err == nil {
			continue // sent before the cancellation reached the server
		}
		wantStatus(t, "Recv(after cancel)", err, codes.Canceled)
		break
	}

	// Uncancelled, the export is complete.
	all, err := e.users.StreamUsers(asAdmin(t), &identityv1.StreamUsersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, err := all.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv() = %v", err)
		}
		n++
	}
	if n != 600 {
		t.Errorf("StreamUsers sent %d users, want 600", n)
	}
}

func TestUserActivity(t *testing.T) {
	e := start(t)
	alice := e.signUp(t, "alice")
	bob := e.signUp(t, "bob")
	stream, err := e.users.UserActivity(asAdmin(t))
	if err != nil {
		t.Fatal(err)
	}
	subscribe := func(sub, unsub []string, want ...string) {
		t.Helper()
		if err := stream.Send(&identityv1.UserActivityRequest{SubscribeUserIds: sub, UnsubscribeUserIds: unsub}); err != nil {
			t.Fatalf("Send() = %v", err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv(confirmation) = %v", err)
		}
		if diff := cmp.Diff(want, resp.GetSubscriptions().GetUserIds()); diff != "" {
			t.Fatalf("confirmation mismatch (-want +got):\n%s", diff)
		}
	}
	login := func(name string) {
		t.Helper()
		if _, err := e.auth.Login(call(t), &identityv1.LoginRequest{
			Identifier: &identityv1.LoginRequest_Email{Email: name + "@example.com"}, Password: password,
		}); err != nil {
			t.Fatalf("Login(%s) = %v", name, err)
		}
	}
	event := func() *identityv1.UserActivityEvent {
		t.Helper()
		resp, err := stream.Recv()
		if err != nil || resp.GetEvent() == nil {
			t.Fatalf("Recv(event) = %v, %v; want an event", resp, err)
		}
		return resp.GetEvent()
	}

	subscribe([]string{alice.GetId()}, nil, alice.GetId())
	login("alice")
	ev := event()
	if ev.GetType() != identityv1.UserActivityType_USER_ACTIVITY_TYPE_LOGIN || ev.GetUserId() != alice.GetId() ||
		ev.GetUser().GetLastLoginTime() == nil || ev.GetEventTime() == nil {
		t.Errorf("event = %v, want alice's login", ev)
	}
	if _, err := e.users.UpdateUser(asUser(t, alice.GetId(), auth.RoleCustomer), &identityv1.UpdateUserRequest{
		User: &identityv1.User{Id: alice.GetId(), DisplayName: "Alice!"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}},
	}); err != nil {
		t.Fatal(err)
	}
	ev = event()
	want := &identityv1.UserActivityEvent{
		Type: identityv1.UserActivityType_USER_ACTIVITY_TYPE_PROFILE_CHANGED, UserId: alice.GetId(), ActorUserId: alice.GetId(),
		ChangedFields: []string{"display_name"},
	}
	if diff := cmp.Diff(want, ev, protocmp.Transform(), protocmp.IgnoreFields(ev, "id", "event_time", "user")); diff != "" {
		t.Errorf("profile event mismatch (-want +got):\n%s", diff)
	}

	subscribe([]string{bob.GetId()}, []string{alice.GetId()}, bob.GetId())
	login("alice")
	login("bob")
	if ev := event(); ev.GetUserId() != bob.GetId() {
		t.Errorf("event for %s, want bob's login only (alice is unsubscribed)", ev.GetUserId())
	}

	// An empty change breaks the contract's rules: the stream ends.
	if err := stream.Send(&identityv1.UserActivityRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantStatus(t, "Recv(after an empty change)", err, codes.InvalidArgument)
}

func TestUserActivityOthersOnlyForAdmins(t *testing.T) {
	e := start(t)
	alice := e.signUp(t, "alice")
	bob := e.signUp(t, "bob")
	stream, err := e.users.UserActivity(asUser(t, alice.GetId(), auth.RoleCustomer))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&identityv1.UserActivityRequest{SubscribeUserIds: []string{bob.GetId()}}); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantStatus(t, "Recv(after subscribing to another user)", err, codes.PermissionDenied)
}

func TestGetJwks(t *testing.T) {
	e := start(t)
	set, err := e.auth.GetJwks(call(t), &identityv1.GetJwksRequest{})
	if err != nil {
		t.Fatalf("GetJwks() = %v", err)
	}
	if len(set.GetKeys()) != 1 {
		t.Fatalf("GetJwks() = %d keys, want the first key", len(set.GetKeys()))
	}
	k := set.GetKeys()[0]
	if k.GetKty() != "OKP" || k.GetCrv() != "Ed25519" || k.GetAlg() != "EdDSA" || k.GetUse() != "sig" || len(k.GetX()) != 43 || k.GetKid() == "" {
		t.Errorf("GetJwks() key = %v, want an Ed25519 signature key", k)
	}
}

func TestLoginRateLimitCarriesRetryInfo(t *testing.T) {
	e := start(t)
	e.signUp(t, "target")
	req := &identityv1.LoginRequest{Identifier: &identityv1.LoginRequest_Email{Email: "target@example.com"}, Password: "wrong password"}
	var messages []string
	for range 5 {
		_, err := e.auth.Login(call(t), req)
		wantStatus(t, "Login(wrong password)", err, codes.Unauthenticated)
		messages = append(messages, status.Convert(err).Message())
	}
	_, err := e.auth.Login(call(t), &identityv1.LoginRequest{Identifier: &identityv1.LoginRequest_Email{Email: "nobody@example.com"}, Password: "x"})
	if msg := status.Convert(err).Message(); msg != messages[0] {
		t.Errorf("Login(unknown user) message %q, want the wrong-password message %q", msg, messages[0])
	}
	_, err = e.auth.Login(call(t), req)
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("Login(6th attempt) = %v, want ResourceExhausted", err)
	}
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.GetRetryDelay().AsDuration() <= 0 {
		t.Errorf("Login(6th attempt) details = %v, want a RetryInfo with a positive delay", st.Details())
	}
	if strings.Contains(st.Message(), "target") {
		t.Errorf("rate limit message %q names the account", st.Message())
	}
}
