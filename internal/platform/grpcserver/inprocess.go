package grpcserver

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"lastmile/internal/platform/tlsutil"
)

// The in-process connection (Server.InProcess): a component of the process (the REST gateway of an
// all-in-one `lastmile serve`) calls the services registered on the Server without a gRPC client, HTTP/2
// or TLS, and through the same interceptor chain as a network call: tracing, open calls, request id,
// metrics, logging, error mapping, recovery, authentication, authorization, rate and stream limits,
// validation. What a network call has and an in-memory one must get too, it gets here: the caller's
// service identity as the peer (tlsutil.InProcessInfo), its outgoing metadata as the incoming metadata
// (and none of its context values), its deadline and cancellation, header and trailer metadata through a
// grpc.ServerTransportStream, the message size limits, copies of the messages in both directions (neither
// side shares a message with the other), and Unavailable when the service's health is not SERVING, as a
// health-checking client finds it.

// inProcessMethod is one method of a registered service.
type inProcessMethod struct {
	service string // full service name, for its health status
	impl    any
	unary   grpc.MethodHandler // nil for a stream
	stream  *grpc.StreamDesc
}

// RegisterService implements grpc.ServiceRegistrar: it registers the service on the gRPC server (GRPC),
// and for the calls of InProcess connections. Register services on the Server rather than on GRPC() so
// that both reach them.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(desc, impl) // panics on a duplicate or an impl of the wrong type, as it should
	s.inprocMu.Lock()
	defer s.inprocMu.Unlock()
	if s.inproc == nil {
		s.inproc = map[string]inProcessMethod{}
	}
	for _, m := range desc.Methods {
		s.inproc["/"+desc.ServiceName+"/"+m.MethodName] = inProcessMethod{service: desc.ServiceName, impl: impl, unary: m.Handler}
	}
	for i := range desc.Streams {
		sd := desc.Streams[i]
		s.inproc["/"+desc.ServiceName+"/"+sd.StreamName] = inProcessMethod{service: desc.ServiceName, impl: impl, stream: &sd}
	}
}

// ServesInProcess reports whether the service (its full name) was registered with RegisterService, so that
// InProcess connections reach it; a service registered on GRPC() directly is served over the network only.
func (s *Server) ServesInProcess(service string) bool {
	s.inprocMu.RLock()
	defer s.inprocMu.RUnlock()
	for _, m := range s.inproc {
		if m.service == service {
			return true
		}
	}
	return false
}

// InProcess returns a connection that calls this server's services (those registered with RegisterService)
// in memory, as the given service identity (such as "gateway"): the chain sees a peer with that identity,
// exactly as it sees a caller presenting that service's certificate over mTLS. It is for a component of
// the same process only; nothing reaches it from the network. An empty service calls without an identity,
// as a plaintext client would.
func (s *Server) InProcess(service string) grpc.ClientConnInterface {
	p := &peer.Peer{Addr: inProcessAddr{}}
	if service != "" {
		p.AuthInfo = tlsutil.InProcessInfo{
			CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
			Service:        service,
		}
	}
	return &inProcessConn{s: s, peer: p}
}

// inProcessAddr is the peer address of in-process calls.
type inProcessAddr struct{}

// Network implements net.Addr.
func (inProcessAddr) Network() string { return "inprocess" }

// String implements net.Addr.
func (inProcessAddr) String() string { return "inprocess" }

// inProcessConn is the grpc.ClientConnInterface of InProcess.
type inProcessConn struct {
	s    *Server
	peer *peer.Peer
}

var _ grpc.ClientConnInterface = (*inProcessConn)(nil)

func (c *inProcessConn) method(name string) (inProcessMethod, error) {
	c.s.inprocMu.RLock()
	m, ok := c.s.inproc[name]
	c.s.inprocMu.RUnlock()
	if !ok {
		svc, _, _ := strings.Cut(strings.TrimPrefix(name, "/"), "/")
		return m, status.Errorf(codes.Unimplemented, "unknown method %s for service %s", name, svc)
	}
	return m, nil
}

// serving refuses calls to a service whose health is not SERVING (its database is down, or the server is
// shutting down), as a client that health-checks the service refuses them when it finds no ready backend.
// A service without a status yet (before Serve's first readiness poll) is served.
func (c *inProcessConn) serving(ctx context.Context, service string) error {
	select {
	case <-c.s.stopping:
		return status.Errorf(codes.Unavailable, "service %s is not serving: the server is shutting down", service)
	default:
	}
	resp, err := c.s.health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil || resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
		return nil
	}
	return status.Errorf(codes.Unavailable, "service %s is not serving", service)
}

