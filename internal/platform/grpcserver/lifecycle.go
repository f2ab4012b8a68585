package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// MinReadinessTimeout is the least time a readiness check is given, however short ReadinessInterval is.
const MinReadinessTimeout = time.Second

// readinessCheck is one AddReadiness check and the services whose health it decides (nil: every one).
type readinessCheck struct {
	check    func(context.Context) error
	services []string
}

// AddReadiness makes the health of services follow check, polled every Config.ReadinessInterval (and
// once when Serve starts, before the server answers anything): a service reports SERVING while every
// check that names it passes, NOT_SERVING otherwise. A check given no services decides every service.
// The overall status "" is SERVING when every check passes. Each poll gets a context bounded by the
// interval, but by no less than MinReadinessTimeout: a short interval makes outages show sooner, not a
// database that is merely slow to answer (a ping on a loaded machine) count as unreachable. The error
// should name the dependency ("courier database unreachable"), as Ready returns it.
// Call it before Serve.
func (s *Server) AddReadiness(check func(ctx context.Context) error, services ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, readinessCheck{check: check, services: slices.Clone(services)})
}

// Ready returns the verdict of the latest readiness poll: nil when every check passed, else the first
// failing check's error. Before Serve it reports the server not started; after Drain, that it is shutting
// down. A process's /readyz can serve it, so that readiness and health change at the same moment.
func (s *Server) Ready(context.Context) error {
	s.mu.Lock()
	r := s.ready
	s.mu.Unlock()
	if r == nil {
		return errors.New("gRPC server not started")
	}
	return r.overall()
}

// readiness holds the latest verdict of each check and applies it to the health service.
type readiness struct {
	s        *Server
	names    []string // every registered service
	mu       sync.Mutex
	errs     []error // per check, nil when it passed
	draining bool
}

// overall returns the process-wide verdict.
func (r *readiness) overall() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return errors.New("shutting down")
	}
	for _, err := range r.errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// poll runs every check once, records the verdicts and updates the health statuses that changed,
// logging each service's transitions.
func (r *readiness) poll(ctx context.Context, checks []readinessCheck) {
	errs := make([]error, len(checks))
	for i, c := range checks {
		checkCtx, cancel := context.WithTimeout(ctx, max(r.s.cfg.ReadinessInterval, MinReadinessTimeout))
		errs[i] = c.check(checkCtx)
		cancel()
	}
	if ctx.Err() != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	first := r.errs == nil
	prev := r.errs
	r.errs = errs
	for _, name := range r.names {
		now, before := verdict(checks, errs, name), error(nil)
		if !first {
			before = verdict(checks, prev, name)
		}
		if !first && (now == nil) == (before == nil) {
			continue
		}
		st := healthpb.HealthCheckResponse_SERVING
		if now != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
			r.s.logger.Warn("gRPC service not ready", "grpc_service", name, "error", now.Error())
		} else if !first {
			r.s.logger.Info("gRPC service ready", "grpc_service", name)
		}
		r.s.health.SetServingStatus(name, st)
	}
	if r.draining {
		return // "" stays NOT_SERVING once the server drains
	}
	overall := healthpb.HealthCheckResponse_SERVING
	for _, err := range errs {
		if err != nil {
			overall = healthpb.HealthCheckResponse_NOT_SERVING
		}
	}
	r.s.health.SetServingStatus("", overall)
}

// verdict returns the first error among the checks that decide service, nil when they all passed.
func verdict(checks []readinessCheck, errs []error, service string) error {
	for i, c := range checks {
		if errs[i] != nil && (c.services == nil || slices.Contains(c.services, service)) {
			return errs[i]
		}
	}
	return nil
}

// Serve serves until ctx is done or Shutdown is called. When ctx ends first, the server drains (see
// Drain), waits Config.DrainDelay and shuts down within Config.ShutdownTimeout (see Shutdown). It returns
// nil after a clean shutdown and an error if a registered method has no policy rule or the listener fails.
// Serve may be called only once; after a Shutdown that came first it returns nil at once.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.closed && s.shutBeforeServe && !s.started {
		s.mu.Unlock()
		return nil
	}
	if s.started || s.closed {
		s.mu.Unlock()
		return errors.New("grpc server: Serve called twice or after Close")
	}
	s.started = true
	checks := slices.Clone(s.checks)
	s.mu.Unlock()

	services := s.grpc.GetServiceInfo()
	var methods []string
	for name, info := range services {
		for _, m := range info.Methods {
			methods = append(methods, "/"+name+"/"+m.Name)
		}
	}
	err := s.policy.Check(methods)
	if err == nil {
		err = s.streams.checkMethods(services)
	}
	if err != nil {
		s.stopOnce.Do(func() {
			close(s.stopping)
			s.grpc.Stop()
			s.lis.Close()
			close(s.stopped)
		})
		return fmt.Errorf("grpc server on %s: %w", s.lis.Addr(), err)
	}
	s.metrics.InitializeMetrics(s.grpc)

	// The first readiness poll runs before the server answers anything, so that no health check ever
	// sees a status that was set before readiness was known.
	r := &readiness{s: s, names: slices.Sorted(maps.Keys(services))}
	r.poll(context.WithoutCancel(ctx), checks)
	s.mu.Lock()
	s.ready = r
	s.mu.Unlock()

	pollCtx, stopPolling := context.WithCancel(context.WithoutCancel(ctx))
	var polling sync.WaitGroup
	if len(checks) > 0 {
		polling.Go(func() {
			ticker := time.NewTicker(s.cfg.ReadinessInterval)
			defer ticker.Stop()
			for {
				select {
				case <-pollCtx.Done():
					return
				case <-ticker.C:
				}
				r.poll(pollCtx, checks)
			}
		})
	}
	defer func() { stopPolling(); polling.Wait() }()

	go func() {
		s.serveErr = s.grpc.Serve(s.lis)
		close(s.served)
	}()
	s.logger.Info("gRPC server serving", "addr", s.lis.Addr().String(), "tls", s.cfg.TLS != nil)

	select {
	case <-s.served:
		// The listener failed, unless a Shutdown is what ended grpc.Serve (then wait for it below).
		failed := false
		s.stopOnce.Do(func() { failed = true; close(s.stopping); s.grpc.Stop(); close(s.stopped) })
		if failed {
			if err := s.serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return fmt.Errorf("grpc server on %s: %w", s.lis.Addr(), err)
			}
			return nil
		}
	case <-s.stopping:
	case <-ctx.Done():
		s.Drain()
		if s.cfg.DrainDelay > 0 {
			select {
			case <-time.After(s.cfg.DrainDelay):
			case <-s.stopping:
			}
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.ShutdownTimeout)
		defer cancel()
		_ = s.Shutdown(sctx)
	}
	<-s.stopped
	return s.stopErr
}

