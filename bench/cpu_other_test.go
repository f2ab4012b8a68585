//go:build !unix

package bench_test

// processSwitches reports 0 where getrusage does not exist.
func processSwitches() int64 { return 0 }
