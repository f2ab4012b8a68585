// Package gateway is lastmile's REST/JSON edge, a backend for the browser dashboard and partner systems.
//
// The gateway runs grpc-gateway in proxy mode: every REST request becomes a real gRPC call over a
// *grpc.ClientConn to the service listener, so the services' interceptors (authentication, authorization,
// validation, rate limits, metrics) apply exactly as they do for native gRPC clients. The gateway itself adds
// only what belongs at an HTTP edge: body size limits, request ids, security headers, HTTP metrics, one JSON
// error shape ({"error":{"code","status","message","details"}}) and the OpenAPI document at /openapi.json.
//
// The gateway sends no CORS headers: the dashboard is served from the same origin, and partner systems call
// it server to server. Cross-origin browser calls are therefore refused by the browser, which is the intent.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	courierv1 "lastmile/gen/go/lastmile/courier/v1"
	identityv1 "lastmile/gen/go/lastmile/identity/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/gen/openapi"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultAddr              = ":8080"
	DefaultMaxBodyBytes      = 1 << 20
	DefaultRequestTimeout    = 30 * time.Second
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 60 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultShutdownTimeout   = 10 * time.Second
)

// maxHeaderBytes bounds request headers; a bearer token and a few standard headers fit comfortably.
const maxHeaderBytes = 64 << 10

// Config configures a Gateway. Zero fields take the Default* values above.
type Config struct {
	// Addr is the TCP address to listen on, such as ":8080" or "127.0.0.1:0".
	Addr string
	// MaxBodyBytes bounds every request body; larger bodies are answered with 413.
	MaxBodyBytes int64
	// RequestTimeout bounds each proxied gRPC call, so that no call runs without a deadline. A client may ask
	// for less with the Grpc-Timeout header, never for more.
	RequestTimeout time.Duration
	// Logger receives server errors and a debug line per request. Nil discards.
	Logger *slog.Logger
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout configure the http.Server.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// ShutdownTimeout bounds the graceful shutdown in Serve; connections still open after it are closed.
	ShutdownTimeout time.Duration
	// Registerer, when set, receives the HTTP RED metrics lastmile_http_requests_total{route,method,code}
	// and lastmile_http_request_duration_seconds{route,method}. Routes are the matched path templates
	// (such as "/v1/users/{id=*}"), never raw paths, so label cardinality stays bounded.
	Registerer prometheus.Registerer
}

// Conns holds the client connections to the services the gateway exposes. A nil connection leaves that
// service's routes unregistered (they answer 404), which lets a gateway front a subset of the services.
type Conns struct {
	// Identity reaches lastmile.identity.v1.UserService and AuthService (which also serves
	// /.well-known/jwks.json).
	Identity *grpc.ClientConn
	// Courier reaches lastmile.courier.v1.CourierService.
	Courier *grpc.ClientConn
	// Route reaches lastmile.route.v1.RouteService.
	Route *grpc.ClientConn
}

// service is one gRPC service exposed over REST through its generated grpc-gateway registration function.
type service struct {
	name     string
	conn     *grpc.ClientConn
	register func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error
}

// services lists every service the gateway proxies. Adding a service is one line here and one field in Conns.
func services(c Conns) []service {
	return []service{
		{name: "lastmile.identity.v1.AuthService", conn: c.Identity, register: identityv1.RegisterAuthServiceHandler},
		{name: "lastmile.identity.v1.UserService", conn: c.Identity, register: identityv1.RegisterUserServiceHandler},
		{name: "lastmile.courier.v1.CourierService", conn: c.Courier, register: courierv1.RegisterCourierServiceHandler},
		{name: "lastmile.route.v1.RouteService", conn: c.Route, register: routev1.RegisterRouteServiceHandler},
	}
}

// Gateway serves the REST API. Create it with New, then call Listen (optional) and Serve.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	mux     *runtime.ServeMux
	metrics *metrics
	handler http.Handler
	srv     *http.Server

	mu sync.Mutex
	ln net.Listener
}

