package gateway

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
)

// contentSecurityPolicy lets pages load scripts, styles, images and connections only from the gateway's own
// origin: the dashboard and /docs are our own files, with no inline script or style and nothing from a CDN.
// Images may also be data: URLs (small icons) and blob: URLs (a proof-of-delivery photo fetched with the
// bearer token and shown from memory). No page may be framed (clickjacking), and no <base> or plugin may
// redirect what the page loads.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// corsMaxAge is how long, in seconds, a browser may cache a preflight answer.
const corsMaxAge = "600"

// corsAllowHeaders are the request headers a cross-origin caller may send: the bearer token, the JSON body's
// type and its own request id.
var corsAllowHeaders = []string{"Authorization", "Content-Type", requestIDHeader}

// corsExposeHeaders are the response headers beyond the CORS-safelisted ones that a cross-origin script may
// read: the request id to quote in a support request, a created resource's Location, and the retry and
// authentication hints of errors.
var corsExposeHeaders = []string{requestIDHeader, "Location", "Retry-After", "WWW-Authenticate"}

// securityHeaders are the headers every response carries, whatever route answers it, keyed in canonical
// form.
var securityHeaders = map[string][]string{
	"Content-Security-Policy":    {contentSecurityPolicy},
	"X-Content-Type-Options":     {"nosniff"},
	"X-Frame-Options":            {"DENY"},
	"Referrer-Policy":            {"no-referrer"},
	"Cross-Origin-Opener-Policy": {"same-origin"},
}

// setSecurityHeaders sets securityHeaders on h. The value slices are shared, not copied (this runs on every
// request): Header.Set and Add replace or append (a full one-element slice is copied on append), and
// nothing in the gateway writes into a header's slice in place.
func setSecurityHeaders(h http.Header) {
	for k, v := range securityHeaders {
		h[k] = v
	}
}

// cors is the allow-list of origins whose browser scripts may call the API. The zero value allows none.
type cors struct {
	origins map[string]bool
}

// newCORS validates the allowed origins: each is scheme://host[:port], exactly as a browser sends it in the
// Origin header (no path, no trailing slash). "*" is refused: an open API for every web page is a choice
// the gateway does not make by accident.
func newCORS(origins []string) (cors, error) {
	c := cors{origins: map[string]bool{}}
	for _, o := range origins {
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" ||
			u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.ToLower(o) != o {
			return cors{}, fmt.Errorf("gateway: CORS origin %q is not a lowercase scheme://host[:port] origin", o)
		}
		c.origins[o] = true
	}
	return c, nil
}

// CheckCORSOrigins reports the first entry of origins that Config.CORSOrigins would refuse.
func CheckCORSOrigins(origins []string) error {
	_, err := newCORS(origins)
	return err
}

// enabled reports whether any origin is allowed.
func (c cors) enabled() bool { return len(c.origins) > 0 }

// allow adds the CORS headers of an actual (non-preflight) request from an allowed origin. Responses vary
// by Origin whenever CORS is configured, so that a cache never serves one origin's answer to another.
func (c cors) allow(h http.Header, r *http.Request) {
	if !c.enabled() {
		return
	}
	h.Add("Vary", "Origin")
	origin := r.Header.Get("Origin")
	if !c.origins[origin] {
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Expose-Headers", strings.Join(corsExposeHeaders, ", "))
}

// serveREST serves the REST routes, the grpc-gateway mux, adding the two methods no route declares: OPTIONS,
// answered from the methods the path's routes serve (serveOptions), and HEAD, served as the path's GET
// without the body (RFC 9110, section 9.3.2). r is the gateway's own copy of the request (serveHTTP), so
// its method may change.
func (g *Gateway) serveREST(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodOptions:
		g.serveOptions(w, r)
	case http.MethodHead:
		r.Method = http.MethodGet
		g.mux.ServeHTTP(headWriter{w}, r)
	default:
		g.mux.ServeHTTP(w, r)
	}
}

// serveOptions answers OPTIONS: 204 with the Allow header for a path that some route serves, 404
// otherwise. A CORS preflight (Origin and Access-Control-Request-Method) from an allowed origin, for a
// method the path serves, also gets the Access-Control-Allow-* headers; any other preflight gets none, and
// the browser then refuses the call.
func (g *Gateway) serveOptions(w http.ResponseWriter, r *http.Request) {
	allow := g.allowHeader(r)
	if allow == nil {
		writeError(w, http.StatusNotFound, codes.NotFound, "no such route", nil)
		return
	}
	h := w.Header()
	h.Set("Allow", strings.Join(allow, ", "))
	if g.cors.enabled() {
		h.Add("Vary", "Origin")
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
	}
	origin, method := r.Header.Get("Origin"), r.Header.Get("Access-Control-Request-Method")
	if method != "" && g.cors.origins[origin] && slices.Contains(allow, method) {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", strings.Join(allow, ", "))
		h.Set("Access-Control-Allow-Headers", strings.Join(corsAllowHeaders, ", "))
		h.Set("Access-Control-Max-Age", corsMaxAge)
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
}

// allowHeader lists the methods r's path is served with, for the Allow header of OPTIONS and 405 answers:
// the routes' own methods, HEAD wherever GET is served, and OPTIONS. It returns nil when no route serves
// the path.
func (g *Gateway) allowHeader(r *http.Request) []string {
	methods := g.allowedMethods(r)
	if methods == "" {
		return nil
	}
	list := strings.Split(methods, ", ")
	if slices.Contains(list, http.MethodGet) {
		list = append(list, http.MethodHead)
	}
	return append(list, http.MethodOptions)
}

// headWriter answers a HEAD request, which the mux serves as a GET, with the GET's status and headers and
// no body. net/http discards a HEAD response's body as well; this keeps the guarantee for handlers that
// wrap the gateway (httptest, another server).
type headWriter struct {
	http.ResponseWriter
}

func (w headWriter) Write(b []byte) (int, error) { return len(b), nil }

// Flush implements http.Flusher.
func (w headWriter) Flush() { _ = http.NewResponseController(w.ResponseWriter).Flush() }

// Unwrap gives http.ResponseController the writer underneath.
func (w headWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
