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

// processSwitches returns how many times the threads of the process have given up their CPU so far,
// voluntarily (a thread that blocks: a futex wait, an epoll wait) or not (preempted).
func processSwitches() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Nvcsw + ru.Nivcsw
}
