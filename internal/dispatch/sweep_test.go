package dispatch_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
	"lastmile/internal/platform/auth"
)

// suspended is the standing of a suspended courier.
var suspended = auth.SubjectState{Roles: []string{auth.RoleCourier}}

// sweepMetrics adds up the account sweeps measured.
type sweepMetrics struct {
	dispatch.NopMetrics
	mu     sync.Mutex
	sweeps int
	total  dispatch.AccountSweep
}

func (m *sweepMetrics) AccountSwept(sw dispatch.AccountSweep) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweeps++
	m.total.Checked += sw.Checked
	m.total.Failed += sw.Failed
	m.total.Barred += sw.Barred
	m.total.Offers += sw.Offers
	m.total.Tasks += sw.Tasks
}

func (m *sweepMetrics) taken() (offers, tasks int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.total.Offers, m.total.Tasks
}

// withWork gives holder (capacity 2) a task they accepted ("held") and an open offer of another
// ("offered"), then adds another courier who could take both. It returns the two tasks and the offer.
func withWork(t *testing.T, sys *dispatchtest.System) (holder, other dispatchtest.Courier, held, offered dispatch.Task, offerID string) {
	t.Helper()
	holder = sys.AddCourier(t, dispatchtest.Berlin, geo.Car, true)
	sys.Couriers.SetCapacity(holder.ID, 2)
	held = create(t, sys, nil)
	first := sys.WaitTask(t, held.ID, "offered to the holder", offeredTo(holder))
	o := first.CurrentOffer()
	if r := sys.Service.Execute(holder.Ctx, holder.ID, "accept", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}}); r.Err != nil {
		t.Fatalf("accept: %+v", r.Err)
	}
	waitFor(t, "the holder's claim", func() bool { return sys.Couriers.Claims()[held.ID] == holder.ID })
	offered = create(t, sys, nil)
	second := sys.WaitTask(t, offered.ID, "offered to the holder", offeredTo(holder))
	offerID = second.CurrentOffer().ID
	other = sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 1500), geo.Car, true)
	sys.Couriers.SetCapacity(other.ID, 2)
	return holder, other, held, offered, offerID
}

