package dispatch

import (
	"testing"
	"time"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

// TestStateMachine checks every pair of states against the contract's lifecycle: the legal moves succeed
// and keep the bookkeeping, every other move is FailedPrecondition and changes nothing.
func TestStateMachine(t *testing.T) {
	legal := map[[2]State]bool{
		{StatePending, StateOffered}:        true,
		{StatePending, StateAssigned}:       true, // dispatcher override
		{StatePending, StateCancelled}:      true,
		{StatePending, StateUnassignable}:   true,
		{StateOffered, StatePending}:        true, // declined or expired
		{StateOffered, StateAssigned}:       true, // accepted, or dispatcher override
		{StateOffered, StateCancelled}:      true,
		{StateOffered, StateUnassignable}:   true,
		{StateAssigned, StatePickedUp}:      true,
		{StateAssigned, StatePending}:       true, // handed back, or claim refused
		{StateAssigned, StateAssigned}:      true, // reassigned
		{StateAssigned, StateCancelled}:     true,
		{StateAssigned, StateFailed}:        true,
		{StatePickedUp, StateDelivered}:     true,
		{StatePickedUp, StateFailed}:        true,
		{StatePickedUp, StateAssigned}:      true, // a dispatcher moves it away from a courier who may no longer work
		{StateUnassignable, StateAssigned}:  true,
		{StateUnassignable, StateCancelled}: true,
	}
	at := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, from := range States {
		for _, to := range States {
			task := Task{ID: "t1", State: from, CourierID: "c-old", Version: 3}
			err := task.transition(StateChange{State: to, At: at, Actor: ActorSystem, CourierID: "c-new"})
			if legal[[2]State{from, to}] {
				if err != nil {
					t.Errorf("%s -> %s: %v, want allowed", from, to, err)
					continue
				}
				if task.State != to || len(task.History) != 1 || task.History[0].State != to || !task.UpdateTime.Equal(at) {
					t.Errorf("%s -> %s: state %s, history %+v, update %v", from, to, task.State, task.History, task.UpdateTime)
				}
				continue
			}
			apperrtest.WantCode(t, string(from)+" -> "+string(to), err, apperr.FailedPrecondition)
			if task.State != from || len(task.History) != 0 {
				t.Errorf("%s -> %s refused but changed the task: %+v", from, to, task)
			}
		}
	}
	for _, s := range States {
		if s.Final() && len(transitions[s]) != 0 {
			t.Errorf("final state %s has transitions %v", s, transitions[s])
		}
	}
}

// TestTransitionBookkeeping checks what each kind of state keeps: the holder, the times and the due time.
func TestTransitionBookkeeping(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	stored := at.Truncate(time.Microsecond)
	task := Task{ID: "t1", State: StateOffered, DueTime: at.Add(time.Minute)}
	mustMove := func(ch StateChange) {
		t.Helper()
		ch.At = at
		if err := task.transition(ch); err != nil {
			t.Fatal(err)
		}
	}
	mustMove(StateChange{State: StateAssigned, CourierID: "c1"})
	if task.CourierID != "c1" || !task.AssignTime.Equal(stored) || !task.DueTime.IsZero() {
		t.Fatalf("assigned: courier %q assign %v due %v", task.CourierID, task.AssignTime, task.DueTime)
	}
	mustMove(StateChange{State: StatePending, CourierID: "c1"})
	if task.CourierID != "" || !task.DueTime.Equal(stored) {
		t.Fatalf("handed back: courier %q due %v, want none and due now", task.CourierID, task.DueTime)
	}
	mustMove(StateChange{State: StateAssigned, CourierID: "c2"})
	mustMove(StateChange{State: StatePickedUp, CourierID: "c2"})
	mustMove(StateChange{State: StateDelivered, CourierID: "c2"})
	if !task.PickupTime.Equal(stored) || !task.DeliverTime.Equal(stored) || !task.FinishTime.Equal(stored) || task.CourierID != "c2" {
		t.Fatalf("delivered: %+v", task)
	}
	if len(task.History) != 5 {
		t.Fatalf("history has %d entries, want 5", len(task.History))
	}
}
