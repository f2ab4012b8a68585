package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"lastmile/internal/platform/telemetry"
	"lastmile/internal/simulator"
	"lastmile/internal/web"
)

const demoSummary = `Run every service in this process (as serve does, with every serve flag) plus the simulator against them:
couriers who ride, accept offers and deliver, and customers who order, in a city (Berlin by default). Open
the dashboard it prints and log in with the admin it prints. Ctrl-C stops the simulator, then the services.
A restart first retires what earlier runs left: their open tasks are cancelled (reason OTHER), the parcels
their couriers had picked up are delivered (with a photo, at the dropoff), and their couriers set OFFLINE;
one line says how many.
The admin is LASTMILE_ADMIN_EMAIL / LASTMILE_ADMIN_PASSWORD when set; else its password is generated on the
first run and kept in <data-dir>/demo-admin-password. The demo keeps its state in its own --data-dir; its
--data-dir, --database-url, --proof-dir and --target read LASTMILE_DEMO_DATA_DIR, ... instead of serve's
variables, which may be set for a deployment.
With --sim-duration the demo stops once the simulation and its drain are over.`

// demoDataDir is demo's default --data-dir: a demo's simulated couriers stay out of serve's data.
const demoDataDir = "./lastmile-demo"

// demoOwnEnv are the serve flags whose environment variables the demo does not share with serve: each
// reads LASTMILE_DEMO_<NAME> instead.
var demoOwnEnv = []string{"data-dir", "database-url", "proof-dir", "target"}

// demoPasswordFile is where a demo keeps the admin password it generated, in its data directory.
const demoPasswordFile = "demo-admin-password"

// demoConfig is what `lastmile demo` reads besides serve's flags.
type demoConfig struct {
	Sim        simulator.Config
	AdminEmail string
}

func parseDemo(args []string, env Env) (serveConfig, demoConfig, error) {
	var sim simFlags
	var fs *flagSet
	cfg, err := parseServeFlags("demo", demoSummary, args, env, func(f *flagSet, c *serveConfig) {
		fs = f
		// Demo's own defaults for serve flags: its own state, and a quieter log beside the progress line.
		c.DataDir = demoDataDir
		f.Lookup("data-dir").DefValue = demoDataDir
		_ = f.Lookup("log-level").Value.Set("warn")
		f.Lookup("log-level").DefValue = "warn"
		f.Lookup("admin-email").Usage = "email of the admin account the demo creates and prints at each start (its password: LASTMILE_ADMIN_PASSWORD, else generated on the first run and kept in <data-dir>/" + demoPasswordFile + ")"
		sim.register(f, "sim-", simDefaults{couriers: 50, rate: 0.5, duration: 0, speedup: 8, radius: 3000})
		// Where the demo keeps its state, and what it runs, read variables of the demo's own: serve's
		// (LASTMILE_DATA_DIR, LASTMILE_DATABASE_URL and LASTMILE_PROOF_DIR of a deployment, exported in its
		// shell or unit) would put the simulated accounts, couriers and tasks into the deployment's data,
		// and LASTMILE_TARGET of one of its processes would stop the demo.
		for _, name := range demoOwnEnv {
			f.setEnv(name, "LASTMILE_DEMO_"+strings.ToUpper(strings.ReplaceAll(name, "-", "_")))
		}
	})
	if err != nil {
		return cfg, demoConfig{}, err
	}
	for _, t := range targetNames() {
		if !cfg.Targets[t] {
			return cfg, demoConfig{}, usageError{errors.New("demo runs every service: --target must be all")}
		}
	}
	sc, err := sim.config("sim-")
	if err != nil {
		return cfg, demoConfig{}, err
	}
	return cfg, demoConfig{Sim: sc, AdminEmail: fs.Lookup("admin-email").Value.String()}, nil
}

func runDemo(ctx context.Context, args []string, env Env) error {
	cfg, d, err := parseDemo(args, env)
	if err != nil {
		return err
	}
	_, err = demo(ctx, cfg, d, env, nil)
	return err
}

