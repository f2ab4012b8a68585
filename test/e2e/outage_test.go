package e2e_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"lastmile/internal/platform/database/databasetest"
)

// pgProxy forwards TCP connections to PostgreSQL until it is taken down, so that a test can make the
// database unreachable for one process without stopping a server that others share.
type pgProxy struct {
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// startPGProxy starts a proxy to target (host:port) on a free local port.
func startPGProxy(t *testing.T, target string) *pgProxy {
	t.Helper()
	p := &pgProxy{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(func() { p.down(); p.wg.Wait() })
	return p
}

func (p *pgProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.forward(c) })
		}
	})
}

func (p *pgProxy) forward(c net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[up] = true, true
	p.mu.Unlock()
	var both sync.WaitGroup
	both.Go(func() { _, _ = io.Copy(up, c); up.Close() })
	both.Go(func() { _, _ = io.Copy(c, up); c.Close() })
	both.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, up)
	p.mu.Unlock()
}

// down closes the listener and every forwarded connection: the database is unreachable.
func (p *pgProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// up listens again on the same address.
func (p *pgProxy) up(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// readyz returns the status of the admin /readyz.
func (s *system) readyz(t *testing.T) int {
	t.Helper()
	resp, err := httpClient.Get("http://" + s.Admin + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestDatabaseOutageTakesDownOnlyWhatNeedsIt runs the system on PostgreSQL behind a proxy and takes the
// database away: the services that need it (UserService, CourierService) report NOT_SERVING and their
// REST calls answer 503, while route and the JWKS keep answering 200 over REST, as over gRPC. When the
// database comes back, REST recovers together with /readyz, although the outage opened the gateway's
// circuit breaker for the courier service (whose timeout is 10 s).
func TestDatabaseOutageTakesDownOnlyWhatNeedsIt(t *testing.T) {
	dsn, err := url.Parse(databasetest.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := startPGProxy(t, dsn.Host)
	dsn.Host = proxy.addr
	s := startEnv(t, t.TempDir(), map[string]string{"LASTMILE_ADMIN_EMAIL": adminEmail, "LASTMILE_ADMIN_PASSWORD": adminPassword},
		"--database-url", dsn.String(), "--readiness-interval", "50ms")
	admin := s.login(t, adminEmail, adminPassword)
	courierID, _ := registerCourier(t, s, admin.access, "outage@example.com")
	health := healthpb.NewHealthClient(s.grpcConn(t, ""))
	status := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health Check(%q): %v", service, err)
		}
		return resp.GetStatus()
	}
	waitUntil := func(what string, within time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(within)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %v", what, within)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	const estimate = `{"origin": {"latitude": 52.52, "longitude": 13.405}, "destination": {"latitude": 52.4862, "longitude": 13.4247}, "transportMode": "TRANSPORT_MODE_CAR"}`

	proxy.down()
	waitUntil("CourierService NOT_SERVING", 10*time.Second, func() bool {
		return status("lastmile.courier.v1.CourierService") == healthpb.HealthCheckResponse_NOT_SERVING
	})
	// Each service's readiness is checked on its own schedule: those that need the database follow
	// courier within a few intervals; those that do not must still be serving then.
	for service, want := range map[string]healthpb.HealthCheckResponse_ServingStatus{
		"lastmile.identity.v1.UserService": healthpb.HealthCheckResponse_NOT_SERVING,
		"":                                 healthpb.HealthCheckResponse_NOT_SERVING,
	} {
		waitUntil("health of "+service+" "+want.String(), 10*time.Second, func() bool { return status(service) == want })
	}
	for service, want := range map[string]healthpb.HealthCheckResponse_ServingStatus{
		"lastmile.identity.v1.AuthService": healthpb.HealthCheckResponse_SERVING,
		"lastmile.route.v1.RouteService":   healthpb.HealthCheckResponse_SERVING,
	} {
		if got := status(service); got != want {
			t.Errorf("health of %q during the outage = %v, want %v", service, got, want)
		}
	}
	if got := s.readyz(t); got != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz during the outage = %d, want 503", got)
	}
	if code, _, body := s.rest(t, http.MethodPost, "/v1/routes:estimate", "", estimate); code != http.StatusOK {
		t.Errorf("POST /v1/routes:estimate during the outage = %d %v, want 200", code, body)
	}
	// A login reaches its handler and fails on the database: 503, not 500 (issue 8).
	if code, _, body := s.rest(t, http.MethodPost, "/v1/auth:login", "",
		mustJSON(t, map[string]string{"email": adminEmail, "password": adminPassword})); code != http.StatusServiceUnavailable || errStatus(body) != "UNAVAILABLE" {
		t.Errorf("POST /v1/auth:login during the outage = %d %v, want 503 UNAVAILABLE", code, body)
	}
	// More logins, each answered 503 by identity's handler: the gateway's breaker for AuthService must not
	// count them (the service answered), or it would refuse the JWKS, which needs no database.
	for range 6 {
		if code, _, body := s.rest(t, http.MethodPost, "/v1/auth:login", "",
			mustJSON(t, map[string]string{"email": adminEmail, "password": adminPassword})); code != http.StatusServiceUnavailable {
			t.Errorf("POST /v1/auth:login during the outage = %d %v, want 503", code, body)
		}
	}
	if code, _, body := s.rest(t, http.MethodGet, "/.well-known/jwks.json", "", ""); code != http.StatusOK || body["keys"] == nil {
		t.Errorf("GET /.well-known/jwks.json after failed logins during the outage = %d %v, want 200 with keys", code, body)
	}
	// Enough failed calls to open the gateway's breaker for the courier service.
	for range 6 {
		if code, _, body := s.rest(t, http.MethodGet, "/v1/couriers/"+courierID, admin.access, ""); code != http.StatusServiceUnavailable {
			t.Errorf("GET /v1/couriers/%s during the outage = %d %v, want 503", courierID, code, body)
		}
	}

	proxy.up(t)
	waitUntil("/readyz 200 after the outage", 10*time.Second, func() bool { return s.readyz(t) == http.StatusOK })
	// The health watch of the gateway's connection learns it from the same poll within milliseconds; the
	// breaker closes as the connection becomes READY, not when its 10 s timeout runs out (the 5 s bound
	// leaves room for a loaded machine and still tells the two apart).
	waitUntil("REST courier calls to recover with /readyz", 5*time.Second, func() bool {
		code, _, _ := s.rest(t, http.MethodGet, "/v1/couriers/"+courierID, admin.access, "")
		return code == http.StatusOK
	})
	if got := status(""); got != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("overall health after the outage = %v, want SERVING", got)
	}
	if err := s.stop(); err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("stop: %v, want a clean shutdown", err)
	}
}
