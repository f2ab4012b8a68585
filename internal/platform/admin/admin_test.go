package admin_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"lastmile/internal/platform/admin"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start serves a new admin server on a free loopback port until the test ends and returns its
// base URL.
func start(t *testing.T, cfg admin.Config) (*admin.Server, string) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	s, err := admin.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve() = %v, want nil", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return within 10 s of cancellation")
		}
	})
	return s, "http://" + s.Addr().String()
}

// do sends a request without keep-alive, so no client connection outlives the test.
func do(t *testing.T, method, url string) (int, string) {
	t.Helper()
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatalf("NewRequest(%s %s): %v", method, url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, url, err)
	}
	return resp.StatusCode, string(body)
}

// route is one request to the admin server and the answer it must get.
type route struct {
	method, path string
	wantCode     int
	wantBody     string // exact, unless wantContains is set
	wantContains bool
}

// testRegistry returns a registry with one counter at 3, for /metrics to show.
func testRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_events_total", Help: "Events."})
	c.Add(3)
	reg.MustRegister(c)
	return reg
}

func TestRoutes(t *testing.T) {
	_, base := start(t, admin.Config{Registry: testRegistry()})
	checkRoutes(t, base, []route{
		{"GET", "/healthz", http.StatusOK, "ok", false},
		{"HEAD", "/healthz", http.StatusOK, "", false},
		{"GET", "/readyz", http.StatusOK, "ok", false},
		{"GET", "/metrics", http.StatusOK, "test_events_total 3\n", true},
		// pprof is off by default: its paths are unknown paths.
		{"GET", "/debug/pprof/", http.StatusNotFound, "404 page not found\n", false},
		{"GET", "/debug/pprof/goroutine?debug=1", http.StatusNotFound, "404 page not found\n", false},
		{"GET", "/debug/pprof/profile?seconds=1", http.StatusNotFound, "404 page not found\n", false},
		{"GET", "/debug/pprof/cmdline", http.StatusNotFound, "404 page not found\n", false},
		{"GET", "/", http.StatusNotFound, "404 page not found\n", false},
		{"GET", "/nope", http.StatusNotFound, "404 page not found\n", false},
		{"POST", "/healthz", http.StatusMethodNotAllowed, "Method Not Allowed\n", false},
	})
}

func TestPprofRoutes(t *testing.T) {
	_, base := start(t, admin.Config{Registry: testRegistry(), Pprof: true})
	checkRoutes(t, base, []route{
		{"GET", "/debug/pprof/", http.StatusOK, "Types of profiles available", true},
		{"GET", "/debug/pprof/cmdline", http.StatusNotFound, "the command line is not served", true},
		{"GET", "/debug/pprof/goroutine?debug=1", http.StatusOK, "goroutine profile:", true},
		{"GET", "/debug/pprof/nope", http.StatusNotFound, "Unknown profile\n", false},
		{"GET", "/debug/pprof/profile?seconds=61", http.StatusBadRequest, "seconds must be a number of at most 60", false},
		{"GET", "/debug/pprof/trace?seconds=NaN", http.StatusBadRequest, "seconds must be a number of at most 60", false},
		// The rest of the server is the same with pprof on.
		{"GET", "/metrics", http.StatusOK, "test_events_total 3\n", true},
		{"GET", "/healthz", http.StatusOK, "ok", false},
		{"GET", "/readyz", http.StatusOK, "ok", false},
		{"GET", "/nope", http.StatusNotFound, "404 page not found\n", false},
	})
}

func checkRoutes(t *testing.T, base string, tests []route) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, body := do(t, tt.method, base+tt.path)
			if code != tt.wantCode {
				t.Errorf("%s %s status = %d, want %d (body %q)", tt.method, tt.path, code, tt.wantCode, body)
			}
			if tt.wantContains {
				if !strings.Contains(body, tt.wantBody) {
					t.Errorf("%s %s body = %q, want it to contain %q", tt.method, tt.path, body, tt.wantBody)
				}
			} else if body != tt.wantBody {
				t.Errorf("%s %s body = %q, want %q", tt.method, tt.path, body, tt.wantBody)
			}
		})
	}
}

func TestMetricsOpenMetrics(t *testing.T) {
	_, base := start(t, admin.Config{})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	req, err := http.NewRequest("GET", base+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/openmetrics-text; version=1.0.0")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	if got, want := resp.Header.Get("Content-Type"), "application/openmetrics-text"; !strings.HasPrefix(got, want) {
		t.Errorf("Content-Type = %q, want prefix %q", got, want)
	}
}

