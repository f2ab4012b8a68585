// Package dirlock gives one process at a time a directory: Acquire takes an exclusive lock on a LOCK
// file in it, held until Release or the process's exit (the operating system drops the lock of a
// process that dies, so a crash leaves no stale lock), and writes the holder's pid and description
// into the file, so that whoever is refused learns who holds it.
//
// The lock is advisory: it keeps out the processes that ask for it, which for a lastmile data
// directory is every lastmile command that writes there.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// FileName is the name of the lock file inside the locked directory.
const FileName = "LOCK"

// Lock is a held directory lock. Release it once; the zero value is not usable.
type Lock struct {
	dir  string
	f    *os.File
	once sync.Once
	err  error
}

// HeldError is the error Acquire returns when another process holds the directory.
type HeldError struct {
	// Dir is the directory, as given to Acquire.
	Dir string
	// PID is the holder's process id; 0 when it has not written it yet (it had just taken the lock).
	PID int
	// Holder is the holder's description ("lastmile serve"), empty with PID 0.
	Holder string
}

func (e *HeldError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("lock data directory %s: held by another process (its pid is not written yet)", e.Dir)
	}
	return fmt.Sprintf("lock data directory %s: held by pid %d (%s)", e.Dir, e.PID, e.Holder)
}

// Acquire creates dir (mode 0700) when it does not exist and takes its lock without waiting, on behalf
// of holder, a short description of this process such as "lastmile serve". When another process (or
// another Acquire in this one) holds the lock, it returns a *HeldError naming the holder's pid.
func Acquire(dir, holder string) (*Lock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	path := filepath.Join(dir, FileName)
	// No O_TRUNC: the file may hold the pid of a process that holds the lock.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	held, err := tryLock(f)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("lock data directory %s: %w", dir, err), f.Close())
	}
	if held {
		herr := holderOf(f, dir)
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
		}
		return nil, herr
	}
	if err := writeHolder(f, holder); err != nil {
		return nil, errors.Join(fmt.Errorf("lock data directory %s: write pid: %w", dir, err), unlock(f), f.Close())
	}
	return &Lock{dir: dir, f: f}, nil
}

// Release clears the pid from the lock file and drops the lock. The file stays: removing it could let
// two processes lock two different files of the same name. Calls after the first return its result.
func (l *Lock) Release() error {
	l.once.Do(func() {
		err := errors.Join(l.f.Truncate(0), unlock(l.f), l.f.Close())
		if err != nil {
			l.err = fmt.Errorf("unlock data directory %s: %w", l.dir, err)
		}
	})
	return l.err
}

func writeHolder(f *os.File, holder string) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+" "+holder+"\n"), 0); err != nil {
		return err
	}
	return f.Sync()
}

// holderOf reads the holder's pid and description from the lock file.
func holderOf(f *os.File, dir string) *HeldError {
	e := &HeldError{Dir: dir}
	b := make([]byte, 512)
	n, _ := f.ReadAt(b, 0) // io.EOF with the whole (short) content read
	pid, holder, _ := strings.Cut(strings.TrimSpace(string(b[:n])), " ")
	if p, err := strconv.Atoi(pid); err == nil && p > 0 {
		e.PID, e.Holder = p, holder
	}
	return e
}
