// Package cli is the lastmile command line: it parses flags and LASTMILE_* environment variables into plain
// config structs and wires the services by hand. cmd/lastmile calls Run; end-to-end tests call the same Run
// on :0 ports with a temporary data directory.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Version and Commit are set at link time: -ldflags "-X lastmile/internal/cli.Version=v1.2.3".
var (
	Version = "dev"
	Commit  = ""
)

// Env is what Run takes from the outside world, so tests can replace each part.
type Env struct {
	// Getenv reads an environment variable (os.Getenv in main).
	Getenv func(string) string
	// Stdout and Stderr receive command output and logs.
	Stdout, Stderr io.Writer
	// Ready, when set, is called by serve once every listener is bound, with the actual addresses.
	Ready func(Endpoints)
	// Now is the services' clock (nil: time.Now); today the courier service reads it for its hour slots
	// and location fixes. Tests set it to decide what hour it is, so that nothing they check can move to
	// the next hour while they run.
	Now func() time.Time
}

// Endpoints are the addresses a running serve command listens on.
type Endpoints struct {
	GRPC, HTTP, Admin string
}

var errHelp = errors.New("help requested")

// usageError marks errors caused by bad command-line input (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// ExitCode returns the process exit code for an error returned by Run: 2 for usage errors, 1 otherwise.
func ExitCode(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

const usage = `lastmile — last-mile delivery platform (one binary, every service)

Usage: lastmile <command> [flags]

Commands:
  serve     run services: all in one process (default) or --target=%s
  demo      serve plus the simulator: couriers and customers in Berlin, live on the dashboard
  simulate  run the courier and customer simulator against a running deployment
  certs     create the development CA and service certificates in <data-dir>/tls
  migrate   apply database migrations for every service with a store
  version   print version information
  help      show this help

Run 'lastmile <command> --help' for the flags of a command. Every flag can also be set with an environment
variable: --grpc-addr is LASTMILE_GRPC_ADDR.
`

// Run runs the lastmile command line with args (args[0] is the program name).
func Run(ctx context.Context, args []string, env Env) error {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	if env.Stdout == nil {
		env.Stdout = io.Discard
	}
	if env.Stderr == nil {
		env.Stderr = io.Discard
	}
	if len(args) < 2 {
		fmt.Fprintf(env.Stderr, usage, strings.Join(targetNames(), ","))
		return usageError{errors.New("no command given")}
	}
	cmd, rest := args[1], args[2:]
	var err error
	switch cmd {
	case "serve":
		err = runServe(ctx, rest, env)
	case "demo":
		err = runDemo(ctx, rest, env)
	case "simulate":
		err = runSimulate(ctx, rest, env)
	case "certs":
		err = runCerts(rest, env)
	case "migrate":
		err = runMigrate(ctx, rest, env)
	case "version", "--version":
		err = runVersion(rest, env)
	case "help", "-h", "--help":
		fmt.Fprintf(env.Stdout, usage, strings.Join(targetNames(), ","))
		return nil
	default:
		fmt.Fprintf(env.Stderr, usage, strings.Join(targetNames(), ","))
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

func runVersion(args []string, env Env) error {
	fs := newFlagSet("version", "Print the version, commit and Go version.", env.Stdout)
	if err := fs.parse(args, env.Getenv); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "lastmile %s (commit %s, %s, %s/%s)\n", Version, commit(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}

// commit returns the link-time commit, else the VCS revision recorded by the Go toolchain, else "unknown".
func commit() string {
	if Commit != "" {
		return Commit
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		rev, dirty := "", false
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if rev != "" && dirty {
			return rev + "-dirty"
		}
		if rev != "" {
			return rev
		}
	}
	return "unknown"
}
