package bench_test

import (
	"bytes"
	"os"
	"strconv"
)

// processWritten returns how many bytes the process has passed to write system calls so far (Linux's
// /proc/self/io "wchar": SQLite's WAL frames and checkpoints above all, in the load test), or 0 where
// that file does not exist.
func processWritten() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("wchar: ")); ok {
			n, _ := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			return n
		}
	}
	return 0
}
