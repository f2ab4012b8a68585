package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/telemetry"
)

// Defaults of StreamLimit's zero fields: every streaming method is bounded, configured or not.
const (
	DefaultStreamsPerCaller = 16
	DefaultStreamsTotal     = 1024
)

// healthWatch is the health service's streaming method. Health-checking clients open one watch per
// connection and service, and refusing one takes this server out of that client's rotation, so its
// built-in limit is generous; it is a limit all the same.
const healthWatch = healthPrefix + "Watch"

// healthWatchLimit is healthWatch's limit unless Config.Streams sets one. Anyone may watch health, without
// credentials, so its pool is shared as the dispatch watches' are: healthStaffReserve slots only lastmile's
// own services (their certificates) may take, since a service whose watch is refused takes this server
// out of its rotation (every call of a split deployment's replica to this process would then fail), and
// half of the rest only callers without a watch. Anonymous callers from many addresses may fill the
// rest, never the services' share.
var healthWatchLimit = StreamLimit{PerCaller: 256, Total: 4096, StaffReserve: healthStaffReserve,
	FirstReserve: (4096 - healthStaffReserve) / 2, Staff: isService, EndAtShutdown: true}

// reflectionInfo are the reflection services' streaming methods. grpcurl holds one open, idle, for as
// long as the call it made runs (a courier's session typed in a terminal, say).
var reflectionInfo = []string{
	"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
	"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
}

// shutdownMessage is the status message of the streams the server ends at shutdown (EndAtShutdown).
const shutdownMessage = "the server is shutting down; reconnect"

// healthStaffReserve is the health watches kept for services: one per connection of an internal client
// and service it calls, a handful per process of a deployment.
const healthStaffReserve = 1024

// isService reports whether p is one of lastmile's services, authenticated by its certificate.
func isService(p auth.Principal) bool { return p.Kind == auth.Service }

// StreamLimit bounds the open streams of one streaming method (client, server or bidirectional) and ends
// its idle ones. Zero fields take the defaults: DefaultStreamsPerCaller, DefaultStreamsTotal, and no idle
// timeouts.
//
// A stream over either cap is refused before its handler runs, with ResourceExhausted. An idle stream is
// ended with DeadlineExceeded (its idle deadline passed; a caller that cancels sees Canceled instead, and
// Internal stays reserved for the server's own failures), whatever its handler then returns.
type StreamLimit struct {
	// PerCaller bounds the streams one caller has open on the method at once. Callers are keyed like
	// the rate limit: users by id, services by name, anonymous callers by client address
	// (grpcauth.ClientKey).
	PerCaller int
	// Total bounds the streams open on the method at once, all callers together.
	Total int
	// Idle ends a stream on which the client has sent no message for this long, counting from the
	// stream's start or the last message the handler received: a location stream opened and never fed,
	// say. It is counted from the handler's receipt, so a handler that pauses between receives must allow
	// for its own pauses in D. Only for methods whose clients stream (client or bidirectional); 0 never
	// ends a stream for this.
	Idle time.Duration
	// HalfClosedIdle ends a stream the client has half-closed (it said it sends nothing more) once the
	// server, too, has sent nothing for this long since the half-close or its last message: a listener
	// that stopped talking and gets nothing to hear. It needs a handler that reads until the client's EOF,
	// so it is only for bidirectional methods; 0 never ends a stream for this.
	HalfClosedIdle time.Duration
	// SendTimeout ends a stream one of whose messages has waited this long to be sent: the client
	// stopped reading, and flow control holds the server's send. The handler's send returns the stream's
	// end at once and its context is canceled; the stream ends with DeadlineExceeded whatever the handler
	// returns, and its slot is free. Only for methods whose server streams; 0 never ends a stream for this.
	SendTimeout time.Duration
	// StaffReserve keeps that many of Total's slots for staff (callers Staff reports true for): other
	// callers are refused once all but StaffReserve slots are taken, so dashboards keep working when
	// everyone else filled the rest. 0 reserves none.
	StaffReserve int
	// Staff reports whether a caller may take StaffReserve's slots; nil for nobody.
	Staff func(auth.Principal) bool
	// FirstReserve keeps that many of Total's slots (besides StaffReserve) for the first stream of a
	// caller who has none open: a caller's second and later streams are refused once all but
	// FirstReserve + StaffReserve slots are taken. An account holding many streams then cannot take
	// the slots of others: filling the pool takes one account per slot of FirstReserve. 0 reserves none.
	FirstReserve int
	// EndAtShutdown has the server end the method's streams still open when it shuts down, right after
	// the OnShutdown hooks ran, with Unavailable ("the server is shutting down; reconnect"): the handler's
	// context is canceled and a receive waiting for the client returns that status at once. Without it,
	// a client that keeps such a stream open and idle (a bulk import nobody feeds, grpcurl's reflection
	// stream) holds the graceful stop until the shutdown timeout. For methods that no hook drains; a
	// method whose service ends its streams itself at shutdown (with a message of its own, after a grace)
	// leaves it false, so that its drain is not cut short. The health service's Watch and the reflection
	// services always have it.
	EndAtShutdown bool
}

