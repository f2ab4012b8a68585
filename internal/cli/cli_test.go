package cli

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseServePrecedence(t *testing.T) {
	env := Env{Getenv: envOf(map[string]string{
		"LASTMILE_GRPC_ADDR":        ":7000",
		"LASTMILE_HTTP_ADDR":        ":7001",
		"LASTMILE_TARGET":           "route,gateway",
		"LASTMILE_SHUTDOWN_TIMEOUT": "3s",
		"LASTMILE_LOG_LEVEL":        "debug",
	}), Stderr: &bytes.Buffer{}}
	cfg, err := parseServe([]string{"--http-addr", ":7101"}, env)
	if err != nil {
		t.Fatalf("parseServe: %v", err)
	}
	// Command line beats environment beats default.
	if got, want := cfg.HTTPAddr, ":7101"; got != want {
		t.Errorf("HTTPAddr = %q, want %q (flag wins over env)", got, want)
	}
	if got, want := cfg.GRPCAddr, ":7000"; got != want {
		t.Errorf("GRPCAddr = %q, want %q (env wins over default)", got, want)
	}
	if got, want := cfg.AdminAddr, ":9091"; got != want {
		t.Errorf("AdminAddr = %q, want default %q", got, want)
	}
	if diff := cmp.Diff(map[string]bool{"route": true, "gateway": true}, cfg.Targets); diff != "" {
		t.Errorf("Targets (-want +got):\n%s", diff)
	}
	if cfg.ShutdownTimeout != 3*time.Second || cfg.Telemetry.LogLevel != slog.LevelDebug {
		t.Errorf("ShutdownTimeout, LogLevel = %v, %v; want 3s, debug", cfg.ShutdownTimeout, cfg.Telemetry.LogLevel)
	}
}

func TestParseServeDefaultsAllTargets(t *testing.T) {
	cfg, err := parseServe(nil, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	// Every module of the registry and the gateway.
	want := map[string]bool{"identity": true, "courier": true, "route": true, "dispatch": true, "gateway": true}
	if diff := cmp.Diff(want, cfg.Targets); diff != "" {
		t.Errorf("default Targets (-want +got):\n%s", diff)
	}
	if cfg.TLS.Insecure {
		t.Error("Insecure is on by default; TLS must be the default")
	}
}

func TestParseServeRejectsBadInput(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"unknown target", []string{"--target", "route,billing"}, nil, `unknown service "billing"`},
		{"negative drain delay", []string{"--drain-delay", "-1s"}, nil, "--drain-delay must not be negative"},
		{"bad log level", []string{"--log-level", "loud"}, nil, "--log-level"},
		{"bad env duration", nil, map[string]string{"LASTMILE_SHUTDOWN_TIMEOUT": "soon"}, "LASTMILE_SHUTDOWN_TIMEOUT"},
		{"negative shutdown", []string{"--shutdown-timeout", "-1s"}, nil, "--shutdown-timeout must be positive"},
		{"osrm without url", []string{"--route-provider", "osrm"}, nil, "--osrm-url"},
		{"osrm url not http", []string{"--route-provider", "osrm", "--osrm-url", "osrm:5000"}, nil, `--osrm-url: osrm: base URL "osrm:5000" must be http(s)://host[:port][/path]`},
		{"negative rate", []string{"--rate-limit-rps", "-1"}, nil, "--rate-limit-rps must be a number, 0 (no limit) or more, got -1"},
		{"NaN rate", []string{"--rate-limit-rps", "NaN"}, nil, "--rate-limit-rps must be a number, 0 (no limit) or more, got NaN"},
		{"negative burst", []string{"--rate-limit-burst", "-5"}, nil, "--rate-limit-burst must not be negative, got -5"},
		{"negative cache", []string{"--route-cache-size", "-1"}, nil, "--route-cache-size must not be negative (0 disables the cache), got -1"},
		{"osrm timeout", []string{"--osrm-timeout", "0s"}, nil, "--osrm-timeout must be positive, got 0s"},
		{"message limit below a proof chunk", []string{"--max-recv-msg-bytes", "1048576"}, nil, "--max-recv-msg-bytes must be at least 1049600 (a proof chunk of 1 MiB with its envelope, which the contract allows), got 1048576"},
		{"unknown provider", []string{"--route-provider", "google"}, nil, "--route-provider"},
		{"sample ratio", []string{"--trace-sample-ratio", "2"}, nil, "--trace-sample-ratio"},
		{"event retention", []string{"--event-retention", "0s"}, nil, "--event-retention must be positive"},
		{"event max count", []string{"--event-max-count", "0"}, nil, "--event-max-count must be positive, got 0"},
		{"grpc address without a port", []string{"--grpc-addr", "9090"}, nil, `--grpc-addr: "9090" is not host:port or :port`},
		{"http address", []string{"--http-addr", "nope"}, nil, `--http-addr: "nope" is not host:port or :port`},
		{"admin port out of range", []string{"--admin-addr", ":99999"}, nil, `--admin-addr: ":99999": the port must be a number from 0 to 65535, got "99999"`},
		{"admin address from the environment", nil, map[string]string{"LASTMILE_ADMIN_ADDR": "localhost"}, `--admin-addr: "localhost" is not host:port or :port`},
		{"peer list entry without a port", []string{"--target", "courier", "--identity-addr", "h1:1,no-port"}, nil,
			`--identity-addr: static target "h1:1,no-port": entry "no-port" is not host:port`},
		{"peer address from the environment", []string{"--target", "dispatch"}, map[string]string{"LASTMILE_ROUTE_ADDR": "route"}, `--route-addr: target "route": want host:port`},
		{"stray argument", []string{"extra"}, nil, `unexpected argument "extra"`},
		{"unknown flag", []string{"--nope"}, nil, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseServe(tt.args, Env{Getenv: envOf(tt.env), Stderr: &bytes.Buffer{}})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("parseServe(%q) error = %v, want one containing %q", tt.args, err, tt.wantErr)
			}
			if got := ExitCode(err); got != 2 {
				t.Errorf("ExitCode = %d, want 2 for a usage error", got)
			}
		})
	}
}

