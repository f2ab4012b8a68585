// Package grpcserver runs a lastmile gRPC server: it listens, hardens the transport, wraps every call in
// one interceptor chain, serves health and reflection, and shuts down gracefully.
//
// # The interceptor chain
//
// Unary and streaming calls go through the same stages in the same order, outermost first:
//
//  1. request id — reads "x-request-id" from the metadata (or makes one), puts it in the context
//     (telemetry.WithRequestID) and sends it back in the response header;
//  2. metrics — RED metrics per method (grpc_server_started_total, grpc_server_handled_total,
//     grpc_server_handling_seconds, ...), with the final status code;
//  3. logging — one line per call: method, code, duration, principal, peer, error; the request and trace
//     ids come from the context through the telemetry logger. Tokens and payloads are never logged;
//  4. error mapping — domain errors become gRPC statuses (grpcerr.ToStatus); Internal, Unknown and
//     DataLoss statuses are replaced by "internal error" so that no detail leaks, and their cause goes to
//     the log line;
//  5. recovery — a panic becomes an apperr.Internal error; the stack is logged, the panic value is not
//     returned;
//  6. authentication — the Authenticator establishes the auth.Principal; with Config.Subjects, a user's
//     stream is registered too, and ended with Unauthenticated when the user's token is revoked;
//  7. authorization — the auth.Policy admits or refuses the principal for the method;
//  8. rate limiting — a token bucket per principal; ResourceExhausted with RetryInfo when empty;
//  9. stream limits — each streaming method's open streams are bounded per caller and in total
//     (Config.Streams, defaults for the rest); ResourceExhausted over a cap; idle streams are ended with
//     DeadlineExceeded, and at shutdown those of methods no service drains with Unavailable
//     (StreamLimit.EndAtShutdown); unary calls pass;
//  10. validation — protovalidate rules of every request message (each received message of a stream);
//     InvalidArgument with errdetails.BadRequest field violations (for a stream message, RecvMsg's
//     *InvalidMessageError, which a handler may answer in the stream instead of ending it);
//  11. the handler.
//
// The order is deliberate. Everything that can fail runs inside error mapping, so callers only ever see
// mapped statuses, and inside logging and metrics, so that every refusal is counted and logged with its
// final code. Recovery sits inside error mapping so that a panic is reported as a plain Internal error.
// Unauthenticated and forbidden calls never reach the rate limiter's per-principal buckets, the validator
// or the handler; stream limits count slots by the authenticated caller and only for admitted calls (a
// refused caller holds none); validation runs last so that an anonymous caller learns nothing about request rules.
// Tracing (telemetry.GRPCServerTracing, driving otelgrpc's handler) runs before the first stage, so spans
// cover the chain and every stage (and log line) sees the trace id; only sampled calls pay for a span,
// and unsampled ones still carry valid trace ids. Streams are served by a pool of reused workers (streamWorkers), and
// flow control uses fixed 1 MiB windows (no bandwidth-delay-product pings; see flowControlWindow).
//
// # In-process calls
//
// Services registered on the Server (RegisterService) are also reachable without a network: InProcess
// returns a grpc.ClientConnInterface that runs the same chain in memory, as a given service identity (the
// REST gateway of an all-in-one process calls as "gateway"; tlsutil.InProcessInfo), with metadata,
// deadlines, headers, trailers, message size limits and health gating as over the network (inprocess.go).
//
// # Health and shutdown
//
// The standard health service reports a status per service name. Each registered service follows the
// readiness checks given to AddReadiness for it (SERVING while every one passes), so a service whose
// database is down reports NOT_SERVING while a stateless neighbour in the same process keeps serving;
// clients that health-check the service they call (grpcclient's Config.ServiceName) then avoid only the
// broken one. The overall status "" is SERVING when every check passes. Ready returns the same verdict,
// from the same poll, for the process's /readyz.
//
// Shutdown runs in steps that a process orchestrates with its other servers: Drain reports NOT_SERVING
// for "" (probes and load balancers move away) while every service keeps serving; Shutdown then reports
// NOT_SERVING for every service, runs the OnShutdown hooks, ends the streams of the methods with
// StreamLimit.EndAtShutdown (health Watch and reflection among them) and stops gracefully until its context ends,
// naming the calls still open when it cuts them off. A server used alone simply cancels the Serve
// context: it drains, waits Config.DrainDelay and shuts down within Config.ShutdownTimeout.
//
// Health and reflection methods are public in every policy; every other method must have a rule in
// Config.Policy, or Serve refuses to start.
package grpcserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"runtime"
	"sync"
	"time"

	"buf.build/go/protovalidate"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"

	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
	"lastmile/internal/platform/telemetry"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultMaxRecvMsgSize        = 4 << 20
	DefaultMaxSendMsgSize        = 4 << 20
	DefaultMaxConcurrentStreams  = 1000
	DefaultConnectionTimeout     = 10 * time.Second
	DefaultKeepaliveTime         = 30 * time.Second
	DefaultKeepaliveTimeout      = 10 * time.Second
	DefaultKeepaliveMinTime      = 10 * time.Second
	DefaultMaxConnectionAge      = 30 * time.Minute
	DefaultMaxConnectionAgeGrace = 30 * time.Second
	DefaultShutdownTimeout       = 15 * time.Second
	DefaultMaxUnaryTime          = 30 * time.Second
	DefaultReadinessInterval     = 5 * time.Second
	DefaultRateLimitKeys         = 10000
)

