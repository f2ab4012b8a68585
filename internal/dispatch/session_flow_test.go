package dispatch_test

import (
	"context"
	"testing"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
)

// nextOffer reads the session until an offer delivery arrives.
func nextOffer(t *testing.T, ctx context.Context, sess *dispatch.CourierSession) dispatch.Outbound {
	t.Helper()
	for {
		out, err := sess.Next(ctx)
		if err != nil {
			t.Fatalf("next: %v", err)
		}
		if out.Offer != nil {
			return out
		}
	}
}

// TestSessionCutMidOfferAndRestart follows the courier app through a dropped connection, a server
// restart on the same data and a reinstall: the offer is delivered again after each, is accepted once,
// and the reinstalled app learns its work from the session snapshot.
func TestSessionCutMidOfferAndRestart(t *testing.T) {
	first := dispatchtest.Start(t, dispatchtest.Config{})
	c := first.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 200), geo.Bicycle, false)
	ctx, cancel := context.WithTimeout(c.Ctx, time.Minute)
	defer cancel()
	sess, err := first.Service.OpenSession(ctx, dispatch.Hello{})
	if err != nil {
		t.Fatal(err)
	}
	tk := create(t, first, nil)
	out := nextOffer(t, ctx, sess)
	if out.Offer.Task.ID != tk.ID || out.Cursor == 0 {
		t.Fatalf("offer delivery %+v", out)
	}
	epoch := sess.Started().Epoch
	sess.Close() // the connection drops before the app acknowledged the offer

	// Reconnect with the cursor before the offer: the offer is delivered again.
	again, err := first.Service.OpenSession(ctx, dispatch.Hello{ResumeCursor: out.Cursor - 1, Epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	re := nextOffer(t, ctx, again)
	if re.Cursor != out.Cursor || re.Offer.Offer.ID != out.Offer.Offer.ID {
		t.Fatalf("replayed %+v, want cursor %d offer %s", re, out.Cursor, out.Offer.Offer.ID)
	}
	if len(again.Started().OpenOffers) != 1 {
		t.Fatalf("snapshot offers %+v, want the open offer", again.Started().OpenOffers)
	}
	// A second session of the same courier ends this one.
	third, err := first.Service.OpenSession(ctx, dispatch.Hello{ResumeCursor: out.Cursor - 1, Epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	for {
		o, err := again.Next(ctx)
		if err != nil {
			if apperr.CodeOf(err) != apperr.Aborted {
				t.Fatalf("replaced session ended with %v, want Aborted", err)
			}
			break
		}
		if o.Drain != nil && o.Drain.Code != dispatch.DrainSessionReplaced {
			t.Fatalf("drain %+v, want SESSION_REPLACED", o.Drain)
		}
	}
	third.Close()

	// Restart on the same database: the open offer is still there.
	second := dispatchtest.Start(t, dispatchtest.Config{DB: first.DB, Pool: first.Pool, Couriers: first.Couriers, Clock: first.Clock})
	after, err := second.Service.OpenSession(ctx, dispatch.Hello{ResumeCursor: out.Cursor - 1, Epoch: epoch})
	if err != nil {
		t.Fatal(err)
	}
	o := nextOffer(t, ctx, after)
	if o.Offer.Offer.ID != out.Offer.Offer.ID {
		t.Fatalf("after the restart got offer %s, want %s", o.Offer.Offer.ID, out.Offer.Offer.ID)
	}
	r1 := after.Execute(ctx, "accept-1", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.Offer.Offer.ID}})
	r2 := after.Execute(ctx, "accept-1", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.Offer.Offer.ID}})
	if r1.Err != nil || r1.Replayed || r2.Err != nil || !r2.Replayed || r2.Task.State != dispatch.StateAssigned {
		t.Fatalf("accept = %+v, again = %+v; want applied once, then replayed", r1, r2)
	}
	if err := after.Ack(ctx, o.Cursor); err != nil {
		t.Fatal(err)
	}
	after.Close()

	// A reinstalled app (cursor 0, new session) learns its active task from the snapshot.
	reinstalled, err := second.Service.OpenSession(ctx, dispatch.Hello{})
	if err != nil {
		t.Fatal(err)
	}
	defer reinstalled.Close()
	st := reinstalled.Started()
	if len(st.ActiveTasks) != 1 || st.ActiveTasks[0].ID != tk.ID || len(st.OpenOffers) != 0 || st.AckedCursor < o.Cursor {
		t.Fatalf("reinstalled snapshot %+v", st)
	}
}
