package dispatch_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/dispatch/jobargs"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
)

// The tests of this file run a task's claim and release jobs by hand, in the orders the jobs runner
// may run them (jobs of successive changes are not ordered, a failed one is retried after later ones
// ran) and with calls landing late (the fake courier service's OnClaim and OnRelease hooks change the
// task while a call is on its way). Whatever the order, once every job has run the courier service must
// hold the task's claim on its holder, and on no one else.

// addCourier adds a connected courier of capacity 2 at at: a dispatcher may give it a task while the
// courier service still counts an earlier claim of the same task.
func addCourier(t *testing.T, sys *dispatchtest.System, at geo.LatLng) dispatchtest.Courier {
	t.Helper()
	c := dispatchtest.Courier{ID: uuid.NewString(), UserID: uuid.NewString()}
	c.Ctx = dispatchtest.CourierUser(c.UserID)
	sys.Couriers.Add(c.UserID, dispatch.CourierInfo{ID: c.ID, DisplayName: "courier " + c.ID[:8], Mode: geo.Bicycle, Capacity: 2}, &at)
	sys.Connect(t, c.ID)
	return c
}

// runJob runs j as the jobs runner would, failing the test when it returns an error.
func runJob(t *testing.T, sys *dispatchtest.System, j dispatch.Job) {
	t.Helper()
	if err := sys.Service.RunJob(context.Background(), j); err != nil {
		t.Fatalf("RunJob(%+v): %v", j, err)
	}
}

// acceptedByA starts a system whose jobs are never worked, with couriers a (nearest) and b, and a task
// accepted by a, whose claim job is not run.
func acceptedByA(t *testing.T) (sys *dispatchtest.System, a, b dispatchtest.Courier, tk dispatch.Task) {
	t.Helper()
	sys = dispatchtest.Start(t, dispatchtest.Config{NoJobs: true})
	a = addCourier(t, sys, dispatchtest.Near(dispatchtest.Berlin, 100))
	b = addCourier(t, sys, dispatchtest.Near(dispatchtest.Berlin, 400))
	tk = create(t, sys, nil)
	_, o := offered(t, sys, tk.ID)
	if o.CourierID != a.ID {
		t.Fatalf("offered to %s, want a (%s)", o.CourierID, a.ID)
	}
	if r := sys.Service.Execute(a.Ctx, a.ID, "acc", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	return sys, a, b, tk
}

// claimedByA is acceptedByA with a's claim job run: the courier service holds a's claim.
func claimedByA(t *testing.T) (sys *dispatchtest.System, a, b dispatchtest.Courier, tk dispatch.Task) {
	t.Helper()
	sys, a, b, tk = acceptedByA(t)
	runJob(t, sys, dispatch.Job{Kind: dispatch.JobClaim, CourierID: a.ID, TaskID: tk.ID})
	if got := sys.Couriers.Claims()[tk.ID]; got != a.ID {
		t.Fatalf("claim of the accepted task on %q, want a (%s)", got, a.ID)
	}
	return sys, a, b, tk
}

// handBack hands tk back as courier c.
func handBack(t *testing.T, sys *dispatchtest.System, c dispatchtest.Courier, tk dispatch.Task) {
	t.Helper()
	r := sys.Service.Execute(c.Ctx, c.ID, uuid.NewString(), dispatch.Command{Release: &dispatch.ReleaseCmd{TaskID: tk.ID, Reason: dispatch.ReleaseVehicleProblem}})
	if r.Err != nil {
		t.Fatalf("hand back: %+v", r.Err)
	}
}

// assign gives tk to courier c as a dispatcher.
func assign(t *testing.T, sys *dispatchtest.System, c dispatchtest.Courier, tk dispatch.Task) {
	t.Helper()
	if _, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID}); err != nil {
		t.Fatalf("AssignTask(%s): %v", c.ID, err)
	}
}

// wantHeld checks that tk is held by c in dispatch and that the courier service holds its claim on c.
func wantHeld(t *testing.T, sys *dispatchtest.System, c dispatchtest.Courier, tk dispatch.Task) {
	t.Helper()
	got := stored(t, sys, tk.ID)
	if got.State != dispatch.StateAssigned || got.CourierID != c.ID {
		t.Errorf("task = %s held by %q, want ASSIGNED to %s", got.State, got.CourierID, c.ID)
	}
	if holder, ok := sys.Couriers.Claims()[tk.ID]; !ok || holder != c.ID {
		t.Errorf("courier service claim of the task = %q (present %v), want %s", holder, ok, c.ID)
	}
}

