// Package grpcclient opens connections to lastmile services the way every service should: grpc.NewClient
// (never Dial or WithBlock) with a service config that load-balances round robin over healthy backends
// (client-side health checking), retries UNAVAILABLE and nothing else (with retry throttling), keepalive
// that the servers' enforcement accepts, fixed 1 MiB flow-control windows (flowControlWindow), a default
// deadline for unary calls, a circuit breaker per target, client metrics and tracing.
//
// # Targets
//
// Config.Target accepts "host:port" and "dns:///name:port" (round robin over every address the name
// resolves to; in Kubernetes, point it at a headless Service), a comma-separated static list of replicas
// "h1:p1,h2:p2" (served by the "static" resolver scheme this package registers on each connection, so
// "static:///h1:p1,h2:p2" works too), and any other scheme grpc-go knows.
//
// # Interceptors
//
// Unary calls pass, outermost first: tracing (telemetry.GRPCClientTracing: a span for sampled calls, the
// traceparent header for every call), metrics (grpc_client_handled_total, grpc_client_handling_seconds,
// ...; they see circuit-breaker refusals too), the default deadline, request id propagation (the
// context's telemetry.RequestID goes out as "x-request-id") and the circuit breaker; grpc-go's retries
// happen inside, so a retried call counts once everywhere. Streams pass the same stages minus the default
// deadline, which would cut long-lived streams.
//
// # Circuit breaker
//
// One breaker guards each connection (sony/gobreaker), and every caller of the connection shares it, so it
// counts as failures only outcomes that say the peer is unhealthy, which no single caller can produce at
// will: Unavailable (no backend reachable, or a backend that says it cannot serve), and DeadlineExceeded
// when the caller's own deadline ran out before any answer and that deadline was at least a normal call's
// (Breaker.CountedDeadline, by default the connection's Timeout): a caller that chooses a shorter one,
// such as a REST client sending "Grpc-Timeout: 150m" to a call that hashes a password, would otherwise
// open the breaker for everyone by picking a deadline its own requests cannot meet. Every answer
// the peer gives to one request counts as a success, whatever its code: the caller's own errors
// (InvalidArgument, NotFound, PermissionDenied, FailedPrecondition, ...), ResourceExhausted (a
// per-caller quota or an oversized message), a DeadlineExceeded the handler answered before the caller's
// deadline, and even Internal, Unknown and DataLoss: a request that makes a handler fail is a bug to fix,
// and letting whoever can send it open the breaker would let one caller refuse every other caller's
// calls (five crafted REST requests once did exactly that). Canceled is ignored, as is a deadline shorter
// than Breaker.CountedDeadline: the caller gave up, which says nothing about the server. After
// Breaker.ConsecutiveFailures failures in a row the breaker opens, and calls fail at once with Unavailable "circuit open for <target>" until
// Breaker.Timeout has passed and probe calls succeed, or until the connection becomes READY again after it
// was not (a backend passed its health check: see ServiceName), whichever comes first, so that a service
// whose health has recovered is called again at once. The breaker learns the connection's states from its
// load-balancing policy (round robin, registered as "lastmile_breaker_round_robin"), before grpc-go acts on
// them. For streams only opening the stream is judged. The
// state is exported as lastmile_grpc_client_breaker_state{target} (0 closed, 1 half-open, 2 open).
package grpcclient

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	// Registers the client-side health checking function used by the service config's healthCheckConfig.
	_ "google.golang.org/grpc/health"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"lastmile/internal/platform/telemetry"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultTimeout                    = 5 * time.Second
	DefaultMaxAttempts                = 3
	DefaultBreakerConsecutiveFailures = 5
	DefaultBreakerTimeout             = 10 * time.Second
)

// maxAttemptsLimit is grpc-go's own cap on retry attempts; larger values would be silently lowered.
const maxAttemptsLimit = 5

// Keepalive parameters. Time must not be below the servers' enforcement minimum (grpcserver's
// KeepaliveMinTime, 10s by default), or servers close the connection with "too_many_pings".
const (
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
)

// reconnectMaxDelay caps the wait between two attempts to connect to a peer that is down. grpc-go's
// default, 2 minutes (reached after about 4 minutes of failures), kept a connection failing for up to that
// long after its peer was back, and the circuit breaker open with it (it closes once the connection is
// READY): a dispatch replica's claims and releases reached a restarted courier service minutes late.
// Attempts a few seconds apart cost little: a process has a handful of peers.
const reconnectMaxDelay = 5 * time.Second

