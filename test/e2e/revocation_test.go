package e2e_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
)

// TestRevocationTakesEffect is issue 8's first item over REST, in one process: nobody changes their own
// status, a suspension refuses the user's token at the next call and their refresh token for good
// (reactivation included), and a logout refuses the access token of the session at once, while signing
// in again right away works.
func TestRevocationTakesEffect(t *testing.T) {
	s := startWithAdmin(t)
	admin := s.login(t, adminEmail, adminPassword)
	const pw = "second admin's long password"
	s.createUser(t, admin.access, "admin2@example.com", pw, "ROLE_ADMIN")
	admin2 := s.login(t, "admin2@example.com", pw)
	refresh := func(token string) int {
		t.Helper()
		code, _, _ := s.rest(t, http.MethodPost, "/v1/auth:refresh", "", mustJSON(t, map[string]string{"refreshToken": token}))
		return code
	}

	code, _, body := s.rest(t, http.MethodPatch, "/v1/users/"+admin2.userID, admin2.access, `{"status": "USER_STATUS_SUSPENDED"}`)
	if code != http.StatusForbidden || errStatus(body) != "PERMISSION_DENIED" {
		t.Errorf("admin PATCH own status = %d %v, want 403 PERMISSION_DENIED", code, body)
	}
	code, _, body = s.rest(t, http.MethodPatch, "/v1/users/"+admin2.userID, admin.access, `{"status": "USER_STATUS_SUSPENDED"}`)
	if code != http.StatusOK || str(body, "status") != "USER_STATUS_SUSPENDED" {
		t.Fatalf("suspend admin2 = %d %v, want 200", code, body)
	}
	// The repro: the suspended admin reactivates themselves with the token they still hold.
	code, _, body = s.rest(t, http.MethodPatch, "/v1/users/"+admin2.userID, admin2.access, `{"status": "USER_STATUS_ACTIVE"}`)
	if code != http.StatusUnauthorized || errStatus(body) != "UNAUTHENTICATED" {
		t.Errorf("suspended admin PATCH own status = %d %v, want 401 UNAUTHENTICATED", code, body)
	}
	if code := refresh(admin2.refresh); code != http.StatusUnauthorized {
		t.Errorf("refresh while suspended = %d, want 401", code)
	}
	code, _, body = s.rest(t, http.MethodPatch, "/v1/users/"+admin2.userID, admin.access, `{"status": "USER_STATUS_ACTIVE"}`)
	if code != http.StatusOK {
		t.Fatalf("reactivate admin2 = %d %v, want 200", code, body)
	}
	if code, _, body := s.rest(t, http.MethodGet, "/v1/users/"+admin2.userID, admin2.access, ""); code != http.StatusUnauthorized {
		t.Errorf("token from before the suspension, after reactivation = %d %v, want 401", code, body)
	}
	if code := refresh(admin2.refresh); code != http.StatusUnauthorized {
		t.Errorf("refresh token from before the suspension, after reactivation = %d, want 401", code)
	}
	again := s.login(t, "admin2@example.com", pw)
	if code, _, body := s.rest(t, http.MethodGet, "/v1/users/"+admin2.userID, again.access, ""); code != http.StatusOK {
		t.Errorf("token of a login right after reactivation = %d %v, want 200", code, body)
	}

	// A demoted admin's token no longer carries admin rights.
	code, _, body = s.rest(t, http.MethodPatch, "/v1/users/"+admin2.userID, admin.access, `{"role": "ROLE_CUSTOMER"}`)
	if code != http.StatusOK {
		t.Fatalf("demote admin2 = %d %v, want 200", code, body)
	}
	code, _, body = s.rest(t, http.MethodPost, "/v1/users", again.access,
		mustJSON(t, map[string]string{"email": "evil@example.com", "password": "an evil long password", "displayName": "Evil", "role": "ROLE_ADMIN"}))
	if code != http.StatusUnauthorized {
		t.Errorf("demoted admin creates an admin with the old token = %d %v, want 401", code, body)
	}

	// Logout ends the session's access token at once; a new login works right away.
	s.createUser(t, "", "carol@example.com", "carol's long password", "")
	carol := s.login(t, "carol@example.com", "carol's long password")
	if code, _, body := s.rest(t, http.MethodPost, "/v1/auth:logout", "", mustJSON(t, map[string]string{"refreshToken": carol.refresh})); code != http.StatusOK {
		t.Fatalf("logout = %d %v, want 200", code, body)
	}
	if code, _, body := s.rest(t, http.MethodGet, "/v1/users/"+carol.userID, carol.access, ""); code != http.StatusUnauthorized {
		t.Errorf("access token after logout = %d %v, want 401", code, body)
	}
	next := s.login(t, "carol@example.com", "carol's long password")
	if code, _, body := s.rest(t, http.MethodGet, "/v1/users/"+carol.userID, next.access, ""); code != http.StatusOK {
		t.Errorf("token of a login right after logout = %d %v, want 200", code, body)
	}
}

