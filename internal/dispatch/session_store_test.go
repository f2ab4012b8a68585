package dispatch_test

import (
	"context"
	"testing"
	"time"

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

// The hub's heartbeat keeps this replica's open sessions connected, and stops at Close; a session whose
// record names a newer session is not refreshed and ends.
func TestTheHubHeartbeatKeepsOpenSessionsConnected(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	ctx := sessCtx(t)
	connected := func() bool {
		t.Helper()
		conn, err := f.store.Connected(ctx, []string{sessCourier(1)}, f.clock.Now().Add(-3*dispatch.HeartbeatInterval))
		if err != nil {
			t.Fatalf("Connected: %v", err)
		}
		return conn[sessCourier(1)]
	}
	s1 := sessOpen(t, f.svc, 1, dispatch.Hello{})
	if !connected() {
		t.Fatalf("courier not connected right after OpenSession")
	}
	f.clock.Advance(time.Minute)
	if connected() {
		t.Fatalf("courier connected a minute after the last heartbeat")
	}
	f.svc.BeatSessions(ctx)
	rec, err := f.store.GetSession(ctx, sessCourier(1))
	if want := f.clock.Now().UTC().Truncate(time.Microsecond); err != nil || !rec.Heartbeat.Equal(want) || !rec.Open || rec.SessionID != s1.ID() {
		t.Fatalf("session record after the hub's heartbeat = %+v, %v; want session %s open, heartbeat %v", rec, err, s1.ID(), want)
	}
	if !connected() {
		t.Errorf("courier not connected after the hub's heartbeat")
	}

	// A newer session on another replica: the older one's heartbeat refreshes nothing, and it ends.
	other, _ := f.replica(t, "replica-b")
	s2 := sessOpen(t, other, 1, dispatch.Hello{})
	f.clock.Advance(time.Minute)
	f.svc.BeatSessions(ctx)
	if rec, err := f.store.GetSession(ctx, sessCourier(1)); err != nil || rec.SessionID != s2.ID() || rec.Heartbeat.After(f.clock.Now().Add(-time.Minute)) {
		t.Errorf("session record after the replaced session's heartbeat = %+v, %v; want session %s with its opening heartbeat", rec, err, s2.ID())
	}
	if out := sessNext(t, s1); out.Drain == nil || out.Drain.Code != dispatch.DrainSessionReplaced {
		t.Errorf("replaced session's Next() = %s, want a SESSION_REPLACED drain", sessDescribe(out))
	}
	other.BeatSessions(ctx)
	if !connected() {
		t.Errorf("courier not connected after the newer session's heartbeat")
	}

	// Closed: the heartbeat stops, and the record stays closed.
	s2.Close()
	f.clock.Advance(time.Second)
	other.BeatSessions(ctx)
	if rec, err := f.store.GetSession(ctx, sessCourier(1)); err != nil || rec.Open || !rec.Heartbeat.Before(f.clock.Now()) {
		t.Errorf("session record after Close and a heartbeat = %+v, %v; want closed, heartbeat before %v", rec, err, f.clock.Now())
	}
	if connected() {
		t.Errorf("courier connected after Close")
	}
}

// A session that missed the wake-up of a delivery (here: no hub runs, so no delivery wakes it) gets it
// at the next heartbeat, which wakes the sessions whose courier has deliveries they did not send.
func TestTheHeartbeatWakesASessionThatMissedADelivery(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	opts := f.opts
	opts.Replica = "replica-quiet"
	quiet := dispatch.NewService(dispatch.Deps{Store: f.store, Couriers: f.couriers, Routes: f.routes, Metrics: f.metrics}, opts)
	s := sessOpen(t, quiet, 1, dispatch.Hello{})
	ctx := sessCtx(t)
	f.newTask(t, 1, 1)
	c := f.offer(t, sessTaskID(1), 1, 1)
	nctx, cancel := contextWithCancel(t)
	defer cancel()
	// sentAfterBeats runs Next and beats until it returns, which must be the offer at cursor want:
	// whether Next read the offer at once (it reads once when it starts) or waits, the heartbeat makes
	// it read what it did not send.
	sentAfterBeats := func(want int64) {
		t.Helper()
		got := make(chan dispatch.Outbound, 1)
		go func() {
			out, err := s.Next(nctx)
			if err != nil {
				t.Errorf("Next: %v", err)
			}
			got <- out
		}()
		for {
			quiet.BeatSessions(ctx)
			select {
			case out := <-got:
				if out.Offer == nil || out.Cursor != want {
					t.Fatalf("Next() = %s, want the offer at cursor %d", sessDescribe(out), want)
				}
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	sentAfterBeats(c)
	// Nothing left to send: the next heartbeat wakes nobody, and Next waits.
	quiet.BeatSessions(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer wcancel()
	if out, err := s.Next(wctx); err != context.DeadlineExceeded {
		t.Errorf("Next() with nothing to send = %s, %v; want it to wait until the context ends", sessDescribe(out), err)
	}
	// A second delivery, no wake-up: the heartbeat wakes it.
	f.newTask(t, 2, 1)
	sentAfterBeats(f.offer(t, sessTaskID(2), 2, 1))
}
