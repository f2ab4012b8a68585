package telemetry

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// GRPCServerMetrics are the RED metrics of a gRPC server, the series and labels of go-grpc-middleware's
// prometheus provider (grpc_server_started_total, grpc_server_handled_total{grpc_code},
// grpc_server_msg_received_total, grpc_server_msg_sent_total and the grpc_server_handling_seconds
// histogram, each labelled grpc_type, grpc_service, grpc_method), so that dashboards and alerts written
// for that provider work unchanged.
//
// Unlike the provider, it resolves each method's series once, on the method's first call (or in
// InitializeMetrics), instead of looking up every series by its label values on every call, and it
// attaches exemplars (the sampled trace's id) to the histogram alone: per call it allocates nothing.
type GRPCServerMetrics struct{ m grpcMetrics }

// GRPCClientMetrics are GRPCServerMetrics for a client: grpc_client_started_total,
// grpc_client_handled_total, grpc_client_msg_received_total, grpc_client_msg_sent_total and
// grpc_client_handling_seconds.
type GRPCClientMetrics struct{ m grpcMetrics }

// Exemplar returns the exemplar labels of a call's observation from its context, or nil for none.
type Exemplar func(context.Context) prometheus.Labels

// NewGRPCServerMetrics returns server metrics whose histogram has the given buckets, in seconds.
// Register them (Register) before use.
func NewGRPCServerMetrics(buckets []float64, exemplar Exemplar) *GRPCServerMetrics {
	m := &GRPCServerMetrics{m: newGRPCMetrics("server", buckets, exemplar, [5]string{
		"Total number of RPCs started on the server.",
		"Total number of RPCs completed on the server, regardless of success or failure.",
		"Total number of RPC stream messages received on the server.",
		"Total number of gRPC stream messages sent by the server.",
		"Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
	})}
	return m
}

// NewGRPCClientMetrics returns client metrics whose histogram has the given buckets, in seconds.
// Register them (Register) before use.
func NewGRPCClientMetrics(buckets []float64, exemplar Exemplar) *GRPCClientMetrics {
	return &GRPCClientMetrics{m: newGRPCMetrics("client", buckets, exemplar, [5]string{
		"Total number of RPCs started on the client.",
		"Total number of RPCs completed by the client, regardless of success or failure.",
		"Total number of RPC stream messages received by the client.",
		"Total number of gRPC stream messages sent by the client.",
		"Histogram of response latency (seconds) of the gRPC until it is finished by the application.",
	})}
}

// Describe implements prometheus.Collector.
func (s *GRPCServerMetrics) Describe(ch chan<- *prometheus.Desc) { s.m.describe(ch) }

// Collect implements prometheus.Collector.
func (s *GRPCServerMetrics) Collect(ch chan<- prometheus.Metric) { s.m.collect(ch) }

// Describe implements prometheus.Collector.
func (c *GRPCClientMetrics) Describe(ch chan<- *prometheus.Desc) { c.m.describe(ch) }

// Collect implements prometheus.Collector.
func (c *GRPCClientMetrics) Collect(ch chan<- prometheus.Metric) { c.m.collect(ch) }

// InitializeMetrics creates every series of every method of server at zero (every code of
// grpc_server_handled_total included), so that rates and alerts see a method before its first call.
func (s *GRPCServerMetrics) InitializeMetrics(server interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}) {
	for service, info := range server.GetServiceInfo() {
		for _, mi := range info.Methods {
			h := s.m.handles("/"+service+"/"+mi.Name, grpcType(mi.IsClientStream, mi.IsServerStream))
			h.receivedCounter(&s.m)
			h.sentCounter(&s.m)
			for c := range h.handled {
				h.handledCounter(&s.m, codes.Code(c))
			}
		}
	}
}

// UnaryServerInterceptor counts and times unary calls.
func (s *GRPCServerMetrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		h := s.m.handles(info.FullMethod, typeUnary)
		h.started.Inc()
		h.receivedCounter(&s.m).Inc()
		resp, err := handler(ctx, req)
		if err == nil {
			h.sentCounter(&s.m).Inc()
		}
		s.m.done(ctx, h, err, start)
		return resp, err
	}
}

