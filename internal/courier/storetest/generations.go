package storetest

import (
	"testing"
	"time"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
)

// testClaimGenerations: claims and releases ordered by generation (ClaimCourierHolding with the
// service's rule, ReleaseCourierGeneration). Each step asserts the holding the claim read, whether it
// was stored, superseded or raised, and the claims held afterwards: a release below the claim's
// generation leaves it, a claim not above the last release is superseded (the late claim), a newer claim
// of the same courier passes, a late release of an older generation leaves the newer claim, and a
// release purges the courier's records kept until before now.
func testClaimGenerations(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	c.Capacity = 5
	mustCreate(ctx, t, s, c)
	keep := base.Add(courier.ReleaseKeep)

	type result struct {
		h                          courier.Holding
		already, raise, superseded bool
	}
	claimGen := func(task int, gen int64) result {
		t.Helper()
		var r result
		cl := claim(1, task, base, base.Add(time.Hour))
		cl.Generation = gen
		_, err := s.ClaimCourierHolding(ctx, c.ID, cl.TaskID, base, func(cur courier.Courier, h courier.Holding) (*courier.Claim, error) {
			r.h = h
			var err error
			r.already, r.raise, r.superseded, err = cur.CheckClaimGeneration(h, cl.TaskID, gen)
			if err != nil || r.superseded || (r.already && !r.raise) {
				return nil, err
			}
			return &cl, nil
		})
		if err != nil {
			t.Fatalf("ClaimCourierHolding(task %d, generation %d): %v", task, gen, err)
		}
		return r
	}
	release := func(task int, gen int64, now time.Time) bool {
		t.Helper()
		released, rec, err := s.ReleaseCourierGeneration(ctx, c.ID, taskID(task), base, gen, now, now.Add(courier.ReleaseKeep))
		if err != nil {
			t.Fatalf("ReleaseCourierGeneration(task %d, generation %d): %v", task, gen, err)
		}
		wantLive(ctx, t, s, "ReleaseCourierGeneration", "release", c.ID, base, rec, len(mustClaims(ctx, t, s, c.ID)))
		return released
	}
	held := func(step string, want ...int) {
		t.Helper()
		var got []string
		for _, k := range mustClaims(ctx, t, s, c.ID) {
			got = append(got, k.TaskID)
		}
		var w []string
		for _, n := range want {
			w = append(w, taskID(n))
		}
		if len(got) != len(w) || (len(w) > 0 && got[0] != w[0]) {
			t.Fatalf("%s: claims = %v, want %v", step, got, w)
		}
	}
	want := func(step string, got, w result) {
		t.Helper()
		if got != w {
			t.Fatalf("%s: %+v, want %+v", step, got, w)
		}
	}

	want("claim at 3", claimGen(1, 3), result{})
	held("claim at 3", 1)
	if release(1, 2, base) {
		t.Fatal("release at 2 of a claim at 3 released it")
	}
	held("release at 2", 1)
	want("claim at 5, held at 3", claimGen(1, 5), result{h: courier.Holding{Holder: c.ID, Generation: 3, Released: 2}, already: true, raise: true})
	want("claim at 4, held at 5", claimGen(1, 4), result{h: courier.Holding{Holder: c.ID, Generation: 5, Released: 2}, already: true})
	if !release(1, 5, base) {
		t.Fatal("release at 5 of a claim at 5 did not release it")
	}
	held("release at 5")
	// The claim that timed out lands after its release: superseded, nothing held.
	want("late claim at 5", claimGen(1, 5), result{h: courier.Holding{Released: 5}, superseded: true})
	want("late claim at 4", claimGen(1, 4), result{h: courier.Holding{Released: 5}, superseded: true})
	held("late claims")
	// Without a generation, as before: the release record does not apply.
	want("claim without generation", claimGen(2, 0), result{})
	held("claim without generation", 2)
	if !release(2, 0+1, base) {
		t.Fatal("release at 1 of a claim without generation did not release it")
	}
	// Given back to the same courier: a newer claim passes; a late release of an older generation leaves it.
	want("claim at 7", claimGen(1, 7), result{h: courier.Holding{Released: 5}})
	held("claim at 7", 1)
	if release(1, 6, base) {
		t.Fatal("late release at 6 of a claim at 7 released it")
	}
	want("claim at 7 again", claimGen(1, 7), result{h: courier.Holding{Holder: c.ID, Generation: 7, Released: 6}, already: true})
	// A release after keep_until purges the courier's other records (task 2's, kept until keep), not its own.
	if release(3, 1, keep.Add(time.Second)) {
		t.Fatal("release of a task never claimed released something")
	}
	want("claim of task 2 after the purge", claimGen(2, 1), result{})
	want("claim of task 3 after its release", claimGen(3, 1), result{h: courier.Holding{Released: 1}, superseded: true})

	_, _, err := s.ReleaseCourierGeneration(ctx, courierID(99), taskID(1), base, 1, base, keep)
	wantCode(t, "ReleaseCourierGeneration(unknown courier)", err, apperr.NotFound)
	_, _, err = s.ReleaseCourierGeneration(ctx, c.ID, taskID(1), base, 0, base, keep)
	wantCode(t, "ReleaseCourierGeneration(generation 0)", err, apperr.Invalid)
}
