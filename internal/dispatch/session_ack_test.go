package dispatch_test

import (
	"fmt"
	"testing"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

// TestAckOfADeliveryAnEarlierSessionSent: the contract bounds an ack by "the highest cursor sent to this
// courier", not by what the current session has replayed so far. An app that received an offer, lost its
// connection before acknowledging it, and flushes that ack right after its next hello (before the new
// session's replay reached the offer) must not have its session ended with INVALID_ARGUMENT; the ack
// holds, and the acknowledged offer is not replayed. A cursor beyond anything the courier's log held
// when the session opened is still refused.
func TestAckOfADeliveryAnEarlierSessionSent(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	f.newTask(t, 1, 1)
	f.newTask(t, 2, 1)
	c1 := f.offer(t, sessTaskID(1), 1, 1)
	c2 := f.offer(t, sessTaskID(2), 2, 1)

	s1 := sessOpen(t, f.svc, 1, dispatch.Hello{})
	if got, want := sessDescribe(sessNext(t, s1)), fmt.Sprintf("%d offer %s open task %s offered", c1, sessOfferID(1), sessTaskID(1)); got != want {
		t.Fatalf("first session's Next() = %s, want %s", got, want)
	}
	s1.Close() // the connection dropped before the app acknowledged c1

	s2 := sessOpen(t, f.svc, 1, dispatch.Hello{})
	if err := s2.Ack(sessCtx(t), c1); err != nil {
		t.Fatalf("Ack(%d) of the earlier session's delivery before the replay = %v, want nil", c1, err)
	}
	if got, want := sessDescribe(sessNext(t, s2)), fmt.Sprintf("%d offer %s open task %s offered", c2, sessOfferID(2), sessTaskID(2)); got != want {
		t.Errorf("Next() after the ack = %s, want %s (the acknowledged offer is not replayed)", got, want)
	}
	apperrtest.WantCode(t, "Ack beyond the courier's log", s2.Ack(sessCtx(t), c2+1), apperr.Invalid)
	rec, err := f.store.GetSession(sessCtx(t), sessCourier(1))
	if err != nil {
		t.Fatal(err)
	}
	if rec.Acked != c1 {
		t.Errorf("acknowledged watermark = %d, want %d", rec.Acked, c1)
	}
}