// Drain reports NOT_SERVING for the overall status "" and makes Ready report the server shutting down, so
// that probes and load balancers stop sending new work, while every service keeps its status and keeps
// serving (the process's own gateway, still draining its requests, reaches them through their health).
// Later readiness polls do not undo it.
func (s *Server) Drain() {
	s.drainOnce.Do(func() {
		s.mu.Lock()
		r := s.ready
		s.mu.Unlock()
		if r != nil {
			r.mu.Lock()
			r.draining = true
			r.mu.Unlock()
		}
		s.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
		s.logger.Info("gRPC server draining", "addr", s.lis.Addr().String())
	})
}

// Shutdown stops the server: it drains, reports NOT_SERVING for every service, stops accepting calls
// (clients are sent GOAWAY, so their next calls go to other replicas), runs the OnShutdown hooks, ends
// the streams of the methods with StreamLimit.EndAtShutdown and lets in-flight calls finish until ctx ends. Then it cuts off the calls still open, logging their methods and
// counts (handlers that ignore their context may outlive it). It returns once Serve has stopped serving,
// and is safe to call more than once and concurrently: later calls wait for the first. Before Serve it
// closes the server like Close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	started := s.started
	if !started {
		s.shutBeforeServe = true
	}
	s.mu.Unlock()
	if !started {
		return s.Close()
	}
	s.stopOnce.Do(func() {
		close(s.stopping)
		s.stopErr = s.shutdown(ctx)
		close(s.stopped)
	})
	select {
	case <-s.stopped:
		return s.stopErr
	case <-ctx.Done():
		return fmt.Errorf("grpc server on %s: shutdown: %w", s.lis.Addr(), ctx.Err())
	}
}

func (s *Server) shutdown(ctx context.Context) error {
	s.Drain()
	deadline, _ := ctx.Deadline()
	s.logger.Info("gRPC server shutting down", "addr", s.lis.Addr().String(), "deadline", deadline)
	// Shutdown flips every service to NOT_SERVING and ignores later changes, so the poller cannot undo it.
	s.health.Shutdown()

	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	s.mu.Lock()
	hooks := slices.Clone(s.hooks)
	s.mu.Unlock()
	for _, f := range hooks {
		f()
	}
	// The streams no hook drains, which an idle client would keep open until the deadline.
	s.streams.endAll()
	select {
	case <-stopped:
	case <-ctx.Done():
		s.logger.Warn("gRPC graceful stop timed out; cutting off remaining calls", "addr", s.lis.Addr().String(),
			"open_calls", s.calls.snapshot())
		if !s.forceStop() {
			return nil
		}
	}
	<-s.served
	if err := s.serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("grpc server on %s: %w", s.lis.Addr(), err)
	}
	s.logger.Info("gRPC server stopped", "addr", s.lis.Addr().String())
	return nil
}

// forceStopWait bounds how long Serve waits for a hard stop to finish.
const forceStopWait = time.Second

// forceStop stops the server hard while a graceful stop is pending, and reports whether it finished.
//
// Stop closes every connection at once, which cancels every call's context, but it can only return before
// the handlers do: grpc-go's pending GracefulStop waits for them while holding the server's lock, and Stop
// may then wait for that lock. A handler that ignores its context would thus hold up the process's exit
// for as long as it runs. Rather than that, Serve gives up waiting and returns, leaving such handlers (and
// the stop goroutines) running; the connections are closed by then.
func (s *Server) forceStop() bool {
	done := make(chan struct{})
	go func() {
		s.grpc.Stop()
		close(done)
	}()
	select {
	case <-done:
		return true
	case <-time.After(forceStopWait):
		s.logger.Error("gRPC handlers ignore cancellation and are still running after the hard stop; returning anyway",
			"addr", s.lis.Addr().String(), "open_calls", s.calls.snapshot())
		return false
	}
}

// openCalls counts the calls in progress per full method name.
type openCalls struct {
	mu sync.Mutex
	n  map[string]int
}

func newOpenCalls() *openCalls { return &openCalls{n: map[string]int{}} }

func (o *openCalls) enter(method string) func() {
	o.mu.Lock()
	o.n[method]++
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		if o.n[method]--; o.n[method] == 0 {
			delete(o.n, method)
		}
		o.mu.Unlock()
	}
}

// snapshot returns the open calls per method, for a log line.
func (o *openCalls) snapshot() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return maps.Clone(o.n)
}

func (o *openCalls) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	defer o.enter(info.FullMethod)()
	return handler(ctx, req)
}

func (o *openCalls) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	defer o.enter(info.FullMethod)()
	return handler(srv, ss)
}