// TestParseServeIgnoresAddressesItDoesNotUse: one environment serves every process of a deployment, so a
// peer's address is not read (nor checked) by the process that runs that service, and a gateway alone
// has no gRPC listener.
func TestParseServeIgnoresAddressesItDoesNotUse(t *testing.T) {
	for _, args := range [][]string{
		{"--identity-addr", "not an address"},
		{"--target", "gateway", "--grpc-addr", "unused"},
		{"--target", "route", "--http-addr", "unused"},
	} {
		if _, err := parseServe(args, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}}); err != nil {
			t.Errorf("parseServe(%q) = %v, want nil", args, err)
		}
	}
}

func TestRunCommands(t *testing.T) {
	var out, errOut bytes.Buffer
	env := Env{Getenv: envOf(nil), Stdout: &out, Stderr: &errOut}

	if err := Run(context.Background(), []string{"lastmile", "version"}, env); err != nil {
		t.Fatalf("version: %v", err)
	}
	if !strings.HasPrefix(out.String(), "lastmile dev (commit ") {
		t.Errorf("version output = %q, want it to start with %q", out.String(), "lastmile dev (commit ")
	}

	err := Run(context.Background(), []string{"lastmile", "frobnicate"}, env)
	if err == nil || ExitCode(err) != 2 {
		t.Errorf("unknown command: err = %v, exit %d; want a usage error (exit 2)", err, ExitCode(err))
	}
	if err := Run(context.Background(), []string{"lastmile", "serve", "--help"}, env); err != nil {
		t.Errorf("serve --help: %v, want nil", err)
	}
	if !strings.Contains(out.String(), "env LASTMILE_GRPC_ADDR, default :9090") {
		t.Errorf("serve --help does not document LASTMILE_GRPC_ADDR on standard output:\n%s", out.String())
	}
}

// TestHelpAndFlagErrors: --help writes the usage to standard output (`lastmile serve --help | less`), and
// exits 0; a flag that does not parse is a usage error (exit 2) naming it and where the flags are listed,
// without printing the usage, which pushed the error out of sight.
func TestHelpAndFlagErrors(t *testing.T) {
	for _, cmd := range []string{"serve", "demo", "simulate", "certs", "migrate", "version"} {
		t.Run(cmd, func(t *testing.T) {
			var out, errOut bytes.Buffer
			env := Env{Getenv: envOf(nil), Stdout: &out, Stderr: &errOut}
			if err := Run(context.Background(), []string{"lastmile", cmd, "--help"}, env); err != nil {
				t.Errorf("%s --help = %v, want nil", cmd, err)
			}
			if !strings.HasPrefix(out.String(), "Usage: lastmile "+cmd+" [flags]\n") || errOut.Len() != 0 {
				t.Errorf("%s --help wrote %q to standard output and %q to standard error; want the usage on standard output only", cmd, out.String(), errOut.String())
			}
			if got := strings.Contains(out.String(), "Flags ("); got != (cmd != "version") {
				t.Errorf("%s --help lists flags: %v, want %v (version has none):\n%s", cmd, got, cmd != "version", out.String())
			}

			out.Reset()
			err := Run(context.Background(), []string{"lastmile", cmd, "--nope"}, env)
			want := "flag provided but not defined: -nope ('lastmile " + cmd + " --help' lists the flags)"
			if err == nil || err.Error() != want || ExitCode(err) != 2 {
				t.Errorf("%s --nope = %v (exit %d), want %q (exit 2)", cmd, err, ExitCode(err), want)
			}
			if out.Len() != 0 || errOut.Len() != 0 {
				t.Errorf("%s --nope wrote %q and %q, want nothing (the error says it all)", cmd, out.String(), errOut.String())
			}
		})
	}
}

