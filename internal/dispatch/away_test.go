package dispatch_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
	"lastmile/internal/platform/telemetry/logtest"
)

// TestOfferIsWithdrawnWhenTheCourierTurnsAway: a courier who goes OFFLINE or ON_BREAK (the courier
// service's status) while an offer waits for their answer has it withdrawn at once (the test's clock
// stands still: the deadline never passes), saying why, and is told; the task goes to the next
// candidate. The courier is not excluded from the task: they did not refuse it.
func TestOfferIsWithdrawnWhenTheCourierTurnsAway(t *testing.T) {
	for _, tc := range []struct {
		status dispatch.CourierStatus
		why    string
	}{
		{dispatch.CourierOffline, "offer withdrawn: the courier went offline"},
		{dispatch.CourierOnBreak, "offer withdrawn: the courier is on a break"},
	} {
		t.Run(string(tc.status), func(t *testing.T) {
			sys := dispatchtest.Start(t, dispatchtest.Config{})
			first := sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, true)
			tk, firstOffer := offeredToFirst(t, sys, sys, first)
			second := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 1500), geo.Bicycle, true)

			sys.Couriers.SetStatus(first.ID, tc.status)
			got := sys.WaitTask(t, tk.ID, "offered to the next courier", offeredTo(second))
			if o := got.Offer(firstOffer); o == nil || o.State != dispatch.OfferWithdrawn {
				t.Fatalf("the first offer is %+v, want withdrawn", o)
			}
			h, n := withdrawal(got, firstOffer)
			if n != 1 || h.Actor != dispatch.ActorSystem || h.CourierID != first.ID || h.Comment != tc.why {
				t.Errorf("history of the withdrawal = %+v (%d entries), want one, the system's, naming the courier, %q", h, n, tc.why)
			}
			if stored := stored(t, sys, tk.ID); stored.IsExcluded(first.ID) {
				t.Errorf("excluded %+v, want not the first courier", stored.Excluded)
			}
			if n := offerClosedDeliveries(t, sys, first.ID, firstOffer); n != 1 {
				t.Errorf("offer_closed deliveries of the withdrawn offer = %d, want 1", n)
			}
		})
	}
}

// TestCourierBackFromABreakIsOfferedTheTaskAgain: a courier who goes on a break with an offer open loses
// the offer; nobody else can take the task, so it waits; once the courier is AVAILABLE again the task is
// offered to them again, at once (a new offer; the clock never moves).
func TestCourierBackFromABreakIsOfferedTheTaskAgain(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	tk := create(t, sys, nil)
	_, first := offered(t, sys, tk.ID)
	if first.CourierID != a.ID {
		t.Fatalf("first offer to %s, want %s", first.CourierID, a.ID)
	}
	sys.Couriers.SetStatus(a.ID, dispatch.CourierOnBreak)
	waitingLater(t, sys, tk.ID)
	if got := stored(t, sys, tk.ID); got.Offer(first.ID) == nil || got.Offer(first.ID).State != dispatch.OfferWithdrawn {
		t.Fatalf("the first offer is %+v, want withdrawn", got.Offer(first.ID))
	}

	sys.Couriers.SetStatus(a.ID, dispatch.CourierAvailable)
	offeredNow(t, sys, tk.ID, a.ID)
	if _, again := offered(t, sys, tk.ID); again.ID == first.ID {
		t.Fatalf("the task's open offer is the withdrawn one, %s", again.ID)
	}
}