// withDefaults returns l with its zero caps replaced by the defaults.
func (l StreamLimit) withDefaults() StreamLimit {
	setDefault(&l.PerCaller, DefaultStreamsPerCaller)
	setDefault(&l.Total, DefaultStreamsTotal)
	return l
}

// check reports what is wrong with l, for method.
func (l StreamLimit) check(method string) error {
	switch {
	case l.PerCaller < 0 || l.Total < 0:
		return fmt.Errorf("stream limit of %s: negative cap", method)
	case l.Idle < 0 || l.HalfClosedIdle < 0:
		return fmt.Errorf("stream limit of %s: negative idle timeout", method)
	case l.PerCaller > 0 && l.Total > 0 && l.PerCaller > l.Total:
		return fmt.Errorf("stream limit of %s: PerCaller %d exceeds Total %d", method, l.PerCaller, l.Total)
	case l.SendTimeout < 0:
		return fmt.Errorf("stream limit of %s: negative send timeout", method)
	case l.StaffReserve < 0 || l.FirstReserve < 0:
		return fmt.Errorf("stream limit of %s: negative reserve", method)
	case l.StaffReserve+l.FirstReserve >= l.withDefaults().Total:
		return fmt.Errorf("stream limit of %s: reserves %d and %d leave nothing of Total %d", method, l.StaffReserve, l.FirstReserve, l.withDefaults().Total)
	}
	return nil
}

// clock is the time of the stream limiter, replaced in tests (see export_test.go).
type clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d; stop prevents that if it has not happened yet.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) AfterFunc(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }

// streamLimiter enforces the StreamLimits of a server: it counts open streams per method and caller, and
// watches the idle timeouts.
type streamLimiter struct {
	limits map[string]StreamLimit // with defaults applied
	clock  clock

	open    *prometheus.GaugeVec
	refused *prometheus.CounterVec
	idled   *prometheus.CounterVec
	stalled *prometheus.CounterVec

	mu      sync.Mutex
	methods map[string]*openStreams
	// ending holds the open streams of the methods with EndAtShutdown; shutDown is set once endAll ran,
	// so that a stream starting later is ended at once.
	ending   map[*abandonableStream]struct{}
	shutDown bool
}

// openStreams counts the open streams of one method.
type openStreams struct {
	total    int
	byCaller map[string]int
}