// takenBack checks that the holder lost both tasks to the sweep as the live path takes them: the offer
// withdrawn once, the held task released once, each saying why, the holder excluded from both and told
// once of each.
func takenBack(t *testing.T, sys *dispatchtest.System, holder dispatchtest.Courier, held, offered dispatch.Task, offerID string) {
	t.Helper()
	why := "the courier cannot take tasks: their account is suspended or deleted"
	got := sys.WaitTask(t, offered.ID, "withdrawn from the holder", func(x dispatch.Task) bool { return !offeredTo(holder)(x) })
	if o := got.Offer(offerID); o == nil || o.State != dispatch.OfferWithdrawn {
		t.Errorf("the holder's offer is %+v, want withdrawn", o)
	}
	if h, n := withdrawal(got, offerID); n != 1 || h.Actor != dispatch.ActorSystem || h.CourierID != holder.ID || h.Comment != "offer withdrawn: "+why {
		t.Errorf("history of the withdrawal = %+v (%d entries), want one, the system's, naming the holder, %q", h, n, "offer withdrawn: "+why)
	}
	if n := offerClosedDeliveries(t, sys, holder.ID, offerID); n != 1 {
		t.Errorf("offer_closed deliveries of the withdrawn offer = %d, want 1", n)
	}
	got = sys.WaitTask(t, held.ID, "taken back from the holder", func(x dispatch.Task) bool { return x.CourierID != holder.ID })
	released := 0
	for _, h := range got.History {
		if h.State == dispatch.StatePending && h.CourierID == holder.ID {
			released++
			if h.Actor != dispatch.ActorSystem || h.Comment != "released: "+why {
				t.Errorf("history of the release = %+v, want the system's, %q", h, "released: "+why)
			}
		}
	}
	if released != 1 {
		t.Errorf("releases of the held task in the history = %d, want 1", released)
	}
	for _, id := range []string{held.ID, offered.ID} {
		if tk := stored(t, sys, id); !tk.IsExcluded(holder.ID) {
			t.Errorf("task %s does not exclude the holder", id)
		}
	}
	ds, err := sys.Store.Deliveries(context.Background(), holder.ID, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	told := 0
	for _, d := range ds {
		if d.Kind == dispatch.DeliveryTask && d.TaskID == held.ID && d.Reason == dispatch.NoticeReassigned {
			told++
		}
	}
	if told != 1 {
		t.Errorf("REASSIGNED notices of the held task to the holder = %d, want 1", told)
	}
	waitFor(t, "the holder's claim released", func() bool { return sys.Couriers.Claims()[held.ID] == "" })
}

// TestAccountSweepCatchesAMissedChange: a courier's suspension that no replica heard of (the live path
// never ran) is caught by the periodic account sweep: their open offer is withdrawn and the task they
// accepted but did not pick up is taken back, as the live path does, and the sweep's measurement
// counts both. The clock stands still: no deadline passes.
func TestAccountSweepCatchesAMissedChange(t *testing.T) {
	m := &sweepMetrics{}
	sys := dispatchtest.Start(t, dispatchtest.Config{Metrics: m, Options: dispatch.Options{AccountSweep: 100 * time.Millisecond}})
	holder, _, held, offered, offerID := withWork(t, sys)
	sys.Accounts.SetUnheard(holder.UserID, suspended)
	takenBack(t, sys, holder, held, offered, offerID)
	waitFor(t, "the sweep's measurement", func() bool { o, tk := m.taken(); return o == 1 && tk == 1 })
}

// TestAccountSweep: one sweep checks each courier with an open offer or a task not picked up; it takes
// nothing from a courier who may work, counts a check that fails, and takes back what a courier who may
// no longer work has; a second sweep finds nothing left.
func TestAccountSweep(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	ctx := context.Background()
	holder, other, held, offered, offerID := withWork(t, sys)
	if got, want := sys.Service.SweepAccounts(ctx), (dispatch.AccountSweep{Checked: 1}); got != want {
		t.Fatalf("sweep of a courier who may work = %+v, want %+v", got, want)
	}
	sys.Accounts.SetDown(true)
	if got, want := sys.Service.SweepAccounts(ctx), (dispatch.AccountSweep{Failed: 1}); got != want {
		t.Fatalf("sweep while the accounts cannot be read = %+v, want %+v", got, want)
	}
	sys.Accounts.SetDown(false)

	sys.Accounts.SetUnheard(holder.UserID, suspended)
	if got, want := sys.Service.SweepAccounts(ctx), (dispatch.AccountSweep{Checked: 1, Barred: 1, Offers: 1, Tasks: 1}); got != want {
		t.Fatalf("sweep after the holder's suspension = %+v, want %+v", got, want)
	}
	takenBack(t, sys, holder, held, offered, offerID)
	// Both tasks are PENDING again and the other courier is their only candidate: whichever is searched
	// first is offered to them, and the other waits (a courier has one open offer at a time).
	waitFor(t, "one of the two tasks offered to the other courier", func() bool {
		for _, id := range []string{held.ID, offered.ID} {
			if x, err := sys.Store.GetTask(ctx, id); err == nil && offeredTo(other)(x) {
				return true
			}
		}
		return false
	})
	if got, want := sys.Service.SweepAccounts(ctx), (dispatch.AccountSweep{Checked: 1}); got != want {
		t.Fatalf("sweep once the other courier has the offer = %+v, want %+v (the holder has nothing left)", got, want)
	}
}

// TestAccountSweepOfTwoReplicasTakesBackOnce: two replicas on one PostgreSQL database sweep at the same
// time after a suspension neither heard of: the offer is withdrawn and the task taken back once.
func TestAccountSweepOfTwoReplicasTakesBackOnce(t *testing.T) {
	a, b := twoReplicas(t, dispatchtest.Config{})
	holder, _, held, offered, offerID := withWork(t, a)
	a.Accounts.SetUnheard(holder.UserID, suspended)
	var (
		wg     sync.WaitGroup
		sweeps [2]dispatch.AccountSweep
	)
	for i, sys := range []*dispatchtest.System{a, b} {
		wg.Go(func() { sweeps[i] = sys.Service.SweepAccounts(context.Background()) })
	}
	wg.Wait()
	if offers, tasks := sweeps[0].Offers+sweeps[1].Offers, sweeps[0].Tasks+sweeps[1].Tasks; offers != 1 || tasks != 1 {
		t.Errorf("the two sweeps %+v took back %d offers and %d tasks, want 1 and 1", sweeps, offers, tasks)
	}
	takenBack(t, a, holder, held, offered, offerID)
}
