//go:build !unix

package bench_test

import "time"

// processCPU reports 0 where getrusage does not exist: the CPU columns then read 0 and their ratios NaN,
// while wall time and allocations are still measured.
func processCPU() time.Duration { return 0 }

// processSwitches reports 0 where getrusage does not exist.
func processSwitches() int64 { return 0 }
