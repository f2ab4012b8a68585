// Package cputime reads the CPU time the process has used, for benchmarks that report CPU per operation
// next to wall time and allocations (the machine is shared, and CPU per unit is steadier than a rate).
package cputime

import "time"

// Process returns the CPU time (user and system) the whole process has used so far: every goroutine,
// so a benchmark's clients, servers, the runtime's GC workers and the test framework alike. Linux
// accounts it per scheduler slice, not per tick, so deltas over a few hundred milliseconds are precise.
// It returns 0 where getrusage does not exist: CPU columns then read 0 while wall time and allocations
// are still measured.
func Process() time.Duration { return process() }
