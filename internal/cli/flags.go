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
	cmd string
}

func newFlagSet(cmd, summary string, out io.Writer) *flagSet {
	fs := &flagSet{FlagSet: flag.NewFlagSet(cmd, flag.ContinueOnError), cmd: cmd}
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: lastmile %s [flags]\n\n%s\n\nFlags (each also read from the environment variable shown):\n", cmd, summary)
		var lines []string
		fs.VisitAll(func(f *flag.Flag) {
			def := f.DefValue
			if def == "" {
				def = `""`
			}
			lines = append(lines, fmt.Sprintf("  --%-22s %s\n        env %s, default %s\n", f.Name, f.Usage, envName(f.Name), def))
		})
		sort.Strings(lines)
		fmt.Fprint(out, strings.Join(lines, ""))
	}
	return fs
}

// envName returns the environment variable for a flag name: grpc-addr -> LASTMILE_GRPC_ADDR.
func envName(flagName string) string {
	return "LASTMILE_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parse parses args, then fills every flag not given on the command line from its environment variable.
func (fs *flagSet) parse(args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("%s: unexpected argument %q", fs.cmd, fs.Arg(0))}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		if v := getenv(envName(f.Name)); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
		}
	})
	if len(errs) > 0 {
		return usageError{errors.Join(errs...)}
	}
	return nil
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
