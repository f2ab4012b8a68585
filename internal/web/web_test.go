package web_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/web"
)

func newSite(t *testing.T, cfg web.Config) *web.Site {
	t.Helper()
	s, err := web.New(cfg)
	if err != nil {
		t.Fatalf("web.New: %v", err)
	}
	return s
}

func get(t *testing.T, h http.Handler, method, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, vs := range header {
		req.Header[k] = vs
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return resp, string(b)
}

var assetRef = regexp.MustCompile(`"/ui/([a-z]+)\.([0-9a-f]{8})\.(js|css|svg)"`)

func TestPages(t *testing.T) {
	s := newSite(t, web.Config{})
	tests := []struct {
		path, wantTitle string
		wantAssets      []string
	}{
		{"/", "<title>lastmile · dispatch</title>", []string{"icon.svg", "lastmile.css", "common.js", "dash.js"}},
		{"/track/0b6f5c1e-8f3a-4c55-9d2e-1a2b3c4d5e6f", "<title>Your delivery · lastmile</title>", []string{"icon.svg", "lastmile.css", "common.js", "track.js"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(t, s, http.MethodGet, tt.path, nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s status = %d, want 200", tt.path, resp.StatusCode)
			}
			for k, want := range map[string]string{
				"Content-Type":            "text/html; charset=utf-8",
				"Cache-Control":           "no-cache",
				"X-Frame-Options":         "DENY",
				"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
			} {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("GET %s %s = %q, want %q", tt.path, k, got, want)
				}
			}
			if !strings.Contains(body, tt.wantTitle) {
				t.Errorf("GET %s body lacks %q", tt.path, tt.wantTitle)
			}
			var got []string
			for _, m := range assetRef.FindAllStringSubmatch(body, -1) {
				got = append(got, m[1]+"."+m[3])
			}
			if diff := cmp.Diff(tt.wantAssets, got); diff != "" {
				t.Errorf("GET %s hashed asset references (-want +got):\n%s", tt.path, diff)
			}
			// No inline script or style: the CSP would block them.
			for _, bad := range []string{"<script>", "style=", "<style", "onclick=", "javascript:"} {
				if strings.Contains(body, bad) {
					t.Errorf("GET %s body contains %q, which the CSP forbids", tt.path, bad)
				}
			}
		})
	}
}

func TestAssetCaching(t *testing.T) {
	s := newSite(t, web.Config{})
	_, page := get(t, s, http.MethodGet, "/", nil)
	var hashed string
	for _, m := range assetRef.FindAllStringSubmatch(page, -1) {
		if m[1] == "dash" {
			hashed = "/ui/dash." + m[2] + ".js"
		}
	}
	if hashed == "" {
		t.Fatalf("the dashboard names no hashed dash.js:\n%s", page)
	}

	resp, body := get(t, s, http.MethodGet, hashed, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s status = %d, want 200", hashed, resp.StatusCode)
	}
	if got, want := resp.Header.Get("Cache-Control"), "public, max-age=31536000, immutable"; got != want {
		t.Errorf("GET %s Cache-Control = %q, want %q", hashed, got, want)
	}
	if got, want := resp.Header.Get("Content-Type"), "text/javascript; charset=utf-8"; got != want {
		t.Errorf("GET %s Content-Type = %q, want %q", hashed, got, want)
	}
	etag := resp.Header.Get("ETag")

	plain, plainBody := get(t, s, http.MethodGet, "/ui/dash.js", nil)
	if plain.StatusCode != http.StatusOK || plainBody != body {
		t.Fatalf("GET /ui/dash.js = %d and %d bytes, want 200 and the hashed file's %d bytes", plain.StatusCode, len(plainBody), len(body))
	}
	if got, want := plain.Header.Get("Cache-Control"), "no-cache"; got != want {
		t.Errorf("GET /ui/dash.js Cache-Control = %q, want %q", got, want)
	}
	if got := plain.Header.Get("ETag"); got != etag || !regexp.MustCompile(`^"[0-9a-f]{16}"$`).MatchString(got) {
		t.Errorf("GET /ui/dash.js ETag = %q, want %q (16 hex digits, the hashed file's)", got, etag)
	}

	revalidated, revalidatedBody := get(t, s, http.MethodGet, "/ui/dash.js", http.Header{"If-None-Match": {etag}})
	if revalidated.StatusCode != http.StatusNotModified || revalidatedBody != "" {
		t.Errorf("GET /ui/dash.js If-None-Match: status = %d with %d bytes, want 304 and none", revalidated.StatusCode, len(revalidatedBody))
	}
	head, headBody := get(t, s, http.MethodHead, hashed, nil)
	if head.StatusCode != http.StatusOK || headBody != "" || head.Header.Get("ETag") != etag {
		t.Errorf("HEAD %s = %d, %d bytes, ETag %q; want 200, none, %q", hashed, head.StatusCode, len(headBody), head.Header.Get("ETag"), etag)
	}
}

func TestNotFound(t *testing.T) {
	s := newSite(t, web.Config{})
	for _, path := range []string{
		"/track/not-a-task", "/track/0b6f5c1e-8f3a-4c55-9d2e-1a2b3c4d5e6", "/track/0b6f5c1e+8f3a-4c55-9d2e-1a2b3c4d5e6f",
		"/ui/missing.js", "/ui/dash.00000000.js", "/ui/index.html", "/index.html", "/track/",
	} {
		if resp, _ := get(t, s, http.MethodGet, path, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s status = %d, want 404", path, resp.StatusCode)
		}
	}
	resp, _ := get(t, s, http.MethodPost, "/", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST / = %d, Allow %q; want 405, %q", resp.StatusCode, resp.Header.Get("Allow"), "GET, HEAD")
	}
}

func TestConfig(t *testing.T) {
	area := &web.Area{Name: "Berlin", Latitude: 52.52, Longitude: 13.405, RadiusMeters: 8000}
	for _, tt := range []struct {
		name string
		cfg  web.Config
		want map[string]any
	}{
		{"no area", web.Config{}, map[string]any{}},
		{"area", web.Config{Area: area}, map[string]any{"area": map[string]any{
			"name": "Berlin", "latitude": 52.52, "longitude": 13.405, "radiusMeters": 8000.0}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, newSite(t, tt.cfg), http.MethodGet, "/ui/config.json", nil)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("GET /ui/config.json = %d %q, want 200 application/json", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var got map[string]any
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("config.json: %v\n%s", err, body)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("config.json (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewRejectsBadArea(t *testing.T) {
	for _, a := range []web.Area{
		{Latitude: 91, Longitude: 0, RadiusMeters: 1000},
		{Latitude: 0, Longitude: 181, RadiusMeters: 1000},
		{Latitude: 0, Longitude: 0, RadiusMeters: 0},
		{Latitude: 0, Longitude: 0, RadiusMeters: 300_000},
	} {
		if _, err := web.New(web.Config{Area: &a}); err == nil {
			t.Errorf("web.New(Area %+v) = nil error, want one", a)
		}
	}
}
