package grpctest_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/platform/grpcserver/grpctest"
)

// fakeT records what Go asks of its testing.TB, so that a test can end it and read the errors it reported.
type fakeT struct {
	testing.TB
	cleanups []func()
	errs     []string
}

func (f *fakeT) Helper()                        {}
func (f *fakeT) Cleanup(fn func())              { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) Errorf(format string, a ...any) { f.errs = append(f.errs, fmt.Sprintf(format, a...)) }

// end runs the cleanups as the testing package does, last-registered first.
func (f *fakeT) end() {
	for _, fn := range slices.Backward(f.cleanups) {
		fn()
	}
}

// loop returns a run function that waits for its context and then returns err, and a channel closed when
// it has returned.
func loop(err error) (run func(context.Context) error, returned chan struct{}) {
	returned = make(chan struct{})
	return func(ctx context.Context) error {
		defer close(returned)
		<-ctx.Done()
		return err
	}, returned
}

func TestGoStop(t *testing.T) {
	ft := &fakeT{TB: t}
	run, returned := loop(nil)
	stop := grpctest.Go(ft, "loop", run)
	select {
	case <-returned:
		t.Fatal("run returned before stop")
	default:
	}
	stop()
	<-returned // the test's own deadline bounds this wait
	stop()     // a second stop is harmless
	ft.end()
	if len(ft.errs) != 0 {
		t.Errorf("Go reported %q, want nothing", ft.errs)
	}
}

func TestGoStopsWhenTheTestEnds(t *testing.T) {
	ft := &fakeT{TB: t}
	run, returned := loop(nil)
	grpctest.Go(ft, "loop", run)
	ft.end()
	select {
	case <-returned:
	default:
		t.Error("run had not returned when the test's cleanups ended")
	}
	if len(ft.errs) != 0 {
		t.Errorf("Go reported %q, want nothing", ft.errs)
	}
}

func TestGoReportsRunError(t *testing.T) {
	ft := &fakeT{TB: t}
	run, _ := loop(errors.New("store closed"))
	grpctest.Go(ft, "Service.Run", run)
	ft.end()
	if diff := cmp.Diff([]string{"Service.Run() = store closed, want nil"}, ft.errs); diff != "" {
		t.Errorf("Go reports mismatch (-want +got):\n%s", diff)
	}
}