// newStreamLimiter checks limits and returns the limiter, with its metrics registered with reg.
func newStreamLimiter(limits map[string]StreamLimit, clk clock, reg prometheus.Registerer) (*streamLimiter, error) {
	l := &streamLimiter{limits: map[string]StreamLimit{healthWatch: healthWatchLimit}, clock: clk,
		methods: map[string]*openStreams{}, ending: map[*abandonableStream]struct{}{}}
	for _, m := range reflectionInfo {
		l.limits[m] = StreamLimit{EndAtShutdown: true}.withDefaults()
	}
	if l.clock == nil {
		l.clock = realClock{}
	}
	for method, lim := range limits {
		if err := lim.check(method); err != nil {
			return nil, err
		}
		if isBuiltin(method) {
			lim.EndAtShutdown = true
		}
		l.limits[method] = lim.withDefaults()
	}
	var err error
	if l.open, err = telemetry.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "lastmile_grpc_server_open_streams",
		Help: "Streams open on the server, by method.",
	}, []string{"grpc_method"})); err != nil {
		return nil, fmt.Errorf("register stream metrics: %w", err)
	}
	if l.refused, err = telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lastmile_grpc_server_stream_refusals_total",
		Help: "Streams refused for a stream limit, by method and by the cap reached (caller or total).",
	}, []string{"grpc_method", "cap"})); err != nil {
		return nil, fmt.Errorf("register stream metrics: %w", err)
	}
	if l.idled, err = telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lastmile_grpc_server_streams_idle_closed_total",
		Help: "Streams the server ended because they were idle, by method.",
	}, []string{"grpc_method"})); err != nil {
		return nil, fmt.Errorf("register stream metrics: %w", err)
	}
	if l.stalled, err = telemetry.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "lastmile_grpc_server_streams_stalled_closed_total",
		Help: "Streams the server ended because a message waited too long to be sent (the client stopped reading), by method.",
	}, []string{"grpc_method"})); err != nil {
		return nil, fmt.Errorf("register stream metrics: %w", err)
	}
	return l, nil
}

// limit returns method's limit.
func (l *streamLimiter) limit(method string) StreamLimit {
	if lim, ok := l.limits[method]; ok {
		return lim
	}
	return StreamLimit{}.withDefaults()
}

// checkMethods refuses limits that name a method the server does not serve as a stream, or an idle
// timeout the method's kind cannot honour: a typo must not leave a method at the defaults unnoticed.
func (l *streamLimiter) checkMethods(services map[string]grpc.ServiceInfo) error {
	kinds := map[string]grpc.MethodInfo{}
	for name, info := range services {
		for _, m := range info.Methods {
			kinds["/"+name+"/"+m.Name] = m
		}
	}
	var problems []string
	for method, lim := range l.limits {
		m, ok := kinds[method]
		switch {
		case isBuiltin(method):
		case !ok:
			problems = append(problems, method+" is not served")
		case !m.IsClientStream && !m.IsServerStream:
			problems = append(problems, method+" is not a streaming method")
		case lim.Idle > 0 && !m.IsClientStream:
			problems = append(problems, method+": Idle needs a method whose client streams")
		case lim.HalfClosedIdle > 0 && !(m.IsClientStream && m.IsServerStream):
			problems = append(problems, method+": HalfClosedIdle needs a bidirectional method")
		case lim.SendTimeout > 0 && !m.IsServerStream:
			problems = append(problems, method+": SendTimeout needs a method whose server streams")
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fmt.Errorf("stream limits: %s", strings.Join(problems, "; "))
	}
	return nil
}

// acquire takes a slot of method for caller, or returns an apperr.ResourceExhausted error. staff says
// whether the caller may take StaffReserve's slots.
func (l *streamLimiter) acquire(method, caller string, staff bool, lim StreamLimit) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.methods[method]
	if m == nil {
		m = &openStreams{byCaller: map[string]int{}}
		l.methods[method] = m
	}
	switch {
	case m.byCaller[caller] >= lim.PerCaller:
		l.refused.WithLabelValues(method, "caller").Inc()
		return &apperr.Error{Code: apperr.ResourceExhausted,
			Message: fmt.Sprintf("too many open streams of %s: at most %d per caller", methodName(method), lim.PerCaller),
			Err:     fmt.Errorf("%s has %d streams of %s open", caller, m.byCaller[caller], method)}
	case m.total >= lim.Total, !staff && m.total >= lim.Total-lim.StaffReserve:
		l.refused.WithLabelValues(method, "total").Inc()
		return &apperr.Error{Code: apperr.ResourceExhausted,
			Message: fmt.Sprintf("too many open streams of %s; try again later", methodName(method)),
			Err:     fmt.Errorf("%d streams of %s open", m.total, method)}
	case !staff && m.byCaller[caller] > 0 && m.total >= lim.Total-lim.StaffReserve-lim.FirstReserve:
		l.refused.WithLabelValues(method, "shared").Inc()
		return &apperr.Error{Code: apperr.ResourceExhausted,
			Message: fmt.Sprintf("too many open streams of %s: the rest are kept for callers without one; close one of yours or try again later", methodName(method)),
			Err:     fmt.Errorf("%s has %d of the %d streams of %s open", caller, m.byCaller[caller], m.total, method)}
	}
	m.byCaller[caller]++
	m.total++
	l.open.WithLabelValues(method).Inc()
	return nil
}

