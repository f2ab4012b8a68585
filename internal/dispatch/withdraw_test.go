package dispatch_test

import (
	"context"
	"testing"

	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
	"lastmile/internal/platform/auth"
)

// TestOfferToABarredCourierIsWithdrawnWhenTheSessionEnds: a session that ends because the courier's
// account was suspended, deleted or lost the courier role (as the server ends it on such a change) takes
// the courier's open offer with it: the offer is withdrawn at once, saying why, the courier is told, and
// the task goes to the next candidate without waiting for the offer's deadline (the test's clock stands
// still: it never passes). A session that ends for any other reason leaves the offer open, for the app to
// answer once it reconnects.
func TestOfferToABarredCourierIsWithdrawnWhenTheSessionEnds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state auth.SubjectState
		why   string
	}{
		{"suspended", auth.SubjectState{Roles: []string{auth.RoleCourier}}, "their account is suspended or deleted"},
		{"no longer a courier", auth.SubjectState{Active: true, Roles: []string{auth.RoleCustomer}}, "their account no longer has the courier role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := dispatchtest.Start(t, dispatchtest.Config{})
			first := sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
			second := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 1500), geo.Bicycle, true)
			sess, err := sys.Service.OpenSession(first.Ctx, dispatch.Hello{})
			if err != nil {
				t.Fatal(err)
			}
			tk, err := sys.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), dispatchtest.Request("r1", dispatchtest.Berlin, ""))
			if err != nil {
				t.Fatal(err)
			}
			offeredTo := func(c dispatchtest.Courier) func(dispatch.Task) bool {
				return func(t dispatch.Task) bool { o := t.CurrentOffer(); return o != nil && o.CourierID == c.ID }
			}
			offered := sys.WaitTask(t, tk.ID, "offered to the closest courier", offeredTo(first))
			firstOffer := offered.CurrentOffer().ID

			// The app drops its connection: the offer waits for it.
			sess.Close()
			if got, err := sys.Service.GetTask(dispatchtest.Dispatcher(), tk.ID, dispatch.ViewFull); err != nil || !offeredTo(first)(got) {
				t.Fatalf("after a session of an active courier ended, the task is %+v (%v), want still offered to them", got, err)
			}

			// The app comes back; the account changes, which ends the session.
			sess, err = sys.Service.OpenSession(first.Ctx, dispatch.Hello{})
			if err != nil {
				t.Fatal(err)
			}
			sys.Accounts.Set(first.UserID, tc.state)
			sess.Close()
			got := sys.WaitTask(t, tk.ID, "offered to the next courier", offeredTo(second))
			o := got.Offer(firstOffer)
			if o == nil || o.State != dispatch.OfferWithdrawn {
				t.Fatalf("the first offer is %+v, want withdrawn", o)
			}
			var withdrawal *dispatch.StateChange
			for i := range got.History {
				if h := got.History[i]; h.OfferID == firstOffer && h.State == dispatch.StatePending {
					withdrawal = &got.History[i]
				}
			}
			if want := "offer withdrawn: the courier cannot take tasks: " + tc.why; withdrawal == nil || withdrawal.Actor != dispatch.ActorSystem ||
				withdrawal.CourierID != first.ID || withdrawal.Comment != want {
				t.Errorf("history of the withdrawal = %+v, want the system's, naming the courier, %q", withdrawal, want)
			}
			ds, err := sys.Store.Deliveries(context.Background(), first.ID, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			told := false
			for _, d := range ds {
				told = told || d.Kind == dispatch.DeliveryOfferClosed && d.OfferID == firstOffer
			}
			if !told {
				t.Errorf("deliveries to the first courier %+v, want the withdrawn offer's offer_closed", ds)
			}
		})
	}
}
