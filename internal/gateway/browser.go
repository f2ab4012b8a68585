package gateway

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
)

// Defaults applied to zero BrowserConfig fields.
const (
	DefaultEventHeartbeat         = 15 * time.Second
	DefaultEventRetry             = 3 * time.Second
	DefaultEventWriteTimeout      = 10 * time.Second
	DefaultMaxEventStreamAge      = 30 * time.Minute
	DefaultMaxEventStreams        = 1000
	DefaultMaxEventStreamsPerUser = 8
)

// The services the browser edge calls, by full gRPC name: it finds their connections among the gateway's
// services. A service that is not configured leaves its browser routes unserved (404).
const (
	authServiceName     = "lastmile.identity.v1.AuthService"
	userServiceName     = "lastmile.identity.v1.UserService"
	dispatchServiceName = "lastmile.dispatch.v1.DispatchService"
	courierServiceName  = "lastmile.courier.v1.CourierService"
)

// BrowserConfig configures the gateway's browser edge: cookie sessions (POST/DELETE /v1/session,
// POST /v1/session/refresh) and the Server-Sent Events routes (GET /v1/tasks/{id}/events, GET /v1/events).
// Zero fields take the Default* values above.
type BrowserConfig struct {
	// Heartbeat is the interval of the comment lines that keep idle event streams (and the proxies on
	// their way) alive.
	Heartbeat time.Duration
	// Retry is the reconnection delay the event streams advise browsers to wait (the SSE retry field).
	Retry time.Duration
	// EventWriteTimeout bounds each write to an event stream: a browser that stops reading for longer has
	// its stream, and the upstream gRPC streams behind it, closed.
	EventWriteTimeout time.Duration
	// MaxEventStreamAge bounds how long an event stream lasts: the gateway then ends it cleanly and the
	// browser reconnects with Last-Event-ID, losing nothing. Each stream ends a random 0-10 % earlier,
	// so that streams opened together do not reconnect together. It frees the stream's slots (and its
	// upstream's) from a browser that stopped reading on a quiet account, whose few heartbeat bytes the
	// socket buffers absorb for hours without a write ever timing out.
	MaxEventStreamAge time.Duration
	// MaxEventStreams bounds the event streams open at once; more are answered with 429. A quarter of
	// them, at most 64, are kept for dispatchers and admins (staffReserve).
	MaxEventStreams int
	// MaxEventStreamsPerUser bounds the event streams one user (or, without a user, one client address:
	// an IPv6 client's /64) has open at once; more are answered with 429.
	MaxEventStreamsPerUser int
	// SecureCookies marks the session cookies Secure even when the gateway itself is not serving TLS, for
	// deployments behind a TLS-terminating proxy. Under TLS they are always Secure.
	SecureCookies bool
	// Now is the clock the task event ids start from (see eventWriter); nil means time.Now. For tests.
	Now func() time.Time
}