// flowControlWindow is the HTTP/2 flow-control window of every stream and of the connection, in bytes,
// fixed: grpc-go's default instead starts at 64 KiB and grows it from bandwidth-delay-product estimates,
// and that estimator sends a PING, preceded by a connection WINDOW_UPDATE, on the first DATA frame after
// each acknowledgement, which on a connection of small unary calls is one of each per call in each
// direction, plus the peer's PING ACK: three frames a call does not need, whose handling wakes the
// transport's writer goroutine before the response exists (BENCHMARKS.md, "Session of 01:45: wakeups").
// 1 MiB is about what the estimator reaches on the links lastmile runs over (in-cluster calls, and
// phones uploading proofs at tens of Mbit/s over 100-200 ms): a 4 MiB message still flows at
// window / RTT, and a stream whose handler reads slowly buffers at most this much.
const flowControlWindow = 1 << 20

// streamWorkers is the size of the pool of goroutines that serve the streams (grpc.NumStreamWorkers).
// grpc-go hands a stream to a worker only when one is idle and otherwise starts a goroutine for it, which
// grows (copies) its stack as the call goes deeper: with GOMAXPROCS workers, calls that wait (a store
// statement, a call to another service) held every worker under load, and most streams ran on fresh
// goroutines (runtime.copystack was 4.7 % of the dispatch load test's CPU, BENCHMARKS.md "Session of
// 13:02"). Idle workers cost only their stacks, and a long-lived stream holds one for its life, so the
// pool is sized for the calls in flight rather than for the cores.
func streamWorkers() uint32 {
	return uint32(max(64, 16*runtime.GOMAXPROCS(0)))
}

// maxHeaderListSize bounds request headers. Metadata carries a token and a few ids; grpc-go's own default
// (16 MiB) is far more than any honest caller needs.
const maxHeaderListSize = 64 << 10