// serverContext is what the server side of a call sees: the caller's deadline and cancellation, none of
// its values, its outgoing metadata as incoming, the peer and the transport stream.
func (c *inProcessConn) serverContext(ctx context.Context, sts grpc.ServerTransportStream) context.Context {
	sctx := context.Context(valuelessContext{ctx})
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		sctx = metadata.NewIncomingContext(sctx, md)
	}
	sctx = peer.NewContext(sctx, c.peer)
	return grpc.NewContextWithServerTransportStream(sctx, sts)
}

// valuelessContext passes on a context's deadline and cancellation but none of its values: a network call
// carries only metadata from client to server.
type valuelessContext struct{ context.Context }

// Value implements context.Context: no values.
func (valuelessContext) Value(any) any { return nil }

// Invoke implements grpc.ClientConnInterface for unary methods. The call runs on the caller's goroutine.
func (c *inProcessConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	m, err := c.method(method)
	if err != nil {
		return err
	}
	if m.unary == nil {
		return status.Errorf(codes.Internal, "method %s is a stream", method)
	}
	if err := c.serving(ctx, m.service); err != nil {
		return err
	}
	in, ok := args.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "request of %s is %T, not a proto message", method, args)
	}
	if n := proto.Size(in); n > c.s.cfg.MaxRecvMsgSize {
		return status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, c.s.cfg.MaxRecvMsgSize)
	}
	sts := &unaryTransport{method: method}
	dec := func(v any) error {
		out, ok := v.(proto.Message)
		if !ok {
			return status.Errorf(codes.Internal, "request of %s decodes into %T, not a proto message", method, v)
		}
		proto.Merge(out, in)
		return nil
	}
	resp, err := m.unary(m.impl, c.serverContext(ctx, sts), dec, c.s.unaryChain)
	if err == nil {
		err = copyReply(reply, resp, c.s.cfg.MaxSendMsgSize)
	}
	sts.deliver(opts)
	return toStatus(err)
}

// copyReply copies the handler's response into the caller's reply message.
func copyReply(reply, resp any, limit int) error {
	out, ok1 := reply.(proto.Message)
	msg, ok2 := resp.(proto.Message)
	if !ok1 || !ok2 || msg == nil {
		return status.Errorf(codes.Internal, "response %T cannot be copied into %T", resp, reply)
	}
	if n := proto.Size(msg); n > limit {
		return status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", n, limit)
	}
	proto.Merge(out, msg)
	return nil
}

// toStatus makes err what a gRPC client receives: a status error (grpc-go sends any other error as Unknown).
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unknown, err.Error())
}

// unaryTransport is the grpc.ServerTransportStream of an in-process unary call: it collects the header and
// trailer metadata the chain and the handler set, which the caller receives when the call returns.
type unaryTransport struct {
	method string
	mu     sync.Mutex
	header metadata.MD
	trail  metadata.MD
	sent   bool
}

// Method implements grpc.ServerTransportStream.
func (t *unaryTransport) Method() string { return t.method }

// SetHeader implements grpc.ServerTransportStream.
func (t *unaryTransport) SetHeader(md metadata.MD) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sent {
		return status.Error(codes.Internal, "transport: the stream is done or WriteHeader was already called")
	}
	t.header = metadata.Join(t.header, md)
	return nil
}

// SendHeader implements grpc.ServerTransportStream: the header reaches the caller with the response.
func (t *unaryTransport) SendHeader(md metadata.MD) error {
	if err := t.SetHeader(md); err != nil {
		return err
	}
	t.mu.Lock()
	t.sent = true
	t.mu.Unlock()
	return nil
}

// SetTrailer implements grpc.ServerTransportStream.
func (t *unaryTransport) SetTrailer(md metadata.MD) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.trail = metadata.Join(t.trail, md)
	return nil
}

// deliver hands the header and trailer to the caller's grpc.Header, grpc.Trailer and grpc.Peer options.
func (t *unaryTransport) deliver(opts []grpc.CallOption) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sent = true
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = t.header
		case grpc.TrailerCallOption:
			*o.TrailerAddr = t.trail
		case grpc.PeerCallOption:
			*o.PeerAddr = peer.Peer{Addr: inProcessAddr{}}
		}
	}
}

