package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
	"lastmile/internal/platform/eventlog"
)

func TestSessionReplaysUnacknowledgedDeliveriesInOrderThenLiveOnes(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	for n := 1; n <= 4; n++ {
		f.newTask(t, n, 1)
	}
	c1 := f.offer(t, sessTaskID(1), 1, 1)
	c2 := f.offer(t, sessTaskID(2), 2, 1)
	c3 := f.assign(t, sessTaskID(3), 1)
	f.offer(t, sessTaskID(4), 4, 2) // another courier's

	opened := f.clock.Now()
	s := sessOpen(t, f.svc, 1, dispatch.Hello{AppVersion: "2.14.1"})
	st := s.Started()
	if st.SessionID != s.ID() || st.CourierID != sessCourier(1) || st.AckedCursor != 0 || st.SnapshotCursor != c3 ||
		st.Epoch <= 0 || !st.ServerTime.Equal(f.clock.Now()) {
		t.Errorf("Started() = session %s courier %s acked %d snapshot %d epoch %d time %v, want %s %s 0 %d >0 %v",
			st.SessionID, st.CourierID, st.AckedCursor, st.SnapshotCursor, st.Epoch, st.ServerTime, s.ID(), sessCourier(1), c3, f.clock.Now())
	}
	if len(st.ActiveTasks) != 1 || st.ActiveTasks[0].ID != sessTaskID(3) || st.ActiveTasks[0].Pickup.Contact.Name != "Shop" {
		t.Errorf("Started().ActiveTasks = %+v, want task 3 with its contacts", st.ActiveTasks)
	}
	var offers []string
	for _, o := range st.OpenOffers {
		offers = append(offers, fmt.Sprintf("%s %s contact %q", o.Offer.ID, o.Task.ID, o.Task.Pickup.Contact.Name))
	}
	wantOffers := []string{
		fmt.Sprintf("%s %s contact %q", sessOfferID(1), sessTaskID(1), ""),
		fmt.Sprintf("%s %s contact %q", sessOfferID(2), sessTaskID(2), ""),
	}
	if diff := cmp.Diff(wantOffers, offers); diff != "" {
		t.Errorf("Started().OpenOffers (-want +got):\n%s", diff)
	}

	var got []string
	for range 3 {
		got = append(got, sessDescribe(sessNext(t, s)))
	}
	want := []string{
		fmt.Sprintf("%d offer %s open task %s offered", c1, sessOfferID(1), sessTaskID(1)),
		fmt.Sprintf("%d offer %s open task %s offered", c2, sessOfferID(2), sessTaskID(2)),
		fmt.Sprintf("%d task assigned %s assigned", c3, sessTaskID(3)),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("replayed deliveries (-want +got):\n%s", diff)
	}
	if err := s.Ack(sessCtx(t), c2); err != nil {
		t.Fatalf("Ack(%d): %v", c2, err)
	}
	rec, err := f.store.GetSession(sessCtx(t), sessCourier(1))
	if err != nil {
		t.Fatal(err)
	}
	if rec.SessionID != s.ID() || rec.Acked != c2 || rec.Epoch != st.Epoch || !rec.Open || rec.Replica != "replica-a" ||
		!rec.Heartbeat.Equal(opened) || rec.AppVersion != "2.14.1" {
		t.Errorf("session record = %+v, want session %s acked %d epoch %d open on replica-a, heartbeat at the open, app 2.14.1",
			rec, s.ID(), c2, st.Epoch)
	}
	apperrtest.WantCode(t, "Ack beyond the sent cursor", s.Ack(sessCtx(t), c3+1), apperr.Invalid)
	s.Close()

	// The acknowledgement is kept: a new session without a resume cursor replays only what follows it.
	s2 := sessOpen(t, f.svc, 1, dispatch.Hello{})
	if got := s2.Started().AckedCursor; got != c2 {
		t.Errorf("Started().AckedCursor after Ack(%d) = %d, want %d", c2, got, c2)
	}
	if got, want := sessDescribe(sessNext(t, s2)), fmt.Sprintf("%d task assigned %s assigned", c3, sessTaskID(3)); got != want {
		t.Errorf("replay after the ack = %q, want %q", got, want)
	}
	// A live delivery wakes the session through the event feed.
	f.newTask(t, 5, 1)
	c5 := f.offer(t, sessTaskID(5), 5, 1)
	if got, want := sessDescribe(sessNext(t, s2)), fmt.Sprintf("%d offer %s open task %s offered", c5, sessOfferID(5), sessTaskID(5)); got != want {
		t.Errorf("live delivery = %q, want %q", got, want)
	}
	s2.Close()
	f.metrics.mu.Lock()
	defer f.metrics.mu.Unlock()
	if f.metrics.opened != 2 || f.metrics.closed != 2 || f.metrics.replay != 4 {
		t.Errorf("metrics opened %d closed %d replayed %d, want 2 2 4", f.metrics.opened, f.metrics.closed, f.metrics.replay)
	}
}

