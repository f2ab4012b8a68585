// Package e2e_test runs the real lastmile binary's Run function in-process on :0 ports with a temporary data
// directory and talks to it the way users do: REST through the gateway, gRPC over mTLS, admin endpoints.
package e2e_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	routev1 "lastmile/gen/go/lastmile/route/v1"
	"lastmile/internal/cli"
)

// system is one running lastmile process.
type system struct {
	cli.Endpoints
	dataDir string
	// now is the services' clock: the wall clock unless the test chose one (see halfPastClock).
	now  func() time.Time
	stop func() error
}

// errNotStopped is stop's error when the process ignores its cancellation.
var errNotStopped = errors.New("lastmile serve did not stop within 20s of cancellation")

// halfPastClock returns a clock that runs at the wall clock's pace but reads half past an hour when it is
// made: nothing a test checks in its next half hour can cross an hour boundary, whenever the test runs.
func halfPastClock() func() time.Time {
	now := time.Now()
	offset := now.Truncate(time.Hour).Add(30 * time.Minute).Sub(now)
	return func() time.Time { return time.Now().Add(offset) }
}

// start runs `lastmile serve` with extra args on a migrated data directory (migratedDataDir) and waits
// until every listener is bound.
func start(t *testing.T, extra ...string) *system {
	t.Helper()
	return startIn(t, migratedDataDir(t), extra...)
}

// startIn is start with a given data directory (see sharedCA for processes that share a CA).
func startIn(t *testing.T, dataDir string, extra ...string) *system {
	t.Helper()
	return startEnv(t, dataDir, nil, extra...)
}

// startEnv is startIn with environment variables visible to the process (LASTMILE_ADMIN_PASSWORD, say);
// every variable not in env reads as unset, whatever the test process's own environment holds.
func startEnv(t *testing.T, dataDir string, env map[string]string, extra ...string) *system {
	t.Helper()
	return startClock(t, dataDir, env, time.Now, extra...)
}

// startClock is startEnv with the services' clock now.
func startClock(t *testing.T, dataDir string, env map[string]string, now func() time.Time, extra ...string) *system {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan cli.Endpoints, 1)
	done := make(chan error, 1)
	args := append([]string{"lastmile", "serve",
		"--data-dir", dataDir,
		"--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--shutdown-timeout", "5s", "--log-level", "warn"}, extra...)
	go func() {
		done <- cli.Run(ctx, args, cli.Env{
			Getenv: func(k string) string { return env[k] },
			Stdout: io.Discard, Stderr: testWriter{t},
			Ready: func(e cli.Endpoints) { ready <- e },
			Now:   now,
		})
	}()
	var once sync.Once
	var stopErr error
	s := &system{dataDir: dataDir, now: now}
	// stop may run on any goroutine (a test stops the process while it sends), so it reports a process
	// that does not stop as an error rather than failing the test itself.
	s.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(20 * time.Second):
				stopErr = errNotStopped
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := s.stop(); errors.Is(err, errNotStopped) {
			t.Error(err)
		}
	})
	select {
	case s.Endpoints = <-ready:
	case err := <-done:
		done <- err // for stop in the cleanup, which would otherwise wait 20 s for an exit already seen
		t.Fatalf("lastmile serve exited before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("lastmile serve not ready within 30s")
	}
	return s
}

// testWriter sends the process's logs to the test log, shown only when a test fails.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (s *system) grpcConn(t *testing.T, clientCert string) *grpc.ClientConn {
	t.Helper()
	caPEM, err := os.ReadFile(filepath.Join(s.dataDir, "tls", "ca.crt"))
	if err != nil {
		t.Fatalf("read CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA file holds no certificate")
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if clientCert != "" {
		pair, err := tls.LoadX509KeyPair(filepath.Join(s.dataDir, "tls", clientCert+".crt"), filepath.Join(s.dataDir, "tls", clientCert+".key"))
		if err != nil {
			t.Fatalf("load client cert: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	conn, err := grpc.NewClient(s.GRPC, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func postJSON(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s: body %q is not JSON: %v", url, raw, err)
	}
	return resp.StatusCode, out
}

// The first admin of a system started by startWithAdmin, created from LASTMILE_ADMIN_EMAIL and
// LASTMILE_ADMIN_PASSWORD as an operator would.
const (
	adminEmail    = "admin@example.com"
	adminPassword = "e2e admin password, long enough"
)

// startWithAdmin is start with the first admin account set by the environment.
func startWithAdmin(t *testing.T, extra ...string) *system {
	t.Helper()
	return startEnv(t, migratedDataDir(t), map[string]string{
		"LASTMILE_ADMIN_EMAIL":    adminEmail,
		"LASTMILE_ADMIN_PASSWORD": adminPassword,
	}, extra...)
}

// httpClient bounds every REST call of the tests.
var httpClient = &http.Client{Timeout: 10 * time.Second}

// rest sends one request to the gateway with a JSON body ("" for none) and a bearer token ("" for none).
// It returns the status, the response headers and the decoded JSON body (nil when the body is empty).
func (s *system) rest(t *testing.T, method, path, token, body string) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader = http.NoBody
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+s.HTTP+path, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s %s: body %q is not a JSON object: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, resp.Header, out
}

