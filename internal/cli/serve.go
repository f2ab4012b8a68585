package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"lastmile/internal/gateway"
	"lastmile/internal/platform/admin"
	"lastmile/internal/platform/auth/grpcauth"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/grpcclient"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/telemetry"
	"lastmile/internal/platform/tlsutil"
	"lastmile/internal/route"
	"lastmile/internal/route/geodesic"
	routegrpc "lastmile/internal/route/grpcapi"
	"lastmile/internal/route/osrm"
)

// serveConfig is everything `lastmile serve` reads from flags and the environment.
type serveConfig struct {
	DataDir                       string
	GRPCAddr, HTTPAddr, AdminAddr string
	Targets                       map[string]bool
	IdentityAddr, CourierAddr     string
	RouteAddr, DispatchAddr       string
	DatabaseURL                   string
	Dialect                       database.Dialect // of DatabaseURL
	Insecure                      bool
	TLSHosts                      []string
	LogLevel                      slog.Level
	LogFormat                     string
	OTLPEndpoint                  string
	TraceSampleRatio              float64
	RouteProvider                 string
	OSRMURL                       string
	OSRMTimeout                   time.Duration
	RouteCacheSize                int
	ShutdownTimeout               time.Duration
	DrainDelay                    time.Duration
	RateLimitRPS                  float64
	RateLimitBurst                int
	MaxBodyBytes                  int64
	MaxRecvMsgBytes               int
	AutoMigrate                   bool
	AccessTokenTTL                time.Duration
	KeyRotation                   time.Duration
	AdminEmail                    string
}

const serveSummary = `Run lastmile services. By default every service runs in this one process behind one gRPC listener, with
the REST gateway and the admin endpoints; --target runs a subset, with peers at --<service>-addr.
Peer addresses accept host:port, dns:///name:port (round-robin over every A record) and a static list of
replicas h1:p1,h2:p2 (round-robin).`