func TestSessionSendsAClosedOfferOnlyAsClosed(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	f.newTask(t, 1, 1)
	c1 := f.offer(t, sessTaskID(1), 1, 1)
	c2 := f.expire(t, sessTaskID(1))
	s := sessOpen(t, f.svc, 1, dispatch.Hello{})
	if len(s.Started().OpenOffers) != 0 {
		t.Errorf("Started().OpenOffers = %+v, want none", s.Started().OpenOffers)
	}
	out := sessNext(t, s)
	if got, want := sessDescribe(out), fmt.Sprintf("%d offer_closed %s expired", c2, sessOfferID(1)); got != want {
		t.Errorf("Next() = %q, want %q (the superseded offer %d skipped)", got, want, c1)
	}
	if !out.ServerTime.Equal(f.clock.Now()) {
		t.Errorf("Next().ServerTime = %v, want the clock's %v", out.ServerTime, f.clock.Now())
	}
	if err := s.Ack(sessCtx(t), c1); err != nil {
		t.Errorf("Ack(%d) of the skipped delivery: %v", c1, err)
	}
}

func TestSessionResumeCursorNeedsTheEpochAndAKnownCursor(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	f.newTask(t, 1, 1)
	f.newTask(t, 2, 1)
	f.newTask(t, 3, 1)
	c1 := f.offer(t, sessTaskID(1), 1, 1)
	c2 := f.offer(t, sessTaskID(2), 2, 1)
	// A cursor another courier was sent: above this courier's highest, below the log's.
	others := f.offer(t, sessTaskID(3), 3, 2)
	first := sessOpen(t, f.svc, 1, dispatch.Hello{ResumeCursor: c1, Epoch: 12345})
	epoch := first.Started().Epoch
	if got := first.Started().AckedCursor; got != 0 {
		t.Fatalf("AckedCursor of a first session with a cursor from nowhere = %d, want 0", got)
	}
	first.Close()

	for _, tc := range []struct {
		name  string
		hello dispatch.Hello
		want  int64
	}{
		{"same epoch", dispatch.Hello{ResumeCursor: c1, Epoch: epoch}, c1},
		{"other epoch", dispatch.Hello{ResumeCursor: c2, Epoch: epoch + 1}, c1},
		{"cursor beyond the log", dispatch.Hello{ResumeCursor: c2 + 100, Epoch: epoch}, c1},
		{"another courier's cursor", dispatch.Hello{ResumeCursor: others, Epoch: epoch}, c1},
		{"no cursor", dispatch.Hello{Epoch: epoch}, c1},
		{"lower cursor", dispatch.Hello{ResumeCursor: 1, Epoch: epoch}, c1},
		{"the newest", dispatch.Hello{ResumeCursor: c2, Epoch: epoch}, c2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := sessOpen(t, f.svc, 1, tc.hello)
			st := s.Started()
			if st.AckedCursor != tc.want || st.Epoch != epoch {
				t.Errorf("OpenSession(%+v): acked %d epoch %d, want %d %d", tc.hello, st.AckedCursor, st.Epoch, tc.want, epoch)
			}
			s.Close()
		})
	}
}