// Config configures a Server. Zero durations and sizes take the defaults above.
type Config struct {
	// Addr is the address to listen on, such as ":9090" or "127.0.0.1:0". Ignored when Listener is set.
	Addr string
	// Listener, when set, is served instead of listening on Addr (tests use bufconn). The Server owns it.
	Listener net.Listener
	// TLS secures the transport (see tlsutil.ServerConfig). Nil serves plaintext, which is logged loudly
	// as a warning: callers then cannot prove a service identity.
	TLS *tls.Config

	// MaxRecvMsgSize bounds a received message, in bytes. Default 4 MiB.
	MaxRecvMsgSize int
	// MaxSendMsgSize bounds a sent message, in bytes. Default 4 MiB.
	MaxSendMsgSize int
	// MaxConcurrentStreams bounds the concurrent calls of one connection. Default 1000.
	MaxConcurrentStreams uint32
	// ConnectionTimeout bounds the connection handshake (TLS included). Default 10s.
	ConnectionTimeout time.Duration
	// KeepaliveTime is how long a connection may be idle before the server pings it, to find dead peers
	// such as courier apps that lost their network. Default 30s.
	KeepaliveTime time.Duration
	// KeepaliveTimeout is how long the server waits for a ping's answer before closing. Default 10s.
	KeepaliveTimeout time.Duration
	// KeepaliveMinTime is the shortest ping interval a client may use (clients pinging more often are
	// disconnected); pings without active streams are permitted. Default 10s.
	KeepaliveMinTime time.Duration
	// MaxConnectionAge closes connections after this age (with a GOAWAY), so that long-lived clients and
	// streams rebalance over replicas. Default 30m.
	MaxConnectionAge time.Duration
	// MaxConnectionAgeGrace is how long calls may continue on a connection closed for age. Default 30s.
	MaxConnectionAgeGrace time.Duration
	// MaxUnaryTime bounds every unary call: a call that came without a deadline, or with a later one,
	// gets this one, so that a caller who set none is not held as long as a dependency (the database) hangs,
	// and the call's work stops when its answer can no longer matter. It ends with DeadlineExceeded. Streams
	// are not bounded by it (they have idle and stall limits, Config.Streams). Default 30s, the REST
	// gateway's bound on a request.
	MaxUnaryTime time.Duration
	// ShutdownTimeout bounds the graceful stop when the Serve context ends; calls still running then are
	// cut off. Shutdown takes its bound from its context instead. Default 15s.
	ShutdownTimeout time.Duration
	// DrainDelay is how long a server whose Serve context ended keeps serving after reporting NOT_SERVING,
	// so that load balancers and health-checking clients move away before connections are refused.
	// Default 0; deployments behind a load balancer should use a few seconds. (Processes that call Drain
	// and Shutdown themselves wait for it themselves.)
	DrainDelay time.Duration
	// ReadinessInterval is how often the AddReadiness checks run, and how long each may take (but never
	// less than MinReadinessTimeout). Default 5s.
	ReadinessInterval time.Duration
	// RateLimit limits calls per principal. The zero value disables it.
	RateLimit RateLimit
	// Streams bounds streaming methods, by full method name ("/lastmile.courier.v1.CourierService/
	// WatchCouriers"). A streaming method without an entry still gets the default caps
	// (DefaultStreamsPerCaller, DefaultStreamsTotal) and no idle timeout. Serve refuses to start when an
	// entry names a method that is not a served stream, or an idle timeout its kind cannot honour.
	Streams map[string]StreamLimit

	// Policy decides who may call each method. Every registered method needs a rule; health and
	// reflection are public automatically.
	Policy auth.Policy
	// Authenticator establishes each call's principal. Nil means &grpcauth.ServiceAuthenticator{}: service
	// certificates are accepted and bearer tokens are refused.
	Authenticator grpcauth.Authenticator
	// Subjects, when set, tracks every stream of a user (normally the *auth.Subjects that the
	// Authenticator checks calls against): a change that revokes the user's token cancels the stream's
	// context and ends it with Unauthenticated. Nil leaves streams to run until they end.
	Subjects CallTracker
	// Logger receives the call log and server events. Use a telemetry.NewLogger logger, which adds the
	// request and trace ids of the context to each line. Nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the server's metrics. Nil leaves them unregistered.
	Registerer prometheus.Registerer
	// TracerProvider traces calls. Nil means the global provider.
	TracerProvider trace.TracerProvider

	// Ablation leaves stages out of the chain, for the benchmark that measures what each one costs
	// (bench/stack_test.go). Every real server leaves it zero, which keeps them all.
	Ablation Ablation

	// observe, when set, is called as each stage of the chain sees a call (tests only; see export_test.go).
	observe func(method, stage string)
	// clock, when set, replaces the time of the stream limiter's idle timeouts (tests only).
	clock clock
}