// release gives back a slot that acquire took.
func (l *streamLimiter) release(method, caller string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.methods[method]
	if m.byCaller[caller]--; m.byCaller[caller] <= 0 {
		delete(m.byCaller, caller)
	}
	m.total--
	l.open.WithLabelValues(method).Dec()
}

// isBuiltin reports whether method is the health service's or a reflection service's stream, which every
// server serves and ends at shutdown.
func isBuiltin(method string) bool {
	return method == healthWatch || slices.Contains(reflectionInfo, method)
}

// track registers a stream of a method with EndAtShutdown until the returned function is called; a
// stream starting after endAll is ended at once.
func (l *streamLimiter) track(s *abandonableStream) (untrack func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shutDown {
		s.endAtShutdown()
	} else {
		l.ending[s] = struct{}{}
	}
	return func() {
		l.mu.Lock()
		delete(l.ending, s)
		l.mu.Unlock()
	}
}

// endAll ends the open streams of the methods with EndAtShutdown, and those that start later, for the
// server's shutdown.
func (l *streamLimiter) endAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.shutDown = true
	for s := range l.ending {
		s.endAtShutdown()
	}
}

// methodName is the short name of a full method name: "WatchCouriers" for
// "/lastmile.courier.v1.CourierService/WatchCouriers".
func methodName(full string) string {
	return full[strings.LastIndexByte(full, '/')+1:]
}

// limitStream is the stream limit stage: it holds a slot of the method for the caller while the handler
// runs, and ends the stream when it goes idle or stalls. Unary calls pass through.
func (c *chain) limitStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	l := c.streams
	method := info.FullMethod
	lim := l.limit(method)
	p := auth.FromContext(ss.Context())
	caller := rateKey(ss.Context(), p)
	if err := l.acquire(method, caller, lim.Staff != nil && lim.Staff(p), lim); err != nil {
		return err
	}
	defer l.release(method, caller)
	if lim.Idle == 0 && lim.HalfClosedIdle == 0 && lim.SendTimeout == 0 && !lim.EndAtShutdown {
		return handler(srv, ss)
	}
	as := newAbandonableStream(ss, lim, l.clock)
	defer as.finish() // also when the handler panics: the timers and the pumps must not outlive it
	if lim.EndAtShutdown {
		defer l.track(as)()
	}
	err := handler(srv, as)
	switch as.finish() {
	case endIdle:
		l.idled.WithLabelValues(method).Inc()
		return as.endError()
	case endStalled:
		l.stalled.WithLabelValues(method).Inc()
		return as.endError()
	case endShutdown:
		return as.endError()
	}
	return err
}

// passUnary is the unary form of stages that only concern streams.
func passUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(ctx, req)
}

// endKind says why the server ended a stream.
type endKind int

const (
	notEnded    endKind = iota
	endIdle             // Idle or HalfClosedIdle: the client sent nothing, or nobody had anything to say
	endStalled          // SendTimeout: a message waited too long to be sent, the client is not reading
	endShutdown         // EndAtShutdown: the server is shutting down
)

