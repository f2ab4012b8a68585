// Command lastmile is the single binary of the lastmile delivery platform: every service, the REST gateway,
// the simulator and the operational commands. See `lastmile help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"lastmile/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cli.Run(ctx, os.Args, cli.Env{Getenv: os.Getenv, Stdout: os.Stdout, Stderr: os.Stderr}); err != nil {
		fmt.Fprintln(os.Stderr, "lastmile:", err)
		os.Exit(cli.ExitCode(err))
	}
}