// StreamServerInterceptor counts and times streams and counts their messages.
func (s *GRPCServerMetrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		h := s.m.handles(info.FullMethod, grpcType(info.IsClientStream, info.IsServerStream))
		h.started.Inc()
		err := handler(srv, &countedServerStream{ServerStream: ss, m: &s.m, h: h})
		s.m.done(ss.Context(), h, err, start)
		return err
	}
}

// UnaryClientInterceptor counts and times unary calls.
func (c *GRPCClientMetrics) UnaryClientInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		start := time.Now()
		h := c.m.handles(method, typeUnary)
		h.started.Inc()
		h.sentCounter(&c.m).Inc()
		err := invoker(ctx, method, req, reply, cc, opts...)
		if err == nil {
			h.receivedCounter(&c.m).Inc()
		}
		c.m.done(ctx, h, err, start)
		return err
	}
}

// StreamClientInterceptor counts and times streams and counts their messages. A stream is done when
// a receive fails (io.EOF counting as OK), or after its one receive when the server does not stream.
func (c *GRPCClientMetrics) StreamClientInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		start := time.Now()
		h := c.m.handles(method, grpcType(desc.ClientStreams, desc.ServerStreams))
		h.started.Inc()
		cs, err := streamer(ctx, desc, cc, method, opts...)
		if err != nil {
			c.m.done(ctx, h, err, start)
			return nil, err
		}
		return &countedClientStream{ClientStream: cs, m: &c.m, h: h, ctx: ctx, start: start, serverStreams: desc.ServerStreams}, nil
	}
}

// Values of the grpc_type label.
const (
	typeUnary        = "unary"
	typeClientStream = "client_stream"
	typeServerStream = "server_stream"
	typeBidiStream   = "bidi_stream"
)

func grpcType(clientStreams, serverStreams bool) string {
	switch {
	case clientStreams && serverStreams:
		return typeBidiStream
	case clientStreams:
		return typeClientStream
	case serverStreams:
		return typeServerStream
	}
	return typeUnary
}

// grpcMetrics is what server and client metrics share.
type grpcMetrics struct {
	started, handled, received, sent *prometheus.CounterVec
	seconds                          *prometheus.HistogramVec
	exemplar                         Exemplar
	methods                          sync.Map // full method name -> *methodHandles
}

// methodHandles are one method's series. The started counter and the histogram, which every call
// touches, are resolved with the handles; the others on their first use, so that a method has exactly the
// series go-grpc-middleware's provider would give it (a code never answered has no series until
// InitializeMetrics creates them all).
type methodHandles struct {
	started        prometheus.Counter
	seconds        prometheus.Observer
	received, sent atomic.Pointer[prometheus.Counter]
	handled        [codes.Unauthenticated + 1]atomic.Pointer[prometheus.Counter] // by code
	labels         [3]string                                                     // grpc_type, grpc_service, grpc_method
}

func (h *methodHandles) receivedCounter(m *grpcMetrics) prometheus.Counter {
	return h.counter(&h.received, m.received, h.labels[:]...)
}

func (h *methodHandles) sentCounter(m *grpcMetrics) prometheus.Counter {
	return h.counter(&h.sent, m.sent, h.labels[:]...)
}

func (h *methodHandles) handledCounter(m *grpcMetrics, code codes.Code) prometheus.Counter {
	if int(code) >= len(h.handled) {
		return m.handled.WithLabelValues(h.labels[0], h.labels[1], h.labels[2], code.String())
	}
	if c := h.handled[code].Load(); c != nil {
		return *c
	}
	return h.counter(&h.handled[code], m.handled, h.labels[0], h.labels[1], h.labels[2], code.String())
}

