package dirlock_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"lastmile/internal/platform/dirlock"
)

func TestAcquireExcludesUntilRelease(t *testing.T) {
	if !dirlock.Supported {
		t.Fatal("dirlock.Supported is false on the OS the tests run on; the lock excludes nobody here")
	}
	dir := filepath.Join(t.TempDir(), "data")
	first, err := dirlock.Acquire(dir, "lastmile serve")
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o700); got != want {
		t.Errorf("mode of the created directory = %v, want %v", got, want)
	}
	if got, want := readLock(t, dir), fmt.Sprintf("%d lastmile serve\n", os.Getpid()); got != want {
		t.Errorf("lock file holds %q, want %q", got, want)
	}

	second, err := dirlock.Acquire(dir, "lastmile migrate")
	if err == nil {
		second.Release()
		t.Fatal("second Acquire succeeded while the first holds the lock, want an error")
	}
	want := fmt.Sprintf("lock data directory %s: held by pid %d (lastmile serve)", dir, os.Getpid())
	if err.Error() != want {
		t.Errorf("second Acquire error = %q, want %q", err, want)
	}
	var held *dirlock.HeldError
	if !errors.As(err, &held) || held.PID != os.Getpid() || held.Holder != "lastmile serve" || held.Dir != dir {
		t.Errorf("second Acquire error = %#v, want a *HeldError with the first holder", err)
	}
	// The refused Acquire left the holder's pid in place.
	if got, want := readLock(t, dir), fmt.Sprintf("%d lastmile serve\n", os.Getpid()); got != want {
		t.Errorf("lock file after a refusal holds %q, want %q", got, want)
	}

	if err := first.Release(); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if err := first.Release(); err != nil {
		t.Errorf("second Release = %v, want nil", err)
	}
	if got := readLock(t, dir); got != "" {
		t.Errorf("lock file after Release holds %q, want it empty", got)
	}
	third, err := dirlock.Acquire(dir, "lastmile migrate")
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	if err := third.Release(); err != nil {
		t.Errorf("Release: %v", err)
	}
}

func TestAcquireBeforeThePIDIsWritten(t *testing.T) {
	dir := t.TempDir()
	l, err := dirlock.Acquire(dir, "lastmile serve")
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	defer l.Release()
	// The moment between the holder's flock and its write.
	if err := os.Truncate(filepath.Join(dir, dirlock.FileName), 0); err != nil {
		t.Fatal(err)
	}
	_, err = dirlock.Acquire(dir, "lastmile serve")
	want := "lock data directory " + dir + ": held by another process (its pid is not written yet)"
	if err == nil || err.Error() != want {
		t.Errorf("Acquire = %v, want %q", err, want)
	}
}

// TestLockAcrossProcesses holds the lock in a child process: this process is refused with the child's
// pid, and gets the lock once the child is killed, without any cleanup by the child.
func TestLockAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperHoldLock$")
	cmd.Env = append(os.Environ(), "DIRLOCK_HELPER_DIR="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() // a no-op once killed below
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("helper said %q, %v; want %q", line, err, "locked\n")
	}

	_, err = dirlock.Acquire(dir, "test")
	want := "lock data directory " + dir + ": held by pid " + strconv.Itoa(cmd.Process.Pid) + " (helper)"
	if err == nil || err.Error() != want {
		t.Fatalf("Acquire while the helper holds the lock = %v, want %q", err, want)
	}

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	l, err := dirlock.Acquire(dir, "test")
	if err != nil {
		t.Fatalf("Acquire after the holder died: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("Release: %v", err)
	}
}

// TestHelperHoldLock is the child of TestLockAcrossProcesses: it takes the lock and waits to be killed.
func TestHelperHoldLock(t *testing.T) {
	dir := os.Getenv("DIRLOCK_HELPER_DIR")
	if dir == "" {
		return // run as a test of its own: nothing to do
	}
	if _, err := dirlock.Acquire(dir, "helper"); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("locked")
	select {}
}

func readLock(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, dirlock.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
