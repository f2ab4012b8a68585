package scenario_test

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/scenario"
)

// small is a quick load for the default test run.
var small = scenario.Load{Name: "small", Couriers: 12, TasksPerHour: 30, Hours: 1}

func policies() []scenario.Policy {
	return []scenario.Policy{scenario.NewEnginePolicy(dispatch.Options{}, scenario.Variant{}), scenario.Baseline{}}
}

// TestDeterministic: the same seed and policy give a byte-identical log (and equal measurements); another
// seed gives another log.
func TestDeterministic(t *testing.T) {
	for _, p := range policies() {
		t.Run(p.Name(), func(t *testing.T) {
			hashes := map[uint64]string{}
			for _, seed := range []uint64{1, 2} {
				var logs [2]bytes.Buffer
				var res [2]scenario.Result
				for i := range logs {
					r, err := scenario.Simulate(t.Context(), scenario.NewConfig(small, seed), p, &logs[i])
					if err != nil {
						t.Fatalf("Simulate(seed %d) = %v", seed, err)
					}
					res[i] = r
				}
				if !bytes.Equal(logs[0].Bytes(), logs[1].Bytes()) || res[0].LogHash != res[1].LogHash {
					t.Fatalf("seed %d: two runs logged differently (hashes %s, %s)", seed, res[0].LogHash, res[1].LogHash)
				}
				a, b := res[0], res[1]
				a.Decisions, b.Decisions = nil, nil // wall-clock timings
				if fmt.Sprint(a) != fmt.Sprint(b) {
					t.Errorf("seed %d: results differ:\n%+v\n%+v", seed, a, b)
				}
				if strings.Contains(logs[0].String(), "µs") {
					t.Errorf("seed %d: the log holds a wall-clock timing", seed)
				}
				hashes[seed] = res[0].LogHash
			}
			if hashes[1] == hashes[2] {
				t.Errorf("seeds 1 and 2 logged the same (%s)", hashes[1])
			}
		})
	}
}

// TestRunsDeliver: every task ends delivered or unassignable, every offer was accepted (one per
// delivery), declined or expired, couriers decline and ignore offers, and the engine's log is its
// decisions.
func TestRunsDeliver(t *testing.T) {
	for _, p := range policies() {
		t.Run(p.Name(), func(t *testing.T) {
			var log bytes.Buffer
			r, err := scenario.Simulate(t.Context(), scenario.NewConfig(small, 7), p, &log)
			if err != nil {
				t.Fatalf("Simulate = %v", err)
			}
			if r.Tasks == 0 || r.Delivered == 0 || r.OnTime == 0 {
				t.Fatalf("result = %+v, want tasks delivered on time", r)
			}
			if r.Delivered+r.Unassignable != r.Tasks {
				t.Errorf("%d delivered + %d unassignable, want all %d tasks final", r.Delivered, r.Unassignable, r.Tasks)
			}
			if r.Offers != r.Delivered+r.Declined+r.Expired {
				t.Errorf("%d offers, want %d accepted + %d declined + %d expired", r.Offers, r.Delivered, r.Declined, r.Expired)
			}
			if r.Declined == 0 || r.Expired == 0 {
				t.Errorf("%d declined, %d expired, want some of each", r.Declined, r.Expired)
			}
			if len(r.FirstOffer) != r.Delivered+countOfferedUnassigned(log.String()) || len(r.Decisions) == 0 {
				t.Errorf("%d first offers, %d decisions", len(r.FirstOffer), len(r.Decisions))
			}
			if got := strings.Count(log.String(), " deliver "); got != r.Delivered {
				t.Errorf("log has %d deliveries, want %d", got, r.Delivered)
			}
			if p.Name() == "engine" && !strings.Contains(log.String(), "decide t00001 automatic outcome=offered winner=c") {
				t.Errorf("log does not start with an engine decision:\n%.500s", log.String())
			}
		})
	}
}

// countOfferedUnassigned counts the tasks that were offered at least once and ended unassignable.
func countOfferedUnassigned(log string) int {
	offered := map[string]bool{}
	n := 0
	for _, line := range strings.Split(log, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == "offer" {
			offered[f[2]] = true
		}
		if len(f) >= 3 && f[1] == "unassignable" && offered[strings.TrimSuffix(f[2], ":")] {
			n++
		}
	}
	return n
}

// TestQuality runs the quality report (engine against baseline, light, normal and peak load, 20 seeds
// each) when LASTMILE_SCENARIO_REPORT=1, printing the table BENCHMARKS.md records:
//
//	LASTMILE_SCENARIO_REPORT=1 go test ./internal/dispatch/scenario -run TestQuality -v
//
// LASTMILE_SCENARIO_WEIGHTS="eta,distance,load,fairness" runs the engine with other weights, to tune them.
func TestQuality(t *testing.T) {
	if os.Getenv("LASTMILE_SCENARIO_REPORT") != "1" {
		t.Log("set LASTMILE_SCENARIO_REPORT=1 to run the quality report")
		return
	}
	var opts dispatch.Options
	if w := os.Getenv("LASTMILE_SCENARIO_WEIGHTS"); w != "" {
		if _, err := fmt.Sscanf(w, "%g,%g,%g,%g", &opts.Weights.ETA, &opts.Weights.Distance, &opts.Weights.Load, &opts.Weights.Fairness); err != nil {
			t.Fatalf("LASTMILE_SCENARIO_WEIGHTS=%q: %v, want eta,distance,load,fairness", w, err)
		}
	}
	sums, err := scenario.Compare(t.Context(), scenario.Loads, 20, func() []scenario.Policy {
		return []scenario.Policy{
			scenario.NewEnginePolicy(opts, scenario.Variant{}),
			scenario.NewEnginePolicy(opts, scenario.Variant{NoHeld: true}),
			scenario.NewEnginePolicy(opts, scenario.Variant{OneTask: true}),
			scenario.Baseline{},
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("weights %+v\n\n", dispatch.NewEngine(nil, nil, opts).Weights())
	scenario.WriteTable(os.Stdout, sums)
	fmt.Println()
	scenario.WriteComparison(os.Stdout, sums)
}
