package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// flagSet wraps flag.FlagSet so that every flag can also be set from an LASTMILE_* environment variable:
// --grpc-addr is LASTMILE_GRPC_ADDR. A flag given on the command line wins over the environment, which wins
// over the default.
type flagSet struct {
	*flag.FlagSet
	cmd     string
	summary string
	help    io.Writer
	// env holds the flags whose environment variable is not envName's, by flag name (setEnv).
	env map[string]string
}

// newFlagSet returns the flags of command cmd. --help writes its usage to help (standard output, where a
// user asked for it: `lastmile serve --help | less`); a flag that does not parse is an error naming it,
// without the usage, which would push the error out of sight.
func newFlagSet(cmd, summary string, help io.Writer) *flagSet {
	if help == nil {
		help = io.Discard
	}
	fs := &flagSet{FlagSet: flag.NewFlagSet(cmd, flag.ContinueOnError), cmd: cmd, summary: summary, help: help}
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// usage writes the command's summary and its flags, each with its environment variable and default.
func (fs *flagSet) usage(out io.Writer) {
	fmt.Fprintf(out, "Usage: lastmile %s [flags]\n\n%s\n", fs.cmd, fs.summary)
	var lines []string
	fs.VisitAll(func(f *flag.Flag) {
		def := f.DefValue
		if def == "" {
			def = `""`
		}
		lines = append(lines, fmt.Sprintf("  --%-22s %s\n        env %s, default %s\n", f.Name, f.Usage, fs.envVar(f.Name), def))
	})
	if len(lines) == 0 {
		return
	}
	sort.Strings(lines)
	fmt.Fprintf(out, "\nFlags (each also read from the environment variable shown):\n%s", strings.Join(lines, ""))
}

// setEnv gives flag name the environment variable env instead of envName's: a command whose flag means
// something else than another command's flag of the same name (simulate's --target is an address, serve's
// a list of services) must not read that command's variable, which an operator may have exported for it.
func (fs *flagSet) setEnv(name, env string) {
	if fs.env == nil {
		fs.env = map[string]string{}
	}
	fs.env[name] = env
}

// envVar returns the environment variable of flag name.
func (fs *flagSet) envVar(name string) string {
	if env, ok := fs.env[name]; ok {
		return env
	}
	return envName(name)
}

// envName returns the environment variable for a flag name: grpc-addr -> LASTMILE_GRPC_ADDR.
func envName(flagName string) string {
	return "LASTMILE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse parses args, then fills every flag not given on the command line from its environment variable.
func (fs *flagSet) parse(args []string, getenv func(string) string) error {
	fs.VisitAll(func(f *flag.Flag) {
		if g, ok := f.Value.(flag.Getter); ok {
			if _, ok := g.Get().(time.Duration); ok {
				f.Value = durationValue{g}
			}
		}
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.usage(fs.help)
			return errHelp
		}
		return usageError{fmt.Errorf("%w ('lastmile %s --help' lists the flags)", err, fs.cmd)}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("%s: unexpected argument %q ('lastmile %s --help' lists the flags)", fs.cmd, fs.Arg(0), fs.cmd)}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(fs.envVar(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", fs.envVar(f.Name), v, err))
			}
		}
	})
	if len(errs) > 0 {
		return usageError{errors.Join(errs...)}
	}
	return nil
}

// durationValue is a duration flag whose refusal says what a duration looks like: the flag package's own
// says only "parse error".
type durationValue struct{ flag.Getter }

func (d durationValue) Set(s string) error {
	if _, err := time.ParseDuration(s); err != nil {
		return fmt.Errorf("not a duration: write a number with a unit, such as 500ms, 30s, 5m or 1h30m")
	}
	return d.Getter.Set(s)
}

// listFlag is a comma-separated list flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	*l = nil
	for _, part := range strings.Split(s, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*l = append(*l, part)
		}
	}
	return nil
}

// durationFlag rejects negative durations.
func positiveDuration(name string, d time.Duration) error {
	if d <= 0 {
		return usageError{fmt.Errorf("--%s must be positive, got %s", name, d)}
	}
	return nil
}
