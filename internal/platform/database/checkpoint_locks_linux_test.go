package database

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// processLocks returns the lines of /proc/locks for the POSIX locks this process holds on the file at
// path.
func processLocks(t *testing.T, path string) []string {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	f, err := os.Open("/proc/locks")
	if err != nil {
		t.Fatalf("read /proc/locks: %v", err)
	}
	defer f.Close()
	var out []string
	for s := bufio.NewScanner(f); s.Scan(); {
		l := s.Text()
		if strings.Contains(l, "POSIX") && strings.Contains(l, fmt.Sprintf(":%d ", ino)) && strings.Contains(l, fmt.Sprintf(" %d ", os.Getpid())) {
			out = append(out, l)
		}
	}
	return out
}

// TestCheckpointerKeepsSQLitesWALIndexLocks closes one of two databases opened on the same file in one
// process: the other's SQLite connections still hold their locks on the WAL index (-shm). Closing a
// descriptor of a file drops every POSIX lock the process holds on it, so a checkpointer closing the
// -shm file it reads while the other database is open would drop them, and another process opening
// the database would take the WAL index for unused and rebuild it.
func TestCheckpointerKeepsSQLitesWALIndexLocks(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "locks.db")
	first, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	second, err := OpenSQLite(ctx, path)
	if err != nil {
		first.Close()
		t.Fatal(err)
	}
	defer second.Close()
	if _, err := second.ExecContext(ctx, "CREATE TABLE t (x)"); err != nil {
		t.Fatal(err)
	}
	shm := mustAbs(t, path+"-shm")
	waitFor(t, "the checkpointers to open the WAL index", func() bool {
		shmFiles.Lock()
		defer shmFiles.Unlock()
		e := shmFiles.by[shm]
		return e != nil && e.f != nil
	})
	if len(processLocks(t, path+"-shm")) == 0 {
		t.Fatal("with both databases open the process holds no lock on the WAL index")
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	if locks := processLocks(t, path+"-shm"); len(locks) == 0 {
		t.Fatal("closing one database dropped the locks the other's connections hold on the WAL index")
	}
}

func mustAbs(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
