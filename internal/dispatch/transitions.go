package dispatch

import (
	"slices"
	"time"

	"lastmile/internal/platform/apperr"
)

// transitions is the task state machine: the states each state may move to. Everything else is
// FailedPrecondition. OFFERED goes back to PENDING when its offer is declined or expires (the engine then
// offers the task to the next candidate); ASSIGNED goes back to PENDING when the courier hands the task
// back, the courier service refuses the claim or the courier may no longer work, and to ASSIGNED when a
// dispatcher reassigns it. PICKED_UP goes to ASSIGNED only when a dispatcher gives the task of a courier
// who may no longer work to another courier (AssignTask checks that): the new holder collects the parcel
// again.
var transitions = map[State][]State{
	StatePending:      {StateOffered, StateAssigned, StateCancelled, StateUnassignable},
	StateOffered:      {StatePending, StateAssigned, StateCancelled, StateUnassignable},
	StateAssigned:     {StatePickedUp, StatePending, StateAssigned, StateCancelled, StateFailed},
	StatePickedUp:     {StateDelivered, StateFailed, StateAssigned},
	StateUnassignable: {StateAssigned, StateCancelled},
	StateDelivered:    nil,
	StateCancelled:    nil,
	StateFailed:       nil,
}

// CanTransition reports whether a task in state from may move to state to.
func CanTransition(from, to State) bool { return slices.Contains(transitions[from], to) }

// transition moves t to change.State at change.At, recording change in its history, or returns
// FailedPrecondition when the state machine forbids it. It keeps the state's bookkeeping: the holder, the
// times, the engine's due time.
func (t *Task) transition(change StateChange) error {
	to := change.State
	if !CanTransition(t.State, to) {
		return apperr.Errorf(apperr.FailedPrecondition, "task %s is %s and cannot become %s", t.ID, t.State, to)
	}
	at := storedTime(change.At)
	change.At = at
	t.State = to
	t.UpdateTime = at
	t.History = append(t.History, change)
	switch to {
	case StatePending:
		t.CourierID = ""
		t.DueTime = at
	case StateOffered:
		// DueTime is the offer's deadline, set by offer.
	case StateAssigned:
		t.CourierID = change.CourierID
		t.AssignTime = at
		t.DueTime = time.Time{}
		t.PickupTime = time.Time{} // a picked-up task given to another courier is collected again
	case StatePickedUp:
		t.PickupTime = at
	case StateDelivered:
		t.DeliverTime = at
		t.FinishTime = at
	case StateCancelled, StateFailed:
		t.FinishTime = at
		t.DueTime = time.Time{}
	case StateUnassignable:
		t.DueTime = time.Time{}
	}
	return nil
}

// closeOffer ends t's open offer in state st (declined, expired, withdrawn or accepted) at at, and
// returns it; nil when there is none.
func (t *Task) closeOffer(st OfferState, at time.Time) *Offer {
	o := t.CurrentOffer()
	if o == nil {
		return nil
	}
	o.State = st
	o.AnswerTime = storedTime(at)
	return o
}