// Ablation names the parts of the server a benchmark may leave out, one at a time, to measure what each
// costs per call. Rate limiting needs no entry: a zero Config.RateLimit turns it off. Leaving out
// authentication makes every call anonymous (a policy that is not Public then refuses it), so only
// benchmarks whose methods are Public may set it.
type Ablation struct {
	// Tracing leaves out the tracing interceptors (telemetry.GRPCServerTracing).
	Tracing bool
	// Metrics leaves out the RED metrics stage.
	Metrics bool
	// Logging leaves out the call log stage.
	Logging bool
	// Authentication leaves out the authentication stage.
	Authentication bool
	// Validation leaves out the protovalidate stage.
	Validation bool
}

// RateLimit configures the per-principal token bucket. Callers are keyed by principal: users by id,
// anonymous callers by client address (grpcauth.ClientKey: for calls the gateway forwards, the address
// it decided). Health checks and lastmile's services (Service principals, which call for callers already
// limited where they came in) are never limited.
type RateLimit struct {
	// RPS is the sustained rate of calls per second per principal; 0 disables rate limiting.
	RPS float64
	// Burst is the bucket size. Default: RPS rounded up, at least 1.
	Burst int
	// MaxKeys bounds the number of principals tracked; the least recently seen is forgotten first (and
	// starts again with a full bucket). Default 10000.
	MaxKeys int
}

// Server is a gRPC server with lastmile's interceptor chain, health service and graceful shutdown.
type Server struct {
	cfg     Config
	lis     net.Listener
	grpc    *grpc.Server
	health  *health.Server
	metrics *telemetry.GRPCServerMetrics
	policy  auth.Policy
	streams *streamLimiter
	logger  *slog.Logger

	calls *openCalls

	// The chain as one interceptor, and the registered methods, for InProcess connections (inprocess.go).
	unaryChain  grpc.UnaryServerInterceptor
	streamChain grpc.StreamServerInterceptor
	inprocMu    sync.RWMutex
	inproc      map[string]inProcessMethod

	mu      sync.Mutex
	started bool
	closed  bool
	// shutBeforeServe is set when Shutdown ran before Serve: a process told to stop while starting up, whose
	// later Serve then returns nil at once rather than an error.
	shutBeforeServe bool
	checks          []readinessCheck
	hooks           []func()

	// Set by Serve; see lifecycle.go.
	ready     *readiness
	served    chan struct{} // closed when grpc.Serve has returned, with serveErr set
	serveErr  error
	stopping  chan struct{} // closed when the shutdown starts
	stopped   chan struct{} // closed when it has finished
	stopOnce  sync.Once
	drainOnce sync.Once
	stopErr   error
}