func TestNewerSessionReplacesTheOlderOne(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	other, _ := f.replica(t, "replica-b")
	for _, tc := range []struct {
		name   string
		second *dispatch.Service
	}{
		{"same replica", f.svc},
		{"other replica", other},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s1 := sessOpen(t, f.svc, 1, dispatch.Hello{})
			s2 := sessOpen(t, tc.second, 1, dispatch.Hello{})
			out := sessNext(t, s1)
			if out.Drain == nil || out.Drain.Code != dispatch.DrainSessionReplaced || out.Cursor != 0 {
				t.Fatalf("old session's Next() = %s, want a SESSION_REPLACED drain", sessDescribe(out))
			}
			_, err := s1.Next(sessCtx(t))
			apperrtest.WantCode(t, "old session's Next after the drain", err, apperr.Aborted)
			s1.Close()
			rec, err := f.store.GetSession(sessCtx(t), sessCourier(1))
			if err != nil {
				t.Fatal(err)
			}
			if rec.SessionID != s2.ID() || !rec.Open {
				t.Errorf("session record after the old one closed = %s open %v, want %s open", rec.SessionID, rec.Open, s2.ID())
			}
			s2.Close()
			if rec, _ = f.store.GetSession(sessCtx(t), sessCourier(1)); rec.Open {
				t.Errorf("session record after the current one closed is open")
			}
		})
	}
}

func TestALateEventNamingAnOlderSessionEndsNothing(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	s1 := sessOpen(t, f.svc, 1, dispatch.Hello{})
	s2 := sessOpen(t, f.svc, 1, dispatch.Hello{})
	// The hub reads the older session's event after the newer session opened.
	f.svc.RouteSessionEvent(sessCourier(1), s1.ID())
	f.newTask(t, 1, 1)
	c := f.offer(t, sessTaskID(1), 1, 1)
	if got, want := sessDescribe(sessNext(t, s2)), fmt.Sprintf("%d offer %s open task %s offered", c, sessOfferID(1), sessTaskID(1)); got != want {
		t.Errorf("newer session's Next() after a late event = %q, want %q", got, want)
	}
	if out := sessNext(t, s1); out.Drain == nil || out.Drain.Code != dispatch.DrainSessionReplaced {
		t.Errorf("older session's Next() = %s, want a SESSION_REPLACED drain", sessDescribe(out))
	}
}

func TestSessionCommandsAreIdempotentPerCommandID(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	f.newTask(t, 1, 1)
	f.offer(t, sessTaskID(1), 1, 1)
	s := sessOpen(t, f.svc, 1, dispatch.Hello{})
	accept := dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: sessOfferID(1)}}

	first := s.Execute(sessCtx(t), "cmd-1", accept)
	if first.Err != nil || first.Replayed || first.Task == nil || first.Task.State != dispatch.StateAssigned || first.CommandID != "cmd-1" {
		t.Fatalf("Execute(cmd-1 accept) = %+v, want the task assigned", first)
	}
	again := s.Execute(sessCtx(t), "cmd-1", accept)
	if again.Err != nil || !again.Replayed || again.Task == nil || again.Task.ID != sessTaskID(1) ||
		again.Task.State != dispatch.StateAssigned || again.Task.Version != first.Task.Version {
		t.Errorf("Execute(cmd-1 accept) again = %+v, want the stored success replayed with the task", again)
	}
	reused := s.Execute(sessCtx(t), "cmd-1", dispatch.Command{Decline: &dispatch.DeclineCmd{OfferID: sessOfferID(1), Reason: dispatch.DeclineTooFar}})
	if reused.Err == nil || reused.Err.Code != apperr.Conflict || reused.Err.Reason != "COMMAND_ID_REUSED" || reused.Replayed || reused.Task != nil {
		t.Errorf("Execute(cmd-1 decline) = %+v, want Conflict COMMAND_ID_REUSED", reused)
	}

	missing := dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: sessOfferID(99)}}
	failed := s.Execute(sessCtx(t), "cmd-2", missing)
	if failed.Err == nil || failed.Replayed {
		t.Fatalf("Execute(cmd-2 accept of a missing offer) = %+v, want a failure", failed)
	}
	failedAgain := s.Execute(sessCtx(t), "cmd-2", missing)
	if failedAgain.Err == nil || failedAgain.Err.Code != failed.Err.Code || !failedAgain.Replayed || failedAgain.Task != nil {
		t.Errorf("Execute(cmd-2) again = %+v, want the stored failure %v replayed", failedAgain, failed.Err.Code)
	}
}