// A courier hands a task back and a dispatcher gives it back to them; the claim job of the return runs
// before the hand-back's release job (which failed once, say, and was retried): the late release must
// not take the claim of a task that is the courier's again.
func TestLateReleaseDoesNotTakeTheClaimOfATaskThatCameBack(t *testing.T) {
	sys, a, _, tk := claimedByA(t)
	handBack(t, sys, a, tk)
	assign(t, sys, a, tk)
	runJob(t, sys, dispatch.Job{Kind: dispatch.JobClaim, CourierID: a.ID, TaskID: tk.ID})
	runJob(t, sys, dispatch.Job{Kind: dispatch.JobRelease, CourierID: a.ID, TaskID: tk.ID}) // the hand-back's, late
	wantHeld(t, sys, a, tk)
}

// The claim job's claim lands after the courier handed the task back (and after the hand-back's release
// ran), so the job undoes it; while the undo is on its way, a dispatcher gives the task back to the same
// courier and that claim job runs (the claim is still there: nothing to do). The undo then lands: the
// job must claim the task again, since it is the courier's once more.
func TestClaimUndoLandingAfterTheTaskCameBackIsRedone(t *testing.T) {
	sys, a, _, tk := acceptedByA(t)
	sys.Couriers.OnClaim(func() {
		sys.Couriers.OnClaim(nil)
		handBack(t, sys, a, tk)
		runJob(t, sys, dispatch.Job{Kind: dispatch.JobRelease, CourierID: a.ID, TaskID: tk.ID})
		sys.Couriers.OnRelease(func(string, string) {
			sys.Couriers.OnRelease(nil)
			assign(t, sys, a, tk)
			runJob(t, sys, dispatch.Job{Kind: dispatch.JobClaim, CourierID: a.ID, TaskID: tk.ID})
		})
	})
	runJob(t, sys, dispatch.Job{Kind: dispatch.JobClaim, CourierID: a.ID, TaskID: tk.ID})
	wantHeld(t, sys, a, tk)
}

// A dispatcher moves a task from a to b; while b's claim job releases a, the dispatcher gives the task
// back to a, and a's claim job runs (a still has the claim: nothing to do). The release of a then lands:
// b's claim job must claim the task for a again, and leave b without it.
func TestPreviousHoldersReleaseLandingAfterTheTaskCameBackIsRedone(t *testing.T) {
	sys, a, b, tk := claimedByA(t)
	assign(t, sys, b, tk)
	sys.Couriers.OnRelease(func(courierID, _ string) {
		if courierID != a.ID {
			return
		}
		sys.Couriers.OnRelease(nil)
		assign(t, sys, a, tk)
		runJob(t, sys, dispatch.Job{Kind: dispatch.JobClaim, CourierID: a.ID, TaskID: tk.ID, Previous: b.ID})
	})
	runJob(t, sys, dispatch.Job{Kind: dispatch.JobClaim, CourierID: b.ID, TaskID: tk.ID, Previous: a.ID})
	wantHeld(t, sys, a, tk)
}

// A dispatcher moves a task from a to b and cancels it before b's claim job ran; the cancellation's
// release (of b) runs first. b's claim job must still release a: nothing else ever will.
func TestReassignedTaskCancelledBeforeItsClaimJobReleasesThePreviousHolder(t *testing.T) {
	sys, a, b, tk := claimedByA(t)
	assign(t, sys, b, tk)
	if _, err := sys.Service.CancelTask(dispatchtest.Dispatcher(), dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelOther}); err != nil {
		t.Fatal(err)
	}
	runJob(t, sys, dispatch.Job{Kind: dispatch.JobRelease, CourierID: b.ID, TaskID: tk.ID})
	runJob(t, sys, dispatch.Job{Kind: dispatch.JobClaim, CourierID: b.ID, TaskID: tk.ID, Previous: a.ID})
	if holder, ok := sys.Couriers.Claims()[tk.ID]; ok {
		t.Errorf("courier service claim of the cancelled task = %s, want none", holder)
	}
}