// New validates cfg, listens on cfg.Addr at once (so that a taken port fails at startup, naming the
// address) and builds the gRPC server with the interceptor chain, health and reflection. Register the
// application's services on the Server (RegisterService; or on GRPC(), which InProcess connections then
// do not reach) before calling Serve.
func New(cfg Config) (*Server, error) {
	if err := applyDefaults(&cfg); err != nil {
		return nil, fmt.Errorf("grpc server config: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	validator, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("grpc server: create validator: %w", err)
	}
	metrics, err := registerServerMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("grpc server: %w", err)
	}
	limiter, err := newRateLimiter(cfg.RateLimit)
	if err != nil {
		return nil, fmt.Errorf("grpc server: %w", err)
	}
	streams, err := newStreamLimiter(cfg.Streams, cfg.clock, cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("grpc server: %w", err)
	}
	authn := cfg.Authenticator
	if authn == nil {
		authn = &grpcauth.ServiceAuthenticator{}
	}
	policy := maps.Clone(cfg.Policy)
	if policy == nil {
		policy = auth.Policy{}
	}
	for _, m := range builtinMethods() {
		policy[m] = auth.Public()
	}

	lis := cfg.Listener
	if lis == nil {
		lis, err = net.Listen("tcp", cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("grpc server: listen on %s: %w", cfg.Addr, err)
		}
	}

	s := &Server{cfg: cfg, lis: lis, health: health.NewServer(), metrics: metrics, policy: policy, streams: streams, logger: logger,
		calls: newOpenCalls(), served: make(chan struct{}), stopping: make(chan struct{}), stopped: make(chan struct{})}
	c := &chain{
		logger:    logger,
		metrics:   metrics,
		authn:     authn,
		policy:    policy,
		limiter:   limiter,
		streams:   streams,
		validator: validator,
		tracker:   cfg.Subjects,
		stopping:  s.stopping,
	}
	unary, stream := c.interceptors(cfg.Ablation, cfg.observe)
	// Outside the chain: every call the server accepted counts as open until it returns, so that a
	// graceful stop that runs out of time can name what it cut off; and every unary call gets its bound
	// (Config.MaxUnaryTime) before any stage runs, so the log line and metrics see how it ended.
	unary = append([]grpc.UnaryServerInterceptor{s.calls.unary, s.boundUnary}, unary...)
	stream = append([]grpc.StreamServerInterceptor{s.calls.stream}, stream...)

	if !cfg.Ablation.Tracing {
		// Outermost, so that every stage and the log line see the call's trace.
		tu, ts := telemetry.GRPCServerTracing(cfg.TracerProvider, otelgrpc.WithFilter(filters.Not(filters.HealthCheck())))
		unary = append([]grpc.UnaryServerInterceptor{tu}, unary...)
		stream = append([]grpc.StreamServerInterceptor{ts}, stream...)
	}
	s.unaryChain, s.streamChain = composeUnary(unary), chainStream(stream)
	var opts []grpc.ServerOption
	opts = append(opts,
		// A fixed pool of goroutines serves the streams instead of a new goroutine per call: the pool's
		// goroutines keep the stacks the interceptor chain grew, where a fresh goroutine grows (copies)
		// its stack on every call (about 25 µs of a trivial call's CPU; BENCHMARKS.md). See streamWorkers
		// for its size.
		grpc.NumStreamWorkers(streamWorkers()),
		grpc.UnaryInterceptor(s.unaryChain),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgSize),
		grpc.MaxSendMsgSize(cfg.MaxSendMsgSize),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		grpc.MaxHeaderListSize(maxHeaderListSize),
		grpc.InitialWindowSize(flowControlWindow),
		grpc.InitialConnWindowSize(flowControlWindow),
		grpc.ConnectionTimeout(cfg.ConnectionTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  cfg.KeepaliveTime,
			Timeout:               cfg.KeepaliveTimeout,
			MaxConnectionAge:      cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: cfg.MaxConnectionAgeGrace,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             cfg.KeepaliveMinTime,
			PermitWithoutStream: true,
		}),
	)
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	} else {
		logger.Warn("gRPC server is running WITHOUT TLS: traffic is plaintext and no caller can prove a service identity; never do this outside local experiments",
			"addr", lis.Addr().String())
	}
	s.grpc = grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s, nil
}

