package dispatch_test

import (
	"context"
	"sync"
	"testing"

	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/dispatch/postgres"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/database/databasetest"
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
			h, _ := withdrawal(got, firstOffer)
			if want := "offer withdrawn: the courier cannot take tasks: " + tc.why; h == nil || h.Actor != dispatch.ActorSystem ||
				h.CourierID != first.ID || h.Comment != want {
				t.Errorf("history of the withdrawal = %+v, want the system's, naming the courier, %q", h, want)
			}
			if n := offerClosedDeliveries(t, sys, first.ID, firstOffer); n == 0 {
				t.Errorf("offer_closed deliveries of the withdrawn offer to the first courier = 0, want at least 1")
			}
		})
	}
}

// withdrawal returns the history entry that took offer offerID back (PENDING, naming it), nil when none,
// and how many such entries there are.
func withdrawal(t dispatch.Task, offerID string) (*dispatch.StateChange, int) {
	var found *dispatch.StateChange
	n := 0
	for i := range t.History {
		if h := t.History[i]; h.OfferID == offerID && h.State == dispatch.StatePending {
			found = &t.History[i]
			n++
		}
	}
	return found, n
}

// offerClosedDeliveries counts the offer_closed deliveries of offerID to courierID.
func offerClosedDeliveries(t *testing.T, sys *dispatchtest.System, courierID, offerID string) int {
	t.Helper()
	ds, err := sys.Store.Deliveries(context.Background(), courierID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, d := range ds {
		if d.Kind == dispatch.DeliveryOfferClosed && d.OfferID == offerID {
			n++
		}
	}
	return n
}

// TestOfferIsWithdrawnWhenTheAccountChangesWithoutSession: a courier whose app is closed (no session on
// any replica) while an offer waits for their answer, and whose account is then suspended or deleted or
// loses the courier role, has the offer withdrawn at once (the test's clock stands still: the deadline
// never passes), saying why, is told, and is never offered the task again; the task goes to the next
// candidate. The change of another user, or one that leaves the courier able to work, changes nothing.
func TestOfferIsWithdrawnWhenTheAccountChangesWithoutSession(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state auth.SubjectState
		why   string
	}{
		{"suspended", auth.SubjectState{Roles: []string{auth.RoleCourier}}, "their account is suspended or deleted"},
		{"deleted", auth.SubjectState{}, "their account is suspended or deleted"},
		{"no longer a courier", auth.SubjectState{Active: true, Roles: []string{auth.RoleDispatcher}}, "their account no longer has the courier role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := dispatchtest.Start(t, dispatchtest.Config{})
			first := sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, true)
			tk, firstOffer := offeredToFirst(t, sys, sys, first)
			// The app closed: the courier holds no session any more.
			sys.Disconnect(t, first.ID)

			// Changes that leave the courier able to work, and another user's, change nothing.
			sys.Accounts.Set(first.UserID, auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}})
			sys.Accounts.Set(uuid.NewString(), auth.SubjectState{})
			second := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 1500), geo.Bicycle, true)
			sys.Accounts.Set(tk.CustomerID, auth.SubjectState{Roles: []string{auth.RoleCustomer}})
			// The change then comes after those: once it acted, they were done.
			sys.Accounts.Set(first.UserID, tc.state)
			got := sys.WaitTask(t, tk.ID, "offered to the next courier", offeredTo(second))
			if o := got.Offer(firstOffer); o == nil || o.State != dispatch.OfferWithdrawn {
				t.Fatalf("the first offer is %+v, want withdrawn", o)
			}
			h, n := withdrawal(got, firstOffer)
			if want := "offer withdrawn: the courier cannot take tasks: " + tc.why; n != 1 || h.Actor != dispatch.ActorSystem ||
				h.CourierID != first.ID || h.Comment != want {
				t.Errorf("history of the withdrawal = %+v (%d entries), want one, the system's, naming the courier, %q", h, n, want)
			}
			if stored, err := sys.Store.GetTask(context.Background(), tk.ID); err != nil || !stored.IsExcluded(first.ID) {
				t.Errorf("excluded %+v (%v), want the first courier", stored.Excluded, err)
			}
			if n := offerClosedDeliveries(t, sys, first.ID, firstOffer); n != 1 {
				t.Errorf("offer_closed deliveries of the withdrawn offer = %d, want 1", n)
			}
		})
	}
}

// TestOfferWithdrawnOnceByTwoReplicas: two replicas on one PostgreSQL database both hear of a courier's
// suspension (each follows the account changes); the offer is withdrawn once, with one history entry and
// one offer_closed delivery, and the task goes to the next courier.
func TestOfferWithdrawnOnceByTwoReplicas(t *testing.T) {
	a, b := twoReplicas(t, dispatchtest.Config{})
	first := a.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, true)
	tk, firstOffer := offeredToFirst(t, b, a, first)
	a.Disconnect(t, first.ID)
	second := b.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 1500), geo.Bicycle, true)

	a.Accounts.Set(first.UserID, auth.SubjectState{Roles: []string{auth.RoleCourier}})
	got := b.WaitTask(t, tk.ID, "offered to the next courier", offeredTo(second))
	if _, n := withdrawal(got, firstOffer); n != 1 {
		t.Errorf("withdrawals of the first offer in the history = %d, want 1: %+v", n, got.History)
	}
	if n := offerClosedDeliveries(t, a, first.ID, firstOffer); n != 1 {
		t.Errorf("offer_closed deliveries of the withdrawn offer = %d, want 1", n)
	}
}

