package telemetry

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/stats"
)

// GRPCServerTracing returns the interceptors that trace a gRPC server's calls with otelgrpc's server
// handler, driven by the interceptors rather than installed as the server's stats handler: grpc-go then
// creates no per-call stats events (each a copy of headers or payload sizes) for calls that are not
// traced, and the handler does its work (a span, its attributes, otelgrpc's metrics) only for the calls
// whose trace is sampled. Put them first in the chain, so that every later stage and log line sees the
// call's trace.
//
// The sampling decision is the one the tracer provider would make, taken before any span exists: a call
// whose caller sent a W3C traceparent follows the caller's decision; a call that starts a trace is sampled
// with the provider's ratio (TracingConfig.SampleRatio), on a trace id chosen first and then given to the
// provider, so that the interceptors and the provider agree. An unsampled call still gets a valid,
// non-recording span context in its context (the caller's trace id, or a fresh one, and a span id of its
// own), so that its log lines carry trace_id and span_id and the calls it makes propagate the trace with
// its "not sampled" flag: downstream services then skip it too.
//
// Sampling applies to providers made by SetupTracing, whose ratio and id generator it knows; with any
// other provider (nil for the global one, or a test's SDK provider) every call goes to otelgrpc's handler,
// which asks the provider for a span.
func GRPCServerTracing(tp trace.TracerProvider, opts ...otelgrpc.Option) (grpc.UnaryServerInterceptor, grpc.StreamServerInterceptor) {
	t := newTracer(tp, true, opts)
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, traced := t.tag(ctx, info.FullMethod)
		if !traced {
			return handler(ctx, req)
		}
		begin := t.begin(ctx, false, false, false)
		resp, err := handler(ctx, req)
		t.end(ctx, false, begin, err)
		return resp, err
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, traced := t.tag(ss.Context(), info.FullMethod)
		ss = &contextServerStream{ServerStream: ss, ctx: ctx}
		if !traced {
			return handler(srv, ss)
		}
		begin := t.begin(ctx, false, info.IsClientStream, info.IsServerStream)
		err := handler(srv, ss)
		t.end(ctx, false, begin, err)
		return err
	}
	return unary, stream
}

// GRPCClientTracing is GRPCServerTracing for a client: unsampled calls send the trace context of their
// context (or of a fresh unsampled trace, when the call starts one) in the traceparent header and skip
// the span. A traced stream's span ends when a receive fails (io.EOF counting as success), or after its
// one receive when the server does not stream.
func GRPCClientTracing(tp trace.TracerProvider, opts ...otelgrpc.Option) (grpc.UnaryClientInterceptor, grpc.StreamClientInterceptor) {
	t := newTracer(tp, false, opts)
	unary := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		ctx, traced := t.tag(ctx, method)
		if !traced {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		begin := t.begin(ctx, true, false, false)
		err := invoker(ctx, method, req, reply, cc, opts...)
		t.end(ctx, true, begin, err)
		return err
	}
	stream := func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		ctx, traced := t.tag(ctx, method)
		if !traced {
			return streamer(ctx, desc, cc, method, opts...)
		}
		begin := t.begin(ctx, true, desc.ClientStreams, desc.ServerStreams)
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			t.end(ctx, true, begin, err)
			return nil, err
		}
		return &tracedClientStream{ClientStream: cs, t: t, ctx: ctx, begin: begin, serverStreams: desc.ServerStreams}, nil
	}
	return unary, stream
}

// chosenTraceIDKey carries the trace id the tracer chose for a sampled call that starts a trace, for
// idGenerator to hand to the provider.
type chosenTraceIDKey struct{}

// tracer decides which calls otelgrpc's handler traces and drives it for those.
type tracer struct {
	full     stats.Handler // otelgrpc's
	server   bool
	sampling bool   // false: every call goes to full
	bound    uint64 // with sampling: trace ids whose low 63 bits (of the last 8 bytes) are below it are sampled
}