// handedBackThenAcceptedByB returns a system whose task tk, claimed by a, a handed back and b accepted
// (its claim job not run yet).
func handedBackThenAcceptedByB(t *testing.T) (sys *dispatchtest.System, a, b dispatchtest.Courier, tk dispatch.Task) {
	t.Helper()
	sys, a, b, tk = claimedByA(t)
	handBack(t, sys, a, tk)
	_, o := offered(t, sys, tk.ID)
	if o.CourierID != b.ID {
		t.Fatalf("offered to %s, want b (%s)", o.CourierID, b.ID)
	}
	if r := sys.Service.Execute(b.Ctx, b.ID, "acc-b", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	return sys, a, b, tk
}

// A courier hands a task back and another accepts it before the hand-back's release ran (the courier
// service was unreachable for it, say): the courier service refuses the new claim because the task is
// still claimed on the first courier. That is not the new courier's refusal: the claim job must release
// the former holder and claim the task, not put it back to PENDING without the new courier.
func TestClaimRefusedForAFormerHoldersClaimReleasesItAndClaims(t *testing.T) {
	sys, a, b, tk := handedBackThenAcceptedByB(t)
	runJob(t, sys, dispatch.Job{Kind: dispatch.JobClaim, CourierID: b.ID, TaskID: tk.ID})
	runJob(t, sys, dispatch.Job{Kind: dispatch.JobRelease, CourierID: a.ID, TaskID: tk.ID}) // the hand-back's, late
	wantHeld(t, sys, b, tk)
}

// The same, with the new courier refusing the claim for a reason of their own: the former holder's
// claim is released all the same, the claim is tried once more, and its refusal puts the task back to
// PENDING without the new courier, as any refusal does.
func TestClaimRefusedByTheNewCourierAfterAFormerHoldersClaimWasReleased(t *testing.T) {
	sys, _, b, tk := handedBackThenAcceptedByB(t)
	sys.Couriers.RefuseClaims(b.ID)
	claims := sys.Couriers.Calls("Claim")
	runJob(t, sys, dispatch.Job{Kind: dispatch.JobClaim, CourierID: b.ID, TaskID: tk.ID})
	if n := sys.Couriers.Calls("Claim") - claims; n != 2 {
		t.Errorf("Claim calls = %d, want 2 (refused, then refused again after a's claim was released)", n)
	}
	if holder, ok := sys.Couriers.Claims()[tk.ID]; ok {
		t.Errorf("courier service claim of the task = %s, want none", holder)
	}
	got := stored(t, sys, tk.ID)
	if got.State != dispatch.StatePending || got.CourierID != "" || !got.IsExcluded(b.ID) {
		t.Errorf("task = %s held by %q, b excluded %v; want PENDING, no holder, b excluded", got.State, got.CourierID, got.IsExcluded(b.ID))
	}
}

// enqueuedAfter returns the claim and release jobs enqueued with an id above mark (lastJob), in order.
func enqueuedAfter(t *testing.T, sys *dispatchtest.System, mark int64) []dispatch.Job {
	t.Helper()
	args := "json(args)" // River's SQLite driver stores them as JSONB
	if sys.Pool != nil {
		args = "args::text"
	}
	rows, err := sys.DB.QueryContext(context.Background(), fmt.Sprintf("SELECT kind, %s FROM river_job WHERE id > %d ORDER BY id", args, mark))
	if err != nil {
		t.Fatalf("read the jobs: %v", err)
	}
	defer rows.Close()
	var out []dispatch.Job
	for rows.Next() {
		var kind string
		var args []byte
		if err := rows.Scan(&kind, &args); err != nil {
			t.Fatalf("read the jobs: %v", err)
		}
		switch kind {
		case jobargs.KindClaim:
			var a jobargs.ClaimArgs
			if err := json.Unmarshal(args, &a); err != nil {
				t.Fatalf("decode %s job %s: %v", kind, args, err)
			}
			out = append(out, dispatch.Job{Kind: dispatch.JobClaim, CourierID: a.CourierID, TaskID: a.TaskID, ExpectedRelease: a.ExpectedRelease, Previous: a.PreviousCourierID})
		case jobargs.KindRelease:
			var a jobargs.ReleaseArgs
			if err := json.Unmarshal(args, &a); err != nil {
				t.Fatalf("decode %s job %s: %v", kind, args, err)
			}
			out = append(out, dispatch.Job{Kind: dispatch.JobRelease, CourierID: a.CourierID, TaskID: a.TaskID, Final: a.Final})
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("read the jobs: %v", err)
	}
	return out
}

// lastJob returns the highest id of the jobs enqueued so far (0 when none).
func lastJob(t *testing.T, sys *dispatchtest.System) int64 {
	t.Helper()
	var id sql.NullInt64
	if err := sys.DB.QueryRowContext(context.Background(), "SELECT MAX(id) FROM river_job").Scan(&id); err != nil {
		t.Fatalf("read the jobs: %v", err)
	}
	return id.Int64
}

// Two jobs settle a's claim of a task a holds again (the late release of a's hand-back, and the claim
// job of the dispatcher's return of the task to a). The first one's claim is refused (a is offline for
// a moment); while that answer is on its way back, a comes back online and the second one's claim lands
// and is checked against the task, still a's. Then the refusal puts the task back to PENDING without a:
// a's claim, landed for a task that is no longer a's, must still be released by a job of that change.
func TestRefusalAfterAnotherJobsClaimLandedReleasesIt(t *testing.T) {
	sys, a, _, tk := acceptedByA(t)
	handBack(t, sys, a, tk)
	assign(t, sys, a, tk)
	mark := lastJob(t, sys)
	sys.Couriers.SetStatus(a.ID, dispatch.CourierOffline)
	sys.Couriers.OnClaimed(func(_, _ string, err error) {
		if err == nil {
			return
		}
		sys.Couriers.OnClaimed(nil)
		sys.Couriers.SetStatus(a.ID, dispatch.CourierAvailable)
		runJob(t, sys, dispatch.Job{Kind: dispatch.JobClaim, CourierID: a.ID, TaskID: tk.ID}) // the return's
	})
	runJob(t, sys, dispatch.Job{Kind: dispatch.JobRelease, CourierID: a.ID, TaskID: tk.ID}) // the hand-back's, late
	// PENDING without a, or offered to b already by the work loop.
	if got := stored(t, sys, tk.ID); got.State.Held() || !got.IsExcluded(a.ID) {
		t.Fatalf("task = %s held by %q, a excluded %v; want no holder and a excluded (the refusal)", got.State, got.CourierID, got.IsExcluded(a.ID))
	}
	for _, j := range enqueuedAfter(t, sys, mark) {
		runJob(t, sys, j)
	}
	if holder, ok := sys.Couriers.Claims()[tk.ID]; ok {
		t.Errorf("courier service claim of the task a no longer holds = %s, want none", holder)
	}
}

// A courier picks a task up before its claim job ran (the courier service was unreachable), and the
// courier service then refuses the claim (the courier is on a break, or full). The task cannot go back
// to PENDING: the job is retried (it returns the refusal) rather than dropped, so that the courier
// service does not forget a parcel the courier carries; once the task is delivered and its release ran,
// the retry finds nothing to claim and ends.
func TestClaimRefusedForAPickedUpTaskIsRetried(t *testing.T) {
	sys, a, _, tk := acceptedByA(t)
	if r := sys.Service.Execute(a.Ctx, a.ID, "pick", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID}}); r.Err != nil {
		t.Fatalf("pickup: %+v", r.Err)
	}
	sys.Couriers.RefuseClaims(a.ID)
	claim := dispatch.Job{Kind: dispatch.JobClaim, CourierID: a.ID, TaskID: tk.ID}
	err := sys.Service.RunJob(context.Background(), claim)
	if apperr.CodeOf(err) != apperr.FailedPrecondition {
		t.Fatalf("claim job of the picked-up task = %v, want the refusal (FAILED_PRECONDITION), to be retried", err)
	}
	if got := stored(t, sys, tk.ID); got.State != dispatch.StatePickedUp || got.CourierID != a.ID {
		t.Fatalf("task = %s held by %q, want PICKED_UP by a", got.State, got.CourierID)
	}
	if r := sys.Service.Execute(a.Ctx, a.ID, "deliver", dispatch.Command{Deliver: &dispatch.DeliverCmd{TaskID: tk.ID}}); r.Err != nil {
		t.Fatalf("deliver: %+v", r.Err)
	}
	runJob(t, sys, dispatch.Job{Kind: dispatch.JobRelease, CourierID: a.ID, TaskID: tk.ID, Final: true})
	runJob(t, sys, claim) // the retry
	if holder, ok := sys.Couriers.Claims()[tk.ID]; ok {
		t.Errorf("courier service claim of the delivered task = %s, want none", holder)
	}
}