// TestCertsCommandNamesAProblemOnce: an operator's unreadable CA is reported with its path, each part of
// the message once.
func TestCertsCommandNamesAProblemOnce(t *testing.T) {
	dir := t.TempDir()
	env := Env{Getenv: envOf(map[string]string{"LASTMILE_DATA_DIR": dir}), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
	if err := Run(context.Background(), []string{"lastmile", "certs"}, env); err != nil {
		t.Fatalf("certs: %v", err)
	}
	ca := filepath.Join(dir, "tls", "ca.crt")
	if err := os.WriteFile(ca, []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), []string{"lastmile", "certs"}, env)
	if want := "development PKI: load CA certificate " + ca + ": no CERTIFICATE PEM block"; err == nil || err.Error() != want {
		t.Errorf("certs with a garbage CA = %v, want %q", err, want)
	}
}

func TestCertsCommand(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	env := Env{Getenv: envOf(map[string]string{"LASTMILE_DATA_DIR": dir}), Stdout: &out, Stderr: &bytes.Buffer{}}
	if err := Run(context.Background(), []string{"lastmile", "certs", "--tls-hosts", "lastmile.internal"}, env); err != nil {
		t.Fatalf("certs: %v", err)
	}
	for _, name := range []string{"ca.crt", "ca.key", "server.crt", "server.key", "dispatch.crt", "gateway.key"} {
		if _, err := os.Stat(filepath.Join(dir, "tls", name)); err != nil {
			t.Errorf("certs did not create %s: %v", name, err)
		}
	}
	if !strings.Contains(out.String(), filepath.Join(dir, "tls", "ca.crt")) {
		t.Errorf("certs output does not name the CA file:\n%s", out.String())
	}
	hint := "\nCall the API with grpcurl: grpcurl -cacert " + filepath.Join(dir, "tls", "ca.crt")
	if want := hint + " localhost:9090 list\n"; !strings.HasSuffix(out.String(), want) {
		t.Errorf("certs output ends %q, want %q", out.String()[strings.LastIndexByte(out.String()[:out.Len()-1], '\n'):], want)
	}
	// The grpcurl command dials serve's --grpc-addr (or LASTMILE_GRPC_ADDR), not the default.
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{args: []string{"--grpc-addr", ":9190"}, want: "localhost:9190"},
		{env: map[string]string{"LASTMILE_GRPC_ADDR": "0.0.0.0:9290"}, want: "localhost:9290"},
		{args: []string{"--grpc-addr", "[::]:9390"}, want: "localhost:9390"},
		{args: []string{"--grpc-addr", "127.0.0.1:9490"}, want: "127.0.0.1:9490"},
		{args: []string{"--grpc-addr", "[::1]:9590"}, want: "[::1]:9590"},
	} {
		out.Reset()
		vars := map[string]string{"LASTMILE_DATA_DIR": dir}
		maps.Copy(vars, tc.env)
		env := Env{Getenv: envOf(vars), Stdout: &out, Stderr: &bytes.Buffer{}}
		if err := Run(context.Background(), append([]string{"lastmile", "certs"}, tc.args...), env); err != nil {
			t.Fatalf("certs %q: %v", tc.args, err)
		}
		if want := hint + " " + tc.want + " list\n"; !strings.HasSuffix(out.String(), want) {
			t.Errorf("certs %q %v: output does not end with %q:\n%s", tc.args, tc.env, want, out.String())
		}
	}
	env = Env{Getenv: envOf(map[string]string{"LASTMILE_DATA_DIR": dir}), Stdout: &out, Stderr: &bytes.Buffer{}}
	err := Run(context.Background(), []string{"lastmile", "certs", "--grpc-addr", "9090"}, env)
	if want := `--grpc-addr: "9090" is not host:port or :port`; err == nil || err.Error() != want || ExitCode(err) != 2 {
		t.Errorf("certs --grpc-addr 9090 = %v (exit %d), want %q (exit 2)", err, ExitCode(err), want)
	}
	// One file a line, every path in one column ("simulator identity:" is the longest label).
	for _, want := range []string{
		"CA certificate:     " + filepath.Join(dir, "tls", "ca.crt") + "\n",
		"courier identity:   " + filepath.Join(dir, "tls", "courier.crt") + " (key ",
		"simulator identity: " + filepath.Join(dir, "tls", "simulator.crt") + " (key ",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("certs output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestServeNeedsPeerAddressForRemoteRoute(t *testing.T) {
	err := Run(context.Background(), []string{"lastmile", "serve", "--target", "gateway", "--insecure",
		"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"},
		Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--route-addr") {
		t.Errorf("serve --target=gateway without --route-addr = %v, want a usage error naming --route-addr", err)
	}
}

// TestServeRefusesTargetsWithNothingToServe checks that a name without a module (the simulator, a caller
// that is not a service of this binary) is a usage error naming the services that exist, rather than an
// empty server reporting healthy.
func TestServeRefusesTargetsWithNothingToServe(t *testing.T) {
	err := Run(context.Background(), []string{"lastmile", "serve", "--target", "simulator", "--insecure",
		"--data-dir", t.TempDir(), "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"},
		Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}})
	const want = `--target: unknown service "simulator" (want all or a list of identity, courier, route, dispatch, gateway)`
	if err == nil || err.Error() != want {
		t.Fatalf("serve --target=simulator = %v, want %q", err, want)
	}
	if got := ExitCode(err); got != 2 {
		t.Errorf("ExitCode = %d, want 2 for a usage error", got)
	}
	if _, err := parseServe([]string{"--simulator-addr", "localhost:9090"}, Env{Getenv: envOf(nil), Stderr: &bytes.Buffer{}}); err == nil ||
		!strings.Contains(err.Error(), "flag provided but not defined: -simulator-addr") {
		t.Errorf("parseServe(--simulator-addr) = %v, want an undefined flag: peers come from the registry", err)
	}
}

