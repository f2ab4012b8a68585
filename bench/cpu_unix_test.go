//go:build unix

package bench_test

import "syscall"

// processSwitches returns how many times the threads of the process have given up their CPU so far,
// voluntarily (a thread that blocks: a futex wait, an epoll wait) or not (preempted).
func processSwitches() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Nvcsw + ru.Nivcsw
}