// abandonableStream is a server stream that the server ends while its handler waits on it, for the idle
// timeouts and the send timeout of its StreamLimit: when the client has sent nothing for Idle (counting
// from the stream's start or the last message the handler received), when the client half-closed and
// the server has sent nothing for HalfClosedIdle since, or when a message has waited SendTimeout to be
// sent. The stream then ends with DeadlineExceeded, whatever its handler returns; one the server ends for
// its shutdown (EndAtShutdown), with Unavailable.
//
// grpc-go offers a handler no way to reset its stream, nor to interrupt a receive waiting for the client
// or a send held by flow control. So ending a stream takes two things: the handler's context is
// canceled, for handlers that wait on it, and a pending RecvMsg or SendMsg returns the stream's end at
// once, for handlers that wait on the stream. For that the receives (with an idle timeout) and the sends
// (with a send timeout) run on a goroutine of their own, a pump, whose operation the handler's wait can
// abandon; the abandoned operation ends when the stream does, right after the handler returns.
type abandonableStream struct {
	grpc.ServerStream
	ctx    context.Context
	cancel context.CancelFunc
	lim    StreamLimit
	clock  clock

	recvs, sends *pump         // nil for a direction whose waits are never abandoned
	ended        chan struct{} // closed when the server ends the stream
	finished     chan struct{} // closed when the handler has returned

	mu         sync.Mutex
	lastRecv   time.Time
	lastSend   time.Time
	halfClosed time.Time   // zero until the client half-closes
	stop       func() bool // stops the idle timer
	gen        int         // counts the idle timers armed; only the latest one's check counts
	end        endKind
	message    string // the status message of the end
	done       bool   // the handler has returned
}

// newAbandonableStream wraps ss, starts its pumps and arms its first idle timer.
func newAbandonableStream(ss grpc.ServerStream, lim StreamLimit, clk clock) *abandonableStream {
	ctx, cancel := context.WithCancel(ss.Context())
	s := &abandonableStream{ServerStream: ss, ctx: ctx, cancel: cancel, lim: lim, clock: clk,
		ended: make(chan struct{}), finished: make(chan struct{})}
	if lim.Idle > 0 || lim.HalfClosedIdle > 0 || lim.EndAtShutdown {
		s.recvs = newPump(ss.RecvMsg, s.finished)
		s.mu.Lock()
		s.lastRecv = clk.Now()
		s.arm(s.lastRecv)
		s.mu.Unlock()
	}
	if lim.SendTimeout > 0 {
		s.sends = newPump(ss.SendMsg, s.finished)
	}
	return s
}

func (s *abandonableStream) Context() context.Context { return s.ctx }

func (s *abandonableStream) RecvMsg(m any) error {
	if s.recvs == nil {
		return s.ServerStream.RecvMsg(m)
	}
	err, abandoned := s.recvs.do(m, s.ended, nil)
	if abandoned {
		return s.endError()
	}
	switch {
	case err == nil:
		s.mu.Lock()
		s.lastRecv = s.clock.Now()
		s.mu.Unlock()
	case errors.Is(err, io.EOF) && s.lim.HalfClosedIdle > 0:
		s.mu.Lock()
		if s.halfClosed.IsZero() && !s.done {
			s.halfClosed = s.clock.Now()
			// The half-closed deadline may come before the armed one.
			if s.stop != nil {
				s.stop()
			}
			s.arm(s.halfClosed)
		}
		s.mu.Unlock()
	}
	return err
}

func (s *abandonableStream) SendMsg(m any) error {
	var err error
	if s.sends == nil {
		err = s.ServerStream.SendMsg(m)
	} else {
		held := make(chan struct{})
		stop := s.clock.AfterFunc(s.lim.SendTimeout, func() { close(held) })
		var abandoned bool
		err, abandoned = s.sends.do(m, s.ended, held)
		stop()
		if abandoned {
			select {
			case <-held:
				s.mu.Lock()
				s.endLocked(endStalled, fmt.Sprintf("stream stalled: a message waited %v to be sent; the client is not reading", s.lim.SendTimeout))
				s.mu.Unlock()
			default:
			}
			return s.endError()
		}
	}
	if err == nil && s.lim.HalfClosedIdle > 0 {
		s.mu.Lock()
		s.lastSend = s.clock.Now()
		s.mu.Unlock()
	}
	return err
}

// endLocked ends the stream for kind with the status message msg, unless it has ended already or the
// handler has returned. Called with mu held.
func (s *abandonableStream) endLocked(kind endKind, msg string) {
	if s.end != notEnded || s.done {
		return
	}
	s.end, s.message = kind, msg
	close(s.ended)
	s.cancel()
}

