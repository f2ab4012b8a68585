package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/gateway"
)

// TestCookieAuthAndCSRF: the lm_access cookie is the bearer token when no Authorization header is sent;
// a state-changing request authenticated by it must echo the lm_csrf cookie in X-CSRF-Token and come from
// this origin. Bearer requests are not affected.
func TestCookieAuthAndCSRF(t *testing.T) {
	fake := &fakeRoute{estimate: func(_ context.Context, _ *routev1.EstimateRouteRequest) (*routev1.RouteEstimate, error) {
		return cannedEstimate(), nil
	}}
	srv := startGateway(t, fake, gateway.Config{})
	cookies := "lm_access=cookie-token; lm_csrf=csrf-1"
	for _, tc := range []struct {
		name       string
		header     http.Header
		wantStatus int
		wantAuth   string // the authorization the service received
		wantMsg    string // the 403 message
	}{
		{"cookie with matching token", http.Header{"Cookie": {cookies}, "X-Csrf-Token": {"csrf-1"}, "Origin": {"http://" + strings.TrimPrefix(srv.URL, "http://")}, "Sec-Fetch-Site": {"same-origin"}},
			http.StatusOK, "Bearer cookie-token", ""},
		{"cookie without token", http.Header{"Cookie": {cookies}},
			http.StatusForbidden, "", "CSRF check failed: the X-CSRF-Token header is missing: send the value of the lm_csrf cookie"},
		{"cookie with mismatched token", http.Header{"Cookie": {cookies}, "X-Csrf-Token": {"csrf-2"}},
			http.StatusForbidden, "", "CSRF check failed: the X-CSRF-Token header does not match the lm_csrf cookie"},
		{"cookie without csrf cookie", http.Header{"Cookie": {"lm_access=cookie-token"}, "X-Csrf-Token": {"csrf-1"}},
			http.StatusForbidden, "", "CSRF check failed: the lm_csrf cookie is missing: log in again"},
		{"cross-site", http.Header{"Cookie": {cookies}, "X-Csrf-Token": {"csrf-1"}, "Sec-Fetch-Site": {"cross-site"}},
			http.StatusForbidden, "", `CSRF check failed: Sec-Fetch-Site is "cross-site", not same-origin`},
		{"foreign origin", http.Header{"Cookie": {cookies}, "X-Csrf-Token": {"csrf-1"}, "Origin": {"https://evil.example"}},
			http.StatusForbidden, "", "CSRF check failed: the Origin header is not this server's origin"},
		{"bearer wins over cookie, no CSRF needed", http.Header{"Cookie": {cookies}, "Authorization": {"Bearer api-token"}, "Origin": {"https://partner.example"}},
			http.StatusOK, "Bearer api-token", ""},
		{"bearer only", http.Header{"Authorization": {"Bearer api-token"}},
			http.StatusOK, "Bearer api-token", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, calls := fake.lastMetadata()
			resp, body := do(t, srv, http.MethodPost, estimatePath, strings.NewReader(validBody), tc.header)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d %s, want %d", resp.StatusCode, body, tc.wantStatus)
			}
			md, after := fake.lastMetadata()
			if tc.wantStatus == http.StatusForbidden {
				if diff := cmp.Diff(errorJSON(403, "PERMISSION_DENIED", tc.wantMsg), decode(t, body)); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
				if after != calls {
					t.Error("the service was called despite the failed CSRF check")
				}
				return
			}
			if got := md.Get("authorization"); !cmp.Equal(got, []string{tc.wantAuth}) {
				t.Errorf("authorization the service saw = %q, want [%s]", got, tc.wantAuth)
			}
			if got := md.Get("cookie"); len(got) != 0 {
				t.Errorf("cookie forwarded to the service: %q", got)
			}
		})
	}
}

// fakeAuth answers Login and RefreshToken with fixed tokens expiring a fixed time from now, and records
// the refresh tokens it was asked to revoke.
type fakeAuth struct {
	identityv1.UnimplementedAuthServiceServer
	mu      sync.Mutex
	revoked []string
}

func (f *fakeAuth) Login(_ context.Context, req *identityv1.LoginRequest) (*identityv1.LoginResponse, error) {
	if req.GetPassword() != "right" {
		return nil, status.Error(codes.Unauthenticated, "invalid credentials")
	}
	now := time.Now()
	return &identityv1.LoginResponse{
		AccessToken: "access-1", RefreshToken: "refresh-1", TokenType: "Bearer",
		ExpiresAt:             timestamppb.New(now.Add(10 * time.Minute)),
		RefreshTokenExpiresAt: timestamppb.New(now.Add(24 * time.Hour)),
		User:                  &identityv1.User{Id: taskA, Email: req.GetEmail()},
	}, nil
}

func (f *fakeAuth) Logout(_ context.Context, req *identityv1.LogoutRequest) (*identityv1.LogoutResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.revoked = append(f.revoked, req.GetRefreshToken())
	return &identityv1.LogoutResponse{}, nil
}