func (c BrowserConfig) withDefaults() (BrowserConfig, error) {
	for name, v := range map[string]int64{
		"Heartbeat": int64(c.Heartbeat), "Retry": int64(c.Retry), "EventWriteTimeout": int64(c.EventWriteTimeout),
		"MaxEventStreams": int64(c.MaxEventStreams), "MaxEventStreamsPerUser": int64(c.MaxEventStreamsPerUser),
		"MaxEventStreamAge": int64(c.MaxEventStreamAge),
	} {
		if v < 0 {
			return c, fmt.Errorf("gateway: Browser.%s %d is negative", name, v)
		}
	}
	setDefault(&c.Heartbeat, DefaultEventHeartbeat)
	setDefault(&c.Retry, DefaultEventRetry)
	setDefault(&c.EventWriteTimeout, DefaultEventWriteTimeout)
	setDefault(&c.MaxEventStreamAge, DefaultMaxEventStreamAge)
	if c.MaxEventStreams == 0 {
		c.MaxEventStreams = DefaultMaxEventStreams
	}
	if c.MaxEventStreamsPerUser == 0 {
		c.MaxEventStreamsPerUser = DefaultMaxEventStreamsPerUser
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}

// browser serves the routes made for browsers. They sit in front of the grpc-gateway mux, which serves
// everything else, and call the services over the same connections and with the same forwarded identity
// (runtime.AnnotateContext) as the REST routes.
type browser struct {
	g   *Gateway
	cfg BrowserConfig

	auth     identityv1.AuthServiceClient     // nil: no session routes
	users    identityv1.UserServiceClient     // nil: no GET /v1/session
	dispatch dispatchv1.DispatchServiceClient // nil: no event routes
	couriers courierv1.CourierServiceClient   // nil: /v1/events without couriers=true only

	mu      sync.Mutex
	open    int            // event streams open
	perUser map[string]int // event streams open per user key

	stopOnce sync.Once
	stopping chan struct{} // closed when the gateway shuts down: event streams end

	// ageTimer starts the timer of an event stream's age limit; replaced in tests (export_test.go).
	ageTimer func(time.Duration) (<-chan time.Time, func() bool)
}

// newTimer is the real ageTimer.
func newTimer(d time.Duration) (<-chan time.Time, func() bool) {
	t := time.NewTimer(d)
	return t.C, t.Stop
}

func newBrowser(g *Gateway, cfg BrowserConfig, services []Service) (*browser, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	b := &browser{g: g, cfg: cfg, perUser: map[string]int{}, stopping: make(chan struct{}), ageTimer: newTimer}
	for _, s := range services {
		if s.Conn == nil {
			continue
		}
		switch s.Name {
		case authServiceName:
			b.auth = identityv1.NewAuthServiceClient(s.Conn)
		case userServiceName:
			b.users = identityv1.NewUserServiceClient(s.Conn)
		case dispatchServiceName:
			b.dispatch = dispatchv1.NewDispatchServiceClient(s.Conn)
		case courierServiceName:
			b.couriers = courierv1.NewCourierServiceClient(s.Conn)
		}
	}
	return b, nil
}

// stop ends the open event streams; the http.Server calls it when shutdown starts, so that streams that
// would never end on their own do not hold the shutdown until its deadline.
func (b *browser) stop() {
	b.stopOnce.Do(func() { close(b.stopping) })
}

// wrap returns the handler that serves the browser routes and hands every other request to next, after
// turning a session cookie into the bearer token (checking CSRF for state-changing requests).
func (b *browser) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		switch {
		case path == sessionPath && b.auth != nil:
			b.setRoute(r, sessionPath)
			switch r.Method {
			case http.MethodGet:
				if b.users == nil {
					methodNotAllowed(w, r, b.sessionMethods())
				} else if b.cookieAuth(w, r) {
					b.whoami(w, r)
				}
			case http.MethodPost:
				b.login(w, r)
			case http.MethodDelete:
				b.logout(w, r)
			default:
				methodNotAllowed(w, r, b.sessionMethods())
			}
			return
		case path == refreshPath && b.auth != nil:
			b.setRoute(r, refreshPath)
			if r.Method != http.MethodPost {
				methodNotAllowed(w, r, "POST")
				return
			}
			b.refresh(w, r)
			return
		}
		if !b.cookieAuth(w, r) {
			return
		}
		if b.dispatch != nil {
			if path == eventsPath {
				b.setRoute(r, eventsPath)
				if r.Method != http.MethodGet {
					methodNotAllowed(w, r, "GET")
					return
				}
				b.serveEvents(w, r)
				return
			}
			if id, ok := taskEventsID(path); ok {
				b.setRoute(r, taskEventsRoute)
				if r.Method != http.MethodGet {
					methodNotAllowed(w, r, "GET")
					return
				}
				b.serveTaskEvents(w, r, id)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// sessionMethods lists the methods /v1/session serves.
func (b *browser) sessionMethods() string {
	if b.users != nil {
		return "DELETE, GET, POST"
	}
	return "DELETE, POST"
}

// setRoute records the route template for metrics and logs.
func (b *browser) setRoute(r *http.Request, route string) {
	if state, ok := r.Context().Value(requestStateKey{}).(*requestState); ok {
		state.route = route
	}
}

// methodNotAllowed answers a method the route does not serve as the REST routes do (edge.go): OPTIONS is
// 204 with the Allow header, anything else 405 with it and INVALID_ARGUMENT (the client chose the wrong
// method; the server lacks nothing).
func methodNotAllowed(w http.ResponseWriter, r *http.Request, allow string) {
	allow += ", " + http.MethodOptions
	w.Header().Set("Allow", allow)
	if r.Method == http.MethodOptions {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeError(w, http.StatusMethodNotAllowed, codes.InvalidArgument,
		fmt.Sprintf("method %s is not allowed on this route; allowed: %s", r.Method, allow), nil)
}

// taskEventsID matches /v1/tasks/{id}/events and returns the id segment.
func taskEventsID(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/v1/tasks/")
	if !ok {
		return "", false
	}
	id, ok := strings.CutSuffix(rest, "/events")
	if !ok || id == "" || strings.Contains(id, "/") {
		return "", false
	}
	return id, true
}

// userKey names the caller for the per-user stream limit: the subject of the bearer token, which the
// service has just accepted (so it is a token the identity service signed), or, for calls without one
// (a share link's), the client address as the services key it (grpcauth.ClientKey): an IPv4 address, or
// an IPv6 client's /64, whose addresses one subscriber may rotate through.
func userKey(r *http.Request) string {
	if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		if sub := tokenSubject(token); sub != "" {
			return "user:" + sub
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		addr = addr.Unmap().WithZone("")
		if addr.Is6() {
			p, _ := addr.Prefix(64) // cannot fail for an IPv6 address and 64
			return "addr:" + p.String()
		}
		return "addr:" + addr.String()
	}
	return "addr:" + host
}

// tokenSubject returns the sub claim of a JWT without verifying it: callers use it only after a service
// accepted the token.
func tokenSubject(token string) string {
	return readClaims(token).Sub
}

// tokenClaims are the claims of an access token the gateway reads (without verifying them).
type tokenClaims struct {
	Sub   string   `json:"sub"`
	Roles []string `json:"roles"`
}

// readClaims returns the claims of a JWT without verifying it (zero when it is not one): callers use
// them only after a service accepted the token.
func readClaims(token string) tokenClaims {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(parts[1]) > 8<<10 {
		return tokenClaims{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return tokenClaims{}
	}
	var claims tokenClaims
	if json.Unmarshal(payload, &claims) != nil || len(claims.Sub) > 128 {
		return tokenClaims{}
	}
	return claims
}

// isStaff reports whether r carries the access token of a dispatcher or an admin, read after a service
// accepted it: their streams may use the slots kept for staff (staffReserve).
func isStaff(r *http.Request) bool {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	roles := readClaims(token).Roles
	return slices.Contains(roles, "dispatcher") || slices.Contains(roles, "admin")
}

// staffReserve is how many of MaxEventStreams only dispatchers and admins may take: a quarter, at most
// 64 (the dispatch service keeps as many of its watches for staff), so that customers and share links
// from many addresses cannot shut the operations dashboards out.
func (c BrowserConfig) staffReserve() int {
	return min(64, c.MaxEventStreams/4)
}