// str returns the string at path inside a decoded JSON object, "" when there is none.
func str(v map[string]any, path ...string) string {
	var cur any = v
	for _, k := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[k]
	}
	s, _ := cur.(string)
	return s
}

// session holds the tokens of a logged-in user.
type session struct {
	userID, access, refresh string
}

// login logs in over REST and fails the test unless it succeeds.
func (s *system) login(t *testing.T, email, password string) session {
	t.Helper()
	code, _, body := s.rest(t, http.MethodPost, "/v1/auth:login", "",
		mustJSON(t, map[string]string{"email": email, "password": password}))
	if code != http.StatusOK {
		t.Fatalf("login as %s = %d %v, want 200", email, code, body)
	}
	ses := session{userID: str(body, "user", "id"), access: str(body, "accessToken"), refresh: str(body, "refreshToken")}
	if ses.userID == "" || ses.access == "" || ses.refresh == "" {
		t.Fatalf("login as %s = %v, want a user id, an access token and a refresh token", email, body)
	}
	return ses
}

// createUser creates a user over REST as the holder of token ("" for public sign-up) with role ("" to
// leave it unset) and returns its id.
func (s *system) createUser(t *testing.T, token, email, password, role string) string {
	t.Helper()
	req := map[string]string{"email": email, "password": password, "displayName": strings.Split(email, "@")[0]}
	wantRole := "ROLE_CUSTOMER"
	if role != "" {
		req["role"], wantRole = role, role
	}
	code, _, body := s.rest(t, http.MethodPost, "/v1/users", token, mustJSON(t, req))
	if code != http.StatusCreated {
		t.Fatalf("POST /v1/users %s with role %s = %d %v, want 201", email, wantRole, code, body)
	}
	if got := str(body, "role"); got != wantRole {
		t.Fatalf("POST /v1/users %s: role %q, want %q", email, got, wantRole)
	}
	return str(body, "id")
}

// bearer returns ctx carrying token in the gRPC "authorization: Bearer <token>" metadata.
func bearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