// TestAwayCourierOfferWithdrawnOnceByTwoReplicas: two replicas on one PostgreSQL database both follow
// the courier stream and hear the courier go on a break; the offer is withdrawn once, with one history
// entry and one offer_closed delivery, and the task goes to the next courier.
func TestAwayCourierOfferWithdrawnOnceByTwoReplicas(t *testing.T) {
	a, b := twoReplicas(t, dispatchtest.Config{})
	first := a.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, true)
	tk, firstOffer := offeredToFirst(t, b, a, first)
	second := b.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 1500), geo.Bicycle, true)
	waitFor(t, "both replicas follow the courier stream", func() bool { return a.Couriers.Calls("WatchCouriers") >= 2 })
	na, nb := a.Service.FollowedEvents(), b.Service.FollowedEvents()

	a.Couriers.SetStatus(first.ID, dispatch.CourierOnBreak)
	b.WaitTask(t, tk.ID, "offered to the next courier", offeredTo(second))
	waitFollowed(t, a, na+1)
	waitFollowed(t, b, nb+1)
	got := stored(t, a, tk.ID)
	if _, n := withdrawal(got, firstOffer); n != 1 {
		t.Errorf("withdrawals of the first offer in the history = %d, want 1: %+v", n, got.History)
	}
	if n := offerClosedDeliveries(t, a, first.ID, firstOffer); n != 1 {
		t.Errorf("offer_closed deliveries of the withdrawn offer = %d, want 1", n)
	}
	if n := len(got.Offers); n != 2 {
		t.Errorf("offers of the task = %d, want 2 (the withdrawn one and the next courier's)", n)
	}
}

// TestOfferStaysWhenTheCourierIsBackBeforeTheEventIsHandled: the event that a courier went on a break
// reaches a replica after the courier is AVAILABLE again (a lagging stream): the replica asks the
// courier service, and the offer stays open.
func TestOfferStaysWhenTheCourierIsBackBeforeTheEventIsHandled(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	tk := create(t, sys, nil)
	before, o := offered(t, sys, tk.ID)
	if o.CourierID != a.ID {
		t.Fatalf("first offer to %s, want %s", o.CourierID, a.ID)
	}
	sys.Service.CourierAway(context.Background(), dispatch.CourierInfo{ID: a.ID, Status: dispatch.CourierOnBreak})
	if got := stored(t, sys, tk.ID); got.Version != before.Version || got.CurrentOffer() == nil || got.CurrentOffer().ID != o.ID {
		t.Fatalf("after a late break event of an available courier the task is %s at version %d, want still offered (version %d)", got.State, got.Version, before.Version)
	}
}

// TestAStopCuttingAWithdrawalShortLogsNoWarning: when the process stops while it withdraws an offer (the
// demo's couriers all go OFFLINE as it stops, with offers open), the withdrawal's context ends and its
// write fails; that is the stop, not a fault, so it logs no warning (a clean stop logs none), and the
// offer, still open, waits for its deadline as an offer whose withdrawal never ran does.
func TestAStopCuttingAWithdrawalShortLogsNoWarning(t *testing.T) {
	var logs logtest.Buffer
	sys := dispatchtest.Start(t, dispatchtest.Config{Options: dispatch.Options{Logger: slog.New(slog.NewJSONHandler(&logs, nil))}})
	first := sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, true)
	tk, offerID := offeredToFirst(t, sys, sys, first)
	offered, err := sys.Store.OfferedTasks(context.Background(), first.ID)
	if err != nil || len(offered) != 1 {
		t.Fatalf("OfferedTasks = %d tasks, %v; want the one offered", len(offered), err)
	}
	stopped, stop := context.WithCancel(context.Background())
	stop()
	if n := sys.Service.WithdrawTasksOffers(stopped, offered, first.ID, "the courier went offline"); n != 0 {
		t.Errorf("withdrawn under a stopped context = %d, want 0", n)
	}
	if strings.Contains(logs.String(), `"level":"WARN"`) {
		t.Errorf("a withdrawal cut short by the stop logged a warning:\n%s", logs.String())
	}
	if got := stored(t, sys, tk.ID); got.CurrentOffer() == nil || got.CurrentOffer().ID != offerID {
		t.Errorf("the task's open offer is %+v, want %s still open", got.CurrentOffer(), offerID)
	}
}