func TestReadyzFollowsReady(t *testing.T) {
	var ready atomic.Bool
	_, base := start(t, admin.Config{
		Ready: func(ctx context.Context) error {
			if _, ok := ctx.Deadline(); !ok {
				return errors.New("no deadline")
			}
			if !ready.Load() {
				return errors.New("database unreachable")
			}
			return nil
		},
	})

	if code, body := do(t, "GET", base+"/readyz"); code != http.StatusServiceUnavailable || body != "database unreachable" {
		t.Errorf("GET /readyz = %d %q, want 503 %q", code, body, "database unreachable")
	}
	ready.Store(true)
	if code, body := do(t, "GET", base+"/readyz"); code != http.StatusOK || body != "ok" {
		t.Errorf("GET /readyz = %d %q, want 200 %q", code, body, "ok")
	}
	// Liveness never depends on readiness.
	ready.Store(false)
	if code, body := do(t, "GET", base+"/healthz"); code != http.StatusOK || body != "ok" {
		t.Errorf("GET /healthz = %d %q, want 200 %q", code, body, "ok")
	}
}

func TestSetReady(t *testing.T) {
	s, base := start(t, admin.Config{})

	s.SetReady(func(context.Context) error { return errors.New("migrating") })
	if code, body := do(t, "GET", base+"/readyz"); code != http.StatusServiceUnavailable || body != "migrating" {
		t.Errorf("GET /readyz = %d %q, want 503 %q", code, body, "migrating")
	}
	s.SetReady(nil)
	if code, body := do(t, "GET", base+"/readyz"); code != http.StatusOK || body != "ok" {
		t.Errorf("GET /readyz = %d %q, want 200 %q", code, body, "ok")
	}
}

func TestReadyzTimesOut(t *testing.T) {
	_, base := start(t, admin.Config{
		Ready: func(ctx context.Context) error {
			<-ctx.Done() // a dependency check that hangs until the probe's deadline
			return errors.New("database check timed out")
		},
	})
	if code, body := do(t, "GET", base+"/readyz"); code != http.StatusServiceUnavailable || body != "database check timed out" {
		t.Errorf("GET /readyz = %d %q, want 503 %q", code, body, "database check timed out")
	}
}

func TestNewAddressInUse(t *testing.T) {
	first, err := admin.New(admin.Config{Addr: "127.0.0.1:0", Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer func() {
		if err := first.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()

	addr := first.Addr().String()
	second, err := admin.New(admin.Config{Addr: addr, Registry: prometheus.NewRegistry()})
	if err == nil {
		second.Close()
		t.Fatalf("New(%s) while in use: error = nil, want an error", addr)
	}
	if !strings.Contains(err.Error(), addr) {
		t.Errorf("New(%s) error = %q, want it to name the address", addr, err)
	}
}

func TestNewRequiresRegistry(t *testing.T) {
	if s, err := admin.New(admin.Config{Addr: "127.0.0.1:0"}); err == nil {
		s.Close()
		t.Error("New without registry: error = nil, want an error")
	}
}

func TestServeReturnsAfterCancel(t *testing.T) {
	s, err := admin.New(admin.Config{Addr: "127.0.0.1:0", Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	addr := s.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	if code, _ := do(t, "GET", "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("GET /healthz status = %d, want 200", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve() = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10 s of cancellation")
	}

	// The address is released.
	again, err := admin.New(admin.Config{Addr: addr, Registry: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("New(%s) after Serve returned: %v", addr, err)
	}
	if err := again.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestServeCancelsInFlightRequests(t *testing.T) {
	entered := make(chan struct{})
	observed := make(chan error, 1)
	s, err := admin.New(admin.Config{
		Addr:     "127.0.0.1:0",
		Registry: prometheus.NewRegistry(),
		// Stands for any long handler, such as a 60 s CPU profile.
		Ready: func(ctx context.Context) error {
			close(entered)
			<-ctx.Done()
			observed <- ctx.Err()
			return errors.New("shutting down")
		},
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()

	reqDone := make(chan struct{})
	go func() {
		defer close(reqDone)
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
		if resp, err := client.Get("http://" + s.Addr().String() + "/readyz"); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("readiness check did not start within 10 s")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve() = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return within 10 s of cancellation")
	}
	// Canceled, not DeadlineExceeded: shutdown ended the request instead of waiting for it.
	if err := <-observed; !errors.Is(err, context.Canceled) {
		t.Errorf("in-flight request context error = %v, want %v", err, context.Canceled)
	}
	<-reqDone
}
