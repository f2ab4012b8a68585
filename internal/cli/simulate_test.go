package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/platform/tlsutil"
	"lastmile/internal/simulator"
)

func TestParseSimulate(t *testing.T) {
	authority, err := tlsutil.EnsureCA(t.TempDir())
	if err != nil {
		t.Fatalf("EnsureCA: %v", err)
	}
	ca := authority.CertFile()
	env := Env{Getenv: envOf(map[string]string{"LASTMILE_ADMIN_PASSWORD": "secret from env", "LASTMILE_COURIERS": "7"}), Stderr: &bytes.Buffer{}}
	_, sc, err := parseSimulate([]string{"--target", "lm.example.com:443", "--ca-file", ca, "--rate", "30/m", "--duration", "90s",
		"--city", "48.8566, 2.3522", "--radius", "5000", "--modes", "car,walking"}, env)
	if err != nil {
		t.Fatalf("parseSimulate: %v", err)
	}
	if sc.Target != "lm.example.com:443" || sc.AdminEmail != "admin@lastmile.local" || sc.AdminPassword != "secret from env" ||
		sc.Couriers != 7 || sc.Rate != 0.5 || sc.Duration != 90*time.Second || sc.TLS == nil ||
		sc.Area != (simulator.Area{Center: simulator.Point{Lat: 48.8566, Lng: 2.3522}, RadiusMeters: 5000}) ||
		len(sc.Modes) != 2 || sc.Modes[0] != geov1.TransportMode_TRANSPORT_MODE_CAR || sc.Modes[1] != geov1.TransportMode_TRANSPORT_MODE_WALKING {
		t.Errorf("parseSimulate = %+v, want the flags' and the environment's values", sc)
	}
}

func TestParseSimulateRejectsBadInput(t *testing.T) {
	withPassword := map[string]string{"LASTMILE_ADMIN_PASSWORD": "p"}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no password", nil, []string{"--insecure"}, "admin password is required"},
		{"bad rate", withPassword, []string{"--insecure", "--rate", "fast"}, "want a positive rate"},
		{"zero rate", withPassword, []string{"--insecure", "--rate", "0/s"}, "want a positive rate"},
		{"rate too high", withPassword, []string{"--insecure", "--rate", "5000"}, "at most 1000/s"},
		{"bad city", withPassword, []string{"--insecure", "--city", "berlin"}, "--city"},
		{"bad mode", withPassword, []string{"--insecure", "--modes", "bicycle,rocket"}, `"rocket" is not one of`},
		{"missing CA", withPassword, []string{"--ca-file", "/nonexistent/ca.crt"}, "--ca-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseSimulate(tc.args, Env{Getenv: envOf(tc.env), Stderr: &bytes.Buffer{}})
			var ue usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseSimulate(%q) = %v, want a usage error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestParseDemoDefaults(t *testing.T) {
	cfg, d, err := parseDemo(nil, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatalf("parseDemo: %v", err)
	}
	if cfg.DataDir != demoDataDir || cfg.HTTPAddr != ":8080" || cfg.Telemetry.LogLevel.String() != "WARN" {
		t.Errorf("demo serve config: data dir %q, http %q, log level %v; want %q, :8080, WARN", cfg.DataDir, cfg.HTTPAddr, cfg.Telemetry.LogLevel, demoDataDir)
	}
	if d.AdminEmail != "admin@lastmile.local" || d.Sim.Couriers != 50 || d.Sim.Rate != 0.5 || d.Sim.Duration != 0 || d.Sim.Speedup != 8 || d.Sim.Area.RadiusMeters != 3000 {
		t.Errorf("demo config = %+v, want admin@lastmile.local, 50 couriers, 0.5 tasks/s until interrupted, speed-up 8, 3 km", d)
	}
	if _, _, err := parseDemo([]string{"--target", "route"}, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}}); err == nil || !strings.Contains(err.Error(), "--target must be all") {
		t.Errorf("parseDemo(--target route) = %v, want a usage error", err)
	}
}

func TestDemoPasswordIsKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	first, err := demoPassword(dir, envOf(nil))
	if err != nil || len(first) < 20 {
		t.Fatalf("demoPassword = %q, %v; want a generated password", first, err)
	}
	again, err := demoPassword(dir, envOf(nil))
	if err != nil || again != first {
		t.Errorf("demoPassword again = %q, %v; want the kept %q", again, err, first)
	}
	fi, err := os.Stat(filepath.Join(dir, demoPasswordFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("password file: %v, %v; want mode 0600", fi, err)
	}
	if got, _ := demoPassword(dir, envOf(map[string]string{"LASTMILE_ADMIN_PASSWORD": "from env"})); got != "from env" {
		t.Errorf("demoPassword with LASTMILE_ADMIN_PASSWORD = %q, want it", got)
	}
}

