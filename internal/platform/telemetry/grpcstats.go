package telemetry

import (
	"context"
	"encoding/binary"
	"math/rand/v2"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/stats"
)

// GRPCServerHandler returns the stats handler that traces a gRPC server's calls: otelgrpc's, doing its
// work (a span, its attributes and events, otelgrpc's metrics) only for the calls whose trace is sampled.
//
// The sampling decision is the one the tracer provider would make, taken before any span exists: a call
// whose caller sent a W3C traceparent follows the caller's decision; a call that starts a trace is sampled
// with the provider's ratio (TracingConfig.SampleRatio), on a trace id chosen first and then given to the
// provider, so that the handler and the provider agree. An unsampled call still gets a valid, non-recording
// span context in its context (the caller's trace id, or a fresh one, and a span id of its own), so that
// its log lines carry trace_id and span_id and the calls it makes propagate the trace with its "not
// sampled" flag: downstream services then skip it too.
//
// This applies only to providers made by SetupTracing, whose ratio and id generator it knows. Any other
// provider (nil for the global one, or a test's SDK provider) gets otelgrpc's handler unchanged, which
// asks the provider for a span on every call.
func GRPCServerHandler(tp trace.TracerProvider, opts ...otelgrpc.Option) stats.Handler {
	return sampledOnly(tp, true, opts)
}

// GRPCClientHandler is GRPCServerHandler for a client: unsampled calls send the trace context of their
// context (or of a fresh unsampled trace, when the call starts one) in the traceparent header and skip
// the span.
func GRPCClientHandler(tp trace.TracerProvider, opts ...otelgrpc.Option) stats.Handler {
	return sampledOnly(tp, false, opts)
}

func sampledOnly(tp trace.TracerProvider, server bool, opts []otelgrpc.Option) stats.Handler {
	if tp != nil {
		opts = append([]otelgrpc.Option{otelgrpc.WithTracerProvider(tp)}, opts...)
	}
	var full stats.Handler
	if server {
		full = otelgrpc.NewServerHandler(opts...)
	} else {
		full = otelgrpc.NewClientHandler(opts...)
	}
	p, ok := tp.(*tracerProvider)
	if !ok || p.ratio >= 1 {
		return full
	}
	return &sampledHandler{full: full, server: server, bound: ratioBound(p.ratio)}
}

// sampledHandler runs full only for sampled calls.
type sampledHandler struct {
	full   stats.Handler
	server bool
	bound  uint64 // trace ids whose low 63 bits (of the last 8 bytes) are below it are sampled
}

// unsampledKey marks the context of a call the handler leaves to itself.
type unsampledKey struct{}

// chosenTraceIDKey carries the trace id the handler chose for a sampled call that starts a trace, for
// idGenerator to hand to the provider.
type chosenTraceIDKey struct{}

func (h *sampledHandler) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	return h.full.TagConn(ctx, info)
}

func (h *sampledHandler) HandleConn(ctx context.Context, s stats.ConnStats) {
	h.full.HandleConn(ctx, s)
}

func (h *sampledHandler) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if h.server {
		return h.tagServer(ctx, info)
	}
	return h.tagClient(ctx, info)
}

func (h *sampledHandler) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if ctx.Value(unsampledKey{}) != nil {
		return
	}
	h.full.HandleRPC(ctx, s)
}

func (h *sampledHandler) tagServer(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	remote := otel.GetTextMapPropagator().Extract(ctx, incomingCarrier{ctx})
	parent := trace.SpanContextFromContext(remote)
	if parent.IsValid() {
		if parent.IsSampled() {
			return h.full.TagRPC(ctx, info)
		}
		return unsampled(remote, parent.TraceID())
	}
	id := newTraceID()
	if h.sampled(id) {
		return h.full.TagRPC(context.WithValue(ctx, chosenTraceIDKey{}, id), info)
	}
	return unsampled(remote, id)
}

func (h *sampledHandler) tagClient(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	switch {
	case sc.IsSampled():
		return h.full.TagRPC(ctx, info)
	case sc.IsValid():
		ctx = context.WithValue(ctx, unsampledKey{}, true)
	default:
		id := newTraceID()
		if h.sampled(id) {
			return h.full.TagRPC(context.WithValue(ctx, chosenTraceIDKey{}, id), info)
		}
		ctx = unsampled(ctx, id)
	}
	otel.GetTextMapPropagator().Inject(ctx, &outgoingCarrier{ctx: &ctx})
	return ctx
}

// sampled reports whether the provider's ratio sampler samples a trace starting with id: the rule of
// sdktrace.TraceIDRatioBased.
func (h *sampledHandler) sampled(id trace.TraceID) bool {
	return binary.BigEndian.Uint64(id[8:16])>>1 < h.bound
}

func ratioBound(ratio float64) uint64 { return uint64(ratio * (1 << 63)) }

// unsampled returns ctx carrying a non-recording span context of trace id, with a fresh span id, marked
// for HandleRPC to skip.
func unsampled(ctx context.Context, id trace.TraceID) context.Context {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: id, SpanID: newSpanID()})
	return context.WithValue(trace.ContextWithSpanContext(ctx, sc), unsampledKey{}, true)
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
// sampledHandler chose already.
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
