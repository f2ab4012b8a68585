package grpcapi_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/identity/grpcapi"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
)

// TestPolicyCoversEveryMethod fails when an RPC is added to the contract without an authorization rule:
// such a method would be denied to everyone at run time, and the server would refuse to start.
func TestPolicyCoversEveryMethod(t *testing.T) {
	methods := append(
		grpcauth.Methods(identityv1.File_lastmile_identity_v1_user_proto.Services().ByName("UserService")),
		grpcauth.Methods(identityv1.File_lastmile_identity_v1_auth_proto.Services().ByName("AuthService"))...)
	if len(methods) != 15 {
		t.Fatalf("found %d methods, want 15", len(methods))
	}
	if err := grpcapi.Policy().Check(methods); err != nil {
		t.Fatal(err)
	}
	if len(grpcapi.Policy()) != len(methods) {
		t.Errorf("policy has %d rules for %d methods: it names methods the contract does not have", len(grpcapi.Policy()), len(methods))
	}
}

// TestPolicyMatrix checks who passes the method-level gate of each RPC. The domain applies the
// object-level rules behind it.
func TestPolicyMatrix(t *testing.T) {
	principals := []struct {
		name string
		p    auth.Principal
	}{
		{"anonymous", auth.Principal{}},
		{"customer", auth.Principal{Kind: auth.User, Subject: "u1", Roles: []string{auth.RoleCustomer}}},
		{"courier", auth.Principal{Kind: auth.User, Subject: "u2", Roles: []string{auth.RoleCourier}}},
		{"dispatcher", auth.Principal{Kind: auth.User, Subject: "u3", Roles: []string{auth.RoleDispatcher}}},
		{"admin", auth.Principal{Kind: auth.User, Subject: "u4", Roles: []string{auth.RoleAdmin}}},
		{"service", auth.Principal{Kind: auth.Service, Subject: "dispatch"}},
	}
	const (
		ok    = ""
		authn = apperr.Unauthenticated
		deny  = apperr.PermissionDenied
	)
	want := map[string][]apperr.Code{
		//                                                        anonymous customer courier dispatcher admin service
		identityv1.UserService_CreateUser_FullMethodName:      {ok, ok, ok, ok, ok, ok},
		identityv1.UserService_GetUser_FullMethodName:         {authn, ok, ok, ok, ok, deny},
		identityv1.UserService_UpdateUser_FullMethodName:      {authn, ok, ok, ok, ok, deny},
		identityv1.UserService_DeleteUser_FullMethodName:      {authn, ok, ok, ok, ok, deny},
		identityv1.UserService_ChangePassword_FullMethodName:  {authn, ok, ok, ok, ok, deny},
		identityv1.UserService_ListUsers_FullMethodName:       {authn, deny, deny, ok, ok, deny},
		identityv1.UserService_StreamUsers_FullMethodName:     {authn, deny, deny, deny, ok, deny},
		identityv1.UserService_BulkCreateUsers_FullMethodName: {authn, deny, deny, deny, ok, deny},
		identityv1.UserService_UserActivity_FullMethodName:    {authn, ok, ok, ok, ok, deny},
		identityv1.AuthService_Login_FullMethodName:           {ok, ok, ok, ok, ok, ok},
		identityv1.AuthService_RefreshToken_FullMethodName:    {ok, ok, ok, ok, ok, ok},
		identityv1.AuthService_Logout_FullMethodName:          {ok, ok, ok, ok, ok, ok},
		identityv1.AuthService_GetJwks_FullMethodName:         {ok, ok, ok, ok, ok, ok},
		identityv1.AuthService_WatchSubjects_FullMethodName:   {authn, deny, deny, deny, deny, ok},
		identityv1.AuthService_GetSubject_FullMethodName:      {authn, deny, deny, deny, deny, ok},
	}
	policy := grpcapi.Policy()
	for method, codes := range want {
		var got []apperr.Code
		for _, p := range principals {
			got = append(got, apperr.CodeOf(policy.Authorize(context.Background(), method, p.p)))
		}
		if diff := cmp.Diff(codes, got); diff != "" {
			t.Errorf("%s: codes for anonymous, customer, courier, dispatcher, admin, service mismatch (-want +got):\n%s", method, diff)
		}
	}
}