func TestRouteOverREST(t *testing.T) {
	s := start(t)
	base := "http://" + s.HTTP

	code, body := postJSON(t, base+"/v1/routes:estimate", `{
		"origin": {"latitude": 48.8566, "longitude": 2.3522},
		"destination": {"latitude": 51.5074, "longitude": -0.1278},
		"transportMode": "TRANSPORT_MODE_CAR"}`)
	if code != http.StatusOK {
		t.Fatalf("POST /v1/routes:estimate = %d %v, want 200", code, body)
	}
	if got, want := body["provider"], "geodesic"; got != want {
		t.Errorf("provider = %v, want %v", got, want)
	}
	// Paris-London great circle is ~343.5 km; the car circuity factor makes the road estimate longer.
	if d, ok := body["distanceMeters"].(float64); !ok || d < 343_000 || d > 343_500*1.5 {
		t.Errorf("distanceMeters = %v, want between 343 km and 1.5x that", body["distanceMeters"])
	}
	if dur, ok := body["duration"].(string); !ok || !strings.HasSuffix(dur, "s") {
		t.Errorf("duration = %v, want a protobuf JSON duration like \"1234s\"", body["duration"])
	}

	code, body = postJSON(t, base+"/v1/routes:estimate", `{
		"origin": {"latitude": 91, "longitude": 0},
		"destination": {"latitude": 0, "longitude": 0},
		"transportMode": "TRANSPORT_MODE_CAR"}`)
	if code != http.StatusBadRequest {
		t.Fatalf("estimate with latitude 91 = %d %v, want 400", code, body)
	}
	if !strings.Contains(mustJSON(t, body), `"origin.latitude"`) {
		t.Errorf("400 body %v does not name the field origin.latitude", body)
	}

	origins := strings.Repeat(`{"latitude":1,"longitude":1},`, 60)
	code, body = postJSON(t, base+"/v1/routes:computeMatrix", `{"origins":[`+strings.TrimSuffix(origins, ",")+`],
		"destinations":[`+strings.TrimSuffix(origins, ",")+`],"transportMode":"TRANSPORT_MODE_CAR"}`)
	if code != http.StatusBadRequest {
		t.Errorf("60x60 matrix = %d %v, want 400 (limit is 2500 elements)", code, body)
	}

	resp, err := http.Post(base+"/v1/routes:estimate", "application/json", bytes.NewReader(make([]byte, 2<<20)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB body = %d, want 413", resp.StatusCode)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRouteOverGRPC(t *testing.T) {
	s := start(t)
	conn := s.grpcConn(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	client := routev1.NewRouteServiceClient(conn)
	est, err := client.EstimateRoute(ctx, &routev1.EstimateRouteRequest{
		Origin:        &geov1.LatLng{Latitude: 52.52, Longitude: 13.405},
		Destination:   &geov1.LatLng{Latitude: 52.4862, Longitude: 13.4247},
		TransportMode: geov1.TransportMode_TRANSPORT_MODE_BICYCLE,
	})
	if err != nil {
		t.Fatalf("EstimateRoute: %v", err)
	}
	if est.GetDistanceMeters() <= 0 || est.GetDuration().AsDuration() <= 0 || est.GetProvider() != "geodesic" {
		t.Errorf("EstimateRoute = %v, want positive distance and duration from geodesic", est)
	}

	_, err = client.EstimateRoute(ctx, &routev1.EstimateRouteRequest{
		Origin:        &geov1.LatLng{Latitude: 0, Longitude: 181},
		Destination:   &geov1.LatLng{Latitude: 0, Longitude: 0},
		TransportMode: geov1.TransportMode_TRANSPORT_MODE_CAR,
	})
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("EstimateRoute(longitude 181) code = %v, want InvalidArgument", st.Code())
	}
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	if diff := cmp.Diff([]string{"origin.longitude"}, fields); diff != "" {
		t.Errorf("field violations (-want +got):\n%s", diff)
	}

	health, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "lastmile.route.v1.RouteService"})
	if err != nil {
		t.Fatalf("health Check: %v", err)
	}
	if got, want := health.GetStatus(), healthpb.HealthCheckResponse_SERVING; got != want {
		t.Errorf("health = %v, want %v", got, want)
	}
}

