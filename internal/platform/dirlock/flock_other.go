//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package dirlock

import "os"

// tryLock cannot lock on this operating system (no flock in package syscall): Acquire still writes the
// pid but excludes nobody. See Supported.
func tryLock(*os.File) (held bool, err error) { return false, nil }

func unlock(*os.File) error { return nil }

// Supported reports whether Acquire excludes other processes on this operating system.
const Supported = false
