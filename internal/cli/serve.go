package cli

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"lastmile/internal/gateway"
	"lastmile/internal/identity"
	"lastmile/internal/platform/admin"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/dirlock"
	"lastmile/internal/platform/grpcclient"
	"lastmile/internal/platform/grpcserver"
	"lastmile/internal/platform/telemetry"
	"lastmile/internal/platform/tlsutil"
	"lastmile/internal/web"
)

// serveConfig is what `lastmile serve` reads from flags and the environment for the whole process; each
// module keeps its own service's configuration (see module.flags).
type serveConfig struct {
	DataDir                       string
	GRPCAddr, HTTPAddr, AdminAddr string
	// AdminPprof serves /debug/pprof/ on the admin address.
	AdminPprof bool
	Targets    map[string]bool
	// Peers holds the --<module>-addr flags by module name: where a module that does not run here is.
	Peers           map[string]string
	Database        databaseConfig
	TLS             tlsConfig
	Telemetry       telemetryConfig
	GRPC            grpcConfig
	Gateway         gatewayConfig
	ShutdownTimeout time.Duration
	DrainDelay      time.Duration
	// AccessTokenTTL is the lifetime of access tokens: identity issues them for this long, and every
	// verifier refuses a token that claims to live longer (plus leeway).
	AccessTokenTTL time.Duration
	// Modules are the registry's modules, their flags parsed.
	Modules []*module
}

// databaseConfig selects the stores of every module.
type databaseConfig struct {
	URL         string
	Dialect     database.Dialect // of URL
	AutoMigrate bool
	// EventRetention and EventMaxCount bound each service's event log: older events, and all but the
	// newest EventMaxCount, are deleted every minute.
	EventRetention time.Duration
	EventMaxCount  int
}

// tlsConfig configures transport security.
type tlsConfig struct {
	Insecure bool
	Hosts    []string
}

// telemetryConfig configures logs and traces.
type telemetryConfig struct {
	LogLevel         slog.Level
	LogFormat        string
	OTLPEndpoint     string
	TraceSampleRatio float64
}

// grpcConfig configures the gRPC server that hosts the modules.
type grpcConfig struct {
	RateLimitRPS      float64
	RateLimitBurst    int
	MaxRecvMsgBytes   int
	ReadinessInterval time.Duration
}

// gatewayConfig configures the REST gateway.
type gatewayConfig struct {
	CORSOrigins    []string
	MaxBodyBytes   int64
	TrustedProxies []netip.Prefix
	// Browser configures the browser sessions and event streams (--sse-*, --cookie-secure).
	Browser gateway.BrowserConfig
	// Web configures the dashboard and tracking pages (demo sets the simulated city's outline).
	Web web.Config
}

const serveSummary = `Run lastmile services. By default every service runs in this one process behind one gRPC listener, with
the REST gateway and the admin endpoints; --target runs a subset, with peers at --<service>-addr.
Peer addresses accept host:port, dns:///name:port (round-robin over every A record) and a static list of
replicas h1:p1,h2:p2 (round-robin).
On SIGTERM the process stops in order: /readyz and the overall gRPC health report not ready, --drain-delay
passes, the REST gateway stops accepting and finishes its requests, then the gRPC server stops, all within
--shutdown-timeout after the drain delay.`

func parseServe(args []string, env Env) (serveConfig, error) {
	return parseServeFlags("serve", serveSummary, args, env, nil)
}