// TestRevocationReachesProcessWithoutIdentity runs identity, courier and the gateway as separate
// processes: the courier-only process learns of a suspension and of a logout made through identity
// (AuthService.WatchSubjects), refuses the user's next call with Unauthenticated and ends the user's open
// location stream. The waits are guards, not timing assertions.
func TestRevocationReachesProcessWithoutIdentity(t *testing.T) {
	dataDir := t.TempDir()
	id := startEnv(t, dataDir, map[string]string{
		"LASTMILE_ADMIN_EMAIL":    adminEmail,
		"LASTMILE_ADMIN_PASSWORD": adminPassword,
	}, "--target", "identity")
	courierProc := startIn(t, sharedCA(t, dataDir), "--target", "courier", "--identity-addr", id.GRPC)
	gw := startIn(t, sharedCA(t, dataDir), "--target", "gateway", "--identity-addr", id.GRPC, "--courier-addr", courierProc.GRPC)
	admin := gw.login(t, adminEmail, adminPassword)
	courierID, cora := registerCourier(t, gw, admin.access, "cora@example.com")
	lou, louSession := registerCourier(t, gw, admin.access, "lou@example.com")

	client := courierv1.NewCourierServiceClient(courierProc.grpcConn(t, ""))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	getCourier := func(id, token string) error {
		_, err := client.GetCourier(bearer(ctx, token), &courierv1.GetCourierRequest{Lookup: &courierv1.GetCourierRequest_Id{Id: id}})
		return err
	}
	if err := getCourier(courierID, cora.access); err != nil {
		t.Fatalf("GetCourier on the courier process with the courier's token = %v", err)
	}
	stream, err := client.ReportLocations(bearer(ctx, cora.access))
	if err != nil {
		t.Fatalf("ReportLocations = %v", err)
	}
	if err := stream.Send(&courierv1.ReportLocationsRequest{CourierId: courierID, Fixes: []*courierv1.LocationFix{fix(52.52, 13.405, time.Now())}}); err != nil {
		t.Fatalf("ReportLocations Send = %v", err)
	}
	ended := make(chan error, 1)
	go func() { ended <- stream.RecvMsg(&courierv1.ReportLocationsResponse{}) }()

	code, _, body := gw.rest(t, http.MethodPatch, "/v1/users/"+cora.userID, admin.access, `{"status": "USER_STATUS_SUSPENDED"}`)
	if code != http.StatusOK {
		t.Fatalf("suspend cora = %d %v, want 200", code, body)
	}
	select {
	case err := <-ended:
		if status.Code(err) != codes.Unauthenticated {
			t.Errorf("cora's open ReportLocations after her suspension ended with %v, want Unauthenticated", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("cora's open ReportLocations still open 10s after her suspension")
	}
	// refusedWithin polls call until it answers Unauthenticated, for at most 10 s.
	refusedWithin := func(what string, call func() error) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := call()
			if status.Code(err) == codes.Unauthenticated {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s = %v 10s after the revocation, want Unauthenticated", what, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	refusedWithin("cora's GetCourier after her suspension", func() error { return getCourier(courierID, cora.access) })

	if err := getCourier(lou, louSession.access); err != nil {
		t.Fatalf("GetCourier with lou's token before his logout = %v", err)
	}
	if code, _, body := gw.rest(t, http.MethodPost, "/v1/auth:logout", "", mustJSON(t, map[string]string{"refreshToken": louSession.refresh})); code != http.StatusOK {
		t.Fatalf("logout lou = %d %v, want 200", code, body)
	}
	refusedWithin("lou's GetCourier after his logout", func() error { return getCourier(lou, louSession.access) })
}
