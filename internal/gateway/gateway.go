// Package gateway is lastmile's REST/JSON edge, a backend for the browser dashboard and partner systems.
//
// The gateway runs grpc-gateway in proxy mode: every REST request becomes a gRPC call, over a
// *grpc.ClientConn to the service listener or, when the services run in the same process, over the gRPC
// server's in-process connection (grpcserver.Server.InProcess, as the gateway's identity), so the
// services' interceptors (authentication, authorization, validation, rate limits, metrics) apply exactly
// as they do for native gRPC clients. The gateway itself adds
// only what belongs at an HTTP edge: body size limits, request ids, security headers, HTTP metrics, one JSON
// error shape ({"error":{"code","status","message","details"}}) and the OpenAPI document at /openapi.json.
// For browsers it also serves cookie sessions with CSRF protection and Server-Sent Events bridging the
// services' watch streams (browser.go, session.go, sse.go; docs/browser-events.md).
//
// By default the gateway sends no CORS headers: the dashboard is served from the same origin, and partner
// systems call it server to server, so cross-origin browser calls are refused by the browser. Config.CORSOrigins
// (--cors-origins) names the web origins that may call it from a browser.
//
// The REST edge behaves as a native HTTP API (edge.go, strict.go, created.go, gzip.go, accesslog.go): creates
// answer 201 Created with a Location, OPTIONS and HEAD work, bodies must be one JSON value sent as JSON,
// unknown query parameters are refused like unknown body fields, every request gets an access log line,
// large responses are gzipped, and /docs renders /openapi.json as a reference page.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"lastmile/internal/web"
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
	// Listener, when set, is what Listen takes instead of listening on Addr: a caller that binds every
	// port before its slower startup work learns of a taken one first.
	Listener net.Listener
	// MaxBodyBytes bounds every request body; larger bodies are answered with 413.
	MaxBodyBytes int64
	// RequestTimeout bounds each proxied gRPC call, so that no call runs without a deadline. A client may ask
	// for less with the Grpc-Timeout header, never for more.
	RequestTimeout time.Duration
	// Logger receives server errors and the access log, an info line per request ("http request"). Nil
	// discards.
	Logger *slog.Logger
	// ReadHeaderTimeout, ReadTimeout, WriteTimeout and IdleTimeout configure the http.Server.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// ShutdownTimeout bounds the graceful shutdown when the Serve context ends; connections still open
	// after it are closed. Shutdown takes its bound from its context instead.
	ShutdownTimeout time.Duration
	// TrustedProxies are the networks of the proxies in front of the gateway (load balancers) whose
	// X-Forwarded-For entries name the client. Empty, the default, trusts none: the client is the TCP
	// peer, whatever the header says. The gateway forwards one client address to the services, which key
	// their per-client limits (login failures, sign-ups, anonymous rate) on it.
	TrustedProxies []netip.Prefix
	// CORSOrigins are the web origins (scheme://host[:port]) whose browser scripts may call the API across
	// origins. Empty, the default, allows none: the dashboard is served from the gateway's own origin.
	CORSOrigins []string
	// Registerer, when set, receives the HTTP RED metrics lastmile_http_requests_total{route,method,code}
	// and lastmile_http_request_duration_seconds{route,method}. Routes are the matched path templates
	// (such as "/v1/users/{id=*}"), never raw paths, so label cardinality stays bounded.
	Registerer prometheus.Registerer
	// Browser configures the browser edge: cookie sessions and Server-Sent Events (see BrowserConfig).
	Browser BrowserConfig
	// Web configures the browser pages the gateway serves at / and /track/{id} (package web).
	Web web.Config
}