// flowControlWindow is the HTTP/2 flow-control window of every stream and of the connection, in bytes,
// fixed, as grpcserver fixes its own: with grpc-go's dynamic windows, the client answers every response's
// DATA frame with a WINDOW_UPDATE and a bandwidth-delay-product PING (and the server with a PING ACK),
// frames a small unary call does not need and whose handling wakes the transport's writer goroutine
// between calls. 1 MiB is about what the estimator reaches on lastmile's links; a larger message flows at
// window / RTT.
const flowControlWindow = 1 << 20

// requestIDHeader is the metadata key of the request id; grpcserver.RequestIDHeader reads it.
const requestIDHeader = "x-request-id"

// Config configures a client connection.
type Config struct {
	// Target names the servers: "host:port", "dns:///name:port", or a comma-separated static list
	// "h1:p1,h2:p2". Required.
	Target string
	// TLS secures the transport (see tlsutil.ClientConfig). Nil connects in plaintext, which is logged as a
	// warning.
	TLS *tls.Config
	// ServiceName is the fully qualified gRPC service whose health decides whether a backend gets calls,
	// such as "lastmile.route.v1.RouteService": the service this connection calls, so that a backend whose
	// other services are down (a database outage) still gets this one's calls. Empty means the server's
	// overall health (""), which a draining server reports NOT_SERVING before its services.
	ServiceName string
	// Timeout is the deadline given to unary calls whose context has none. Streams are never given one.
	// Default 5s.
	Timeout time.Duration
	// MaxAttempts bounds the attempts of a call failing with UNAVAILABLE (first try included), from 1 (no
	// retries) to 5. Default 3.
	MaxAttempts int
	// Breaker configures the circuit breaker.
	Breaker BreakerConfig
	// Logger receives connection events, such as breaker state changes. Nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the client metrics and the breaker state gauge. Nil leaves them unregistered.
	Registerer prometheus.Registerer
	// TracerProvider traces calls. Nil means the global provider.
	TracerProvider trace.TracerProvider
	// DialOptions are appended to the options New builds (tests use them to dial bufconn).
	DialOptions []grpc.DialOption
	// Ablation leaves parts of the client out, for the benchmark that measures what each one costs
	// (bench/stack_test.go). Every real client leaves it zero, which keeps them all.
	Ablation Ablation
}

// Ablation names the parts of a client a benchmark may leave out, one at a time, to measure what each
// costs per call.
type Ablation struct {
	// Tracing leaves out the tracing interceptors (telemetry.GRPCClientTracing).
	Tracing bool
	// Metrics leaves out the client metrics interceptors.
	Metrics bool
	// Deadline leaves out the default deadline of unary calls.
	Deadline bool
	// Extras leaves out the circuit breaker, the retry policy and client-side health checking (the service
	// config keeps round robin only).
	Extras bool
}

// BreakerConfig configures the circuit breaker of a connection (see the package documentation).
type BreakerConfig struct {
	// Disabled turns the breaker off.
	Disabled bool
	// MaxRequests is how many probe calls a half-open breaker lets through; that many successes close it.
	// Default 1.
	MaxRequests uint32
	// Interval is how often a closed breaker clears its counts; 0 never does, which is fine for a
	// consecutive-failure rule.
	Interval time.Duration
	// Timeout is how long an open breaker refuses calls before letting probes through. Default 10s.
	Timeout time.Duration
	// ConsecutiveFailures is how many failures in a row open the breaker. Default 5.
	ConsecutiveFailures uint32
	// CountedDeadline is the smallest deadline whose expiry without an answer counts as a failure; calls
	// whose caller gave them less are not counted either way. Default the connection's Timeout; never
	// below MinCountedDeadline.
	CountedDeadline time.Duration
}