// endAtShutdown ends the stream for the server's shutdown (EndAtShutdown).
func (s *abandonableStream) endAtShutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.endLocked(endShutdown, shutdownMessage)
}

// endError is the status of a stream the server ended: what RecvMsg and SendMsg return once it ended,
// and what the stream ends with.
func (s *abandonableStream) endError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.end == endShutdown {
		return status.Error(codes.Unavailable, s.message)
	}
	return status.Error(codes.DeadlineExceeded, s.message)
}

// deadline returns when the stream is idle unless something happens first, and why it then is.
// Called with mu held.
func (s *abandonableStream) deadline() (time.Time, string) {
	var at time.Time
	var why string
	if s.lim.Idle > 0 {
		at, why = s.lastRecv.Add(s.lim.Idle), fmt.Sprintf("no message from the client for %v", s.lim.Idle)
	}
	if s.lim.HalfClosedIdle > 0 && !s.halfClosed.IsZero() {
		from := s.halfClosed
		if s.lastSend.After(from) {
			from = s.lastSend
		}
		if t := from.Add(s.lim.HalfClosedIdle); at.IsZero() || t.Before(at) {
			at, why = t, fmt.Sprintf("half-closed by the client and nothing sent for %v", s.lim.HalfClosedIdle)
		}
	}
	return at, why
}

// arm sets the idle timer for the next deadline, if any. Called with mu held.
func (s *abandonableStream) arm(now time.Time) {
	s.gen++
	s.stop = nil
	if at, _ := s.deadline(); !at.IsZero() {
		gen := s.gen
		s.stop = s.clock.AfterFunc(at.Sub(now), func() { s.check(gen) })
	}
}

// check ends the stream if its idle deadline has passed, else waits for the new one: activity since the
// timer was set moved it.
func (s *abandonableStream) check(gen int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done || s.end != notEnded || gen != s.gen {
		return
	}
	now := s.clock.Now()
	at, why := s.deadline()
	if at.IsZero() {
		return
	}
	if now.Before(at) {
		s.arm(now)
		return
	}
	s.endLocked(endIdle, "stream idle: "+why)
}

// finish stops the idle timer, the pumps and the context once the handler has returned, and says why the
// server ended the stream (notEnded when it did not). Calls after the first only say.
func (s *abandonableStream) finish() endKind {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.done = true
		if s.stop != nil {
			s.stop()
		}
		close(s.finished)
		s.cancel()
	}
	return s.end
}

// pump runs the operations of one direction of a stream (its receives, or its sends) one at a time on a
// goroutine of its own, until the handler returns, so that the handler's wait for one can be abandoned.
type pump struct {
	op       func(any) error // the underlying stream's RecvMsg or SendMsg
	ops      chan any        // messages for the goroutine to receive into or send
	results  chan error      // its results; one at most is outstanding
	finished <-chan struct{} // closed when the handler has returned
}

// newPump starts the goroutine of a pump of op.
func newPump(op func(any) error, finished <-chan struct{}) *pump {
	p := &pump{op: op, ops: make(chan any), results: make(chan error, 1), finished: finished}
	go func() {
		for {
			select {
			case m := <-p.ops:
				p.results <- p.op(m)
			case <-p.finished:
				return
			}
		}
	}()
	return p
}

// do runs op(m) on the pump's goroutine and returns its result, or abandons the wait (abandoned true) as
// soon as ended or timeout is closed; a nil timeout never is.
func (p *pump) do(m any, ended, timeout <-chan struct{}) (err error, abandoned bool) {
	select {
	case <-ended:
		return nil, true
	default:
	}
	select {
	case p.ops <- m:
	case <-ended:
		return nil, true
	case <-timeout:
		return nil, true
	case <-p.finished:
		// A goroutine the handler left behind: the stream has ended, as the transport will say.
		return p.op(m), false
	}
	select {
	case err = <-p.results:
		return err, false
	case <-ended:
		return nil, true
	case <-timeout:
		return nil, true
	}
}