func newTracer(tp trace.TracerProvider, server bool, opts []otelgrpc.Option) *tracer {
	if tp != nil {
		opts = append([]otelgrpc.Option{otelgrpc.WithTracerProvider(tp)}, opts...)
	}
	t := &tracer{server: server}
	if server {
		t.full = otelgrpc.NewServerHandler(opts...)
	} else {
		t.full = otelgrpc.NewClientHandler(opts...)
	}
	if p, ok := tp.(*tracerProvider); ok && p.ratio < 1 {
		t.sampling, t.bound = true, ratioBound(p.ratio)
	}
	return t
}

// tag returns the context of a call to method and whether full traces it.
func (t *tracer) tag(ctx context.Context, method string) (context.Context, bool) {
	info := &stats.RPCTagInfo{FullMethodName: method}
	if !t.sampling {
		return t.full.TagRPC(ctx, info), true
	}
	if t.server {
		return t.tagServer(ctx, info)
	}
	return t.tagClient(ctx, info)
}

// begin reports a traced call's start to full.
func (t *tracer) begin(ctx context.Context, client, clientStream, serverStream bool) time.Time {
	now := time.Now()
	t.full.HandleRPC(ctx, &stats.Begin{Client: client, BeginTime: now, IsClientStream: clientStream, IsServerStream: serverStream})
	if p, ok := peer.FromContext(ctx); ok && !client {
		t.full.HandleRPC(ctx, &stats.InHeader{LocalAddr: p.LocalAddr, RemoteAddr: p.Addr})
	}
	return now
}

// end reports a traced call's end, with its error, to full.
func (t *tracer) end(ctx context.Context, client bool, begin time.Time, err error) {
	t.full.HandleRPC(ctx, &stats.End{Client: client, BeginTime: begin, EndTime: time.Now(), Error: err})
}

func (t *tracer) tagServer(ctx context.Context, info *stats.RPCTagInfo) (context.Context, bool) {
	if parent, ok := plainParent(ctx); ok {
		// The common case, a caller's traceparent and nothing else to carry on: no extraction context.
		if parent.IsSampled() {
			return t.full.TagRPC(ctx, info), true
		}
		return unsampled(ctx, parent.TraceID()), false
	}
	remote := otel.GetTextMapPropagator().Extract(ctx, incomingCarrier{ctx})
	parent := trace.SpanContextFromContext(remote)
	if parent.IsValid() {
		if parent.IsSampled() {
			return t.full.TagRPC(ctx, info), true
		}
		return unsampled(remote, parent.TraceID()), false
	}
	id := newTraceID()
	if t.sampled(id) {
		return t.full.TagRPC(context.WithValue(ctx, chosenTraceIDKey{}, id), info), true
	}
	return unsampled(remote, id), false
}

func (t *tracer) tagClient(ctx context.Context, info *stats.RPCTagInfo) (context.Context, bool) {
	sc := trace.SpanContextFromContext(ctx)
	switch {
	case sc.IsSampled():
		return t.full.TagRPC(ctx, info), true
	case sc.IsValid():
	default:
		id := newTraceID()
		if t.sampled(id) {
			return t.full.TagRPC(context.WithValue(ctx, chosenTraceIDKey{}, id), info), true
		}
		ctx = unsampled(ctx, id)
	}
	otel.GetTextMapPropagator().Inject(ctx, &outgoingCarrier{ctx: &ctx})
	return ctx, false
}

// plainParent parses the caller's W3C traceparent when it is the only trace context the call carries (no
// tracestate, no baggage, version 00), which the propagator would extract to the same span context; ok is
// false otherwise, and then the propagator extracts it.
func plainParent(ctx context.Context) (trace.SpanContext, bool) {
	v := metadata.ValueFromIncomingContext(ctx, traceparentKey)
	if len(v) != 1 || len(v[0]) != 55 || v[0][:3] != "00-" || v[0][35] != '-' || v[0][52] != '-' ||
		metadata.ValueFromIncomingContext(ctx, "tracestate") != nil || metadata.ValueFromIncomingContext(ctx, "baggage") != nil {
		return trace.SpanContext{}, false
	}
	h := v[0]
	var tid trace.TraceID
	var sid trace.SpanID
	var flags [1]byte
	if !decodeLowerHex(tid[:], h[3:35]) || !decodeLowerHex(sid[:], h[36:52]) || !decodeLowerHex(flags[:], h[53:55]) {
		return trace.SpanContext{}, false
	}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.TraceFlags(flags[0]) & trace.FlagsSampled, Remote: true,
	})
	return sc, sc.IsValid()
}

