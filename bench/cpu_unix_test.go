//go:build unix

package bench_test

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user + system) the whole process has used so far: every goroutine,
// so the client, the server, the runtime's GC workers and the test framework alike. Linux accounts it
// per scheduler slice, not per tick, so deltas over a few hundred milliseconds are precise.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