// parseServeFlags parses serve's flags for command cmd; extra, when set, adds the command's own flags (and
// may change serve's defaults through c) before parsing.
func parseServeFlags(cmd, summary string, args []string, env Env, extra func(fs *flagSet, c *serveConfig)) (serveConfig, error) {
	c := serveConfig{Modules: modules(), Peers: map[string]string{}}
	fs := newFlagSet(cmd, summary, env.Stdout)
	targets := listFlag{"all"}
	hosts := listFlag{}
	var level string
	fs.StringVar(&c.DataDir, "data-dir", "./lastmile-data", "state directory: SQLite files, development CA and keys (tls/); locked (LOCK) while serve runs, so each process needs its own")
	fs.StringVar(&c.GRPCAddr, "grpc-addr", ":9090", "gRPC listen address for every hosted service")
	fs.StringVar(&c.HTTPAddr, "http-addr", ":8080", "REST gateway listen address")
	fs.StringVar(&c.AdminAddr, "admin-addr", ":9091", "admin listen address: /metrics, /healthz, /readyz, and /debug/pprof/ with --admin-pprof; plain HTTP without authentication, on every interface by default so that scrapers and probes reach it: keep it off public networks (bind 127.0.0.1 or a private address, or firewall it)")
	fs.BoolVar(&c.AdminPprof, "admin-pprof", false, "serve pprof (/debug/pprof/: CPU and heap profiles, goroutine stacks) on the admin address; it reveals memory contents and costs CPU, so it is off unless asked for")
	fs.Var(&targets, "target", "services to run: all, or a comma list of "+strings.Join(targetNames(), ","))
	peers := map[string]*string{}
	for _, m := range c.Modules {
		peers[m.name] = fs.String(m.name+"-addr", "", m.name+" service address when not hosted here")
	}
	fs.StringVar(&c.Database.URL, "database-url", "", "postgres://... to use PostgreSQL; empty for SQLite files in --data-dir")
	fs.BoolVar(&c.Database.AutoMigrate, "auto-migrate", true, "apply database migrations at startup (else run lastmile migrate first)")
	fs.DurationVar(&c.Database.EventRetention, "event-retention", 24*time.Hour, "how long each service's event log keeps events (watchers resume from a cursor within it)")
	fs.IntVar(&c.Database.EventMaxCount, "event-max-count", 1_000_000, "the most events each service's event log keeps")
	fs.BoolVar(&c.TLS.Insecure, "insecure", false, "turn TLS off for internal gRPC (local experiments only)")
	fs.Var(&hosts, "tls-hosts", "extra DNS names or IPs for the development server certificate (comma list)")
	fs.StringVar(&level, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.Telemetry.LogFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&c.Telemetry.OTLPEndpoint, "otlp-endpoint", "", "OpenTelemetry OTLP/gRPC endpoint for traces (host:port); empty disables export")
	fs.Float64Var(&c.Telemetry.TraceSampleRatio, "trace-sample-ratio", telemetry.DefaultSampleRatio, "fraction of new traces sampled, 0..1 (calls inside a trace follow its caller's decision)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "bound on graceful shutdown: the gateway's requests, then the gRPC calls, after the drain delay")
	fs.DurationVar(&c.DrainDelay, "drain-delay", 0, "time between reporting not ready (/readyz, overall gRPC health) and stopping, for load balancers to notice")
	fs.Float64Var(&c.GRPC.RateLimitRPS, "rate-limit-rps", 200, "per-caller request rate limit on gRPC, users by id and anonymous callers by address; lastmile's own services are not limited (0 disables)")
	fs.IntVar(&c.GRPC.RateLimitBurst, "rate-limit-burst", 400, "per-caller burst allowance")
	fs.IntVar(&c.GRPC.MaxRecvMsgBytes, "max-recv-msg-bytes", 4<<20, "largest gRPC message a server accepts (at least 1049600: a 1 MiB proof chunk must fit)")
	fs.DurationVar(&c.GRPC.ReadinessInterval, "readiness-interval", grpcserver.DefaultReadinessInterval, "how often readiness (databases reachable) is checked; per-service gRPC health and /readyz follow the same check")
	fs.DurationVar(&c.AccessTokenTTL, "access-token-ttl", 15*time.Minute, "lifetime of access tokens (JWT); every verifier refuses tokens that claim a longer one")
	fs.Int64Var(&c.Gateway.MaxBodyBytes, "max-body-bytes", 1<<20, "largest REST request body in bytes (413 above)")
	proxies := listFlag{}
	fs.IntVar(&c.Gateway.Browser.MaxEventStreams, "sse-max-streams", gateway.DefaultMaxEventStreams, "most Server-Sent Events streams open at once (429 above); a quarter, at most 64, only dispatchers and admins may take")
	fs.IntVar(&c.Gateway.Browser.MaxEventStreamsPerUser, "sse-max-streams-per-user", gateway.DefaultMaxEventStreamsPerUser, "most Server-Sent Events streams one user (without one, one client address: an IPv6 client's /64) has open at once (429 above)")
	fs.DurationVar(&c.Gateway.Browser.Heartbeat, "sse-heartbeat", gateway.DefaultEventHeartbeat, "interval of the heartbeat comments on idle event streams")
	fs.DurationVar(&c.Gateway.Browser.EventWriteTimeout, "sse-write-timeout", gateway.DefaultEventWriteTimeout, "longest a write to an event stream may take before the stream is closed (stalled browsers)")
	fs.DurationVar(&c.Gateway.Browser.MaxEventStreamAge, "sse-max-age", gateway.DefaultMaxEventStreamAge, "longest an event stream lasts (each a random 0-10% less) before the server ends it and the browser reconnects with Last-Event-ID, losing nothing: frees the slots of browsers that stopped reading on a quiet account")
	fs.BoolVar(&c.Gateway.Browser.SecureCookies, "cookie-secure", false, "mark the browser session cookies Secure even without TLS here (a TLS-terminating proxy is in front)")
	fs.Var(&proxies, "trusted-proxies", "CIDRs or addresses of the proxies in front of the REST gateway whose X-Forwarded-For names the client (comma list; default none: the client is the TCP peer)")
	origins := listFlag{}
	fs.Var(&origins, "cors-origins", "web origins (scheme://host[:port], comma list) whose browser scripts may call the REST API across origins; default none (the dashboard is same-origin)")
	for _, m := range c.Modules {
		if m.flags != nil {
			m.flags(fs)
		}
	}
	if extra != nil {
		extra(fs, &c)
	}
	if err := fs.parse(args, env.Getenv); err != nil {
		return c, err
	}
	var err error
	if c.Targets, err = splitTargets(targets); err != nil {
		return c, err
	}
	for name, addr := range peers {
		c.Peers[name] = *addr
	}
	// Addresses are checked here, so that a malformed one is a usage error naming its flag before
	// anything starts (the data directory, its certificates), not a failure at start.
	for _, name := range slices.Sorted(maps.Keys(peers)) {
		if addr := c.Peers[name]; addr != "" && !c.Targets[name] {
			if _, _, err := grpcclient.Target(addr); err != nil {
				return c, usageError{fmt.Errorf("--%s-addr: %w", name, err)}
			}
		}
	}
	hostsGRPC := slices.ContainsFunc(c.Modules, func(m *module) bool { return c.Targets[m.name] })
	for _, l := range []struct {
		flag, addr string
		used       bool
	}{{"grpc-addr", c.GRPCAddr, hostsGRPC}, {"http-addr", c.HTTPAddr, c.Targets[gatewayTarget]}, {"admin-addr", c.AdminAddr, true}} {
		if l.used {
			if err := checkListenAddr(l.flag, l.addr); err != nil {
				return c, err
			}
		}
	}
	if c.Telemetry.LogLevel, err = telemetry.ParseLevel(level); err != nil {
		return c, usageError{fmt.Errorf("--log-level: %w", err)}
	}
	if c.Telemetry.LogFormat != "json" && c.Telemetry.LogFormat != "text" {
		return c, usageError{fmt.Errorf("--log-format: want json or text, got %q", c.Telemetry.LogFormat)}
	}
	if r := c.Telemetry.TraceSampleRatio; r < 0 || r > 1 {
		return c, usageError{fmt.Errorf("--trace-sample-ratio: want 0..1, got %v", r)}
	}
	if err := positiveDuration("shutdown-timeout", c.ShutdownTimeout); err != nil {
		return c, err
	}
	if err := positiveDuration("event-retention", c.Database.EventRetention); err != nil {
		return c, err
	}
	if c.Database.EventMaxCount <= 0 {
		return c, usageError{fmt.Errorf("--event-max-count must be positive, got %d", c.Database.EventMaxCount)}
	}
	if err := positiveDuration("access-token-ttl", c.AccessTokenTTL); err != nil {
		return c, err
	}
	if err := positiveDuration("readiness-interval", c.GRPC.ReadinessInterval); err != nil {
		return c, err
	}
	if c.DrainDelay < 0 {
		return c, usageError{errors.New("--drain-delay must not be negative")}
	}
	if c.Database.Dialect, err = databaseDialect(c.Database.URL); err != nil {
		return c, err
	}
	if b := c.Gateway.Browser; b.MaxEventStreams <= 0 || b.MaxEventStreamsPerUser <= 0 || b.Heartbeat <= 0 || b.EventWriteTimeout <= 0 || b.MaxEventStreamAge <= 0 {
		return c, usageError{errors.New("--sse-max-streams, --sse-max-streams-per-user, --sse-heartbeat, --sse-write-timeout and --sse-max-age must be positive")}
	}
	if c.Gateway.MaxBodyBytes <= 0 || c.GRPC.MaxRecvMsgBytes <= 0 {
		return c, usageError{errors.New("--max-body-bytes and --max-recv-msg-bytes must be positive")}
	}
	if c.GRPC.MaxRecvMsgBytes < minRecvMsgBytes {
		return c, usageError{fmt.Errorf("--max-recv-msg-bytes must be at least %d (a proof chunk of 1 MiB with its envelope, which the contract allows), got %d", minRecvMsgBytes, c.GRPC.MaxRecvMsgBytes)}
	}
	if r := c.GRPC.RateLimitRPS; math.IsNaN(r) || math.IsInf(r, 0) || r < 0 {
		return c, usageError{fmt.Errorf("--rate-limit-rps must be a number, 0 (no limit) or more, got %v", r)}
	}
	if c.GRPC.RateLimitBurst < 0 {
		return c, usageError{fmt.Errorf("--rate-limit-burst must not be negative, got %d", c.GRPC.RateLimitBurst)}
	}
	for _, m := range c.Modules {
		if m.validate != nil {
			if err := m.validate(); err != nil {
				return c, err
			}
		}
	}
	if c.Gateway.TrustedProxies, err = parsePrefixes("trusted-proxies", proxies); err != nil {
		return c, err
	}
	c.TLS.Hosts = hosts
	if err := gateway.CheckCORSOrigins(origins); err != nil {
		return c, usageError{fmt.Errorf("--cors-origins: %w", err)}
	}
	c.Gateway.CORSOrigins = origins
	return c, nil
}

// checkListenAddr refuses a listen address net.Listen would: not host:port or :port, or a port that is
// not a number from 0 to 65535 (nor a service name).
func checkListenAddr(flag, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usageError{fmt.Errorf("--%s: %q is not host:port or :port", flag, addr)}
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		if _, lerr := net.LookupPort("tcp", port); lerr != nil {
			return usageError{fmt.Errorf("--%s: %q: the port must be a number from 0 to 65535, got %q", flag, addr, port)}
		}
	}
	return nil
}

