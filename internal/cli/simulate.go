package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	geov1 "lastmile/gen/go/lastmile/geo/v1"
	"lastmile/internal/platform/grpcclient"
	"lastmile/internal/platform/telemetry"
	"lastmile/internal/simulator"
)

// simFlags are the simulator's flags, shared by simulate and demo (demo prefixes them with sim-).
type simFlags struct {
	Couriers, Customers int
	Rate                rateFlag
	Duration, Drain     time.Duration
	City                string
	Radius              float64
	Modes               listFlag
	DeclineRatio        float64
	Speedup             float64
	FixInterval         time.Duration
	MaxOpen             int
	WaitCouriers        bool
	DropSessions        time.Duration
	Progress            time.Duration
}

// simDefaults are the simulator flags' defaults of one command.
type simDefaults struct {
	couriers int
	rate     float64
	duration time.Duration
	speedup  float64
	radius   float64
}

// register adds the simulator's flags to fs, each name prefixed with prefix.
func (s *simFlags) register(fs *flagSet, prefix string, d simDefaults) {
	s.Rate = rateFlag(d.rate)
	fs.IntVar(&s.Couriers, prefix+"couriers", d.couriers, "simulated couriers (1 to 20000), each its own account, profile, session and location stream")
	fs.IntVar(&s.Customers, prefix+"customers", 0, "simulated customers who create the tasks (0: one per ten couriers, 1 to 20)")
	fs.Var(&s.Rate, prefix+"rate", "tasks created per second in all, such as 2, 2/s or 30/m (at most 1000/s)")
	fs.DurationVar(&s.Duration, prefix+"duration", d.duration, "how long customers create tasks (0: until interrupted); then couriers finish the open tasks for up to --"+prefix+"drain")
	fs.DurationVar(&s.Drain, prefix+"drain", 2*time.Minute, "after --"+prefix+"duration, how long couriers may take to finish the open tasks")
	fs.StringVar(&s.City, prefix+"city", "52.5200,13.4050", "centre of the city area as latitude,longitude (default Berlin, Alexanderplatz)")
	fs.Float64Var(&s.Radius, prefix+"radius", d.radius, "radius of the city area in meters (100 to 100000)")
	fs.Var(&s.Modes, prefix+"modes", "couriers' transport modes, taken in turn (comma list of bicycle, scooter, car, van, walking; default a city mix, mostly bicycles)")
	fs.Float64Var(&s.DeclineRatio, prefix+"decline-ratio", 0.1, "share of offers couriers decline, 0 to 1")
	fs.Float64Var(&s.Speedup, prefix+"speedup", d.speedup, "couriers ride this many times faster than route estimates (0.1 to 100), within what each transport mode can plausibly do")
	fs.DurationVar(&s.FixInterval, prefix+"fix-interval", time.Second, "how often a moving courier reports its position (100ms to 1m)")
	fs.IntVar(&s.MaxOpen, prefix+"max-open", 0, "most tasks open at once before customers skip creations (0: 20 per courier)")
	fs.BoolVar(&s.WaitCouriers, prefix+"wait-couriers", false, "customers start ordering only once every courier is ready (for measurements: --"+prefix+"duration then counts from there)")
	fs.DurationVar(&s.DropSessions, prefix+"drop-sessions", 0, "end each courier's assignment session after about this long and reconnect with its cursor, as a flaky network does (0: never)")
	fs.DurationVar(&s.Progress, prefix+"progress-interval", 5*time.Second, "how often the progress line is printed")
}

// config returns the simulator config of the flags; prefix names the flags in errors.
func (s *simFlags) config(prefix string) (simulator.Config, error) {
	lat, lng, err := parseLatLng(s.City)
	if err != nil {
		return simulator.Config{}, usageError{fmt.Errorf("--%scity: %w", prefix, err)}
	}
	var modes []geov1.TransportMode
	for _, m := range s.Modes {
		v, ok := geov1.TransportMode_value["TRANSPORT_MODE_"+strings.ToUpper(m)]
		if !ok || v == 0 {
			return simulator.Config{}, usageError{fmt.Errorf("--%smodes: %q is not one of bicycle, scooter, car, van, walking", prefix, m)}
		}
		modes = append(modes, geov1.TransportMode(v))
	}
	if s.Progress <= 0 {
		return simulator.Config{}, usageError{fmt.Errorf("--%sprogress-interval must be positive", prefix)}
	}
	if s.MaxOpen < 0 {
		return simulator.Config{}, usageError{fmt.Errorf("--%smax-open must not be negative", prefix)}
	}
	return simulator.Config{
		Couriers: s.Couriers, Customers: s.Customers, Rate: float64(s.Rate), Duration: s.Duration, Drain: s.Drain,
		Area:  simulator.Area{Center: simulator.Point{Lat: lat, Lng: lng}, RadiusMeters: s.Radius},
		Modes: modes, DeclineRatio: s.DeclineRatio, Speedup: s.Speedup, FixInterval: s.FixInterval, MaxOpen: s.MaxOpen,
		ProgressInterval: s.Progress, WaitForCouriers: s.WaitCouriers, SessionDrop: s.DropSessions,
	}, nil
}