// NewStream implements grpc.ClientConnInterface for streaming methods. The server side runs on its own
// goroutine, which ends with the call; the caller must end the call as with any gRPC stream (receive until
// an error, or cancel ctx).
func (c *inProcessConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, _ ...grpc.CallOption) (grpc.ClientStream, error) {
	m, err := c.method(method)
	if err != nil {
		return nil, err
	}
	if m.stream == nil {
		return nil, status.Errorf(codes.Internal, "method %s is not a stream", method)
	}
	if err := c.serving(ctx, m.service); err != nil {
		return nil, err
	}
	ss := &serverStream{
		method:     method,
		recvLimit:  c.s.cfg.MaxRecvMsgSize,
		sendLimit:  c.s.cfg.MaxSendMsgSize,
		requests:   make(chan proto.Message),
		responses:  make(chan proto.Message),
		headerSent: make(chan struct{}),
		done:       make(chan struct{}),
		closeSend:  make(chan struct{}),
	}
	var cancel context.CancelFunc
	ss.ctx, cancel = context.WithCancel(c.serverContext(ctx, streamTransport{ss}))
	cs := &clientStream{ctx: ctx, ss: ss, clientStreams: m.stream.ClientStreams}
	info := &grpc.StreamServerInfo{FullMethod: method, IsClientStream: m.stream.ClientStreams, IsServerStream: m.stream.ServerStreams}
	go func() {
		defer cancel()
		err := c.s.streamChain(m.impl, ss, info, m.stream.Handler)
		ss.finish(toStatus(err))
	}()
	return cs, nil
}

// serverStream is the server side of an in-process stream (grpc.ServerStream and its transport stream).
type serverStream struct {
	ctx       context.Context
	method    string
	recvLimit int
	sendLimit int

	requests   chan proto.Message // unbuffered: a send returns once the other side has the message
	responses  chan proto.Message
	closeSend  chan struct{} // closed by the client's CloseSend
	closeOnce  sync.Once
	headerSent chan struct{} // closed once the header is final
	done       chan struct{} // closed when the handler has returned; err and trailer are final then

	mu     sync.Mutex
	header metadata.MD
	trail  metadata.MD
	sent   bool
	err    error
}

var _ grpc.ServerStream = (*serverStream)(nil)

// streamTransport is the grpc.ServerTransportStream of an in-process stream (grpc.Method, grpc.SetHeader,
// grpc.SetTrailer on its context).
type streamTransport struct{ s *serverStream }

// Method implements grpc.ServerTransportStream.
func (t streamTransport) Method() string { return t.s.method }

// SetHeader implements grpc.ServerTransportStream.
func (t streamTransport) SetHeader(md metadata.MD) error { return t.s.SetHeader(md) }

// SendHeader implements grpc.ServerTransportStream.
func (t streamTransport) SendHeader(md metadata.MD) error { return t.s.SendHeader(md) }

// SetTrailer implements grpc.ServerTransportStream.
func (t streamTransport) SetTrailer(md metadata.MD) error {
	t.s.SetTrailer(md)
	return nil
}

// Context implements grpc.ServerStream.
func (s *serverStream) Context() context.Context { return s.ctx }

// SetHeader implements grpc.ServerStream.
func (s *serverStream) SetHeader(md metadata.MD) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sent {
		return status.Error(codes.Internal, "transport: the stream is done or WriteHeader was already called")
	}
	s.header = metadata.Join(s.header, md)
	return nil
}

// SendHeader implements grpc.ServerStream.
func (s *serverStream) SendHeader(md metadata.MD) error {
	if err := s.SetHeader(md); err != nil {
		return err
	}
	s.sendHeader()
	return nil
}

func (s *serverStream) sendHeader() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.sent {
		s.sent = true
		close(s.headerSent)
	}
}

// SetTrailer implements grpc.ServerStream.
func (s *serverStream) SetTrailer(md metadata.MD) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.trail = metadata.Join(s.trail, md)
}

// SendMsg implements grpc.ServerStream: a copy of m reaches the client.
func (s *serverStream) SendMsg(m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "message %T is not a proto message", m)
	}
	if n := proto.Size(msg); n > s.sendLimit {
		return status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", n, s.sendLimit)
	}
	s.sendHeader()
	select {
	case s.responses <- proto.Clone(msg):
		return nil
	case <-s.ctx.Done():
		return status.FromContextError(s.ctx.Err()).Err()
	}
}