// minRecvMsgBytes is the smallest --max-recv-msg-bytes: UploadProof's chunks may carry 1 MiB of data
// (dispatch contract), plus a few bytes of offset and framing.
const minRecvMsgBytes = 1<<20 + 1024

// parsePrefixes parses CIDRs and bare addresses (a one-address prefix) for flag name.
func parsePrefixes(name string, list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			addr, aerr := netip.ParseAddr(s)
			if aerr != nil {
				return nil, usageError{fmt.Errorf("--%s: %q is neither a CIDR nor an address", name, s)}
			}
			addr = addr.Unmap()
			p = netip.PrefixFrom(addr, addr.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func runServe(ctx context.Context, args []string, env Env) error {
	cfg, err := parseServe(args, env)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, env)
}

// serve wires and runs the configured services until ctx is cancelled. The wiring is by hand, in order:
// telemetry, transport security, token verification, the gRPC server and the modules it hosts, the
// gateway, the admin server; then everything runs until ctx ends, and stops edge first (see stop).
func serve(ctx context.Context, cfg serveConfig, env Env) error {
	logger := telemetry.NewLogger(env.Stderr, telemetry.LogOptions{Level: cfg.Telemetry.LogLevel, Format: cfg.Telemetry.LogFormat, Service: "lastmile"})
	// First, before anything writes to the data directory; released last, after the databases close.
	lock, err := lockDataDir(cfg.DataDir, "serve", "stop that process, or give this one its own --data-dir")
	if err != nil {
		return err
	}
	defer func() {
		if err := lock.Release(); err != nil {
			logger.Warn("release the data directory lock", "error", err)
		}
	}()
	if !dirlock.Supported {
		logger.Warn("this operating system has no flock: the data directory lock excludes no other process", "data_dir", cfg.DataDir)
	}
	gc := applyGCPolicy(env.Getenv, os.ReadFile)
	if gc.LimitFrom == "none" {
		logger.Info("garbage collector", "gogc", gc.Percent, "gogc_from", gc.PercentFrom, "memory_limit_from", gc.LimitFrom)
	} else {
		logger.Info("garbage collector", "gogc", gc.Percent, "gogc_from", gc.PercentFrom, "memory_limit_bytes", gc.Limit, "memory_limit_from", gc.LimitFrom)
	}
	registry := telemetry.NewRegistry()
	telemetry.BuildInfo(registry, Version, commit())
	tp, shutdownTracing, err := telemetry.SetupTracing(ctx, telemetry.TracingConfig{
		ServiceName: "lastmile", Version: Version, OTLPEndpoint: cfg.Telemetry.OTLPEndpoint, SampleRatio: cfg.Telemetry.TraceSampleRatio,
	})
	if err != nil {
		return fmt.Errorf("set up tracing: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := shutdownTracing(sctx); err != nil {
			logger.Warn("flush traces", "error", err)
		}
	}()

	tlsc, err := newTLS(cfg, logger)
	if err != nil {
		return err
	}
	if err := registerCertExpiry(registry, tlsc); err != nil {
		return err
	}
	p := &process{cfg: cfg, env: env, logger: logger, registry: registry, tp: tp, tls: tlsc}
	defer p.close()
	// Startup work (migrations, loading state) stops when ctx does; the servers do not (see stop).
	startCtx := ctx

	// The REST and admin ports are bound first, as the gRPC port is (by grpcserver.New, before any
	// module starts): a taken port then fails the start before a database is opened or migrated and
	// before the first admin account is created and its password printed.
	if cfg.Targets[gatewayTarget] {
		if p.httpLn, err = listenTCP(startCtx, cfg.HTTPAddr); err != nil {
			return addrTaken(fmt.Errorf("gateway: listen on %s: %w", cfg.HTTPAddr, err), "--http-addr")
		}
		p.cleanups = append(p.cleanups, func() { _ = p.httpLn.Close() })
	}
	adminAddr := cmp.Or(cfg.AdminAddr, admin.DefaultAddr)
	adminLn, err := listenTCP(startCtx, adminAddr)
	if err != nil {
		return addrTaken(fmt.Errorf("admin: listen on %s: %w", adminAddr, err), "--admin-addr")
	}
	p.cleanups = append(p.cleanups, func() { _ = adminLn.Close() })

	var srv *grpcserver.Server
	var ends Endpoints
	if p.hostsGRPC() {
		verifier, err := p.tokenVerifier()
		if err != nil {
			return err
		}
		authn := &grpcauth.ServiceAuthenticator{Verifier: verifier}
		var tracker grpcserver.CallTracker
		if subjects := p.subjectCache(); subjects != nil {
			authn.Subjects, tracker = subjects, subjects
		}
		srv, err = grpcserver.New(grpcserver.Config{
			Addr:              cfg.GRPCAddr,
			TLS:               tlsc.server,
			MaxRecvMsgSize:    cfg.GRPC.MaxRecvMsgBytes,
			ShutdownTimeout:   cfg.ShutdownTimeout,
			DrainDelay:        cfg.DrainDelay,
			ReadinessInterval: cfg.GRPC.ReadinessInterval,
			RateLimit:         grpcserver.RateLimit{RPS: cfg.GRPC.RateLimitRPS, Burst: cfg.GRPC.RateLimitBurst},
			Policy:            policy(),
			Streams:           streamLimits(cfg.Modules, cfg.Targets),
			Authenticator:     authn,
			Subjects:          tracker,
			Logger:            logger,
			Registerer:        registry,
			TracerProvider:    tp,
		})
		if err != nil {
			return addrTaken(err, "--grpc-addr") // "grpc server: …"
		}
		p.cleanups = append(p.cleanups, func() { _ = srv.Close() })
		ends.GRPC = srv.Addr().String()
		p.self = dialable(srv.Addr())
		for _, m := range cfg.Modules {
			if !cfg.Targets[m.name] {
				continue
			}
			if err := p.dialPeers(m); err != nil {
				return err
			}
			if err := m.start(startCtx, p, srv); err != nil {
				return fmt.Errorf("start %s: %w", m.name, err)
			}
		}
	}

	var gw *gateway.Gateway
	if cfg.Targets[gatewayTarget] {
		if gw, err = p.newGateway(startCtx, srv); err != nil {
			return err
		}
		ends.HTTP = gw.Addr().String()
	}

	adm, err := admin.New(admin.Config{Listener: adminLn, Registry: registry, Logger: logger, Ready: p.readyFunc(srv), Pprof: cfg.AdminPprof})
	if err != nil {
		return addrTaken(err, "--admin-addr") // "admin: …"
	}
	ends.Admin = adm.Addr().String()

	// The servers run on a context of their own: a signal starts the ordered stop below, while a server
	// that fails cancels serveCtx, which stops every other server on its own.
	group, serveCtx := errgroup.WithContext(context.WithoutCancel(ctx))
	runCtx, stopRunners := context.WithCancel(serveCtx)
	defer stopRunners()
	for _, run := range p.runners {
		group.Go(func() error { return run(runCtx) })
	}
	if srv != nil {
		group.Go(func() error { return srv.Serve(serveCtx) })
	}
	if gw != nil {
		group.Go(func() error { return gw.Serve(serveCtx) })
	}
	admCtx, stopAdmin := context.WithCancel(serveCtx)
	defer stopAdmin()
	group.Go(func() error { return adm.Serve(admCtx) })

	logger.Info("lastmile started", "pid", os.Getpid(), "version", Version, "grpc", ends.GRPC, "http", ends.HTTP,
		"admin", ends.Admin, "targets", strings.Join(p.targets(), ","), "tls", !cfg.TLS.Insecure)
	if env.Ready != nil {
		env.Ready(ends)
	}

	select {
	case <-ctx.Done():
		p.stop(serveCtx, srv, gw, stopRunners)
	case <-serveCtx.Done():
		p.stop(serveCtx, srv, gw, stopRunners)
	}
	stopAdmin()
	err = group.Wait()
	for _, f := range p.afterStop {
		f()
	}
	logger.Info("lastmile stopped", "pid", os.Getpid())
	return err
}

// stop shuts the process down edge first, so that no request that was accepted finds the server behind
// it gone:
//
//  1. /readyz and the overall gRPC health ("") report not ready, so that load balancers and probes move
//     away, while every server keeps serving for --drain-delay (cut short when a server failed);
//  2. the gateway stops accepting connections and finishes the requests it has, whose gRPC calls the
//     gRPC server still serves, its services still SERVING for the gateway's health checks;
//  3. the gRPC server stops: every service NOT_SERVING, the background runners end, then a graceful stop
//     and, at the deadline, a hard one that names the calls it cut off.
//
// Steps 2 and 3 share one --shutdown-timeout bound.
func (p *process) stop(serveCtx context.Context, srv *grpcserver.Server, gw *gateway.Gateway, stopRunners func()) {
	p.stopping.Store(true)
	if srv != nil {
		srv.Drain()
	}
	p.logger.Info("lastmile stopping", "pid", os.Getpid(), "drain_delay", p.cfg.DrainDelay, "shutdown_timeout", p.cfg.ShutdownTimeout)
	if p.cfg.DrainDelay > 0 {
		t := time.NewTimer(p.cfg.DrainDelay)
		select {
		case <-t.C:
		case <-serveCtx.Done():
			t.Stop()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownTimeout)
	defer cancel()
	if gw != nil {
		if err := gw.Shutdown(ctx); err != nil {
			p.logger.Warn("gateway did not finish its requests in time", "error", err)
		}
	}
	stopRunners()
	if srv != nil {
		if err := srv.Shutdown(ctx); err != nil {
			p.logger.Warn("gRPC server shutdown", "error", err)
		}
	}
}

// process holds what the modules of one lastmile process share while it is being wired.
type process struct {
	cfg      serveConfig
	env      Env
	logger   *slog.Logger
	registry *prometheus.Registry
	tp       trace.TracerProvider
	tls      tlsSetup
	// httpLn is the gateway's listener, bound before anything else starts (nil without the gateway).
	httpLn net.Listener
	// self is the dialable address of this process's own gRPC listener, "" when it has none.
	self string
	// peers holds the connections to the peer services the started modules declared, by full name.
	peers map[string]*grpc.ClientConn
	// localKeys are identity's signing keys when identity runs here, for this process's token verifier.
	localKeys *identity.KeyManager
	// subjects is the cache of users' standing that the authenticator checks every call against;
	// identitySvc, set by startIdentity before the server serves, fills it when identity runs here, else
	// it is read from identity over identityConn, the token verifier's connection to AuthService.
	subjects     *auth.Subjects
	identitySvc  *identity.Service
	identityConn *grpc.ClientConn
	// runners run next to the servers until the gRPC server starts stopping; afterStop runs once every
	// server has stopped (final flushes); cleanups run in reverse order at exit (closing databases).
	runners   []func(context.Context) error
	afterStop []func()
	cleanups  []func()
	// stopping is set when the process starts stopping: /readyz answers 503 from then on.
	stopping atomic.Bool
}

func (p *process) close() {
	for i := len(p.cleanups) - 1; i >= 0; i-- {
		p.cleanups[i]()
	}
}

// hostsGRPC reports whether this process runs any module, and so a gRPC server.
func (p *process) hostsGRPC() bool {
	for _, m := range p.cfg.Modules {
		if p.cfg.Targets[m.name] {
			return true
		}
	}
	return false
}

// targets returns the targets this process runs, in registry order.
func (p *process) targets() []string {
	var out []string
	for _, t := range targetNames() {
		if p.cfg.Targets[t] {
			out = append(out, t)
		}
	}
	return out
}

// readyFunc returns the /readyz check: not ready once stopping; else the gRPC server's latest readiness
// poll, the same verdict its health statuses show, so that /readyz and health change together.
func (p *process) readyFunc(srv *grpcserver.Server) func(context.Context) error {
	return func(ctx context.Context) error {
		if p.stopping.Load() {
			return errors.New("shutting down")
		}
		if srv == nil {
			return nil
		}
		return srv.Ready(ctx)
	}
}

// clientIdentity is the service identity this process presents to its peers: the first module it runs.
func (p *process) clientIdentity() string {
	return p.targets()[0] // parseServe refuses an empty --target
}

// dialPeers connects to the peer services m declares, as m, and warns about those that are neither
// hosted here nor configured: calls to them fail.
func (p *process) dialPeers(m *module) error {
	if p.peers == nil {
		p.peers = map[string]*grpc.ClientConn{}
	}
	for _, full := range m.peers {
		conn, err := p.dialService(full, m.name)
		if err != nil {
			return err
		}
		if conn == nil {
			p.logger.Warn("peer service not hosted here and no address configured: calls to it fail",
				"module", m.name, "peer", full, "flag", "--"+owner(p.cfg.Modules, full).name+"-addr")
		}
		p.peers[full] = conn
	}
	return nil
}

// peer returns the connection to a peer service that a module declared, nil when it is unreachable.
func (p *process) peer(full string) *grpc.ClientConn { return p.peers[full] }

// dialService returns a connection to the gRPC service full, presenting the identity as, that
// health-checks exactly that service: this process's own listener when its module runs here (so the
// all-in-one process still goes through gRPC and every interceptor), else the module's --<name>-addr. It
// returns nil when the module is neither hosted nor configured.
func (p *process) dialService(full, as string) (*grpc.ClientConn, error) {
	m := owner(p.cfg.Modules, full)
	if m == nil {
		return nil, fmt.Errorf("no module serves %s", full)
	}
	target := p.cfg.Peers[m.name]
	if p.cfg.Targets[m.name] {
		target = p.self
	}
	if target == "" {
		return nil, nil
	}
	conn, err := grpcclient.New(grpcclient.Config{
		Target:         target,
		TLS:            p.tls.client(as),
		ServiceName:    full,
		Logger:         p.logger,
		Registerer:     p.registry,
		TracerProvider: p.tp,
	})
	if err != nil {
		return nil, fmt.Errorf("%s client: %w", m.name, err)
	}
	p.cleanups = append(p.cleanups, func() { conn.Close() })
	return conn, nil
}

// listenTCP binds addr.
func listenTCP(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", addr)
}

// addrTaken says what to do about a listener's address that another process holds, most often another
// lastmile (a demo left running while serve starts, say); other errors are returned as they are.
func addrTaken(err error, flag string) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w (another lastmile serve or demo?): stop that process, or choose another %s", err, flag)
	}
	return err
}