// TestSimulateAndServeKeepTheirTargetsApart checks that simulate's addresses read variables of their own:
// an environment set up for `serve --target=dispatch` (LASTMILE_TARGET, LASTMILE_<SERVICE>_ADDR) leaves
// simulate's defaults alone; LASTMILE_SIMULATE_* set them; an address in LASTMILE_TARGET (meant for
// simulate) or services in simulate's --target are refused as what they are, by both commands.
func TestSimulateAndServeKeepTheirTargetsApart(t *testing.T) {
	parse := func(env map[string]string, args ...string) (simulator.Config, error) {
		env["LASTMILE_ADMIN_PASSWORD"] = "p"
		_, sc, err := parseSimulate(append([]string{"--insecure"}, args...), Env{Getenv: envOf(env), Stderr: &bytes.Buffer{}})
		return sc, err
	}
	servesDispatch := map[string]string{"LASTMILE_TARGET": "dispatch", "LASTMILE_IDENTITY_ADDR": "identity.internal:9090",
		"LASTMILE_COURIER_ADDR": "courier.internal:9090", "LASTMILE_ROUTE_ADDR": "route.internal:9090"}
	if sc, err := parse(servesDispatch); err != nil || sc.Target != "localhost:9090" || sc.Addrs != (simulator.Addrs{}) {
		t.Errorf("simulate in serve's environment = %q %+v, %v; want localhost:9090 for every service", sc.Target, sc.Addrs, err)
	}
	own := map[string]string{"LASTMILE_TARGET": "dispatch", "LASTMILE_SIMULATE_TARGET": "lm.example.com:443",
		"LASTMILE_SIMULATE_IDENTITY_ADDR": "id.example.com:443", "LASTMILE_SIMULATE_COURIER_ADDR": "dns:///couriers.example.com:443",
		"LASTMILE_SIMULATE_ROUTE_ADDR": "r1.example.com:443,r2.example.com:443", "LASTMILE_SIMULATE_DISPATCH_ADDR": "d.example.com:443"}
	want := simulator.Addrs{Identity: "id.example.com:443", Courier: "dns:///couriers.example.com:443", Route: "r1.example.com:443,r2.example.com:443", Dispatch: "d.example.com:443"}
	if sc, err := parse(own); err != nil || sc.Target != "lm.example.com:443" || sc.Addrs != want {
		t.Errorf("simulate with LASTMILE_SIMULATE_* = %q %+v, %v; want lm.example.com:443 %+v", sc.Target, sc.Addrs, err, want)
	}
	if sc, err := parse(map[string]string{}, "--dispatch-addr", "d1:9090,d2:9090", "--courier-addr", "c:9090"); err != nil ||
		sc.Addrs != (simulator.Addrs{Courier: "c:9090", Dispatch: "d1:9090,d2:9090"}) || sc.Target != "localhost:9090" {
		t.Errorf("simulate --dispatch-addr --courier-addr = %q %+v, %v", sc.Target, sc.Addrs, err)
	}
	if sc, err := parse(map[string]string{"LASTMILE_TARGET": "lm.example.com:443"}, "--target", "other:9090"); err != nil || sc.Target != "other:9090" {
		t.Errorf("simulate --target other:9090 with an address in LASTMILE_TARGET = %q, %v; want the flag", sc.Target, err)
	}

	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"an address in serve's variable", map[string]string{"LASTMILE_TARGET": "lm.example.com:443"}, nil,
			`LASTMILE_TARGET="lm.example.com:443" is serve's list of services, which simulate does not read: set the deployment's address in LASTMILE_SIMULATE_TARGET or --target`},
		{"services as simulate's target", map[string]string{}, []string{"--target", "identity,dispatch"},
			`--target "identity,dispatch" names services, as serve's --target does; simulate's --target is a gRPC address, such as localhost:9090 (environment: LASTMILE_SIMULATE_TARGET)`},
		{"services in simulate's variable", map[string]string{"LASTMILE_SIMULATE_TARGET": "all"}, nil,
			`--target "all" names services, as serve's --target does; simulate's --target is a gRPC address, such as localhost:9090 (environment: LASTMILE_SIMULATE_TARGET)`},
		{"an address without a port", map[string]string{}, []string{"--courier-addr", "couriers.example.com"},
			`--courier-addr: target "couriers.example.com": want host:port, dns:///name:port or h1:p1,h2:p2: address couriers.example.com: missing port in address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(tc.env, tc.args...)
			var ue usageError
			if !errors.As(err, &ue) || err.Error() != tc.want {
				t.Errorf("parseSimulate = %v, want the usage error %q", err, tc.want)
			}
		})
	}

	_, err := parseServe(nil, Env{Getenv: envOf(map[string]string{"LASTMILE_TARGET": "localhost:9090"}), Stderr: &bytes.Buffer{}})
	const serveWant = `--target: "localhost:9090" is an address, not a service: serve's --target (LASTMILE_TARGET) names the services to run, all or a list of identity, courier, route, dispatch, gateway; simulate's address is its --target, or LASTMILE_SIMULATE_TARGET`
	if err == nil || err.Error() != serveWant {
		t.Errorf("serve with an address in LASTMILE_TARGET = %v, want %q", err, serveWant)
	}

	var help bytes.Buffer
	if _, _, err := parseSimulate([]string{"--help"}, Env{Getenv: envOf(nil), Stdout: &help}); !errors.Is(err, errHelp) {
		t.Fatalf("simulate --help = %v", err)
	}
	for _, want := range []string{"env LASTMILE_SIMULATE_TARGET, default localhost:9090", "env LASTMILE_SIMULATE_IDENTITY_ADDR,",
		"env LASTMILE_SIMULATE_COURIER_ADDR,", "env LASTMILE_SIMULATE_ROUTE_ADDR,", "env LASTMILE_SIMULATE_DISPATCH_ADDR,"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("simulate --help lacks %q", want)
		}
	}
	if strings.Contains(help.String(), "env LASTMILE_TARGET") {
		t.Error("simulate --help names serve's LASTMILE_TARGET")
	}
}

// TestDemoKeepsOutOfServesState checks that an environment set up for a deployment's serve (its data
// directory, database, proof directory, and one process's --target) leaves the demo on its own state and
// every service, and that the demo's own variables set them and --help names them.
func TestDemoKeepsOutOfServesState(t *testing.T) {
	deployment := map[string]string{"LASTMILE_DATA_DIR": "/srv/lastmile", "LASTMILE_DATABASE_URL": "postgres://lastmile@db.example.com/lastmile",
		"LASTMILE_PROOF_DIR": "/srv/proofs", "LASTMILE_TARGET": "dispatch"}
	cfg, _, err := parseDemo(nil, Env{Getenv: envOf(deployment), Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatalf("parseDemo in a deployment's environment = %v, want the demo's defaults", err)
	}
	if cfg.DataDir != demoDataDir || cfg.Database.URL != "" || len(cfg.Targets) != len(targetNames()) {
		t.Errorf("demo in a deployment's environment: data dir %q, database %q, targets %v; want %q, SQLite, all", cfg.DataDir, cfg.Database.URL, cfg.Targets, demoDataDir)
	}
	own := map[string]string{"LASTMILE_DEMO_DATA_DIR": "/tmp/my-demo", "LASTMILE_DEMO_DATABASE_URL": "postgres://demo@localhost/demo"}
	if cfg, _, err := parseDemo(nil, Env{Getenv: envOf(own), Stderr: &bytes.Buffer{}}); err != nil || cfg.DataDir != "/tmp/my-demo" || cfg.Database.URL != "postgres://demo@localhost/demo" {
		t.Errorf("demo with LASTMILE_DEMO_* = %q, %q, %v; want them", cfg.DataDir, cfg.Database.URL, err)
	}
	if _, _, err := parseDemo(nil, Env{Getenv: envOf(map[string]string{"LASTMILE_DEMO_TARGET": "route"}), Stderr: &bytes.Buffer{}}); err == nil ||
		err.Error() != "demo runs every service: --target must be all" {
		t.Errorf("demo with LASTMILE_DEMO_TARGET=route = %v, want the usage error", err)
	}
	var help bytes.Buffer
	if _, _, err := parseDemo([]string{"--help"}, Env{Getenv: envOf(nil), Stdout: &help}); !errors.Is(err, errHelp) {
		t.Fatalf("demo --help = %v", err)
	}
	for _, want := range []string{"env LASTMILE_DEMO_DATA_DIR, default ./lastmile-demo", "env LASTMILE_DEMO_DATABASE_URL,", "env LASTMILE_DEMO_PROOF_DIR,", "env LASTMILE_DEMO_TARGET, default all"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("demo --help lacks %q", want)
		}
	}
}
