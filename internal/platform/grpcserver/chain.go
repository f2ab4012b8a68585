package grpcserver

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"buf.build/go/protovalidate"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/grpcerr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
	"lastmile/internal/platform/telemetry"
)

// RequestIDHeader is the metadata key of the request id, read from requests and set on responses.
const RequestIDHeader = "x-request-id"

// validRequestID accepts the request ids the server adopts from callers. Anything else (too long, or with
// characters that could forge log fields) is replaced by a fresh id.
var validRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// healthPrefix starts the full method names of the health service, which is exempt from rate limiting
// and logged at debug level when it succeeds.
const healthPrefix = "/grpc.health.v1.Health/"

// Names of the stages of the chain, outermost first, as the tests observe them.
const (
	stageRequestID      = "request_id"
	stageMetrics        = "metrics"
	stageLogging        = "logging"
	stageErrors         = "errors"
	stageRecovery       = "recovery"
	stageAuthentication = "authentication"
	stageAuthorization  = "authorization"
	stageRateLimit      = "rate_limit"
	stageStreamLimit    = "stream_limit"
	stageValidation     = "validation"
)

// chain holds what the stages of the interceptor chain need.
type chain struct {
	logger    *slog.Logger
	metrics   *telemetry.GRPCServerMetrics
	authn     grpcauth.Authenticator
	tracker   CallTracker // nil when streams are not tracked
	policy    auth.Policy
	limiter   *rateLimiter // nil when rate limiting is off
	streams   *streamLimiter
	validator protovalidate.Validator
	// stopping is closed when the server's shutdown starts (Server.stopping); nil in tests of the chain.
	stopping <-chan struct{}
}

// stage is one link of the chain, in its unary and its streaming form. Keeping both forms side by side
// in one list is what guarantees that unary and streaming calls pass the same stages in the same order.
type stage struct {
	name   string
	unary  grpc.UnaryServerInterceptor
	stream grpc.StreamServerInterceptor
}

// stages returns the chain, outermost first. The package documentation explains the order.
func (c *chain) stages() []stage {
	recoveryOpt := recovery.WithRecoveryHandlerContext(c.recovered)
	return []stage{
		around(stageRequestID, c.requestID),
		{stageMetrics, c.metrics.UnaryServerInterceptor(), c.metrics.StreamServerInterceptor()},
		around(stageLogging, c.logCall),
		around(stageErrors, c.mapErrors),
		{stageRecovery, recovery.UnaryServerInterceptor(recoveryOpt), recovery.StreamServerInterceptor(recoveryOpt)},
		{stageAuthentication, around(stageAuthentication, c.authenticate).unary, around(stageAuthentication, c.authenticateStream).stream},
		around(stageAuthorization, c.authorize),
		around(stageRateLimit, c.rateLimit),
		{stageStreamLimit, passUnary, c.limitStream},
		{stageValidation, c.validateUnary, c.validateStream},
	}
}

// interceptors returns the chain as gRPC interceptors, without the stages ablation leaves out. When
// observe is set, each stage reports the calls it sees to it first.
func (c *chain) interceptors(ablation Ablation, observe func(method, stage string)) ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	omit := map[string]bool{
		stageMetrics:        ablation.Metrics,
		stageLogging:        ablation.Logging,
		stageAuthentication: ablation.Authentication,
		stageValidation:     ablation.Validation,
	}
	var unary []grpc.UnaryServerInterceptor
	var stream []grpc.StreamServerInterceptor
	for _, st := range c.stages() {
		if omit[st.name] {
			continue
		}
		if observe != nil {
			st = observed(st, observe)
		}
		unary = append(unary, st.unary)
		stream = append(stream, st.stream)
	}
	return unary, stream
}

func observed(st stage, observe func(method, stage string)) stage {
	u, s := st.unary, st.stream
	return stage{
		name: st.name,
		unary: func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			observe(info.FullMethod, st.name)
			return u(ctx, req, info, handler)
		},
		stream: func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			observe(info.FullMethod, st.name)
			return s(srv, ss, info, handler)
		},
	}
}

// aroundFunc is a stage that works the same for unary and streaming calls: it runs next, the rest of the
// chain, with the context it chooses.
type aroundFunc func(ctx context.Context, method string, next func(context.Context) error) error