// parseLatLng parses "lat,lng" in degrees.
func parseLatLng(s string) (float64, float64, error) {
	a, b, ok := strings.Cut(s, ",")
	lat, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64)
	lng, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if !ok || err1 != nil || err2 != nil || lat < -85 || lat > 85 || lng < -180 || lng > 180 {
		return 0, 0, fmt.Errorf("%q: want latitude,longitude in degrees, such as 52.5200,13.4050", s)
	}
	return lat, lng, nil
}

// rateFlag is a rate in tasks per second, written 2, 2/s or 120/m.
type rateFlag float64

func (r *rateFlag) String() string { return strconv.FormatFloat(float64(*r), 'g', -1, 64) + "/s" }

func (r *rateFlag) Set(s string) error {
	num, per := strings.TrimSpace(s), 1.0
	switch {
	case strings.HasSuffix(num, "/s"):
		num = strings.TrimSuffix(num, "/s")
	case strings.HasSuffix(num, "/m"):
		num, per = strings.TrimSuffix(num, "/m"), 60
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || !(v > 0) || v/per > simulator.MaxRate {
		return fmt.Errorf("%q: want a positive rate of at most %g/s, such as 2, 2/s or 30/m", s, simulator.MaxRate)
	}
	*r = rateFlag(v / per)
	return nil
}

const simulateSummary = `Run the courier and customer simulator against a running deployment, through its public gRPC API.
An admin account (--admin-email, and its password from LASTMILE_ADMIN_PASSWORD or --admin-password-file)
creates the bots' accounts: --couriers couriers who log in, go AVAILABLE, hold an assignment session, report
their position as they ride, accept or decline offers, pick up, upload a photo and deliver; and customers who
create --rate tasks per second inside the city area. A progress line goes to standard error every
--progress-interval, and a summary at the end. The accounts it creates stay in the deployment.
Every service is called at --target; against a split deployment (services in processes of their own),
--identity-addr, --courier-addr, --route-addr and --dispatch-addr name the others. Addresses take the forms
serve's peer flags take: host:port, dns:///name:port (every address of the name, in turn) or h1:p1,h2:p2.
The addresses' environment variables are simulate's own (LASTMILE_SIMULATE_TARGET, ...), not serve's.`

// simulateServices are the services the simulator calls, each with its --<name>-addr flag.
var simulateServices = []string{"identity", "courier", "route", "dispatch"}

// simulateConfig is what `lastmile simulate` reads.
type simulateConfig struct {
	Target, CAFile, AdminEmail, AdminPasswordFile, LogLevel string
	// Addrs holds the --<service>-addr flags by service name.
	Addrs    map[string]*string
	Insecure bool
	Sim      simFlags
}

func parseSimulate(args []string, env Env) (simulateConfig, simulator.Config, error) {
	c := simulateConfig{Addrs: map[string]*string{}}
	fs := newFlagSet("simulate", simulateSummary, env.Stdout)
	// The addresses read simulate's own variables: serve's LASTMILE_TARGET is a list of services and its
	// LASTMILE_<SERVICE>_ADDR are peers as a process of the deployment reaches them, either exported
	// for a serve in the same shell.
	fs.StringVar(&c.Target, "target", "localhost:9090", "the deployment's gRPC address, where every service not named by its own --<service>-addr is called: host:port, dns:///name:port or h1:p1,h2:p2 (not serve's --target, a list of services)")
	fs.setEnv("target", "LASTMILE_SIMULATE_TARGET")
	for _, svc := range simulateServices {
		c.Addrs[svc] = fs.String(svc+"-addr", "", svc+" service's gRPC address when it is not at --target (a split deployment), in the same forms")
		fs.setEnv(svc+"-addr", "LASTMILE_SIMULATE_"+strings.ToUpper(svc)+"_ADDR")
	}
	fs.StringVar(&c.CAFile, "ca-file", filepath.Join("lastmile-data", "tls", "ca.crt"), "CA certificate that the deployment's server certificate chains to (PEM)")
	fs.BoolVar(&c.Insecure, "insecure", false, "connect in plaintext, to a deployment run with --insecure")
	fs.StringVar(&c.AdminEmail, "admin-email", "admin@lastmile.local", "email of an admin account of the deployment")
	fs.StringVar(&c.AdminPasswordFile, "admin-password-file", "", "file holding the admin's password (else LASTMILE_ADMIN_PASSWORD)")
	fs.StringVar(&c.LogLevel, "log-level", "warn", "log level of the simulator's own log: debug shows every failed call")
	c.Sim.register(fs, "", simDefaults{couriers: 100, rate: 1, duration: time.Minute, speedup: 1, radius: 8000})
	if err := fs.parse(args, env.Getenv); err != nil {
		return c, simulator.Config{}, err
	}
	if err := checkSimulateAddrs(fs, c, env.Getenv); err != nil {
		return c, simulator.Config{}, err
	}
	sc, err := c.Sim.config("")
	if err != nil {
		return c, sc, err
	}
	password := env.Getenv("LASTMILE_ADMIN_PASSWORD")
	if c.AdminPasswordFile != "" {
		b, err := os.ReadFile(c.AdminPasswordFile)
		if err != nil {
			return c, sc, usageError{fmt.Errorf("--admin-password-file: %w", err)}
		}
		password = strings.TrimSpace(string(b))
	}
	if password == "" {
		return c, sc, usageError{errors.New("the admin password is required: set LASTMILE_ADMIN_PASSWORD or --admin-password-file")}
	}
	sc.Target, sc.AdminEmail, sc.AdminPassword = c.Target, c.AdminEmail, password
	sc.Addrs = simulator.Addrs{Identity: *c.Addrs["identity"], Courier: *c.Addrs["courier"], Route: *c.Addrs["route"], Dispatch: *c.Addrs["dispatch"]}
	if !c.Insecure {
		if sc.TLS, err = caTLS(c.CAFile); err != nil {
			return c, sc, usageError{fmt.Errorf("--ca-file: %w", err)}
		}
	}
	return c, sc, nil
}

// checkSimulateAddrs checks simulate's address flags. An address that names serve's services ("dispatch",
// "all") is refused as such, and so is LASTMILE_TARGET holding an address when no target is given: the
// variable is serve's, and an address there was meant for simulate, which would otherwise call
// localhost:9090 instead.
func checkSimulateAddrs(fs *flagSet, c simulateConfig, getenv func(string) string) error {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "target" })
	if v := getenv("LASTMILE_TARGET"); !given && getenv("LASTMILE_SIMULATE_TARGET") == "" && strings.Contains(v, ":") {
		return usageError{fmt.Errorf("LASTMILE_TARGET=%q is serve's list of services, which simulate does not read: set the deployment's address in LASTMILE_SIMULATE_TARGET or --target", v)}
	}
	addrs := map[string]string{"target": c.Target}
	for svc, addr := range c.Addrs {
		if *addr != "" {
			addrs[svc+"-addr"] = *addr
		}
	}
	for _, name := range slices.Sorted(maps.Keys(addrs)) {
		addr := addrs[name]
		if _, _, err := grpcclient.Target(addr); err != nil {
			if _, serr := splitTargets(strings.Split(addr, ",")); serr == nil {
				return usageError{fmt.Errorf("--%s %q names services, as serve's --target does; simulate's --%s is a gRPC address, such as localhost:9090 (environment: %s)", name, addr, name, fs.envVar(name))}
			}
			return usageError{fmt.Errorf("--%s: %w", name, err)}
		}
	}
	return nil
}

// caTLS returns the TLS configuration of an outside client that trusts the CA in file.
func caTLS(file string) (*tls.Config, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func runSimulate(ctx context.Context, args []string, env Env) error {
	c, sc, err := parseSimulate(args, env)
	if err != nil {
		return err
	}
	level, err := telemetry.ParseLevel(c.LogLevel)
	if err != nil {
		return usageError{fmt.Errorf("--log-level: %w", err)}
	}
	sc.Logger = telemetry.NewLogger(env.Stderr, telemetry.LogOptions{Level: level, Format: "text", Service: "simulator"})
	sc.Progress, sc.ProgressTTY = env.Stderr, isTerminal(env.Stderr)
	start := time.Now()
	stats, err := simulator.Run(ctx, sc)
	if err != nil {
		return err
	}
	stats.Summary(env.Stdout, time.Since(start))
	return nil
}

// isTerminal reports whether w is a terminal, where a progress line may be rewritten in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