func parseServe(args []string, env Env) (serveConfig, error) {
	var c serveConfig
	fs := newFlagSet("serve", serveSummary, env.Stderr)
	targets := listFlag{"all"}
	hosts := listFlag{}
	var level string
	fs.StringVar(&c.DataDir, "data-dir", "./lastmile-data", "state directory: SQLite files, development CA, keys, uploads")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", ":9090", "gRPC listen address for every hosted service")
	fs.StringVar(&c.HTTPAddr, "http-addr", ":8080", "REST gateway listen address")
	fs.StringVar(&c.AdminAddr, "admin-addr", ":9091", "admin listen address: /metrics, /healthz, /readyz, /debug/pprof/")
	fs.Var(&targets, "target", "services to run: all, or a comma list of identity,courier,route,dispatch,gateway")
	fs.StringVar(&c.IdentityAddr, "identity-addr", "", "identity service address when not hosted here")
	fs.StringVar(&c.CourierAddr, "courier-addr", "", "courier service address when not hosted here")
	fs.StringVar(&c.RouteAddr, "route-addr", "", "route service address when not hosted here")
	fs.StringVar(&c.DispatchAddr, "dispatch-addr", "", "dispatch service address when not hosted here")
	fs.StringVar(&c.DatabaseURL, "database-url", "", "postgres://... to use PostgreSQL; empty for SQLite files in --data-dir")
	fs.BoolVar(&c.Insecure, "insecure", false, "turn TLS off for internal gRPC (local experiments only)")
	fs.Var(&hosts, "tls-hosts", "extra DNS names or IPs for the development server certificate (comma list)")
	fs.StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", "", "OpenTelemetry OTLP/gRPC endpoint for traces (host:port); empty disables export")
	fs.Float64Var(&c.TraceSampleRatio, "trace-sample-ratio", 1, "fraction of new traces sampled, 0..1")
	fs.StringVar(&c.RouteProvider, "route-provider", "geodesic", "route provider: geodesic or osrm")
	fs.StringVar(&c.OSRMURL, "osrm-url", "", "OSRM base URL (with --route-provider=osrm), e.g. http://osrm:5000")
	fs.DurationVar(&c.OSRMTimeout, "osrm-timeout", 2*time.Second, "timeout of one OSRM request")
	fs.IntVar(&c.RouteCacheSize, "route-cache-size", 10000, "entries in the route estimate cache; 0 disables it")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "bound on graceful shutdown")
	fs.DurationVar(&c.DrainDelay, "drain-delay", 0, "time between reporting NOT_SERVING and stopping, for load balancers to notice")
	fs.Float64Var(&c.RateLimitRPS, "rate-limit-rps", 200, "per-caller request rate limit on gRPC (0 disables)")
	fs.IntVar(&c.RateLimitBurst, "rate-limit-burst", 400, "per-caller burst allowance")
	fs.Int64Var(&c.MaxBodyBytes, "max-body-bytes", 1<<20, "largest REST request body in bytes (413 above)")
	fs.IntVar(&c.MaxRecvMsgBytes, "max-recv-msg-bytes", 4<<20, "largest gRPC message a server accepts")
	fs.BoolVar(&c.AutoMigrate, "auto-migrate", true, "apply database migrations at startup (else run lastmile migrate first)")
	fs.DurationVar(&c.AccessTokenTTL, "access-token-ttl", 15*time.Minute, "lifetime of access tokens (JWT)")
	fs.DurationVar(&c.KeyRotation, "key-rotation", 24*time.Hour, "rotate the token signing key this often (0: only by hand); old keys stay published until their tokens expire")
	fs.StringVar(&c.AdminEmail, "admin-email", "", "email of the admin account created on first start (its password: LASTMILE_ADMIN_PASSWORD, else generated and printed once)")
	if err := fs.parse(args, env.Getenv); err != nil {
		return c, err
	}
	var err error
	if c.Targets, err = splitTargets(targets); err != nil {
		return c, err
	}
	if c.LogLevel, err = telemetry.ParseLevel(level); err != nil {
		return c, usageError{fmt.Errorf("--log-level: %w", err)}
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return c, usageError{fmt.Errorf("--log-format: want json or text, got %q", c.LogFormat)}
	}
	if c.TraceSampleRatio < 0 || c.TraceSampleRatio > 1 {
		return c, usageError{fmt.Errorf("--trace-sample-ratio: want 0..1, got %v", c.TraceSampleRatio)}
	}
	switch c.RouteProvider {
	case "geodesic":
	case "osrm":
		if c.OSRMURL == "" {
			return c, usageError{errors.New("--route-provider=osrm needs --osrm-url")}
		}
	default:
		return c, usageError{fmt.Errorf("--route-provider: want geodesic or osrm, got %q", c.RouteProvider)}
	}
	if err := positiveDuration("shutdown-timeout", c.ShutdownTimeout); err != nil {
		return c, err
	}
	if c.Dialect, err = databaseDialect(c.DatabaseURL); err != nil {
		return c, err
	}
	if err := positiveDuration("access-token-ttl", c.AccessTokenTTL); err != nil {
		return c, err
	}
	if c.KeyRotation < 0 {
		return c, usageError{errors.New("--key-rotation must not be negative")}
	}
	if c.MaxBodyBytes <= 0 || c.MaxRecvMsgBytes <= 0 {
		return c, usageError{errors.New("--max-body-bytes and --max-recv-msg-bytes must be positive")}
	}
	c.TLSHosts = hosts
	return c, nil
}

// hostsGRPC reports whether this process runs any gRPC service.
func (c serveConfig) hostsGRPC() bool {
	return c.Targets["identity"] || c.Targets["courier"] || c.Targets["route"] || c.Targets["dispatch"]
}

func runServe(ctx context.Context, args []string, env Env) error {
	cfg, err := parseServe(args, env)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, env)
}