// failLate runs the claim job of tk on c while the courier service holds claims back: the call times out
// (Unavailable, so the job would be retried) and its claim lands only when the test calls LandLate.
func failLate(t *testing.T, sys *dispatchtest.System, c dispatchtest.Courier, tk dispatch.Task) {
	t.Helper()
	sys.Couriers.LateClaims(true)
	err := sys.Service.RunJob(context.Background(), dispatch.Job{Kind: dispatch.JobClaim, CourierID: c.ID, TaskID: tk.ID})
	sys.Couriers.LateClaims(false)
	if apperr.CodeOf(err) != apperr.Unavailable {
		t.Fatalf("claim job while claims time out = %v, want Unavailable", err)
	}
}

// landLate lands the claims held back, wanting each superseded.
func landLate(t *testing.T, sys *dispatchtest.System, want int) {
	t.Helper()
	superseded, errs := sys.Couriers.LandLate()
	if len(superseded) != want {
		t.Fatalf("%d late claims, want %d", len(superseded), want)
	}
	for i := range superseded {
		if errs[i] != nil || !superseded[i] {
			t.Errorf("late claim #%d = superseded %v, %v; want superseded", i+1, superseded[i], errs[i])
		}
	}
}

// The claim job's call times out, yet the claim lands at the courier service later: after the task was
// cancelled and its release ran (the job's retry, if any, found the task no longer the courier's and
// released a claim that was not there yet). The late claim carries the version of the task it was read
// at, older than the release's: it is superseded, and the courier holds no capacity for a task it does
// not have.
func TestClaimLandingAfterTheCancelsReleaseIsSuperseded(t *testing.T) {
	sys, a, _, tk := acceptedByA(t)
	claimLandsAfterTheCancelsRelease(t, sys, sys, a, tk)
}

