package cli

import (
	"math"
	"path"
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

// Where a memory limit is read (cgroup v2): the cgroup file system, whose memory.max files hold the
// limits, and the file naming the process's cgroup in it.
const (
	cgroupRoot     = "/sys/fs/cgroup"
	procSelfCgroup = "/proc/self/cgroup"
)

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
	LimitFrom   string // "GOMEMLIMIT", "cgroup" (memoryLimitShare of the cgroup's limit) or "none"
}

// applyGCPolicy sets the process's garbage collector for a long-running server: DefaultGCPercent unless
// GOGC is set, and, unless GOMEMLIMIT is set, a soft memory limit of memoryLimitShare of the cgroup v2
// memory limit the process runs under, if any (containerMemoryLimit, through readFile). What the
// environment sets, the Go runtime has already applied; it is left alone.
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

// containerMemoryLimit reads the cgroup v2 memory limit of the process's cgroup: the lowest memory.max of
// that cgroup and its ancestors, as /proc/self/cgroup names it ("0::<path>"; "/" inside a container with
// its own cgroup namespace, where /sys/fs/cgroup is the container's cgroup). A limit set on a parent (a
// systemd slice, a pod) binds as much as one set on the cgroup itself, and a service that systemd limits
// (MemoryMax=) runs in a cgroup below the root of /sys/fs/cgroup. False when there is none ("max"), no
// cgroup file (not in a container, or cgroup v1), or it cannot be read.
func containerMemoryLimit(readFile func(string) ([]byte, error)) (int64, bool) {
	dir := "/"
	if b, err := readFile(procSelfCgroup); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "0::"); ok {
				dir = path.Clean("/" + strings.TrimSpace(rest))
				break
			}
		}
	}
	var limit int64
	found := false
	for {
		if n, ok := memoryMax(readFile, path.Join(cgroupRoot, dir, "memory.max")); ok && (!found || n < limit) {
			limit, found = n, true
		}
		if dir == "/" {
			return limit, found
		}
		dir = path.Dir(dir)
	}
}

// memoryMax reads one cgroup's memory.max: false for "max" or when it cannot be read.
func memoryMax(readFile func(string) ([]byte, error), name string) (int64, bool) {
	b, err := readFile(name)
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
