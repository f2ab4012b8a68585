package gateway

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/textproto"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"lastmile/internal/platform/telemetry"
)

const (
	requestIDHeader   = "X-Request-Id"
	requestIDMetadata = "x-request-id"
	maxRequestIDLen   = 128
	// unmatchedRoute labels requests that matched no route (404, 405), so that scanners probing random
	// paths cannot create new metric series.
	unmatchedRoute = "unmatched"
)

// requestState is per-request data that inner layers fill in for the outer one. It lives in the request
// context as a pointer; every layer runs on the request's goroutine, so it needs no lock.
type requestState struct {
	route string
}

type requestStateKey struct{}

// probeKey marks the synthetic requests handleRoutingError sends through the mux to compute a 405's Allow
// header; routeMiddleware answers them without running the handler.
type probeKey struct{}

// serveHTTP is the outermost layer: it assigns the request id, sets the security headers, bounds the body,
// records metrics and logs, then hands the request to the grpc-gateway mux.
func (g *Gateway) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	defer g.drain.begin(r)()
	id := r.Header.Get(requestIDHeader)
	if !validRequestID(id) {
		id = rand.Text()
	}
	state := &requestState{route: unmatchedRoute}
	ctx := context.WithValue(telemetry.WithRequestID(r.Context(), id), requestStateKey{}, state)

	// The request is the caller's: work on a copy whose header carries the (possibly replaced) id, which
	// the incoming header matcher forwards to the service as x-request-id.
	r = r.WithContext(ctx)
	r.Header = r.Header.Clone()
	r.Header.Set(requestIDHeader, id)
	// grpc-gateway would turn a client's Grpc-Timeout header into the internal call's deadline; the edge
	// decides deadlines itself (RequestTimeout), so a client cannot make internal calls fail on purpose.
	r.Header.Del("Grpc-Timeout")
	// The client address the services see is the gateway's to decide (setClientAddr).
	setClientAddr(r, g.cfg.TrustedProxies)

	setSecurityHeaders(w.Header())
	g.cors.allow(w.Header(), r)
	rw := &responseWriter{ResponseWriter: w, requestID: id}
	gz := &gzipWriter{ResponseWriter: rw, accepts: acceptsGzip(r)}
	method := r.Method

	if r.ContentLength > g.cfg.MaxBodyBytes {
		// Refuse before reading a byte when the client announces the size.
		writeError(gz, http.StatusRequestEntityTooLarge, codes.ResourceExhausted,
			fmt.Sprintf("request body exceeds %d bytes", g.cfg.MaxBodyBytes), nil)
	} else if !validUTF8(r.URL) {
		writeError(gz, http.StatusBadRequest, codes.InvalidArgument, "the request path and query must be UTF-8 once percent-decoded", nil)
	} else {
		if r.Body != nil && r.Body != http.NoBody {
			// MaxBytesReader gets the server's own writer: only that one can tell the server to close the
			// connection instead of draining the rest of an oversized body.
			r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes)}
		}
		g.routes.ServeHTTP(gz, r)
	}
	gz.finish()

	code := rw.statusCode()
	if g.metrics != nil {
		g.metrics.observe(state.route, method, code, time.Since(start))
	}
	g.logAccess(ctx, r, method, state.route, code, rw.written, time.Since(start))
}

// routeMiddleware runs inside the mux once a route has matched: it records the route template for metrics
// and bounds the proxied call with RequestTimeout.
func (g *Gateway) routeMiddleware(next runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		ctx := r.Context()
		if matched, ok := ctx.Value(probeKey{}).(*bool); ok {
			*matched = true
			return
		}
		if state, ok := ctx.Value(requestStateKey{}).(*requestState); ok {
			if p, ok := runtime.HTTPPattern(ctx); ok {
				state.route = p.String()
			}
		}
		ctx, cancel := context.WithTimeout(ctx, g.cfg.RequestTimeout)
		defer cancel()
		next(w, r.WithContext(ctx), params)
	}
}

