// Package bench holds lastmile's benchmarks. It has no code of its own: the benchmarks live in its test
// files and run with
//
//	go test -run '^$' -bench . -benchmem ./bench/...
//
// (make bench). Following STYLE.md, each benchmark compares variants side by side in one process and one
// run, alternating them after a warm-up, and reports CPU time and allocations per call as well as wall
// time; the ratios between variants are the result, since absolute numbers depend on the machine.
// BENCHMARKS.md at the repository root records the results, the command and the machine.
//
// Plain `go test ./bench/...` runs no benchmark, only quick checks that each variant is wired as its
// name claims.
//
// TestDispatchLoad is a load test rather than a benchmark: dispatch with real courier and route services
// in process, under an open-loop rate of task creations, on SQLite and PostgreSQL. It takes minutes and runs
// only with LASTMILE_DISPATCH_LOAD=1:
//
//	LASTMILE_DISPATCH_LOAD=1 go test -run TestDispatchLoad -v -timeout 30m ./bench/
package bench