// offeredTo says whether a task is offered to c.
func offeredTo(c dispatchtest.Courier) func(dispatch.Task) bool {
	return func(t dispatch.Task) bool { o := t.CurrentOffer(); return o != nil && o.CourierID == c.ID }
}

// twoReplicas starts two replicas, a and b, of cfg on one PostgreSQL database, sharing the courier service,
// the clock and the accounts.
func twoReplicas(t *testing.T, cfg dispatchtest.Config) (a, b *dispatchtest.System) {
	t.Helper()
	cfg.Pool = databasetest.Postgres(t, postgres.Schema)
	cfg.Options.Replica = "replica-a"
	a = dispatchtest.Start(t, cfg)
	cfg.Couriers, cfg.Clock, cfg.Accounts = a.Couriers, a.Clock, a.Accounts
	cfg.Options.Replica = "replica-b"
	return a, dispatchtest.Start(t, cfg)
}

// offeredToFirst creates a task at dispatchtest.Berlin through replica create and waits, on replica watch,
// for it to be offered to first; it returns the task as created and the offer's ID.
func offeredToFirst(t *testing.T, create, watch *dispatchtest.System, first dispatchtest.Courier) (dispatch.Task, string) {
	t.Helper()
	tk, err := create.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), dispatchtest.Request("r1", dispatchtest.Berlin, ""))
	if err != nil {
		t.Fatal(err)
	}
	offered := watch.WaitTask(t, tk.ID, "offered to the first courier", offeredTo(first))
	return tk, offered.CurrentOffer().ID
}

// TestBarredCourierLosesTheTasksNotPickedUp: when a courier's account is suspended, a task they hold and
// did not pick up goes back to PENDING at once (history: the system's, naming the courier and why), their
// claim on it is released, they are told (a REASSIGNED notice), and the task is offered to someone else,
// never to them. A task they picked up stays theirs (the parcel is with them): their overview shows it,
// and a dispatcher may give it to another courier, which AssignTask refuses while its courier may work.
func TestBarredCourierLosesTheTasksNotPickedUp(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	holder := sys.AddCourier(t, dispatchtest.Berlin, geo.Car, true)
	sys.Couriers.SetCapacity(holder.ID, 2)
	take := func(request string) dispatch.Task {
		t.Helper()
		tk, err := sys.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), dispatchtest.Request(request, dispatchtest.Berlin, ""))
		if err != nil {
			t.Fatal(err)
		}
		offered := sys.WaitTask(t, tk.ID, "offered to the holder", offeredTo(holder))
		o := offered.CurrentOffer()
		if r := sys.Service.Execute(holder.Ctx, holder.ID, "accept-"+request, dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}}); r.Err != nil {
			t.Fatalf("accept %s: %+v", request, r.Err)
		}
		waitFor(t, "the holder's claim on "+request, func() bool { return sys.Couriers.Claims()[tk.ID] == holder.ID })
		return tk
	}
	carried := take("carried")
	if r := sys.Service.Execute(holder.Ctx, holder.ID, "pickup", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: carried.ID}}); r.Err != nil {
		t.Fatalf("pickup: %+v", r.Err)
	}
	waiting := take("waiting")
	other := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 1500), geo.Car, true)
	sys.Couriers.SetCapacity(other.ID, 2)
	_, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: carried.ID, CourierID: other.ID})
	apperrtest.WantCode(t, "AssignTask of a task picked up by a courier who may work", err, apperr.FailedPrecondition)
	before, err := sys.Service.GetTask(dispatchtest.Dispatcher(), carried.ID, dispatch.ViewFull)
	if err != nil {
		t.Fatal(err)
	}

	sys.Accounts.Set(holder.UserID, auth.SubjectState{Roles: []string{auth.RoleCourier}})
	why := "the courier cannot take tasks: their account is suspended or deleted"
	got := sys.WaitTask(t, waiting.ID, "offered to the other courier", offeredTo(other))
	var released *dispatch.StateChange
	for i := range got.History {
		if h := got.History[i]; h.State == dispatch.StatePending && h.CourierID == holder.ID {
			released = &got.History[i]
		}
	}
	if released == nil || released.Actor != dispatch.ActorSystem || released.Comment != "released: "+why {
		t.Errorf("history of the release = %+v, want the system's, naming the holder, %q", released, "released: "+why)
	}
	if stored, err := sys.Store.GetTask(context.Background(), waiting.ID); err != nil || !stored.IsExcluded(holder.ID) {
		t.Errorf("excluded %+v (%v), want the holder", stored.Excluded, err)
	}
	waitFor(t, "the holder's claim on the waiting task released", func() bool { return sys.Couriers.Claims()[waiting.ID] == "" })
	ds, err := sys.Store.Deliveries(context.Background(), holder.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	told := 0
	for _, d := range ds {
		if d.Kind == dispatch.DeliveryTask && d.TaskID == waiting.ID && d.Reason == dispatch.NoticeReassigned {
			told++
		}
	}
	if told != 1 {
		t.Errorf("REASSIGNED notices of the waiting task to the holder = %d, want 1", told)
	}

	// The picked-up task stays with the holder, untouched, and shows in their overview.
	kept, err := sys.Service.GetTask(dispatchtest.Dispatcher(), carried.ID, dispatch.ViewFull)
	if err != nil || kept.State != dispatch.StatePickedUp || kept.CourierID != holder.ID || kept.Version != before.Version {
		t.Fatalf("picked-up task = %s held by %s at version %d (%v), want %s held by %s at version %d",
			kept.State, kept.CourierID, kept.Version, err, dispatch.StatePickedUp, holder.ID, before.Version)
	}
	ov, err := sys.Service.CourierOverview(dispatchtest.Dispatcher(), holder.ID)
	if err != nil || len(ov.Tasks) != 1 || ov.Tasks[0].ID != carried.ID || len(ov.Offers) != 0 {
		t.Fatalf("the holder's overview = %+v (%v), want the picked-up task alone", ov, err)
	}

	// The dispatcher, having recovered the parcel, gives it to another courier, who collects it again.
	moved, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: carried.ID, CourierID: other.ID, Comment: "parcel recovered at the depot"})
	if err != nil || moved.State != dispatch.StateAssigned || moved.CourierID != other.ID || !moved.PickupTime.IsZero() {
		t.Fatalf("AssignTask of the stranded task = %s held by %s, picked up at %v (%v); want %s held by %s, not picked up",
			moved.State, moved.CourierID, moved.PickupTime, err, dispatch.StateAssigned, other.ID)
	}
	waitFor(t, "the claim on the stranded task moved", func() bool { return sys.Couriers.Claims()[carried.ID] == other.ID })
	if r := sys.Service.Execute(other.Ctx, other.ID, "pickup-again", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: carried.ID}}); r.Err != nil || r.Task.State != dispatch.StatePickedUp {
		t.Fatalf("the new holder's pickup: %+v", r)
	}
}