// TestSessionCookiesUnderTLS: under TLS the cookies are Secure; every attribute is exact.
func TestSessionCookiesUnderTLS(t *testing.T) {
	fake := &fakeAuth{}
	conn, _ := serveBufconn(t, func(s *grpc.Server) { identityv1.RegisterAuthServiceServer(s, fake) })
	g, err := gateway.New(t.Context(), gateway.Config{}, []gateway.Service{{
		Name: "lastmile.identity.v1.AuthService", Conn: conn, Register: gateway.Routes(identityv1.RegisterAuthServiceHandlerClient, identityv1.NewAuthServiceClient),
	}})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	srv := httptest.NewTLSServer(g.Handler())
	t.Cleanup(srv.Close)

	resp, body := do(t, srv, http.MethodPost, "/v1/session", strings.NewReader(`{"email":"a@example.com","password":"wrong"}`),
		http.Header{"Content-Type": {"application/json"}})
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 {
		t.Fatalf("wrong password: %d %s, %d cookies; want 401 and none", resp.StatusCode, body, len(resp.Cookies()))
	}
	resp, body = do(t, srv, http.MethodPost, "/v1/session", strings.NewReader(`{"email":"a@example.com","password":"right"}`),
		http.Header{"Content-Type": {"text/plain"}})
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain body: %d %s, want 415", resp.StatusCode, body)
	}
	resp, body = do(t, srv, http.MethodPost, "/v1/session", strings.NewReader(`{"email":"a@example.com","password":"right"}`),
		http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}})
	if resp.StatusCode != http.StatusUnsupportedMediaType || len(resp.Cookies()) != 0 {
		t.Fatalf("gzip-encoded body: %d %s, %d cookies; want 415 and none", resp.StatusCode, body, len(resp.Cookies()))
	}
	resp, body = do(t, srv, http.MethodPost, "/v1/session", strings.NewReader(`{"email":"a@example.com","password":"right"}`),
		http.Header{"Content-Type": {"application/json"}, "Origin": {"https://evil.example"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-origin login: %d %s, want 403", resp.StatusCode, body)
	}

	resp, body = do(t, srv, http.MethodPost, "/v1/session", strings.NewReader(`{"email":"a@example.com","password":"right"}`),
		http.Header{"Content-Type": {"application/json"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %s, want 200", resp.StatusCode, body)
	}
	got := decode(t, body)
	csrf, _ := got["csrfToken"].(string)
	if len(csrf) != 26 {
		t.Errorf("csrfToken = %q, want a 26-character random token", csrf)
	}
	if user, _ := got["user"].(map[string]any); user["email"] != "a@example.com" || got["accessToken"] != nil {
		t.Errorf("login body = %v, want the user and no token", got)
	}
	var lines []string
	for _, c := range resp.Cookies() {
		// Max-Age is checked apart: the lifetime counts from the fake's clock reading.
		if c.Name == "lm_access" && (c.MaxAge < 10*60-60 || c.MaxAge > 10*60) ||
			c.Name != "lm_access" && (c.MaxAge < 24*3600-60 || c.MaxAge > 24*3600) {
			t.Errorf("%s Max-Age = %d, want its token's lifetime", c.Name, c.MaxAge)
		}
		c.MaxAge = 0
		c.Raw = ""
		lines = append(lines, c.String())
	}
	want := []string{
		"lm_access=access-1; Path=/; HttpOnly; Secure; SameSite=Strict",
		"lm_refresh=refresh-1; Path=/v1/session; HttpOnly; Secure; SameSite=Strict",
		"lm_csrf=" + csrf + "; Path=/; Secure; SameSite=Strict",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("Set-Cookie (-want +got):\n%s", diff)
	}

	cookies := "lm_access=access-1; lm_refresh=refresh-1; lm_csrf=" + csrf
	resp, body = do(t, srv, http.MethodDelete, "/v1/session", nil, http.Header{"Cookie": {cookies}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("logout without the CSRF header: %d %s, want 403", resp.StatusCode, body)
	}
	resp, body = do(t, srv, http.MethodDelete, "/v1/session", nil, http.Header{"Cookie": {cookies}, "X-Csrf-Token": {csrf}})
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %d %s, want 204", resp.StatusCode, body)
	}
	lines = nil
	for _, c := range resp.Cookies() {
		c.Raw = ""
		lines = append(lines, c.String())
	}
	want = []string{
		"lm_access=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
		"lm_refresh=; Path=/v1/session; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
		"lm_csrf=; Path=/; Max-Age=0; Secure; SameSite=Strict",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("logout Set-Cookie (-want +got):\n%s", diff)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if !cmp.Equal(fake.revoked, []string{"refresh-1"}) {
		t.Errorf("revoked = %v, want [refresh-1]", fake.revoked)
	}
}
