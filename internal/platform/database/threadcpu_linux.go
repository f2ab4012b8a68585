package database

import (
	"syscall"
	"time"
	"unsafe"
)

// clockThreadCPUTime is Linux's CLOCK_THREAD_CPUTIME_ID: the calling thread's CPU time, to the
// nanosecond (getrusage's RUSAGE_THREAD is only as fine as the scheduler's tick).
const clockThreadCPUTime = 3

// threadCPU returns the CPU time the calling OS thread has used, or 0 when it cannot tell. The caller
// locks its goroutine to the thread around the two readings it subtracts.
func threadCPU() time.Duration {
	var ts syscall.Timespec
	if _, _, errno := syscall.Syscall(syscall.SYS_CLOCK_GETTIME, clockThreadCPUTime, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return time.Duration(ts.Nano())
}
