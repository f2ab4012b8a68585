package cli

import (
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGCPercent is the garbage collector's target serve and demo run with when the environment does
// not set GOGC: the heap may grow to five times what is live between collections (Go's own default is
// twice). A server's live heap is small and its allocation rate high, so collections were most of the
// cost of memory: at GOGC=100 the dispatch load test spent 8 % of its CPU marking, in 91 collections in
// 14 s, and at 400 it makes 15 and 9–11 % more assignments per second on the same cores (BENCHMARKS.md,
// "Session of 07:20"), for a peak resident size of ~365 MB instead of ~215 MB.
const DefaultGCPercent = 400

// cgroupMemoryMax is where a container's memory limit is read (cgroup v2).
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// memoryLimitShare is the part of a container's memory limit given to Go as its soft limit (GOMEMLIMIT)
// when the environment sets none: near it, the collector runs as often as it must instead of letting
// the heap grow to DefaultGCPercent's target and the container be killed.
const memoryLimitShare = 0.9

// gcSettings is what applyGCPolicy set: the collector's target and the soft memory limit, each with where
// it came from.
type gcSettings struct {
	Percent     int    // the GOGC in force
	PercentFrom string // "GOGC" (the environment's) or "default"
	Limit       int64  // the soft memory limit in bytes; math.MaxInt64 for none
	LimitFrom   string // "GOMEMLIMIT", "cgroup" (memoryLimitShare of the container's) or "none"
}

// applyGCPolicy sets the process's garbage collector for a long-running server: DefaultGCPercent unless
// GOGC is set, and, unless GOMEMLIMIT is set, a soft memory limit of memoryLimitShare of the container's
// memory limit when the process runs in one (readFile reads cgroupMemoryMax). What the environment sets,
// the Go runtime has already applied; it is left alone.
func applyGCPolicy(getenv func(string) string, readFile func(string) ([]byte, error)) gcSettings {
	s := gcSettings{Percent: DefaultGCPercent, PercentFrom: "default", Limit: math.MaxInt64, LimitFrom: "none"}
	if getenv("GOGC") != "" {
		s.PercentFrom = "GOGC"
		s.Percent = debug.SetGCPercent(-1) // read the runtime's value by setting and restoring it
		debug.SetGCPercent(s.Percent)
	} else {
		debug.SetGCPercent(DefaultGCPercent)
	}
	if getenv("GOMEMLIMIT") != "" {
		s.Limit, s.LimitFrom = debug.SetMemoryLimit(-1), "GOMEMLIMIT" // a negative limit only reads it
		return s
	}
	if limit, ok := containerMemoryLimit(readFile); ok {
		s.Limit, s.LimitFrom = int64(float64(limit)*memoryLimitShare), "cgroup"
		debug.SetMemoryLimit(s.Limit)
	}
	return s
}

// containerMemoryLimit reads the cgroup v2 memory limit: false when there is none ("max"), no cgroup file
// (not in a container, or cgroup v1), or it cannot be read.
func containerMemoryLimit(readFile func(string) ([]byte, error)) (int64, bool) {
	b, err := readFile(cgroupMemoryMax)
	if err != nil {
		return 0, false
	}
	v := strings.TrimSpace(string(b))
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, false
	}
	return n, true
}