// validRequestID accepts the ids that are safe to forward and to log verbatim: short, and made of
// characters that cannot forge log fields or headers.
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// incomingHeader decides which HTTP request headers reach the services as gRPC metadata. Authorization is
// forwarded as "authorization" by grpc-gateway itself, whatever this function says; X-Request-Id becomes
// x-request-id; the standard (IANA permanent) headers keep grpc-gateway's default "grpcgateway-" prefix.
// Three defaults are removed:
//   - Authorization under the prefix, which would put the token into the metadata a second time;
//   - Cookie, since services authenticate by bearer token and cookies are the browser's secrets;
//   - Grpc-Metadata-*, which would let any client set arbitrary metadata on an internal call.
func incomingHeader(key string) (string, bool) {
	switch key = textproto.CanonicalMIMEHeaderKey(key); {
	case key == requestIDHeader:
		return requestIDMetadata, true
	case key == "Authorization", key == "Cookie", strings.HasPrefix(key, runtime.MetadataHeaderPrefix):
		return "", false
	}
	return runtime.DefaultHeaderMatcher(key)
}

// outgoingHeader decides which gRPC response header metadata reaches the HTTP client: only the request id.
// Everything else a service sets is internal.
func outgoingHeader(key string) (string, bool) {
	if strings.EqualFold(key, requestIDMetadata) {
		return requestIDHeader, true
	}
	return "", false
}

// limitedBody records that the body went over the limit. grpc-gateway turns every decode error into
// InvalidArgument, losing *http.MaxBytesError, so the error handler asks the body instead.
type limitedBody struct {
	io.ReadCloser
	exceeded atomic.Bool
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		b.exceeded.Store(true)
	}
	return n, err
}

// bodyTooLarge reports whether err, or the request's body, says the body went over the limit.
func bodyTooLarge(r *http.Request, err error) bool {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return true
	}
	b, ok := r.Body.(*limitedBody)
	return ok && b.exceeded.Load() && status.Code(err) == codes.InvalidArgument
}

// responseWriter records the status for metrics and completes the headers just before they are sent: the
// request id (unless the service echoed it already) and, for JSON, Cache-Control: no-store, since API
// responses carry user data that shared caches must not keep.
type responseWriter struct {
	http.ResponseWriter
	requestID   string
	status      int
	wroteHeader bool
	written     int64 // body bytes sent, for the access log
}

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code >= 200 {
		w.wroteHeader = true
		w.status = code
		h := w.Header()
		if h.Get(requestIDHeader) == "" {
			h.Set(requestIDHeader, w.requestID)
		}
		if isJSON(h.Get("Content-Type")) && h.Get("Cache-Control") == "" {
			h.Set("Cache-Control", "no-store")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}

// Flush lets streaming handlers push partial responses.
func (w *responseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController access to the server's writer (deadlines, hijacking, flushing).
func (w *responseWriter) Unwrap() http.ResponseWriter {
	return w.ResponseWriter
}

func (w *responseWriter) statusCode() int {
	if !w.wroteHeader {
		return http.StatusOK
	}
	return w.status
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

// encodedBody answers 415 and reports true when the request's body is sent with a content coding
// (Content-Encoding: gzip, deflate, br, …): the gateway reads plain JSON only, and a compressed body
// would otherwise fail as "not valid JSON: invalid value \u001f", hiding the real mistake. The answer's
// Accept-Encoding says which coding is accepted (RFC 7694).
func encodedBody(w http.ResponseWriter, r *http.Request) bool {
	for _, v := range r.Header.Values("Content-Encoding") {
		for c := range strings.SplitSeq(v, ",") {
			if c = strings.TrimSpace(c); c != "" && !strings.EqualFold(c, "identity") {
				w.Header().Set("Accept-Encoding", "identity")
				writeError(w, http.StatusUnsupportedMediaType, codes.InvalidArgument,
					fmt.Sprintf("the request body must be sent uncompressed: Content-Encoding %.40q is not accepted", c), nil)
				return true
			}
		}
	}
	return false
}