// around turns f into a stage.
func around(name string, f aroundFunc) stage {
	return stage{
		name: name,
		unary: func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			n := unaryNexts.Get().(*unaryNext)
			n.handler, n.req = handler, req
			err := f(ctx, info.FullMethod, n.next)
			resp := n.resp
			*n = unaryNext{next: n.next}
			unaryNexts.Put(n)
			if err != nil {
				return nil, err
			}
			return resp, nil
		},
		stream: func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			return f(ss.Context(), info.FullMethod, func(ctx context.Context) error {
				if ctx != ss.Context() {
					ss = &contextStream{ServerStream: ss, ctx: ctx}
				}
				return handler(srv, ss)
			})
		},
	}
}

// unaryNext is the rest of the chain of a unary call, as the next function of an aroundFunc. They are
// pooled with their next method value bound once: a closure over the handler, request and response made
// per stage and call would cost two allocations each time. An aroundFunc never keeps next past its return.
type unaryNext struct {
	handler   grpc.UnaryHandler
	req, resp any
	next      func(context.Context) error // n.call, bound once
}

var unaryNexts = sync.Pool{New: func() any {
	n := &unaryNext{}
	n.next = n.call
	return n
}}

func (n *unaryNext) call(ctx context.Context) error {
	var err error
	n.resp, err = n.handler(ctx, n.req)
	return err
}

// contextStream is a server stream with a replaced context.
type contextStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextStream) Context() context.Context { return s.ctx }

// callState is what inner stages tell the logging stage about a call.
type callState struct {
	principal auth.Principal
	err       error // the error before mapping, with its cause
}

type callStateKey struct{}

func callStateFrom(ctx context.Context) *callState {
	st, _ := ctx.Value(callStateKey{}).(*callState)
	return st
}

func (c *chain) requestID(ctx context.Context, _ string, next func(context.Context) error) error {
	var id string
	if v := metadata.ValueFromIncomingContext(ctx, RequestIDHeader); len(v) == 1 && validRequestID.MatchString(v[0]) {
		id = v[0]
	}
	if id == "" {
		id = rand.Text()
	}
	ctx = telemetry.WithRequestID(ctx, id)
	md := requestIDHeaders.Get().(metadata.MD)
	md[RequestIDHeader][0] = id
	// SetHeader only fails when headers were already sent, which cannot happen before the handler runs.
	_ = grpc.SetHeader(ctx, md)
	md[RequestIDHeader][0] = ""
	requestIDHeaders.Put(md)
	return next(ctx)
}

// requestIDHeaders holds reusable header metadata of one request id (three allocations per call when made
// afresh): the server transport streams copy what SetHeader is given (metadata.Join, grpc-go's and the
// in-process one alike), so the map is free again once SetHeader returns.
var requestIDHeaders = sync.Pool{New: func() any { return metadata.MD{RequestIDHeader: make([]string, 1)} }}

// exemplar links the call's latency sample to its trace, when the trace is sampled.
func exemplar(ctx context.Context) prometheus.Labels {
	if sc := trace.SpanContextFromContext(ctx); sc.IsSampled() {
		return prometheus.Labels{"trace_id": sc.TraceID().String()}
	}
	return nil
}

func (c *chain) logCall(ctx context.Context, method string, next func(context.Context) error) error {
	st := &callState{}
	start := time.Now()
	err := next(context.WithValue(ctx, callStateKey{}, st))
	code := status.Code(err)
	level := logLevel(method, code)
	if code == codes.Unavailable && c.isStopping() {
		// The stopping server ended the call itself (its services tell their streams to reconnect,
		// which clients do, to another replica or once this one is back): expected, not trouble.
		level = slog.LevelInfo
	}
	if !c.logger.Enabled(ctx, level) {
		return err
	}
	end := time.Now()
	line := telemetry.CallLine{
		Method:        method,
		Code:          code.String(),
		DurationMS:    float64(end.Sub(start).Microseconds()) / 1000,
		PrincipalKind: st.principal.Kind.String(),
		Principal:     st.principal.Subject,
		Via:           st.principal.Via,
		// For a call the gateway forwards, the end client's address rather than the gateway's (peer).
		Client: grpcauth.ClientAddr(ctx, st.principal),
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		line.Peer = peerString(p.Addr)
	}
	if st.err != nil {
		line.Error = st.err.Error()
	}
	telemetry.LogCall(ctx, c.logger, level, end, "gRPC call", &line)
	return err
}

