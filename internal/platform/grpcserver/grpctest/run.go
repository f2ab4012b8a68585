package grpctest

import (
	"context"
	"testing"
	"time"
)

// Go runs run in a new goroutine, as a process runs a service's background loop (a domain Service's Run)
// beside its server, until the returned stop is called or the test ends, whichever comes first: both
// cancel run's context, and stop may be called any number of times. When the test ends Go reports an
// error, naming run by name, if run returned an error or did not return within Timeout of the cancel.
//
// Cleanups run last-registered first: call Go after Start for the loop to stop before the server does, as
// a process stops it, so that the streams it feeds end and the graceful stop need not wait for them.
func Go(t testing.TB, name string, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s() = %v, want nil", name, err)
			}
		case <-time.After(Timeout):
			t.Errorf("%s did not return within %v of cancel", name, Timeout)
		}
	})
	return cancel
}
