package dispatch_test

import (
	"testing"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
)

// TestAcceptAgainAfterLosingTheTask: an offer the courier accepted, accepted again under a new command id
// once the courier no longer holds the task, fails with the reason the contract gives for that case
// (CommandError: NOT_HOLDER "the courier held the task once but no longer does", TASK_CANCELLED "the task
// was cancelled"), not OFFER_ALREADY_ANSWERED, which says the courier gave the other answer and which an
// app shows as "you declined it". Found by a courier app built from the protos alone: it released a task
// and then replayed its accept under a new id.
func TestAcceptAgainAfterLosingTheTask(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	c := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 300), geo.Bicycle, true)
	exec := func(id string, cmd dispatch.Command) dispatch.CommandResult {
		return sys.Service.Execute(c.Ctx, c.ID, id, cmd)
	}
	accept := func(id string, o dispatch.Offer) dispatch.CommandResult {
		return exec(id, dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}})
	}

	released := create(t, sys, nil)
	_, o1 := offered(t, sys, released.ID)
	if r := accept("a1", o1); r.Err != nil || r.Task.State != dispatch.StateAssigned {
		t.Fatalf("accept = %+v, want ASSIGNED", r)
	}
	if r := exec("r1", dispatch.Command{Release: &dispatch.ReleaseCmd{TaskID: released.ID, Reason: dispatch.ReleaseOther}}); r.Err != nil || r.Task.State != dispatch.StatePending {
		t.Fatalf("release = %+v, want PENDING", r)
	}
	if r := accept("a2", o1); r.Err == nil || r.Err.Code != apperr.FailedPrecondition || r.Err.Reason != dispatch.ReasonNotHolder {
		t.Errorf("accept again after the release = %+v, want FailedPrecondition %s", r.Err, dispatch.ReasonNotHolder)
	}

	cancelled := create(t, sys, nil)
	_, o2 := offered(t, sys, cancelled.ID)
	if r := accept("a3", o2); r.Err != nil || r.Task.State != dispatch.StateAssigned {
		t.Fatalf("accept = %+v, want ASSIGNED", r)
	}
	if _, err := sys.Service.CancelTask(dispatchtest.Dispatcher(), dispatch.CancelRequest{ID: cancelled.ID, Reason: dispatch.CancelOther}); err != nil {
		t.Fatal(err)
	}
	if r := accept("a4", o2); r.Err == nil || r.Err.Code != apperr.FailedPrecondition || r.Err.Reason != dispatch.ReasonTaskCancelled {
		t.Errorf("accept again after the cancellation = %+v, want FailedPrecondition %s", r.Err, dispatch.ReasonTaskCancelled)
	}

	// Declining an accepted offer is still the other answer.
	if r := exec("x1", dispatch.Command{Decline: &dispatch.DeclineCmd{OfferID: o2.ID, Reason: dispatch.DeclineOther}}); r.Err == nil || r.Err.Reason != dispatch.ReasonOfferAnswered {
		t.Errorf("decline of the accepted offer = %+v, want %s", r.Err, dispatch.ReasonOfferAnswered)
	}
}