func TestDrainTellsSessionsToGoAndRefusesNewOnes(t *testing.T) {
	t.Run("grace", func(t *testing.T) {
		f := newSessionFixture(t, dispatch.Options{})
		s := sessOpen(t, f.svc, 1, dispatch.Hello{})
		f.svc.Drain(time.Hour)
		out := sessNext(t, s)
		if out.Drain == nil || out.Drain.Code != dispatch.DrainServerShutdown || out.Drain.Grace <= 59*time.Minute || out.Drain.Grace > time.Hour {
			t.Fatalf("Next() after Drain(1h) = %s %+v, want a SERVER_SHUTDOWN drain with about an hour of grace", sessDescribe(out), out.Drain)
		}
		// Deliveries continue during the grace.
		f.newTask(t, 1, 1)
		c := f.offer(t, sessTaskID(1), 1, 1)
		if got, want := sessDescribe(sessNext(t, s)), fmt.Sprintf("%d offer %s open task %s offered", c, sessOfferID(1), sessTaskID(1)); got != want {
			t.Errorf("Next() during the grace = %q, want %q", got, want)
		}
		_, err := f.svc.OpenSession(asCourier(sessCtx(t), 2), dispatch.Hello{})
		apperrtest.WantCode(t, "OpenSession while draining", err, apperr.Unavailable)
	})
	t.Run("no grace", func(t *testing.T) {
		f := newSessionFixture(t, dispatch.Options{})
		s := sessOpen(t, f.svc, 1, dispatch.Hello{})
		f.svc.Drain(0)
		out := sessNext(t, s)
		if out.Drain == nil || out.Drain.Code != dispatch.DrainServerShutdown || out.Drain.Grace != 0 {
			t.Fatalf("Next() after Drain(0) = %s %+v, want a SERVER_SHUTDOWN drain without grace", sessDescribe(out), out.Drain)
		}
		_, err := s.Next(sessCtx(t))
		apperrtest.WantCode(t, "Next after the grace", err, apperr.Unavailable)
	})
}

func TestOpenSessionRefusesWhoIsNotACourier(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	_, err := f.svc.OpenSession(asCustomer(sessCtx(t), 1), dispatch.Hello{})
	apperrtest.WantCode(t, "OpenSession(customer)", err, apperr.PermissionDenied)
	_, err = f.svc.OpenSession(asCourier(sessCtx(t), 501), dispatch.Hello{})
	apperrtest.WantCode(t, "OpenSession(courier user without a profile)", err, apperr.FailedPrecondition)
}

func TestNextEndsWithTheContext(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	s := sessOpen(t, f.svc, 1, dispatch.Hello{})
	ctx, cancel := contextWithCancel(t)
	done := make(chan error, 1)
	go func() {
		_, err := s.Next(ctx)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, errCanceled) {
			t.Errorf("Next after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(sessTimeout):
		t.Fatal("Next did not end with its context")
	}
}

// With a one-event buffer, every commit of a task change with a delivery (two events) drops the hub from
// the event feed: it must subscribe again and wake everyone, so nothing is lost.
func TestHubThatFellBehindLosesNothing(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{}, eventlog.Options{Poll: 5 * time.Millisecond, Buffer: 1})
	s := sessOpen(t, f.svc, 1, dispatch.Hello{})
	for n := 1; n <= 3; n++ {
		f.newTask(t, n, 1)
		w := startWatch(t, asDispatcher(sessCtx(t)), func(ctx context.Context, send func(dispatch.TaskUpdate) error) error {
			return f.svc.WatchTask(ctx, sessTaskID(n), send)
		})
		if got, want := describeUpdate(w.recv(t)), "task pending v1"; got != want {
			t.Fatalf("task %d: snapshot = %q, want %q", n, got, want)
		}
		c := f.offer(t, sessTaskID(n), n, 1)
		if got, want := sessDescribe(sessNext(t, s)), fmt.Sprintf("%d offer %s open task %s offered", c, sessOfferID(n), sessTaskID(n)); got != want {
			t.Errorf("task %d: Next() = %q, want %q", n, got, want)
		}
		if got, want := describeUpdate(w.recv(t)), "task offered v2"; got != want {
			t.Errorf("task %d: watch after the offer = %q, want %q", n, got, want)
		}
	}
}