// demo runs serve and, once it listens, the simulator against its gRPC listener as an outside client
// would (TLS trusting the development CA, the admin's token). When ctx ends it stops the simulator first,
// then the services. With a simulation duration it stops by itself after the simulation; after, when set,
// runs then with the services still up (tests inspect the system there).
func demo(ctx context.Context, cfg serveConfig, d demoConfig, env Env, after func(context.Context, Endpoints, *simulator.Stats) error) (*simulator.Stats, error) {
	password, err := demoPassword(cfg.DataDir, env.Getenv)
	if err != nil {
		return nil, err
	}
	cfg.Gateway.Web.Area = demoArea(d.Sim.Area)
	serveEnv := env
	serveEnv.Getenv = func(k string) string {
		if k == "LASTMILE_ADMIN_PASSWORD" {
			return password
		}
		return env.Getenv(k)
	}
	ready := make(chan Endpoints, 1)
	serveEnv.Ready = func(e Endpoints) {
		if env.Ready != nil {
			env.Ready(e)
		}
		ready <- e
	}
	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServe()
	served := make(chan error, 1)
	go func() { served <- serve(serveCtx, cfg, serveEnv) }()

	var ends Endpoints
	select {
	case ends = <-ready:
	case err := <-served:
		return nil, err
	case <-ctx.Done():
		stopServe()
		return nil, <-served
	}
	sc := d.Sim
	sc.Target, sc.AdminEmail, sc.AdminPassword = loopback(ends.GRPC), d.AdminEmail, password
	if !cfg.TLS.Insecure {
		if sc.TLS, err = caTLS(filepath.Join(cfg.DataDir, "tls", "ca.crt")); err != nil {
			stopServe()
			return nil, errors.Join(fmt.Errorf("demo: %w", err), <-served)
		}
	}
	sc.Logger = telemetry.NewLogger(env.Stderr, telemetry.LogOptions{Level: cfg.Telemetry.LogLevel, Format: cfg.Telemetry.LogFormat, Service: "simulator"})
	sc.Progress, sc.ProgressTTY = env.Stderr, isTerminal(env.Stderr)
	// A restart on the same data finds the couriers and tasks the earlier runs left (a run's bots are its
	// own): retire them before this run's start, so that the dashboard shows this run alone.
	if done, err := simulator.RetireEarlierRuns(ctx, sc); err != nil {
		if ctx.Err() == nil {
			sc.Logger.Warn("demo: could not retire what earlier runs left", "error", err)
		}
	} else if done != (simulator.Retired{}) {
		fmt.Fprintf(env.Stdout, "demo: retired an earlier run: %d tasks cancelled, ", done.TasksCancelled)
		if done.TasksDelivered > 0 {
			fmt.Fprintf(env.Stdout, "%d picked-up tasks delivered, ", done.TasksDelivered)
		}
		fmt.Fprintf(env.Stdout, "%d couriers offline", done.CouriersOffline)
		if done.TasksPickedUp > 0 {
			fmt.Fprintf(env.Stdout, " (%d picked-up tasks keep their couriers busy)", done.TasksPickedUp)
		}
		fmt.Fprintln(env.Stdout)
	}
	fmt.Fprintf(env.Stdout, "\n  lastmile demo is running\n    dashboard: http://%s/\n    admin:     %s\n    password:  %s\n"+
		"    simulator: %d couriers, %g tasks/s within %.0f m of %.4f,%.4f\n  Ctrl-C stops it.\n\n",
		browsable(ends.HTTP), d.AdminEmail, password, sc.Couriers, sc.Rate, sc.Area.RadiusMeters, sc.Area.Center.Lat, sc.Area.Center.Lng)

	// The simulator stops when ctx does, or when the services stop on their own (a failed server).
	simCtx, stopSim := context.WithCancel(ctx)
	defer stopSim()
	result := make(chan error, 1)
	go func() {
		err := <-served
		stopSim()
		result <- err
	}()
	start := time.Now()
	stats, simErr := simulator.Run(simCtx, sc)
	if simErr == nil {
		stats.Summary(env.Stdout, time.Since(start))
		if after != nil && simCtx.Err() == nil {
			simErr = after(simCtx, ends, stats)
		}
		if sc.Duration == 0 {
			<-simCtx.Done() // until Ctrl-C
		}
	}
	stopSim()
	stopServe()
	serveErr := <-result
	if simErr != nil {
		return stats, errors.Join(fmt.Errorf("demo: %w", simErr), serveErr)
	}
	return stats, serveErr
}

// demoPassword returns the demo admin's password: LASTMILE_ADMIN_PASSWORD when set, else the one kept in
// the data directory, else a new one, kept there (mode 0600) for the next runs.
func demoPassword(dataDir string, getenv func(string) string) (string, error) {
	if p := getenv("LASTMILE_ADMIN_PASSWORD"); p != "" {
		return p, nil
	}
	file := filepath.Join(dataDir, demoPasswordFile)
	b, err := os.ReadFile(file)
	if err == nil {
		if p := strings.TrimSpace(string(b)); p != "" {
			return p, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("demo: read the admin password: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", fmt.Errorf("demo: create the data directory: %w", err)
	}
	p := rand.Text()
	if err := os.WriteFile(file, []byte(p+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("demo: keep the admin password: %w", err)
	}
	return p, nil
}

// loopback turns a listener address into one this process can dial: an unspecified host becomes
// 127.0.0.1.
func loopback(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// browsable turns a listener address into one for a browser: an unspecified host becomes localhost.
func browsable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// demoArea is the simulated city as the dashboard outlines it, named when it is the default one.
func demoArea(a simulator.Area) *web.Area {
	name := "simulated area"
	if a.Center == simulator.Berlin.Center {
		name = "Berlin"
	}
	return &web.Area{Name: name, Latitude: a.Center.Lat, Longitude: a.Center.Lng, RadiusMeters: a.RadiusMeters}
}
