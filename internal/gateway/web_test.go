package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"lastmile/internal/gateway"
	"lastmile/internal/web"
)

// TestServesPages checks the wiring of package web into the gateway: the pages and their assets pass
// through the gateway's middleware (request id, nosniff) like any route.
func TestServesPages(t *testing.T) {
	srv := startGateway(t, &fakeRoute{}, gateway.Config{Web: web.Config{Area: &web.Area{Name: "Berlin", Latitude: 52.52, Longitude: 13.405, RadiusMeters: 8000}}})
	for _, tt := range []struct {
		path, wantType, wantBody string
	}{
		{"/", "text/html; charset=utf-8", "lastmile · dispatch"},
		{"/track/0b6f5c1e-8f3a-4c55-9d2e-1a2b3c4d5e6f", "text/html; charset=utf-8", "Your delivery"},
		{"/ui/common.js", "text/javascript; charset=utf-8", "requestAnimationFrame"},
		{"/ui/config.json", "application/json", `"name":"Berlin"`},
	} {
		resp, body := do(t, srv, http.MethodGet, tt.path, nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s status = %d, want 200", tt.path, resp.StatusCode)
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != tt.wantType {
			t.Errorf("GET %s Content-Type = %q, want %q", tt.path, got, tt.wantType)
		}
		if !strings.Contains(string(body), tt.wantBody) {
			t.Errorf("GET %s body lacks %q", tt.path, tt.wantBody)
		}
		if resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s lacks the gateway's headers: X-Request-Id %q, X-Content-Type-Options %q", tt.path,
				resp.Header.Get("X-Request-Id"), resp.Header.Get("X-Content-Type-Options"))
		}
	}
	if resp, _ := do(t, srv, http.MethodGet, "/track/nope", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /track/nope status = %d, want 404", resp.StatusCode)
	}
}