// newGateway builds the REST gateway over a connection to each service with REST routes that it can reach.
// A service hosted by this process's gRPC server srv (nil when it hosts none) is called in process
// (grpcserver.Server.InProcess): the same interceptor chain, with the gateway's identity as the peer, but
// no gRPC client, HTTP/2 or TLS (BENCHMARKS.md). Without TLS (--insecure) the gateway has no identity over
// the network, so it keeps the network connection and behaves exactly as a split deployment.
func (p *process) newGateway(ctx context.Context, srv *grpcserver.Server) (*gateway.Gateway, error) {
	var services []gateway.Service
	var flags []string
	for _, m := range p.cfg.Modules {
		flags = append(flags, "--"+m.name+"-addr")
		for _, s := range m.services {
			if s.rest == nil {
				continue
			}
			if srv != nil && p.cfg.Targets[m.name] && p.tls.server != nil && srv.ServesInProcess(s.name) {
				services = append(services, gateway.Service{Name: s.name, Conn: srv.InProcess(gatewayTarget), Register: s.rest})
				continue
			}
			conn, err := p.dialService(s.name, gatewayTarget)
			if err != nil {
				return nil, err
			}
			if conn != nil {
				services = append(services, gateway.Service{Name: s.name, Conn: conn, Register: s.rest})
			}
		}
	}
	if len(services) == 0 {
		return nil, usageError{fmt.Errorf("gateway: no service to proxy: run it with the services, or set %s", strings.Join(flags, ", "))}
	}
	gw, err := gateway.New(ctx, gateway.Config{
		CORSOrigins: p.cfg.Gateway.CORSOrigins,
		Addr:        p.cfg.HTTPAddr, Listener: p.httpLn, MaxBodyBytes: p.cfg.Gateway.MaxBodyBytes, TrustedProxies: p.cfg.Gateway.TrustedProxies,
		ShutdownTimeout: p.cfg.ShutdownTimeout, Browser: p.cfg.Gateway.Browser, Web: p.cfg.Gateway.Web,
		Logger: p.logger, Registerer: p.registry,
	}, services)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	if err := gw.Listen(ctx); err != nil {
		return nil, addrTaken(err, "--http-addr") // "gateway: …"
	}
	p.cleanups = append(p.cleanups, func() { _ = gw.Close() })
	return gw, nil
}