// New returns a client connection for cfg. Like grpc.NewClient it does not connect: the first call does,
// and calls made while no backend is healthy fail with Unavailable (retried per the retry policy).
func New(cfg Config) (*grpc.ClientConn, error) {
	if err := applyDefaults(&cfg); err != nil {
		return nil, fmt.Errorf("grpc client config: %w", err)
	}
	target, err := parseTarget(cfg.Target)
	if err != nil {
		return nil, fmt.Errorf("grpc client config: %w", err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	metrics, err := registerClientMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("grpc client for %s: %w", cfg.Target, err)
	}

	var unary []grpc.UnaryClientInterceptor
	var stream []grpc.StreamClientInterceptor
	if !cfg.Ablation.Tracing {
		tu, ts := telemetry.GRPCClientTracing(cfg.TracerProvider)
		unary = append(unary, tu)
		stream = append(stream, ts)
	}
	if !cfg.Ablation.Metrics {
		unary = append(unary, metrics.UnaryClientInterceptor())
		stream = append(stream, metrics.StreamClientInterceptor())
	}
	if !cfg.Ablation.Deadline {
		unary = append(unary, defaultDeadline(cfg.Timeout))
	}
	unary = append(unary, propagateRequestID)
	stream = append(stream, propagateRequestIDStream)
	var brk *breaker
	if !cfg.Breaker.Disabled && !cfg.Ablation.Extras {
		bm, err := registerBreakerMetrics(cfg.Registerer)
		if err != nil {
			return nil, fmt.Errorf("grpc client for %s: %w", cfg.Target, err)
		}
		brk = newBreaker(cfg.Target, cfg.Breaker, bm, logger)
		unary = append(unary, brk.unary)
		stream = append(stream, brk.stream)
	}
	breakerID := ""
	if brk != nil {
		var forget func()
		breakerID, forget = registerPending(brk)
		defer forget() // grpc.NewClient parses the service config, which then holds brk
	}
	sc, err := serviceConfig(cfg.ServiceName, cfg.MaxAttempts, !cfg.Ablation.Extras, breakerID)
	if err != nil {
		return nil, fmt.Errorf("grpc client config: %w", err)
	}

	creds := insecure.NewCredentials()
	if cfg.TLS != nil {
		creds = credentials.NewTLS(cfg.TLS)
	} else {
		logger.Warn("gRPC client is connecting WITHOUT TLS: traffic is plaintext and the server is not authenticated",
			"target", cfg.Target)
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithResolvers(staticBuilder{}),
		// The service config is ours alone: a DNS TXT record must not be able to change retries or
		// load balancing.
		grpc.WithDisableServiceConfig(),
		grpc.WithDefaultServiceConfig(sc),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                keepaliveTime,
			Timeout:             keepaliveTimeout,
			PermitWithoutStream: true,
		}),
		grpc.WithInitialWindowSize(flowControlWindow),
		grpc.WithInitialConnWindowSize(flowControlWindow),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: time.Second, Multiplier: 1.6, Jitter: 0.2, MaxDelay: reconnectMaxDelay},
			MinConnectTimeout: 20 * time.Second, // grpc-go's default
		}),
		grpc.WithUnaryInterceptor(composeUnary(unary)),
		grpc.WithChainStreamInterceptor(stream...),
	}
	opts = append(opts, cfg.DialOptions...)
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("grpc client for %s: %w", cfg.Target, err)
	}
	return conn, nil
}