// counter returns the counter in slot, resolving it from vec on first use.
func (h *methodHandles) counter(slot *atomic.Pointer[prometheus.Counter], vec *prometheus.CounterVec, labels ...string) prometheus.Counter {
	if c := slot.Load(); c != nil {
		return *c
	}
	c := vec.WithLabelValues(labels...)
	slot.Store(&c)
	return c
}

func newGRPCMetrics(side string, buckets []float64, exemplar Exemplar, help [5]string) grpcMetrics {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: "grpc_" + side + "_" + name, Help: help}, labels)
	}
	return grpcMetrics{
		started:  counter("started_total", help[0], labels),
		handled:  counter("handled_total", help[1], append(labels[:3:3], "grpc_code")),
		received: counter("msg_received_total", help[2], labels),
		sent:     counter("msg_sent_total", help[3], labels),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "grpc_" + side + "_handling_seconds", Help: help[4], Buckets: buckets,
		}, labels),
		exemplar: exemplar,
	}
}

func (m *grpcMetrics) describe(ch chan<- *prometheus.Desc) {
	m.started.Describe(ch)
	m.handled.Describe(ch)
	m.received.Describe(ch)
	m.sent.Describe(ch)
	m.seconds.Describe(ch)
}

func (m *grpcMetrics) collect(ch chan<- prometheus.Metric) {
	m.started.Collect(ch)
	m.handled.Collect(ch)
	m.received.Collect(ch)
	m.sent.Collect(ch)
	m.seconds.Collect(ch)
}

// handles returns the series of fullMethod, creating them on its first call.
func (m *grpcMetrics) handles(fullMethod, typ string) *methodHandles {
	if h, ok := m.methods.Load(fullMethod); ok {
		return h.(*methodHandles)
	}
	service, method := "unknown", "unknown"
	if s, meth, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/"); ok {
		service, method = s, meth
	}
	h := &methodHandles{
		started: m.started.WithLabelValues(typ, service, method),
		seconds: m.seconds.WithLabelValues(typ, service, method),
		labels:  [3]string{typ, service, method},
	}
	actual, _ := m.methods.LoadOrStore(fullMethod, h)
	return actual.(*methodHandles)
}

// done counts a finished call with the code of err and observes its duration, with the exemplar of ctx.
func (m *grpcMetrics) done(ctx context.Context, h *methodHandles, err error, start time.Time) {
	h.handledCounter(m, codeOf(err)).Inc()
	seconds := time.Since(start).Seconds()
	if m.exemplar != nil {
		if ex := m.exemplar(ctx); ex != nil {
			h.seconds.(prometheus.ExemplarObserver).ObserveWithExemplar(seconds, ex)
			return
		}
	}
	h.seconds.Observe(seconds)
}

// codeOf is the status code of err as grpc-go reports it, context errors included.
func codeOf(err error) codes.Code {
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return status.FromContextError(err).Code()
}

// countedServerStream counts a server stream's messages.
type countedServerStream struct {
	grpc.ServerStream
	m *grpcMetrics
	h *methodHandles
}

func (s *countedServerStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err == nil {
		s.h.sentCounter(s.m).Inc()
	}
	return err
}

func (s *countedServerStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.h.receivedCounter(s.m).Inc()
	}
	return err
}

// countedClientStream counts a client stream's messages and its end.
type countedClientStream struct {
	grpc.ClientStream
	m             *grpcMetrics
	h             *methodHandles
	ctx           context.Context
	start         time.Time
	serverStreams bool
}

func (s *countedClientStream) SendMsg(m any) error {
	err := s.ClientStream.SendMsg(m)
	if err == nil {
		s.h.sentCounter(s.m).Inc()
	}
	return err
}

func (s *countedClientStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil {
		s.h.receivedCounter(s.m).Inc()
	}
	switch {
	case !s.serverStreams:
		s.m.done(s.ctx, s.h, err, s.start)
	case err == nil:
	case errors.Is(err, io.EOF):
		s.m.done(s.ctx, s.h, nil, s.start)
	default:
		s.m.done(s.ctx, s.h, err, s.start)
	}
	return err
}