// Service is one gRPC service exposed over REST.
type Service struct {
	// Name is the full gRPC service name, such as "lastmile.route.v1.RouteService", for logs and errors.
	Name string
	// Conn reaches the service: a *grpc.ClientConn to its listener, or the in-process connection of the
	// gRPC server that hosts it in the same process (grpcserver.Server.InProcess), which runs the same
	// interceptor chain without a client, HTTP/2 or TLS. A nil Conn leaves the service's routes
	// unregistered (they answer 404), which lets a gateway front a subset of the services.
	Conn grpc.ClientConnInterface
	// Register registers the service's routes over a connection: its generated
	// Register<Service>HandlerClient, adapted by Routes.
	Register func(context.Context, *runtime.ServeMux, grpc.ClientConnInterface) error
}

// Gateway serves the REST API. Create it with New, then call Listen (optional) and Serve.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	mux     *runtime.ServeMux
	metrics *metrics
	handler http.Handler
	routes  http.Handler // the browser routes in front of mux
	browser *browser
	srv     *http.Server
	drain   *drain

	// The REST edge's own state: allowed origins (edge.go) and the proto-bound routes (strict.go).
	cors       cors
	restRoutes map[routeKey]restRoute

	mu sync.Mutex
	ln net.Listener

	stopOnce sync.Once
	stopped  chan struct{} // closed when Shutdown has finished
	stopErr  error
}

// undelimited is the gateway's marshaler without a delimiter between the messages of a streamed response.
// grpc-gateway writes the marshaler's delimiter after every message of a server stream ("\n" for JSON,
// and "\n" too when the marshaler declares none). The gateway's only streaming routes are downloads of
// google.api.HttpBody chunks (DispatchService.GetProofContent), whose bytes must arrive unchanged: with
// a delimiter, a 300 KiB photo served in two chunks would gain two newlines and no longer be the photo.
type undelimited struct{ runtime.Marshaler }

// Delimiter implements runtime.Delimited: nothing between streamed messages.
func (undelimited) Delimiter() []byte { return nil }

