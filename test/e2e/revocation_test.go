package e2e_test

import (
	"net/http"
	"testing"
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