// peerString formats a peer address as its String method does, for TCP with one allocation instead of
// three.
func peerString(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(tcp.IP); ok && tcp.Port >= 0 && tcp.Port <= 0xffff {
			return netip.AddrPortFrom(ip.Unmap().WithZone(tcp.Zone), uint16(tcp.Port)).String()
		}
	}
	return a.String()
}

// isStopping reports whether the server's shutdown has started.
func (c *chain) isStopping() bool {
	select {
	case <-c.stopping:
		return true
	default:
		return false
	}
}

// logLevel logs failures of the server itself as errors, trouble with dependencies or load as warnings,
// and everything else (including the caller's own mistakes) as information. Successful health checks,
// which probes make every few seconds, are debug noise.
func logLevel(method string, code codes.Code) slog.Level {
	switch code {
	case codes.OK, codes.Canceled:
		// Health-checking clients cancel their watch streams whenever they drop a connection.
		if strings.HasPrefix(method, healthPrefix) {
			return slog.LevelDebug
		}
		return slog.LevelInfo
	case codes.Internal, codes.Unknown, codes.DataLoss, codes.Unimplemented:
		return slog.LevelError
	case codes.Unavailable, codes.DeadlineExceeded:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

func (c *chain) mapErrors(ctx context.Context, _ string, next func(context.Context) error) error {
	err := next(ctx)
	if err == nil {
		return nil
	}
	if st := callStateFrom(ctx); st != nil {
		st.err = err
	}
	return publicStatus(err).Err()
}

// publicStatus is the status a caller sees for err. Beyond grpcerr.ToStatus, it also scrubs statuses that
// a handler built itself with an internal code, since their messages are typically err.Error().
func publicStatus(err error) *status.Status {
	st := grpcerr.ToStatus(err)
	switch st.Code() {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return status.New(codes.Internal, "internal error")
	}
	return st
}

// recovered turns a handler's panic into an Internal error. The stack is logged here, while the panicking
// frames are still on it; the panic value goes to the call's log line as the error's cause.
func (c *chain) recovered(ctx context.Context, p any) error {
	method, _ := grpc.Method(ctx)
	c.logger.LogAttrs(ctx, slog.LevelError, "panic in gRPC handler",
		slog.String("method", method), slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
	return apperr.Wrap(apperr.Internal, fmt.Errorf("panic: %v", p), "internal error")
}

func (c *chain) authenticate(ctx context.Context, _ string, next func(context.Context) error) error {
	var p auth.Principal
	var err error
	if ca, ok := c.authn.(grpcauth.ContextAuthenticator); ok {
		p, err = ca.AuthenticateContext(ctx)
	} else {
		md, _ := metadata.FromIncomingContext(ctx)
		p, err = c.authn.Authenticate(ctx, md)
	}
	if err != nil {
		return err
	}
	if st := callStateFrom(ctx); st != nil {
		st.principal = p
	}
	return next(auth.WithPrincipal(ctx, p))
}

func (c *chain) authorize(ctx context.Context, method string, next func(context.Context) error) error {
	if err := c.policy.Authorize(ctx, method, auth.FromContext(ctx)); err != nil {
		return err
	}
	return next(ctx)
}

func (c *chain) rateLimit(ctx context.Context, method string, next func(context.Context) error) error {
	// Health checks are exempt: refusing a client's health watch would take this server out of its
	// load balancer's rotation because of that client's own quota. So are lastmile's services (mTLS
	// certificates of the deployment's CA): their calls (dispatch's to courier and route, a process's to
	// identity) are made for callers who were limited where they came in, many of them per call (a task's
	// searches widen the radius, every watch tracks its courier), and one bucket per service name,
	// shared by all its replicas, would cap the whole platform instead: one customer creating tasks
	// within their own limit got dispatch's nearby searches refused for everyone.
	if c.limiter == nil || strings.HasPrefix(method, healthPrefix) || auth.FromContext(ctx).Kind == auth.Service {
		return next(ctx)
	}
	if err := c.limiter.allow(rateKey(ctx, auth.FromContext(ctx))); err != nil {
		return err
	}
	return next(ctx)
}

func (c *chain) validateUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := c.validate(req); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (c *chain) validateStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &validatingStream{ServerStream: ss, chain: c})
}

// validatingStream validates every message the handler receives. A message that breaks its rules makes
// RecvMsg return an *InvalidMessageError; the handler decides whether that ends the stream (returning it
// does, with InvalidArgument).
type validatingStream struct {
	grpc.ServerStream
	chain *chain
}

func (s *validatingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	err := s.chain.validate(m)
	if err != nil && apperr.CodeOf(err) == apperr.Invalid {
		return &InvalidMessageError{Message: m.(proto.Message), Err: err} // validate checks proto messages only
	}
	return err
}

// InvalidMessageError is what a stream's RecvMsg returns for a message that breaks its validation rules:
// Err is the apperr.Invalid error a unary call fails with for such a request (its violations name the
// fields, its message is their sentences), and Message the message as received. Returned by the handler,
// it ends the stream with InvalidArgument and that message, as Err would. A handler whose contract
// answers some invalid messages inside the stream instead (a command with a command id gets its own
// result) finds it with errors.As, answers, and reads on.
type InvalidMessageError struct {
	Message proto.Message
	Err     error
}

func (e *InvalidMessageError) Error() string { return e.Err.Error() }

// Unwrap returns Err, so that the error maps to the status Err maps to.
func (e *InvalidMessageError) Unwrap() error { return e.Err }

// validate checks m against its protovalidate rules. Violations become an apperr.Invalid error whose
// field violations name the offending fields ("origin.latitude").
func (c *chain) validate(m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return nil
	}
	return validationError(msg, c.validator.Validate(msg))
}