// openStore opens (and, unless --auto-migrate=false, migrates) the database of module name, registers
// its cleanup, and makes the health of the module's services that need it follow it.
func (p *process) openStore(ctx context.Context, srv *grpcserver.Server, name string) (dbHandle, error) {
	var m *module
	for _, mod := range p.cfg.Modules {
		if mod.name == name {
			m = mod
		}
	}
	if m == nil || m.store == nil {
		return dbHandle{}, fmt.Errorf("module %s declares no store", name)
	}
	h, err := openDB(ctx, p.cfg.Database, p.cfg.DataDir, m.name, *m.store, p.logger)
	if err != nil {
		return dbHandle{}, err
	}
	p.cleanups = append(p.cleanups, h.Close)
	var dependent []string
	for _, s := range m.services {
		if s.needsStore {
			dependent = append(dependent, s.name)
		}
	}
	srv.AddReadiness(func(ctx context.Context) error {
		var err error
		if h.SQL != nil {
			err = h.SQL.PingContext(ctx)
		} else {
			err = h.Pool.Ping(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s database unreachable", name)
		}
		return nil
	}, dependent...)
	return h, nil
}

// tlsSetup holds the transport credentials of one process: nil configs mean --insecure.
type tlsSetup struct {
	server *tls.Config
	client func(service string) *tls.Config
	// ids are the service identities with a client certificate; caNotAfter is when the CA expires.
	ids        []string
	caNotAfter time.Time
}

// registerCertExpiry exports when each certificate this process presents expires: its server
// certificate, each service identity's client certificate (as loaded now: key pairs are reloaded when
// their files change) and the CA, read once at start. Nothing with --insecure.
func registerCertExpiry(reg prometheus.Registerer, t tlsSetup) error {
	if t.server == nil {
		return nil
	}
	const name, help = "lastmile_tls_certificate_expiry_timestamp_seconds",
		"When a certificate this process presents or trusts expires, in Unix seconds: certificate=\"server\", \"ca\", or the service identity of a client certificate."
	gauge := func(cert string, notAfter func() time.Time) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: prometheus.Labels{"certificate": cert}},
			func() float64 { return float64(notAfter().Unix()) })
	}
	leafExpiry := func(get func() (*tls.Certificate, error)) func() time.Time {
		return func() time.Time {
			c, err := get()
			if err != nil || c == nil || c.Leaf == nil {
				return time.Time{}
			}
			return c.Leaf.NotAfter
		}
	}
	cs := []prometheus.Collector{
		gauge("server", leafExpiry(func() (*tls.Certificate, error) { return t.server.GetCertificate(nil) })),
		gauge("ca", func() time.Time { return t.caNotAfter }),
	}
	for _, id := range t.ids {
		cc := t.client(id)
		cs = append(cs, gauge(id, leafExpiry(func() (*tls.Certificate, error) { return cc.GetClientCertificate(nil) })))
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register certificate expiry metric: %w", err)
		}
	}
	return nil
}