// traceparentKey is the W3C trace context header.
const traceparentKey = "traceparent"

// decodeLowerHex decodes lowercase hex src into dst, reporting whether src was exactly that.
func decodeLowerHex(dst []byte, src string) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	for i := range dst {
		hi, ok1 := hexNibble(src[2*i])
		lo, ok2 := hexNibble(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = hi<<4 | lo
	}
	return true
}

func hexNibble(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// contextServerStream is a server stream with the context of its trace.
type contextServerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *contextServerStream) Context() context.Context { return s.ctx }

// tracedClientStream ends its span when the stream ends.
type tracedClientStream struct {
	grpc.ClientStream
	t             *tracer
	ctx           context.Context
	begin         time.Time
	serverStreams bool
	ended         bool
}

func (s *tracedClientStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if s.ended || (err == nil && s.serverStreams) {
		return err
	}
	s.ended = true
	if errors.Is(err, io.EOF) {
		s.t.end(s.ctx, true, s.begin, nil)
	} else {
		s.t.end(s.ctx, true, s.begin, err)
	}
	return err
}

// sampled reports whether the provider's ratio sampler samples a trace starting with id: the rule of
// sdktrace.TraceIDRatioBased.
func (t *tracer) sampled(id trace.TraceID) bool {
	return binary.BigEndian.Uint64(id[8:16])>>1 < t.bound
}

func ratioBound(ratio float64) uint64 { return uint64(ratio * (1 << 63)) }

// unsampled returns ctx carrying a non-recording span context of trace id, with a fresh span id.
func unsampled(ctx context.Context, id trace.TraceID) context.Context {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: id, SpanID: newSpanID()})
	return trace.ContextWithSpanContext(ctx, sc)
}

// newTraceID returns a random trace id, never the invalid all-zero one.
func newTraceID() trace.TraceID {
	var id trace.TraceID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:8], rand.Uint64())
		binary.BigEndian.PutUint64(id[8:], rand.Uint64())
	}
	return id
}

// newSpanID returns a random span id, never the invalid all-zero one.
func newSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		binary.BigEndian.PutUint64(id[:], rand.Uint64())
	}
	return id
}

// idGenerator is the provider's id generator: random ids, except for a span that starts a trace whose id
// the tracer chose already.
type idGenerator struct{}

var _ sdktrace.IDGenerator = idGenerator{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if id, ok := ctx.Value(chosenTraceIDKey{}).(trace.TraceID); ok {
		return id, newSpanID()
	}
	return newTraceID(), newSpanID()
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

// incomingCarrier reads a call's incoming metadata key by key, without copying all of it.
type incomingCarrier struct{ ctx context.Context }

var _ propagation.TextMapCarrier = incomingCarrier{}

func (c incomingCarrier) Get(key string) string {
	if v := metadata.ValueFromIncomingContext(c.ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (incomingCarrier) Set(string, string) {}

func (c incomingCarrier) Keys() []string {
	md, _ := metadata.FromIncomingContext(c.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}

// outgoingCarrier adds to the outgoing metadata of the context it points to.
type outgoingCarrier struct{ ctx *context.Context }

var _ propagation.TextMapCarrier = (*outgoingCarrier)(nil)

func (c *outgoingCarrier) Get(key string) string {
	md, _ := metadata.FromOutgoingContext(*c.ctx)
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c *outgoingCarrier) Set(key, value string) {
	*c.ctx = metadata.AppendToOutgoingContext(*c.ctx, key, value)
}

func (c *outgoingCarrier) Keys() []string {
	md, _ := metadata.FromOutgoingContext(*c.ctx)
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	return keys
}