// New builds a Gateway that proxies REST calls to services (the caller's registry of services decides
// which; the gateway names none itself). ctx is used only while registering the routes. New does not
// listen; see Listen and Serve.
func New(ctx context.Context, cfg Config, services []Service) (*Gateway, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger, stopped: make(chan struct{})}
	if g.cors, err = newCORS(cfg.CORSOrigins); err != nil {
		return nil, err
	}
	if g.restRoutes, err = routeTable(services); err != nil {
		return nil, err
	}
	if cfg.Registerer != nil {
		if g.metrics, err = newMetrics(cfg.Registerer); err != nil {
			return nil, err
		}
	}

	g.mux = runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, undelimited{&runtime.HTTPBodyMarshaler{Marshaler: &runtime.JSONPb{
			MarshalOptions: protojson.MarshalOptions{UseProtoNames: false, EmitUnpopulated: false},
			// Unknown fields are an error, not silently dropped: a client that sends {"role": "ADMIN"} to an
			// endpoint without such a field learns it was ignored instead of believing it took effect.
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
		}}}),
		runtime.WithForwardResponseOption(createdResponse),
		runtime.WithForwardResponseOption(privateDownload),
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		runtime.WithOutgoingTrailerMatcher(func(string) (string, bool) { return "", false }),
		runtime.WithErrorHandler(g.handleError),
		// Query values it cannot parse are answered in words, not Go's (query.go). grpc-gateway keeps the
		// parser in a package variable: every gateway of the process shares this one.
		runtime.SetQueryParameterParser(&queryParser{}),
		runtime.WithRoutingErrorHandler(g.handleRoutingError),
		runtime.WithStreamErrorHandler(g.handleStreamError),
		runtime.WithMiddlewares(g.routeMiddleware, maskQueryMiddleware, g.strictMiddleware),
		// A POST with a form body must not be replayed as a GET, nor X-HTTP-Method-Override turn it into a
		// DELETE: every route answers only the method its contract declares.
		runtime.WithDisablePathLengthFallback(),
		runtime.WithDisableHTTPMethodOverride(),
		runtime.WithUnescapingMode(runtime.UnescapingModeAllExceptReserved),
	)

	for _, s := range services {
		if s.Conn == nil {
			g.log.Info("gateway: service not configured, its routes are not served", "grpc_service", s.Name)
			continue
		}
		if err := s.Register(ctx, g.mux, maskConn{s.Conn}); err != nil {
			return nil, fmt.Errorf("gateway: register %s: %w", s.Name, err)
		}
	}
	if err := g.mux.HandlePath(http.MethodGet, "/openapi.json", serveOpenAPI); err != nil {
		return nil, fmt.Errorf("gateway: register /openapi.json: %w", err)
	}
	if err := registerDocs(g.mux); err != nil {
		return nil, err
	}
	if err := web.Mount(g.mux, cfg.Web); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}

	if g.browser, err = newBrowser(g, cfg.Browser, services); err != nil {
		return nil, err
	}
	g.routes = g.browser.wrap(http.HandlerFunc(g.serveREST))

	g.handler = http.HandlerFunc(g.serveHTTP)
	g.drain = newDrain()
	g.srv = &http.Server{
		Handler:           g.handler,
		ConnState:         g.drain.connState,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	g.srv.RegisterOnShutdown(g.drain.stop)
	g.srv.RegisterOnShutdown(g.browser.stop)
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
	if g.cfg.Listener != nil {
		g.ln = g.cfg.Listener
		return nil
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", g.cfg.Addr)
	if err != nil {
		return fmt.Errorf("gateway: listen on %s: %w", g.cfg.Addr, err)
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

// Serve serves HTTP until ctx is done or Shutdown is called. When ctx ends first it shuts down on its own,
// within Config.ShutdownTimeout (see Shutdown). It listens first if Listen was not called. Serve returns
// nil after a shutdown, and an error if serving failed. Serve may be called once.
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
		if errors.Is(err, http.ErrServerClosed) {
			return g.shutdownResult()
		}
		return fmt.Errorf("gateway: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.ShutdownTimeout)
	defer cancel()
	err := g.Shutdown(sctx)
	<-errc // http.ErrServerClosed, once Serve has returned.
	return err
}

// Shutdown stops the gateway gracefully: it stops accepting connections at once, lets the requests in
// flight finish (a slow client may still be sending its body) until ctx ends, then closes what remains.
// Requests in flight keep their own contexts: the services behind the gateway must still be serving, so a
// process stops its gateway before its gRPC server. Connections that have not started a request are
// closed at once (see drain). Shutdown returns an error, and logs the requests by method and path, when it
// had to cut requests off. It may be called more than once; later calls wait for the first and return its result.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.stopOnce.Do(func() {
		if err := g.srv.Shutdown(ctx); err != nil {
			// Requests still running past the deadline are cut off rather than holding the process.
			g.log.Warn("gateway: shutdown timed out; cutting off open requests", "error", err,
				"open_requests", g.drain.openRequests())
			_ = g.srv.Close()
			g.stopErr = fmt.Errorf("gateway: shutdown: %w", err)
		} else {
			g.log.Info("gateway: stopped")
		}
		close(g.stopped)
	})
	<-g.stopped
	return g.stopErr
}

// shutdownResult waits for Shutdown, which made Serve return, and returns its result.
func (g *Gateway) shutdownResult() error {
	<-g.stopped
	return g.stopErr
}

// Close closes the listener and every connection at once, for startup paths that fail before Serve.
func (g *Gateway) Close() error {
	g.stopOnce.Do(func() { close(g.stopped) })
	g.mu.Lock()
	ln := g.ln
	g.mu.Unlock()
	err := g.srv.Close()
	if ln != nil {
		if lnErr := ln.Close(); lnErr != nil && !errors.Is(lnErr, net.ErrClosed) {
			err = errors.Join(err, lnErr)
		}
	}
	if err != nil {
		return fmt.Errorf("gateway: close: %w", err)
	}
	return nil
}