func applyDefaults(cfg *Config) error {
	switch {
	case cfg.Timeout < 0:
		return errors.New("timeout is negative")
	case cfg.MaxAttempts < 0 || cfg.MaxAttempts > maxAttemptsLimit:
		return fmt.Errorf("MaxAttempts %d outside 1..%d", cfg.MaxAttempts, maxAttemptsLimit)
	case cfg.Breaker.Interval < 0 || cfg.Breaker.Timeout < 0 || cfg.Breaker.CountedDeadline < 0:
		return errors.New("breaker durations are negative")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.Breaker.ConsecutiveFailures == 0 {
		cfg.Breaker.ConsecutiveFailures = DefaultBreakerConsecutiveFailures
	}
	if cfg.Breaker.Timeout == 0 {
		cfg.Breaker.Timeout = DefaultBreakerTimeout
	}
	if cfg.Breaker.CountedDeadline == 0 {
		cfg.Breaker.CountedDeadline = cfg.Timeout
	}
	cfg.Breaker.CountedDeadline = max(cfg.Breaker.CountedDeadline, MinCountedDeadline)
	return nil
}

// parseTarget turns Config.Target into a grpc-go target string, checking the forms grpc-go would only
// reject at the first call.
func parseTarget(target string) (string, error) {
	target = strings.TrimSpace(target)
	switch {
	case target == "":
		return "", errors.New("empty target")
	case strings.Contains(target, "://"):
		if rest, ok := strings.CutPrefix(target, staticScheme+":///"); ok {
			if _, err := parseStaticList(rest); err != nil {
				return "", err
			}
		}
		return target, nil
	case strings.Contains(target, ","):
		if _, err := parseStaticList(target); err != nil {
			return "", err
		}
		return staticScheme + ":///" + target, nil
	}
	if _, _, err := net.SplitHostPort(target); err != nil {
		return "", fmt.Errorf("target %q: want host:port, dns:///name:port or h1:p1,h2:p2: %w", target, err)
	}
	return target, nil
}

// serviceConfig returns the JSON service config. The retry policy applies to every method of the
// connection (one connection may carry several services of a process), health checking to serviceName.
// Without extras it holds round robin alone (an ablation benchmark's client). With a breaker (breakerID
// from registerPending), the policy is round robin reporting its states to the breaker (breakerBalancerName).
func serviceConfig(serviceName string, maxAttempts int, extras bool, breakerID string) (string, error) {
	type retryPolicy struct {
		MaxAttempts          int      `json:"maxAttempts"`
		InitialBackoff       string   `json:"initialBackoff"`
		MaxBackoff           string   `json:"maxBackoff"`
		BackoffMultiplier    float64  `json:"backoffMultiplier"`
		RetryableStatusCodes []string `json:"retryableStatusCodes"`
	}
	type methodConfig struct {
		Name        []map[string]string `json:"name"`
		RetryPolicy *retryPolicy        `json:"retryPolicy,omitempty"`
	}
	sc := map[string]any{
		"loadBalancingConfig": []map[string]any{{"round_robin": map[string]any{}}},
	}
	if breakerID != "" {
		sc["loadBalancingConfig"] = []map[string]any{{breakerBalancerName: map[string]string{"breaker": breakerID}}}
	}
	if extras {
		sc["healthCheckConfig"] = map[string]string{"serviceName": serviceName}
		// Retries spend tokens and successes earn a tenth of one back; below half the tokens, retries
		// stop, so a struggling server is not hit by three times its load.
		sc["retryThrottling"] = map[string]float64{"maxTokens": 10, "tokenRatio": 0.1}
	}
	if extras && maxAttempts > 1 {
		sc["methodConfig"] = []methodConfig{{
			Name: []map[string]string{{}},
			RetryPolicy: &retryPolicy{
				MaxAttempts:          maxAttempts,
				InitialBackoff:       "0.1s",
				MaxBackoff:           "1s",
				BackoffMultiplier:    2,
				RetryableStatusCodes: []string{"UNAVAILABLE"},
			},
		}}
	}
	b, err := json.Marshal(sc)
	if err != nil {
		return "", fmt.Errorf("encode service config: %w", err)
	}
	return string(b), nil
}

// registerClientMetrics returns the client metrics registered with reg. Processes open several
// connections on one registry; they share the collector registered first.
func registerClientMetrics(reg prometheus.Registerer) (*telemetry.GRPCClientMetrics, error) {
	m := telemetry.NewGRPCClientMetrics([]float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}, nil)
	m, err := telemetry.Register(reg, m)
	if err != nil {
		return nil, fmt.Errorf("register client metrics: %w", err)
	}
	return m, nil
}

// defaultDeadline gives unary calls without a deadline one of d: a call must never wait forever on a
// peer that stopped answering.
func defaultDeadline(d time.Duration) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
			ctx = context.WithValue(ctx, defaultDeadlineKey{}, true)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// defaultDeadlineKey marks a context whose deadline defaultDeadline set: the breaker counts its expiry
// as a normal call's however long the call waited between the two interceptors (on a loaded machine,
// long enough for the time left to look like a shorter deadline a caller chose).
type defaultDeadlineKey struct{}

// withRequestID adds the context's request id to the outgoing metadata, unless the caller set one.
func withRequestID(ctx context.Context) context.Context {
	id := telemetry.RequestID(ctx)
	if id == "" {
		return ctx
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok && len(md.Get(requestIDHeader)) > 0 {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, requestIDHeader, id)
}

func propagateRequestID(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	return invoker(withRequestID(ctx), method, req, reply, cc, opts...)
}

func propagateRequestIDStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return streamer(withRequestID(ctx), desc, cc, method, opts...)
}