// serve wires and runs the configured services until ctx is cancelled. The wiring is by hand, in order:
// telemetry, transport security, token verification, the gRPC server and the services it hosts, the
// gateway, the admin server; then everything runs until ctx ends and shuts down within the bounds.
func serve(ctx context.Context, cfg serveConfig, env Env) error {
	logger := telemetry.NewLogger(env.Stderr, telemetry.LogOptions{Level: cfg.LogLevel, Format: cfg.LogFormat, Service: "lastmile"})
	registry := telemetry.NewRegistry()
	telemetry.BuildInfo(registry, Version, commit())
	tp, shutdownTracing, err := telemetry.SetupTracing(ctx, telemetry.TracingConfig{
		ServiceName: "lastmile", Version: Version, OTLPEndpoint: cfg.OTLPEndpoint, SampleRatio: cfg.TraceSampleRatio,
	})
	if err != nil {
		return fmt.Errorf("set up tracing: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			logger.Warn("flush traces", "err", err)
		}
	}()

	tlsc, err := newTLS(cfg, logger)
	if err != nil {
		return err
	}
	p := &process{cfg: cfg, env: env, logger: logger, registry: registry, tp: tp, tls: tlsc}
	defer p.close()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	// The identity service's stores and keys come first: every gRPC server verifies tokens with its keys.
	var ident *identityParts
	if cfg.Targets["identity"] {
		if ident, err = p.openIdentity(runCtx); err != nil {
			return err
		}
	}
	verifier, err := p.tokenVerifier(ident)
	if err != nil {
		return err
	}

	var srv *grpcserver.Server
	var ends Endpoints
	if cfg.hostsGRPC() {
		srv, err = grpcserver.New(grpcserver.Config{
			Addr:            cfg.GRPCAddr,
			TLS:             tlsc.server,
			MaxRecvMsgSize:  cfg.MaxRecvMsgBytes,
			ShutdownTimeout: cfg.ShutdownTimeout,
			DrainDelay:      cfg.DrainDelay,
			RateLimit:       grpcserver.RateLimit{RPS: cfg.RateLimitRPS, Burst: cfg.RateLimitBurst},
			Policy:          policy(),
			Authenticator:   &grpcauth.ServiceAuthenticator{Verifier: verifier},
			Logger:          logger,
			Registerer:      registry,
			TracerProvider:  tp,
		})
		if err != nil {
			return err
		}
		p.cleanups = append(p.cleanups, func() { _ = srv.Close() })
		ends.GRPC = srv.Addr().String()
		p.self = dialable(srv.Addr())
	}

	if ident != nil {
		if err := p.startIdentity(runCtx, srv, ident); err != nil {
			return err
		}
	}
	if cfg.Targets["route"] {
		provider, err := newRouteProvider(cfg)
		if err != nil {
			return err
		}
		// Cached estimates are keyed by departure hour, so a short TTL only bounds staleness of OSRM answers.
		svc := route.NewService(provider, route.Options{CacheSize: cfg.RouteCacheSize, CacheTTL: 15 * time.Minute, Registerer: registry})
		routegrpc.Register(srv.GRPC(), routegrpc.NewServer(svc))
		logger.Info("route service registered", "provider", provider.Name())
	}
	if cfg.Targets["courier"] {
		if err := p.startCourier(runCtx, srv); err != nil {
			return err
		}
	}
	if cfg.Targets["dispatch"] {
		logger.Info("service not implemented yet; nothing registered", "target", "dispatch")
	}
	if srv != nil {
		srv.SetReadiness(p.ready)
	}

	var gw *gateway.Gateway
	if cfg.Targets["gateway"] {
		if gw, err = p.newGateway(runCtx); err != nil {
			return err
		}
		ends.HTTP = gw.Addr().String()
	}

	adm, err := admin.New(admin.Config{Addr: cfg.AdminAddr, Registry: registry, Logger: logger, Ready: p.ready})
	if err != nil {
		return err
	}
	ends.Admin = adm.Addr().String()

	var group errgroup.Group
	for _, run := range p.runners {
		group.Go(func() error { return run(runCtx) })
	}
	if srv != nil {
		group.Go(func() error { defer cancel(); return srv.Serve(runCtx) })
	}
	if gw != nil {
		group.Go(func() error { defer cancel(); return gw.Serve(runCtx) })
	}
	group.Go(func() error { defer cancel(); return adm.Serve(runCtx) })

	logger.Info("lastmile started", "version", Version, "grpc", ends.GRPC, "http", ends.HTTP, "admin", ends.Admin,
		"targets", strings.Join(sortedKeys(cfg.Targets), ","), "tls", !cfg.Insecure)
	if env.Ready != nil {
		env.Ready(ends)
	}
	err = group.Wait()
	for _, f := range p.afterStop {
		f()
	}
	logger.Info("lastmile stopped")
	return err
}

// process holds what the services of one lastmile process share while it is being wired.
type process struct {
	cfg      serveConfig
	env      Env
	logger   *slog.Logger
	registry *prometheus.Registry
	tp       trace.TracerProvider
	tls      tlsSetup
	// self is the dialable address of this process's own gRPC listener, "" when it has none.
	self string
	// runners run next to the servers until the process stops; afterStop runs once every server has
	// stopped (final flushes); cleanups run in reverse order at exit (closing databases).
	runners   []func(context.Context) error
	afterStop []func()
	cleanups  []func()
	// readies are readiness checks; each returns a caller-safe error.
	readies []func(context.Context) error
}

func (p *process) close() {
	for i := len(p.cleanups) - 1; i >= 0; i-- {
		p.cleanups[i]()
	}
}

// ready reports whether every dependency of this process is reachable.
func (p *process) ready(ctx context.Context) error {
	for _, r := range p.readies {
		if err := r(ctx); err != nil {
			return err
		}
	}
	return nil
}

// clientIdentity is the service identity this process presents to its peers: the first service it runs.
func (p *process) clientIdentity() string {
	for _, name := range []string{"identity", "courier", "route", "dispatch", "gateway"} {
		if p.cfg.Targets[name] {
			return name
		}
	}
	return "gateway"
}