// RecvMsg implements grpc.ServerStream: io.EOF once the client closed its side.
func (s *serverStream) RecvMsg(m any) error {
	out, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "message %T is not a proto message", m)
	}
	select {
	case msg := <-s.requests:
		if n := proto.Size(msg); n > s.recvLimit {
			return status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, s.recvLimit)
		}
		proto.Merge(out, msg)
		return nil
	case <-s.closeSend:
		return io.EOF
	case <-s.ctx.Done():
		return status.FromContextError(s.ctx.Err()).Err()
	}
}

// finish records the call's end.
func (s *serverStream) finish(err error) {
	s.sendHeader()
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
	close(s.done)
}

// clientStream is the caller's side of an in-process stream.
type clientStream struct {
	ctx           context.Context
	ss            *serverStream
	clientStreams bool
}

var _ grpc.ClientStream = (*clientStream)(nil)

// Header implements grpc.ClientStream: it waits for the server's header (or the call's end).
func (c *clientStream) Header() (metadata.MD, error) {
	select {
	case <-c.ss.headerSent:
	case <-c.ctx.Done():
		return nil, status.FromContextError(c.ctx.Err()).Err()
	}
	c.ss.mu.Lock()
	defer c.ss.mu.Unlock()
	return c.ss.header.Copy(), nil
}

// Trailer implements grpc.ClientStream: the trailer, once the call has ended.
func (c *clientStream) Trailer() metadata.MD {
	select {
	case <-c.ss.done:
	default:
		return nil
	}
	c.ss.mu.Lock()
	defer c.ss.mu.Unlock()
	return c.ss.trail.Copy()
}

// CloseSend implements grpc.ClientStream.
func (c *clientStream) CloseSend() error {
	c.ss.closeOnce.Do(func() { close(c.ss.closeSend) })
	return nil
}

// Context implements grpc.ClientStream.
func (c *clientStream) Context() context.Context { return c.ctx }

// SendMsg implements grpc.ClientStream: a copy of m reaches the server. Once the call has ended it returns
// io.EOF, as grpc-go does (RecvMsg then returns the status); nil for a method whose client sends one
// message (as grpc-go, whose generated code requires it: the status comes from RecvMsg).
func (c *clientStream) SendMsg(m any) error {
	msg, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "message %T is not a proto message", m)
	}
	select {
	case <-c.ss.closeSend:
		return status.Error(codes.Internal, "SendMsg called after CloseSend")
	default:
	}
	select {
	case c.ss.requests <- proto.Clone(msg):
		return nil
	case <-c.ss.done:
		if !c.clientStreams {
			return nil
		}
		return io.EOF
	case <-c.ctx.Done():
		return status.FromContextError(c.ctx.Err()).Err()
	}
}

// RecvMsg implements grpc.ClientStream: the next message, io.EOF when the call ended with OK, else its
// status.
func (c *clientStream) RecvMsg(m any) error {
	out, ok := m.(proto.Message)
	if !ok {
		return status.Errorf(codes.Internal, "message %T is not a proto message", m)
	}
	select {
	case msg := <-c.ss.responses:
		proto.Merge(out, msg)
		return nil
	case <-c.ss.done:
		// Every message the handler sent was received before it returned (the channel is unbuffered).
		c.ss.mu.Lock()
		err := c.ss.err
		c.ss.mu.Unlock()
		if err == nil {
			return io.EOF
		}
		return err
	case <-c.ctx.Done():
		return status.FromContextError(c.ctx.Err()).Err()
	}
}

// chainStream makes one interceptor of ics, outermost first, as grpc.ChainStreamInterceptor does.
func chainStream(ics []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return ics[0](srv, ss, info, streamNextOf(ics, 0, info, handler))
	}
}

func streamNextOf(ics []grpc.StreamServerInterceptor, i int, info *grpc.StreamServerInfo, last grpc.StreamHandler) grpc.StreamHandler {
	if i == len(ics)-1 {
		return last
	}
	return func(srv any, ss grpc.ServerStream) error {
		return ics[i+1](srv, ss, info, streamNextOf(ics, i+1, info, last))
	}
}