// claimLandsAfterTheCancelsRelease is the scenario of TestClaimLandingAfterTheCancelsReleaseIsSuperseded:
// late is the replica whose claim job times out and whose claim lands late, other the one that cancels the
// task and runs the release and the retry (the same system with one replica).
func claimLandsAfterTheCancelsRelease(t *testing.T, late, other *dispatchtest.System, a dispatchtest.Courier, tk dispatch.Task) {
	t.Helper()
	failLate(t, late, a, tk)
	if _, err := other.Service.CancelTask(dispatchtest.Dispatcher(), dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelOther}); err != nil {
		t.Fatal(err)
	}
	runJob(t, other, dispatch.Job{Kind: dispatch.JobRelease, CourierID: a.ID, TaskID: tk.ID, Final: true})
	runJob(t, other, dispatch.Job{Kind: dispatch.JobClaim, CourierID: a.ID, TaskID: tk.ID}) // the retry
	landLate(t, late, 1)
	if holder, ok := late.Couriers.Claims()[tk.ID]; ok {
		t.Errorf("courier service claim of the cancelled task on %s, want none", holder)
	}
}

// As above with a hand-back: the task is PENDING again, then a dispatcher gives it back to the same
// courier and that claim job runs. The first claim lands after all that: superseded, the claim of the
// return stays, and the release after a second hand-back frees the courier.
func TestClaimLandingAfterTheTaskCameBackLeavesTheNewClaim(t *testing.T) {
	sys, a, _, tk := acceptedByA(t)
	claimLandsAfterTheTaskCameBack(t, sys, sys, a, tk)
}

// claimLandsAfterTheTaskCameBack is the scenario of TestClaimLandingAfterTheTaskCameBackLeavesTheNewClaim:
// late is the replica whose first claim lands late, where the dispatcher gives the task back and the second
// hand-back and its release run; other hands the task back first, releases it and runs the return's claim
// job (the same system with one replica).
func claimLandsAfterTheTaskCameBack(t *testing.T, late, other *dispatchtest.System, a dispatchtest.Courier, tk dispatch.Task) {
	t.Helper()
	failLate(t, late, a, tk)
	handBack(t, other, a, tk)
	runJob(t, other, dispatch.Job{Kind: dispatch.JobRelease, CourierID: a.ID, TaskID: tk.ID})
	assign(t, late, a, tk)
	runJob(t, other, dispatch.Job{Kind: dispatch.JobClaim, CourierID: a.ID, TaskID: tk.ID})
	landLate(t, late, 1)
	wantHeld(t, late, a, tk)
	handBack(t, late, a, tk)
	runJob(t, late, dispatch.Job{Kind: dispatch.JobRelease, CourierID: a.ID, TaskID: tk.ID})
	if holder, ok := late.Couriers.Claims()[tk.ID]; ok {
		t.Errorf("courier service claim of the handed-back task on %s, want none", holder)
	}
}
