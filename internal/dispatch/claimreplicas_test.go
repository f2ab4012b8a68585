package dispatch_test

import (
	"testing"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
)

// twoReplicasAcceptedByA is acceptedByA on two replicas (twoReplicas, their jobs never worked): the task is accepted on replica ra.
func twoReplicasAcceptedByA(t *testing.T) (ra, rb *dispatchtest.System, a dispatchtest.Courier, tk dispatch.Task) {
	t.Helper()
	ra, rb = twoReplicas(t, dispatchtest.Config{NoJobs: true})
	a = addCourier(t, ra, dispatchtest.Near(dispatchtest.Berlin, 100))
	addCourier(t, ra, dispatchtest.Near(dispatchtest.Berlin, 400))
	tk = create(t, rb, nil)
	_, o := offered(t, ra, tk.ID)
	if o.CourierID != a.ID {
		t.Fatalf("offered to %s, want a (%s)", o.CourierID, a.ID)
	}
	if r := ra.Service.Execute(a.Ctx, a.ID, "acc", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	return ra, rb, a, tk
}

// The claim generations hold across replicas: replica A's claim job times out and its claim lands at
// the courier service late, after the task was cancelled on replica B and B ran the release and the
// claim job's retry. The late claim carries the version A read, older than the one B released at: it is
// superseded, and the courier holds no capacity for the cancelled task.
func TestClaimLandingAfterAnotherReplicasReleaseIsSuperseded(t *testing.T) {
	ra, rb, a, tk := twoReplicasAcceptedByA(t)
	claimLandsAfterTheCancelsRelease(t, ra, rb, a, tk)
}

// The same with the task coming back: handed back through replica B (whose job releases it), given back
// to the same courier by a dispatcher on replica A, whose claim job runs on B. A's first claim, late,
// lands after all that: superseded, and the claim of the return stays; a second hand-back's release, run
// on A, frees the courier.
func TestClaimLandingAfterTheTaskCameBackOnAnotherReplicaLeavesTheNewClaim(t *testing.T) {
	ra, rb, a, tk := twoReplicasAcceptedByA(t)
	claimLandsAfterTheTaskCameBack(t, ra, rb, a, tk)
}