func applyDefaults(cfg *Config) error {
	if cfg.Listener == nil && cfg.Addr == "" {
		return errors.New("no address to listen on")
	}
	for name, v := range map[string]int64{
		"MaxRecvMsgSize":        int64(cfg.MaxRecvMsgSize),
		"MaxSendMsgSize":        int64(cfg.MaxSendMsgSize),
		"ConnectionTimeout":     int64(cfg.ConnectionTimeout),
		"KeepaliveTime":         int64(cfg.KeepaliveTime),
		"KeepaliveTimeout":      int64(cfg.KeepaliveTimeout),
		"KeepaliveMinTime":      int64(cfg.KeepaliveMinTime),
		"MaxConnectionAge":      int64(cfg.MaxConnectionAge),
		"MaxConnectionAgeGrace": int64(cfg.MaxConnectionAgeGrace),
		"ShutdownTimeout":       int64(cfg.ShutdownTimeout),
		"MaxUnaryTime":          int64(cfg.MaxUnaryTime),
		"DrainDelay":            int64(cfg.DrainDelay),
		"ReadinessInterval":     int64(cfg.ReadinessInterval),
	} {
		if v < 0 {
			return fmt.Errorf("%s is negative", name)
		}
	}
	setDefault(&cfg.MaxRecvMsgSize, DefaultMaxRecvMsgSize)
	setDefault(&cfg.MaxSendMsgSize, DefaultMaxSendMsgSize)
	setDefault(&cfg.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	setDefault(&cfg.ConnectionTimeout, DefaultConnectionTimeout)
	setDefault(&cfg.KeepaliveTime, DefaultKeepaliveTime)
	setDefault(&cfg.KeepaliveTimeout, DefaultKeepaliveTimeout)
	setDefault(&cfg.KeepaliveMinTime, DefaultKeepaliveMinTime)
	setDefault(&cfg.MaxConnectionAge, DefaultMaxConnectionAge)
	setDefault(&cfg.MaxConnectionAgeGrace, DefaultMaxConnectionAgeGrace)
	setDefault(&cfg.ShutdownTimeout, DefaultShutdownTimeout)
	setDefault(&cfg.MaxUnaryTime, DefaultMaxUnaryTime)
	setDefault(&cfg.ReadinessInterval, DefaultReadinessInterval)
	return nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// registerServerMetrics returns the server metrics registered with reg. A process may run several servers
// on one registry (tests do); they then share the collector registered first.
func registerServerMetrics(reg prometheus.Registerer) (*telemetry.GRPCServerMetrics, error) {
	m := telemetry.NewGRPCServerMetrics([]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}, exemplar)
	m, err := telemetry.Register(reg, m)
	if err != nil {
		return nil, fmt.Errorf("register server metrics: %w", err)
	}
	return m, nil
}

// builtinMethods returns the health and reflection methods, which every policy makes public: probes and
// tools must reach them without credentials.
func builtinMethods() []string {
	var out []string
	for _, sd := range []*grpc.ServiceDesc{
		&healthpb.Health_ServiceDesc,
		&reflectionv1.ServerReflection_ServiceDesc,
		&reflectionv1alpha.ServerReflection_ServiceDesc,
	} {
		for _, m := range sd.Methods {
			out = append(out, "/"+sd.ServiceName+"/"+m.MethodName)
		}
		for _, m := range sd.Streams {
			out = append(out, "/"+sd.ServiceName+"/"+m.StreamName)
		}
	}
	return out
}

// GRPC returns the underlying server, to register services on before Serve.
func (s *Server) GRPC() *grpc.Server { return s.grpc }

// Addr returns the address the server listens on; with Addr ":0" it carries the chosen port.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// OnShutdown registers f to run during shutdown, after the server reported NOT_SERVING and the drain
// delay passed, as the graceful stop begins (clients are sent GOAWAY, so their next calls go to other
// replicas) and while in-flight calls drain. Long-lived streams use it to tell their clients to reconnect
// elsewhere: the graceful stop waits for every open stream. Hooks run in registration order and must not
// block.
func (s *Server) OnShutdown(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = append(s.hooks, f)
}

// Close releases the listener of a server whose Serve will not be called, for startup paths that fail
// between New and Serve. It does nothing once Serve has been called.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.closed {
		return nil
	}
	s.closed = true
	s.grpc.Stop()
	if err := s.lis.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close grpc listener %s: %w", s.lis.Addr(), err)
	}
	return nil
}

// boundUnary gives a unary call the server's bound (Config.MaxUnaryTime) when it came without a deadline
// or with a later one. A call whose own deadline is sooner keeps it and costs nothing more.
func (s *Server) boundUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= s.cfg.MaxUnaryTime {
		return handler(ctx, req)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.MaxUnaryTime)
	defer cancel()
	return handler(ctx, req)
}