// dial returns a client connection to a peer service: this process's own listener when the peer runs here
// (so the all-in-one process still goes through gRPC and every interceptor), else the configured address.
// It returns nil when the peer is neither local nor configured.
func (p *process) dial(peer, serviceName, as string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	target := peerTarget(p.cfg.Targets[peer], p.self, p.cfg.peerAddr(peer))
	if target == "" {
		return nil, nil
	}
	conn, err := grpcclient.New(grpcclient.Config{
		Target:         target,
		TLS:            p.tls.client(as),
		ServiceName:    serviceName,
		Logger:         p.logger,
		Registerer:     p.registry,
		TracerProvider: p.tp,
		DialOptions:    opts,
	})
	if err != nil {
		return nil, fmt.Errorf("%s client: %w", peer, err)
	}
	p.cleanups = append(p.cleanups, func() { conn.Close() })
	return conn, nil
}

// peerAddr returns the configured address of a peer service.
func (c serveConfig) peerAddr(peer string) string {
	switch peer {
	case "identity":
		return c.IdentityAddr
	case "courier":
		return c.CourierAddr
	case "route":
		return c.RouteAddr
	case "dispatch":
		return c.DispatchAddr
	}
	return ""
}

// newGateway builds the REST gateway over connections to every service it can reach.
func (p *process) newGateway(ctx context.Context) (*gateway.Gateway, error) {
	var conns gateway.Conns
	var err error
	if conns.Identity, err = p.dial("identity", "lastmile.identity.v1.AuthService", "gateway"); err != nil {
		return nil, err
	}
	if conns.Courier, err = p.dial("courier", "lastmile.courier.v1.CourierService", "gateway"); err != nil {
		return nil, err
	}
	if conns.Route, err = p.dial("route", "lastmile.route.v1.RouteService", "gateway"); err != nil {
		return nil, err
	}
	if conns.Identity == nil && conns.Courier == nil && conns.Route == nil {
		return nil, usageError{errors.New("gateway: no service to proxy: run it with the services, or set --identity-addr, --courier-addr or --route-addr")}
	}
	gw, err := gateway.New(ctx, gateway.Config{
		Addr: p.cfg.HTTPAddr, MaxBodyBytes: p.cfg.MaxBodyBytes, Logger: p.logger, Registerer: p.registry,
	}, conns)
	if err != nil {
		return nil, err
	}
	if err := gw.Listen(ctx); err != nil {
		return nil, err
	}
	return gw, nil
}

// tlsSetup holds the transport credentials of one process: nil configs mean --insecure.
type tlsSetup struct {
	server *tls.Config
	client func(service string) *tls.Config
}

func newTLS(cfg serveConfig, logger *slog.Logger) (tlsSetup, error) {
	if cfg.Insecure {
		logger.Warn("TLS IS OFF (--insecure): internal gRPC is plaintext and unauthenticated between services; never use this outside a local experiment")
		return tlsSetup{client: func(string) *tls.Config { return nil }}, nil
	}
	pki, err := tlsutil.EnsureDevPKI(filepath.Join(cfg.DataDir, "tls"), cfg.TLSHosts)
	if err != nil {
		return tlsSetup{}, fmt.Errorf("development PKI: %w", err)
	}
	certFile, keyFile := pki.ServerCert()
	server, err := tlsutil.ServerConfig(certFile, keyFile, pki.CAFile())
	if err != nil {
		return tlsSetup{}, err
	}
	clients := map[string]*tls.Config{}
	for _, svc := range tlsutil.Services {
		c, k := pki.ClientCert(svc)
		cc, err := tlsutil.ClientConfig(c, k, pki.CAFile())
		if err != nil {
			return tlsSetup{}, err
		}
		clients[svc] = cc
	}
	return tlsSetup{server: server, client: func(svc string) *tls.Config { return clients[svc] }}, nil
}

func newRouteProvider(cfg serveConfig) (route.Provider, error) {
	if cfg.RouteProvider == "osrm" {
		return osrm.New(cfg.OSRMURL, osrm.Options{Timeout: cfg.OSRMTimeout})
	}
	return geodesic.New(geodesic.Options{})
}

// peerTarget returns the address to reach a peer: this process's own listener when the peer runs here
// (so the all-in-one process still goes through gRPC and every interceptor), else the configured address.
func peerTarget(local bool, self, configured string) string {
	if local {
		return self
	}
	return configured
}

// dialable turns a listener address into one a client can dial: an unspecified host becomes loopback.
func dialable(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for _, k := range []string{"identity", "courier", "route", "dispatch", "gateway"} {
		if m[k] {
			out = append(out, k)
		}
	}
	return out
}
