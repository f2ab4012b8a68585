package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

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
