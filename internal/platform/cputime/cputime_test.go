package cputime_test

import (
	"runtime"
	"testing"
	"time"

	"lastmile/internal/platform/cputime"
)

// TestProcessCountsWork burns CPU on this goroutine until the process's CPU time has grown by 5 ms; a
// Process that did not count work would never get there (the 10 s is a hang guard, not a timing bound).
func TestProcessCountsWork(t *testing.T) {
	switch runtime.GOOS {
	case "windows", "plan9", "js", "wasip1":
		if got := cputime.Process(); got != 0 {
			t.Fatalf("Process() = %v without getrusage, want 0", got)
		}
		return
	}
	before := cputime.Process()
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for cputime.Process()-before < 5*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("Process() grew by %v in 10 s of busy work, want 5ms", cputime.Process()-before)
		}
		for i := range 100000 {
			x += i
		}
	}
	_ = x
}
