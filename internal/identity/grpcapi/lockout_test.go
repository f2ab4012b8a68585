package grpcapi_test

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	"lastmile/internal/identity"
	"lastmile/internal/platform/auth"
)

// viaGateway returns the context of an anonymous call that the gateway forwards for the client at addr.
func viaGateway(t *testing.T, addr string) context.Context {
	t.Helper()
	return metadata.AppendToOutgoingContext(callAs(t, auth.Principal{Via: "gateway"}), "x-forwarded-for", addr)
}

// wantRetryInfo fails the test unless err is ResourceExhausted with a positive RetryInfo.
func wantRetryInfo(t *testing.T, call string, err error) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("%s = %v, want ResourceExhausted", call, err)
	}
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok && r.GetRetryDelay().AsDuration() > 0 {
			return
		}
	}
	t.Errorf("%s details = %v, want a RetryInfo with a positive delay", call, st.Details())
}

// TestStrangerCannotLockAccountOverGRPC: clients are told apart by the address the gateway forwards.
func TestStrangerCannotLockAccountOverGRPC(t *testing.T) {
	e := start(t)
	e.signUp(t, "admin")
	const attacker = "203.0.113.7"
	for i := range 20 {
		_, err := e.auth.Login(viaGateway(t, attacker), &identityv1.LoginRequest{
			Identifier: &identityv1.LoginRequest_Email{Email: "admin@example.com"}, Password: fmt.Sprintf("guess %d", i)})
		if i < identity.DefaultLoginFailures {
			wantStatus(t, "Login(attacker's failure)", err, codes.Unauthenticated)
		} else {
			wantRetryInfo(t, fmt.Sprintf("Login(attacker's attempt %d)", i+1), err)
		}
	}
	right := &identityv1.LoginRequest{Identifier: &identityv1.LoginRequest_Email{Email: "admin@example.com"}, Password: password}
	_, err := e.auth.Login(viaGateway(t, attacker), right)
	wantRetryInfo(t, "Login(attacker, right password)", err)
	if _, err := e.auth.Login(viaGateway(t, "198.51.100.1"), right); err != nil {
		t.Errorf("Login(owner from another client) = %v, want OK", err)
	}
}

// TestSignUpFloodLeavesLoginsAlone: a client signing up in a loop (a taken email, which is the cheap
// answer) is refused with ResourceExhausted and RetryInfo once past its limit, and a login from another
// client still succeeds.
func TestSignUpFloodLeavesLoginsAlone(t *testing.T) {
	e := start(t)
	e.signUp(t, "taken")
	const flood = "203.0.113.7"
	req := &identityv1.CreateUserRequest{Email: "taken@example.com", Password: password, DisplayName: "Again"}
	for range identity.DefaultSignUpLimit {
		_, err := e.users.CreateUser(viaGateway(t, flood), req)
		wantStatus(t, "CreateUser(taken email)", err, codes.AlreadyExists)
	}
	_, err := e.users.CreateUser(viaGateway(t, flood), req)
	wantRetryInfo(t, "CreateUser(past the sign-up limit)", err)
	if _, err := e.auth.Login(viaGateway(t, "198.51.100.1"), &identityv1.LoginRequest{
		Identifier: &identityv1.LoginRequest_Email{Email: "taken@example.com"}, Password: password}); err != nil {
		t.Errorf("Login(another client during the flood) = %v, want OK", err)
	}
}
