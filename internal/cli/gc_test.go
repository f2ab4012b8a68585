package cli

import (
	"errors"
	"io/fs"
	"math"
	"runtime/debug"
	"testing"
)

// restoreGC puts the process's collector settings back after a test changed them.
func restoreGC(t *testing.T) {
	percent := debug.SetGCPercent(-1)
	debug.SetGCPercent(percent)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
}

// cgroupMemoryMax is the root cgroup's memory.max: a container's own, in its cgroup namespace.
const cgroupMemoryMax = cgroupRoot + "/memory.max"

// cgroupFile reads content (or err) as cgroupMemoryMax, and nothing else: /proc/self/cgroup is missing,
// so the process's cgroup is the root.
func cgroupFile(content string, err error) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if name != cgroupMemoryMax {
			return nil, errors.New("unexpected read of " + name)
		}
		return []byte(content), err
	}
}

// files reads the files of m, and no others.
func files(m map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if v, ok := m[name]; ok {
			return []byte(v), nil
		}
		return nil, fs.ErrNotExist
	}
}

func TestApplyGCPolicy(t *testing.T) {
	noCgroup := cgroupFile("", fs.ErrNotExist)
	tests := []struct {
		name     string
		env      map[string]string
		readFile func(string) ([]byte, error)
		before   int // the runtime's GOGC before the call, as the environment would have set it
		want     gcSettings
	}{
		{"defaults outside a container", nil, noCgroup, 100,
			gcSettings{Percent: DefaultGCPercent, PercentFrom: "default", Limit: math.MaxInt64, LimitFrom: "none"}},
		{"GOGC from the environment is kept", map[string]string{"GOGC": "50"}, noCgroup, 50,
			gcSettings{Percent: 50, PercentFrom: "GOGC", Limit: math.MaxInt64, LimitFrom: "none"}},
		{"a container's limit gives the soft limit", nil, cgroupFile("1073741824\n", nil), 100,
			gcSettings{Percent: DefaultGCPercent, PercentFrom: "default", Limit: 966367641, LimitFrom: "cgroup"}},
		{"an unlimited container gives none", nil, cgroupFile("max\n", nil), 100,
			gcSettings{Percent: DefaultGCPercent, PercentFrom: "default", Limit: math.MaxInt64, LimitFrom: "none"}},
		{"an unreadable cgroup file gives none", nil, cgroupFile("", fs.ErrPermission), 100,
			gcSettings{Percent: DefaultGCPercent, PercentFrom: "default", Limit: math.MaxInt64, LimitFrom: "none"}},
		{"a systemd service's limit, on its slice, gives the soft limit", nil, files(map[string]string{
			"/proc/self/cgroup": "0::/system.slice/lastmile.service\n",
			"/sys/fs/cgroup/system.slice/lastmile.service/memory.max": "max\n",
			"/sys/fs/cgroup/system.slice/memory.max":                  "2147483648\n",
		}), 100, gcSettings{Percent: DefaultGCPercent, PercentFrom: "default", Limit: 1932735283, LimitFrom: "cgroup"}},
		{"the lowest limit of the cgroup and its ancestors", nil, files(map[string]string{
			"/proc/self/cgroup":                          "0::/kubepods/pod1/c1\n",
			"/sys/fs/cgroup/kubepods/pod1/c1/memory.max": "2147483648\n",
			"/sys/fs/cgroup/kubepods/pod1/memory.max":    "1073741824\n",
			"/sys/fs/cgroup/kubepods/memory.max":         "max\n",
		}), 100, gcSettings{Percent: DefaultGCPercent, PercentFrom: "default", Limit: 966367641, LimitFrom: "cgroup"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			restoreGC(t)
			debug.SetGCPercent(tt.before)
			debug.SetMemoryLimit(math.MaxInt64)
			got := applyGCPolicy(envOf(tt.env), tt.readFile)
			if got != tt.want {
				t.Fatalf("applyGCPolicy = %+v, want %+v", got, tt.want)
			}
			if p := debug.SetGCPercent(-1); p != tt.want.Percent {
				t.Errorf("runtime GOGC = %d, want %d", p, tt.want.Percent)
			}
			if l := debug.SetMemoryLimit(-1); l != tt.want.Limit {
				t.Errorf("runtime memory limit = %d, want %d", l, tt.want.Limit)
			}
		})
	}
}

func TestApplyGCPolicyKeepsGOMEMLIMIT(t *testing.T) {
	restoreGC(t)
	debug.SetMemoryLimit(512 << 20) // as GOMEMLIMIT=512MiB would have set it at start
	called := false
	got := applyGCPolicy(envOf(map[string]string{"GOMEMLIMIT": "512MiB"}), func(string) ([]byte, error) {
		called = true
		return []byte("1073741824"), nil
	})
	if got.Limit != 512<<20 || got.LimitFrom != "GOMEMLIMIT" {
		t.Fatalf("applyGCPolicy = %+v, want the environment's 536870912 from GOMEMLIMIT", got)
	}
	if called {
		t.Error("the cgroup limit was read although GOMEMLIMIT is set")
	}
	if l := debug.SetMemoryLimit(-1); l != 512<<20 {
		t.Errorf("runtime memory limit = %d, want 536870912", l)
	}
}