func newTLS(cfg serveConfig, logger *slog.Logger) (tlsSetup, error) {
	if cfg.TLS.Insecure {
		logger.Warn("TLS IS OFF (--insecure): internal gRPC is plaintext and unauthenticated between services; never use this outside a local experiment")
		return tlsSetup{client: func(string) *tls.Config { return nil }}, nil
	}
	ids := identities()
	pki, err := tlsutil.EnsureDevPKI(filepath.Join(cfg.DataDir, "tls"), cfg.TLS.Hosts, ids...)
	if err != nil {
		return tlsSetup{}, err // "development PKI: …"
	}
	certFile, keyFile := pki.ServerCert()
	server, err := tlsutil.ServerConfig(certFile, keyFile, pki.CAFile())
	if err != nil {
		return tlsSetup{}, fmt.Errorf("server TLS: %w", err)
	}
	clients := map[string]*tls.Config{}
	for _, svc := range ids {
		c, k := pki.ClientCert(svc)
		cc, err := tlsutil.ClientConfig(c, k, pki.CAFile())
		if err != nil {
			return tlsSetup{}, fmt.Errorf("client TLS of %s: %w", svc, err)
		}
		clients[svc] = cc
	}
	ca, err := readCertFile(pki.CAFile())
	if err != nil {
		return tlsSetup{}, err
	}
	return tlsSetup{server: server, client: func(svc string) *tls.Config { return clients[svc] }, ids: ids, caNotAfter: ca.NotAfter}, nil
}

// readCertFile parses the first certificate of a PEM file.
func readCertFile(name string) (*x509.Certificate, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("read certificate: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("read certificate %s: no PEM certificate", name)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("read certificate %s: %w", name, err)
	}
	return cert, nil
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