// offerMetrics counts the offers closed, by outcome.
type offerMetrics struct {
	dispatch.NopMetrics
	mu     sync.Mutex
	closed map[dispatch.OfferState]int
}

func (m *offerMetrics) OfferAnswered(o dispatch.OfferState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed[o]++
}

func (m *offerMetrics) count(o dispatch.OfferState) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed[o]
}

// TestWithdrawnOffersAreCounted: every offer withdrawn counts in the offers-closed measurement
// (lastmile_dispatch_offers_closed_total{outcome="withdrawn"}), whichever change withdrew it: a
// cancellation, a dispatcher's assignment, the courier's account suspended.
func TestWithdrawnOffersAreCounted(t *testing.T) {
	m := &offerMetrics{closed: map[dispatch.OfferState]int{}}
	sys := dispatchtest.Start(t, dispatchtest.Config{Metrics: m})
	c := sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, true)
	other := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 50_000), geo.Bicycle, false) // out of reach
	offer := func(request string) dispatch.Task {
		t.Helper()
		tk, err := sys.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), dispatchtest.Request(request, dispatchtest.Berlin, ""))
		if err != nil {
			t.Fatal(err)
		}
		return sys.WaitTask(t, tk.ID, "offered", offeredTo(c))
	}
	if _, err := sys.Service.CancelTask(dispatchtest.Dispatcher(), dispatch.CancelRequest{ID: offer("cancelled").ID, Reason: dispatch.CancelOther}); err != nil {
		t.Fatal(err)
	}
	if n := m.count(dispatch.OfferWithdrawn); n != 1 {
		t.Errorf("withdrawn after a cancellation = %d, want 1", n)
	}
	if _, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: offer("assigned").ID, CourierID: other.ID}); err != nil {
		t.Fatal(err)
	}
	if n := m.count(dispatch.OfferWithdrawn); n != 2 {
		t.Errorf("withdrawn after an assignment = %d, want 2", n)
	}
	suspended := offer("suspended")
	sys.Accounts.Set(c.UserID, auth.SubjectState{Roles: []string{auth.RoleCourier}})
	sys.WaitTask(t, suspended.ID, "withdrawn", dispatchtest.InState(dispatch.StatePending))
	waitFor(t, "the withdrawal counted", func() bool { return m.count(dispatch.OfferWithdrawn) == 3 })
	if n := m.count(dispatch.OfferExpired) + m.count(dispatch.OfferDeclined) + m.count(dispatch.OfferAccepted); n != 0 {
		t.Errorf("offers closed otherwise = %d, want 0", n)
	}
}
