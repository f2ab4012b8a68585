// Package admin is the operator-facing HTTP server every lastmile process exposes on its admin
// address: Prometheus metrics, liveness and readiness probes, and pprof when asked for.
//
// The admin address is plain, unauthenticated HTTP for the cluster's operators and scrapers only:
// the metrics reveal internals, so it must not be published outside the cluster. pprof reveals more
// (heap contents, goroutine stacks) and lets any caller spend the process's CPU on profiles, so it
// is off unless Config.Pprof turns it on.
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is the admin address used when Config.Addr is empty.
const DefaultAddr = ":9091"

const (
	// readyTimeout bounds one readiness check, below the usual probe timeout.
	readyTimeout = 2 * time.Second
	// shutdownTimeout bounds the graceful shutdown in Serve.
	shutdownTimeout = 5 * time.Second
	// maxProfileSeconds bounds CPU profiles and execution traces: they hold a process-wide
	// profiler and cost CPU for their whole duration.
	maxProfileSeconds = 60
)

// Config configures New.
type Config struct {
	// Addr is the TCP address to listen on; DefaultAddr when empty.
	Addr string
	// Listener, when set, is served instead of listening on Addr: a caller that binds every port before
	// its slower startup work learns of a taken one first.
	Listener net.Listener
	// Registry is served on /metrics. Required.
	Registry *prometheus.Registry
	// Ready reports whether the process can serve traffic; nil means always ready. It must honour
	// ctx (cancelled after 2 s) and must not touch anything slow without it. The error's text is
	// returned verbatim to whoever calls /readyz, so it must be safe to show: say which dependency
	// is not ready ("database unreachable"), not connection strings or credentials.
	Ready func(ctx context.Context) error
	// Logger receives server errors; nil discards them.
	Logger *slog.Logger
	// Pprof serves the net/http/pprof handlers under /debug/pprof/ (except cmdline). Off, those
	// paths answer 404 like any unknown path.
	Pprof bool
}

// Server is the admin HTTP server. Create it with New, then call Serve once.
type Server struct {
	ln     net.Listener
	srv    *http.Server
	logger *slog.Logger
	ready  atomic.Pointer[readyFunc]
}

// readyFunc boxes a readiness func so that it can be swapped atomically.
type readyFunc struct {
	fn func(ctx context.Context) error
}

// New listens on cfg.Addr right away, so a taken port fails at startup rather than when the
// first scrape comes, and returns a server ready to Serve.
func New(cfg Config) (*Server, error) {
	if cfg.Registry == nil {
		return nil, errors.New("admin: nil metrics registry")
	}
	addr := cfg.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	s := &Server{logger: logger}
	s.SetReady(cfg.Ready)

	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return nil, fmt.Errorf("admin: listen on %s: %w", addr, err)
		}
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.routes(cfg.Registry, cfg.Pprof),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// A CPU profile or trace runs for up to maxProfileSeconds before its body is written.
		WriteTimeout:   (maxProfileSeconds + 5) * time.Second,
		IdleTimeout:    60 * time.Second,
		MaxHeaderBytes: 16 << 10,
		ErrorLog:       slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	return s, nil
}

// Addr returns the address the server listens on, useful when Config.Addr had port 0.
func (s *Server) Addr() net.Addr {
	return s.ln.Addr()
}

// SetReady replaces the readiness func (nil means always ready), for processes that become ready
// only after startup work such as migrations. The same rules as Config.Ready apply. It is safe to
// call concurrently with requests.
func (s *Server) SetReady(ready func(ctx context.Context) error) {
	s.ready.Store(&readyFunc{fn: ready})
}

// Serve serves requests until ctx is done, then shuts down: it stops accepting connections,
// cancels in-flight requests (a running profile stops early) and waits up to 5 s for them before
// closing what is left. It returns nil after a shutdown, or the error that stopped serving early.
// Serve must be called at most once.
func (s *Server) Serve(ctx context.Context) error {
	// Request contexts derive from baseCtx so that shutdown ends long profiles instead of
	// waiting for them.
	baseCtx, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	s.srv.BaseContext = func(net.Listener) context.Context { return baseCtx }

	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()

	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("admin: serve on %s: %w", s.ln.Addr(), err)
	case <-ctx.Done():
	}

	cancelBase()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := s.srv.Shutdown(shutdownCtx); err != nil {
		// A handler ignored cancellation; cut it off. Not a failure of the process.
		s.logger.Warn("admin server shutdown incomplete, closing connections",
			"addr", s.ln.Addr().String(), "error", err)
		_ = s.srv.Close()
	}
	<-errc // http.ErrServerClosed once Shutdown or Close has run
	return nil
}

// Close closes the listener and any connection immediately. Use it to release the address when
// Serve will never be called, for example when startup fails after New; Serve's own shutdown
// needs no Close.
func (s *Server) Close() error {
	err := s.srv.Close()
	if lnErr := s.ln.Close(); lnErr != nil && !errors.Is(lnErr, net.ErrClosed) {
		err = errors.Join(err, lnErr)
	}
	if err != nil {
		return fmt.Errorf("admin: close %s: %w", s.ln.Addr(), err)
	}
	return nil
}

func (s *Server) routes(reg *prometheus.Registry, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		EnableOpenMetrics: true,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
		// Counts failed scrapes in promhttp_metric_handler_errors_total.
		Registry: reg,
	}))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	if !withPprof {
		return mux
	}

	// Importing net/http/pprof also registers these handlers on http.DefaultServeMux: no lastmile
	// server serves DefaultServeMux (never pass a nil handler to http.Server), so that copy is
	// unreachable and this mux is the only way in.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	// The command line can hold secrets (a --database-url with a password), so it is not served.
	mux.HandleFunc("GET /debug/pprof/cmdline", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusNotFound, "the command line is not served: it can hold secrets")
	})
	mux.Handle("GET /debug/pprof/profile", limitSeconds(http.HandlerFunc(pprof.Profile)))
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol) // the pprof tool may POST lookups
	mux.Handle("GET /debug/pprof/trace", limitSeconds(http.HandlerFunc(pprof.Trace)))
	return mux
}

// healthz is the liveness probe: it answers as long as the process can serve HTTP and never
// checks dependencies, so that a database outage does not get every replica restarted.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok")
}

// readyz is the readiness probe: it reports the Ready func's verdict.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ready := s.ready.Load().fn
	if ready == nil {
		writeText(w, http.StatusOK, "ok")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := ready(ctx); err != nil {
		s.logger.DebugContext(ctx, "not ready", "error", err)
		writeText(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	writeText(w, http.StatusOK, "ok")
}

// limitSeconds rejects profiles and traces longer than maxProfileSeconds, which pprof would
// otherwise run for as long as asked.
func limitSeconds(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.FormValue("seconds"); v != "" {
			sec, err := strconv.ParseFloat(v, 64)
			if err != nil || !(sec <= maxProfileSeconds) {
				writeText(w, http.StatusBadRequest,
					fmt.Sprintf("seconds must be a number of at most %d", maxProfileSeconds))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}
