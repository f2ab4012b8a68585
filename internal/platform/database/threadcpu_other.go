//go:build !linux

package database

import "time"

// threadCPU returns 0: only Linux tells a thread's own CPU time (RUSAGE_THREAD).
func threadCPU() time.Duration { return 0 }
