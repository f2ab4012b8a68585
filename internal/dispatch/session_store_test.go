package dispatch_test

import (
	"testing"

	"lastmile/internal/dispatch"
)

// An ack from a session that a newer one replaced still raises the courier's watermark: the older
// session did send those deliveries, and the app processed them.
func TestAnAckOfAReplacedSessionStillCounts(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	f.newTask(t, 1, 1)
	s1 := sessOpen(t, f.svc, 1, dispatch.Hello{})
	c := f.offer(t, sessTaskID(1), 1, 1)
	if out := sessNext(t, s1); out.Offer == nil || out.Cursor != c {
		t.Fatalf("first session's Next() = %s, want the offer at cursor %d", sessDescribe(out), c)
	}
	s2 := sessOpen(t, f.svc, 1, dispatch.Hello{})
	if got := s2.Started().AckedCursor; got != 0 {
		t.Fatalf("second session's acknowledged cursor = %d, want 0", got)
	}
	if err := s1.Ack(sessCtx(t), c); err != nil {
		t.Fatalf("Ack(%d) of the replaced session: %v", c, err)
	}
	rec, err := f.store.GetSession(sessCtx(t), sessCourier(1))
	if err != nil || rec.Acked != c || rec.SessionID != s2.ID() {
		t.Fatalf("session record after the ack = acked %d session %s, %v; want acked %d, session %s", rec.Acked, rec.SessionID, err, c, s2.ID())
	}
	// An ack below the watermark changes nothing.
	if err := s1.Ack(sessCtx(t), c-1); err != nil {
		t.Fatalf("Ack(%d): %v", c-1, err)
	}
	s3 := sessOpen(t, f.svc, 1, dispatch.Hello{})
	if got := s3.Started().AckedCursor; got != c {
		t.Errorf("third session's acknowledged cursor = %d, want %d", got, c)
	}
}