// TestServeSaysWhatToDoAboutATakenAddress: a listener's address that another process holds (a demo left
// running, most often) fails the start (exit 1) with the part and the address named once, and the flag
// that chooses another, before any database is created and before the first admin's password is printed
// (for an account the next start would not print again).
func TestServeSaysWhatToDoAboutATakenAddress(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	for _, tt := range []struct{ flag, part string }{
		{"--grpc-addr", "grpc server"},
		{"--http-addr", "gateway"},
		{"--admin-addr", "admin"},
	} {
		t.Run(tt.flag, func(t *testing.T) {
			addrs := map[string]string{"--grpc-addr": "127.0.0.1:0", "--http-addr": "127.0.0.1:0", "--admin-addr": "127.0.0.1:0"}
			addrs[tt.flag] = addr
			dir := t.TempDir()
			args := []string{"lastmile", "serve", "--insecure", "--data-dir", dir}
			for f, a := range addrs {
				args = append(args, f, a)
			}
			var stdout bytes.Buffer
			err := Run(context.Background(), args, Env{Getenv: envOf(nil), Stdout: &stdout, Stderr: &bytes.Buffer{}})
			if !errors.Is(err, syscall.EADDRINUSE) {
				t.Fatalf("serve %s %s (taken) = %v, want EADDRINUSE", tt.flag, addr, err)
			}
			prefix := tt.part + ": listen on " + addr + ": "
			suffix := " (another lastmile serve or demo?): stop that process, or choose another " + tt.flag
			if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.HasSuffix(msg, suffix) || strings.Count(msg, tt.part+":") != 1 {
				t.Errorf("serve %s on a taken address = %q, want %q…%q", tt.flag, msg, prefix, suffix)
			}
			if got := ExitCode(err); got != 1 {
				t.Errorf("ExitCode = %d, want 1", got)
			}
			if stdout.Len() != 0 {
				t.Errorf("serve %s on a taken address printed %q, want nothing", tt.flag, stdout.String())
			}
			for _, db := range []string{"identity.db", "courier.db", "dispatch.db"} {
				if _, err := os.Stat(filepath.Join(dir, db)); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("serve %s on a taken address left %s (stat: %v), want none", tt.flag, db, err)
				}
			}
		})
	}
}

// TestServeNamesTheRefusedAdminSettings: a first admin password the rules refuse stops serve with one
// line naming the settings and saying why, once.
func TestServeNamesTheRefusedAdminSettings(t *testing.T) {
	for _, tc := range []struct{ password, why string }{
		{"short", "password must be at least 12 characters"},
		{"password1234", "password is too common: it is on the lists of leaked passwords that attackers try first"},
	} {
		env := Env{Getenv: envOf(map[string]string{"LASTMILE_ADMIN_PASSWORD": tc.password}), Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
		err := Run(context.Background(), []string{"lastmile", "serve", "--data-dir", t.TempDir(), "--grpc-addr", "127.0.0.1:0",
			"--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, env)
		want := `start identity: the first admin account (--admin-email "admin@lastmile.local", LASTMILE_ADMIN_PASSWORD): ` + tc.why
		if err == nil || err.Error() != want || ExitCode(err) != 1 {
			t.Errorf("serve with LASTMILE_ADMIN_PASSWORD=%q = %v (exit %d), want %q (exit 1)", tc.password, err, ExitCode(err), want)
		}
	}
}