func TestPlaintextRefusedUnlessInsecure(t *testing.T) {
	s := start(t)
	conn, err := grpc.NewClient(s.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if got := status.Code(err); got != codes.Unavailable {
		t.Errorf("plaintext call to a TLS server: code %v, want Unavailable", got)
	}

	insecureSys := start(t, "--insecure")
	conn2, err := grpc.NewClient(insecureSys.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	// A fresh deadline: the first one ran while the second process started.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	if _, err := healthpb.NewHealthClient(conn2).Check(ctx2, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("plaintext call with --insecure: %v, want success", err)
	}
	code, body := postJSON(t, "http://"+insecureSys.HTTP+"/v1/routes:estimate", `{
		"origin": {"latitude": 1, "longitude": 1}, "destination": {"latitude": 1.01, "longitude": 1},
		"transportMode": "TRANSPORT_MODE_WALKING"}`)
	if code != http.StatusOK {
		t.Errorf("REST with --insecure = %d %v, want 200", code, body)
	}
}

func TestAdminEndpointsAndShutdown(t *testing.T) {
	s := start(t)
	conn := s.grpcConn(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := routev1.NewRouteServiceClient(conn).EstimateRoute(ctx, &routev1.EstimateRouteRequest{
		Origin: &geov1.LatLng{Latitude: 1, Longitude: 1}, Destination: &geov1.LatLng{Latitude: 2, Longitude: 2},
		TransportMode: geov1.TransportMode_TRANSPORT_MODE_VAN,
	}); err != nil {
		t.Fatalf("EstimateRoute: %v", err)
	}

	// pprof is served only with --admin-pprof (internal/cli's TestServeAdminPprof turns it on).
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/debug/pprof/": 404, "/nope": 404} {
		resp, err := http.Get("http://" + s.Admin + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	resp, err := http.Get("http://" + s.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`grpc_server_handled_total{grpc_code="OK",grpc_method="EstimateRoute",grpc_service="lastmile.route.v1.RouteService",grpc_type="unary"} 1`,
		`grpc_server_handling_seconds_bucket{grpc_method="EstimateRoute"`,
		`lastmile_build_info{`,
	} {
		if !bytes.Contains(metrics, []byte(want)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if err := s.stop(); err != nil {
		t.Errorf("Run after cancellation = %v, want nil (clean shutdown)", err)
	}
}

// sharedCA returns a new data directory holding a copy of from's development CA and certificates, as each
// replica of a deployment gets the CA in its own data directory: a data directory serves one process at a
// time (serve locks it).
func sharedCA(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tls"), 0o700); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(from, "tls"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(from, "tls", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tls", e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestSplitProcesses runs the distributed topology: two route replicas and a gateway in separate Run calls
// (separate "processes", each with its own data directory, sharing one development CA), the gateway
// reaching route through a static replica list over mTLS with round-robin.
func TestSplitProcesses(t *testing.T) {
	dataDir := t.TempDir()
	r1 := startIn(t, dataDir, "--target", "route")
	r2 := startIn(t, sharedCA(t, dataDir), "--target", "route")
	gw := startIn(t, sharedCA(t, dataDir), "--target", "gateway", "--route-addr", r1.GRPC+","+r2.GRPC)
	if r1.HTTP != "" || gw.GRPC != "" {
		t.Fatalf("route-only process serves HTTP at %q or gateway-only process serves gRPC at %q; want neither", r1.HTTP, gw.GRPC)
	}
	// Subchannels become ready one by one (each a TLS handshake, slow on a loaded machine), so early calls
	// may all land on the first replica; once both are ready, round robin reaches both. 60 s is a hang
	// guard, not a measure: a gateway that does not balance (pick_first) sends every call to one replica
	// however long it is called.
	served := func(r *system) bool {
		resp, err := http.Get("http://" + r.Admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		metrics, _ := io.ReadAll(resp.Body)
		return !bytes.Contains(metrics, []byte(`grpc_server_handled_total{grpc_code="OK",grpc_method="EstimateRoute",grpc_service="lastmile.route.v1.RouteService",grpc_type="unary"} 0`))
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; !(served(r1) && served(r2)); i++ {
		if time.Now().After(deadline) {
			t.Fatalf("after %d calls in 60 s, replica 1 served: %v, replica 2 served: %v; want round-robin to reach both", i, served(r1), served(r2))
		}
		code, body := postJSON(t, "http://"+gw.HTTP+"/v1/routes:estimate", `{
			"origin": {"latitude": 40.7128, "longitude": -74.0060},
			"destination": {"latitude": 40.73, "longitude": -73.99},
			"transportMode": "TRANSPORT_MODE_SCOOTER"}`)
		if code != http.StatusOK {
			t.Fatalf("call %d through the split gateway = %d %v, want 200", i, code, body)
		}
		if i > 10 {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// TestDNSTarget reaches a route process through a dns:/// peer address, as a Kubernetes headless Service
// would be named; grpc-go resolves every address of the name and balances over those that answer.
func TestDNSTarget(t *testing.T) {
	dataDir := t.TempDir()
	r := startIn(t, dataDir, "--target", "route")
	_, port, err := net.SplitHostPort(r.GRPC)
	if err != nil {
		t.Fatal(err)
	}
	gw := startIn(t, sharedCA(t, dataDir), "--target", "gateway", "--route-addr", "dns:///localhost:"+port)
	code, body := postJSON(t, "http://"+gw.HTTP+"/v1/routes:estimate", `{
		"origin": {"latitude": 48.85, "longitude": 2.35}, "destination": {"latitude": 48.86, "longitude": 2.36},
		"transportMode": "TRANSPORT_MODE_WALKING"}`)
	if code != http.StatusOK {
		t.Fatalf("estimate through dns:///localhost:%s = %d %v, want 200", port, code, body)
	}
}
