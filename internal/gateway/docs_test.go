package gateway_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"lastmile/internal/gateway"
)

func TestDocsPage(t *testing.T) {
	srv := startGateway(t, &fakeRoute{}, gateway.Config{})

	resp, page := do(t, srv, http.MethodGet, "/docs", nil, nil)
	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Fatalf("GET /docs status = %d, want %d", got, want)
	}
	if got, want := resp.Header.Get("Content-Type"), "text/html; charset=utf-8"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	if got := resp.Header.Get("Content-Security-Policy"); !strings.HasPrefix(got, "default-src 'self'; script-src 'self'") {
		t.Errorf("Content-Security-Policy = %q, want the gateway's", got)
	}
	// The CSP allows no inline script or style: the page may only load its own files.
	for _, tag := range regexp.MustCompile(`<script[^>]*>`).FindAllString(string(page), -1) {
		if tag != `<script src="/docs/docs.js" defer>` {
			t.Errorf("page has %s, want only <script src=\"/docs/docs.js\" defer>", tag)
		}
	}
	if strings.Contains(string(page), "<style") || strings.Contains(string(page), "style=") {
		t.Errorf("page has inline style")
	}

	for file, wantType := range map[string]string{"docs.js": "text/javascript; charset=utf-8", "docs.css": "text/css; charset=utf-8"} {
		resp, body := do(t, srv, http.MethodGet, "/docs/"+file, nil, nil)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != wantType {
			t.Errorf("GET /docs/%s = %d %q, want 200 %q", file, resp.StatusCode, resp.Header.Get("Content-Type"), wantType)
		}
		// Nothing from another origin: no absolute URLs at all.
		if m := regexp.MustCompile(`https?://|//[a-z]`).Find(body); m != nil {
			t.Errorf("/docs/%s refers to another origin: %q", file, m)
		}
	}
	_, js := do(t, srv, http.MethodGet, "/docs/docs.js", nil, nil)
	if !strings.Contains(string(js), `fetch("/openapi.json"`) {
		t.Errorf("docs.js does not render /openapi.json")
	}

	resp, body := do(t, srv, http.MethodGet, "/docs/other.js", nil, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /docs/other.js status = %d, want 404; body %s", resp.StatusCode, body)
	}
}