// Validate checks m against its protovalidate rules exactly as the validation interceptor does, for
// messages a handler must check itself: the items of a client stream whose rules the contract tells the
// interceptor to ignore, so that one bad item is reported instead of ending the stream.
func Validate(m proto.Message) error {
	return validationError(m, protovalidate.Validate(m))
}

// validationError turns the result of validating msg into the error callers see: nil, an apperr.Invalid
// error listing the field violations, an apperr.Invalid error when a rule could not be evaluated on the
// caller's values, or Internal when a rule does not compile.
func validationError(msg proto.Message, err error) error {
	if err == nil {
		return nil
	}
	name := msg.ProtoReflect().Descriptor().FullName()
	var verr *protovalidate.ValidationError
	var rerr *protovalidate.RuntimeError
	switch {
	case errors.As(err, &rerr):
		// A rule that compiled but failed on these values (a timestamp difference that overflows, a
		// timestamp outside 0001..9999) failed because of what the caller sent: the same rule evaluates
		// on every other request. It is the caller's error, and never Internal, which would tell clients
		// and their circuit breakers that the server is broken. The CEL error stays in the log: it names
		// rule internals, not fields.
		return apperr.Wrap(apperr.Invalid, fmt.Errorf("validate %s: %w", name, err),
			"invalid request: a field value is outside the range its rules can check")
	case !errors.As(err, &verr):
		// A rule that does not compile is our bug, not the caller's.
		return apperr.Wrap(apperr.Internal, fmt.Errorf("validate %s: %w", name, err), "internal error")
	}
	violations := make([]apperr.FieldViolation, 0, len(verr.Violations))
	texts := make([]string, 0, len(verr.Violations))
	seen := make(map[string]bool, len(verr.Violations))
	for _, v := range verr.Violations {
		// The description is a sentence that names the field (see sentence), so that it reads well alone.
		if v.FieldDescriptor == nil {
			// protovalidate leaves it out for the items of a repeated field; the sentence needs the
			// field's rules (a pattern phrased in words instead of quoted).
			withField := *v
			withField.FieldDescriptor = fieldAt(msg.ProtoReflect().Descriptor(), v.Proto.GetField())
			v = &withField
		}
		fv := apperr.FieldViolation{Field: protovalidate.FieldPathString(v.Proto.GetField()), Description: sentence(v)}
		if fv.Field != "" && seen[fv.Field] {
			// One sentence per field: an empty request_id is "required", not also "not printable ASCII".
			continue
		}
		seen[fv.Field] = true
		violations = append(violations, fv)
		texts = append(texts, fv.Description)
	}
	return apperr.InvalidFields(strings.Join(texts, "; "), violations...)
}