// New builds a Gateway that proxies REST calls to the services reachable through conns. ctx is used only
// while registering the routes. New does not listen; see Listen and Serve.
func New(ctx context.Context, cfg Config, conns Conns) (*Gateway, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger}
	if cfg.Registerer != nil {
		if g.metrics, err = newMetrics(cfg.Registerer); err != nil {
			return nil, err
		}
	}

	g.mux = runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{
			MarshalOptions: protojson.MarshalOptions{UseProtoNames: false, EmitUnpopulated: false},
			// Unknown fields are an error, not silently dropped: a client that sends {"role": "ADMIN"} to an
			// endpoint without such a field learns it was ignored instead of believing it took effect.
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}}),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		runtime.WithOutgoingTrailerMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithErrorHandler(g.handleError),
		runtime.WithRoutingErrorHandler(g.handleRoutingError),
		runtime.WithMiddlewares(g.routeMiddleware),
		// A POST with a form body must not be replayed as a GET, nor X-HTTP-Method-Override turn it into a
		// DELETE: every route answers only the method its contract declares.
		runtime.WithDisablePathLengthFallback(),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptReserved),
	)

	for _, s := range services(conns) {
		if s.conn == nil {
			g.log.Info("gateway: service not configured, its routes are not served", "service", s.name)
			continue
		}
		if err := s.register(ctx, g.mux, s.conn); err != nil {
			return nil, fmt.Errorf("gateway: register %s: %w", s.name, err)
		}
	}
	if err := g.mux.HandlePath(http.MethodGet, "/openapi.json", serveOpenAPI); err != nil {
		return nil, fmt.Errorf("gateway: register /openapi.json: %w", err)
	}

	g.handler = http.HandlerFunc(g.serveHTTP)
	g.srv = &http.Server{
		Handler:           g.handler,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	return g, nil
}

func withDefaults(cfg Config) (Config, error) {
	if cfg.MaxBodyBytes < 0 {
		return cfg, fmt.Errorf("gateway: MaxBodyBytes %d is negative", cfg.MaxBodyBytes)
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&cfg.MaxBodyBytes, DefaultMaxBodyBytes)
	setDefault(&cfg.RequestTimeout, DefaultRequestTimeout)
	setDefault(&cfg.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	setDefault(&cfg.ReadTimeout, DefaultReadTimeout)
	setDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	setDefault(&cfg.ShutdownTimeout, DefaultShutdownTimeout)
	for name, d := range map[string]time.Duration{
		"RequestTimeout": cfg.RequestTimeout, "ReadHeaderTimeout": cfg.ReadHeaderTimeout,
		"ReadTimeout": cfg.ReadTimeout, "WriteTimeout": cfg.WriteTimeout,
		"IdleTimeout": cfg.IdleTimeout, "ShutdownTimeout": cfg.ShutdownTimeout,
	} {
		if d < 0 {
			return cfg, fmt.Errorf("gateway: %s %v is negative", name, d)
		}
	}
	return cfg, nil
}

func setDefault[T int64 | time.Duration](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// Handler returns the gateway's HTTP handler, for tests (httptest) and for mounting behind another server.
func (g *Gateway) Handler() http.Handler {
	return g.handler
}

// Listen binds the configured address. It is separate from Serve so that a caller learns of a taken port
// before starting anything else, and so that tests can listen on ":0" and read Addr.
func (g *Gateway) Listen(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		return errors.New("gateway: already listening")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", g.cfg.Addr)
	if err != nil {
		return fmt.Errorf("gateway: listen %s: %w", g.cfg.Addr, err)
	}
	g.ln = ln
	return nil
}

// Addr returns the address the gateway listens on, or nil before Listen.
func (g *Gateway) Addr() net.Addr {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln == nil {
		return nil
	}
	return g.ln.Addr()
}

// Serve serves HTTP until ctx is done, then shuts down gracefully: it stops accepting connections and waits
// up to ShutdownTimeout for requests in flight before closing what remains. It listens first if Listen was
// not called. Serve returns nil after a shutdown caused by ctx, and an error if serving failed.
func (g *Gateway) Serve(ctx context.Context) error {
	if g.Addr() == nil {
		if err := g.Listen(ctx); err != nil {
			return err
		}
	}
	g.mu.Lock()
	ln := g.ln
	g.mu.Unlock()

	g.log.Info("gateway: serving", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- g.srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("gateway: serve: %w", err)
	case <-ctx.Done():
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.ShutdownTimeout)
	defer cancel()
	err := g.srv.Shutdown(sctx)
	if err != nil {
		// Requests still running past the deadline are cut off rather than holding the process.
		_ = g.srv.Close()
	}
	<-errc // http.ErrServerClosed, once Serve has returned.
	if err != nil {
		return fmt.Errorf("gateway: shutdown: %w", err)
	}
	g.log.Info("gateway: stopped")
	return nil
}

func serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ map[string]string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openapi.Document)
}
