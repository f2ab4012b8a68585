package dispatch_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
)

// workOnce works one batch of the due tasks and checks how many it leased.
func workOnce(t *testing.T, sys *dispatchtest.System, want int) {
	t.Helper()
	n, err := sys.Service.WorkOnce(context.Background())
	if err != nil || n != want {
		t.Fatalf("WorkOnce = %d, %v; want %d tasks leased", n, err, want)
	}
}

func stored(t *testing.T, sys *dispatchtest.System, id string) dispatch.Task {
	t.Helper()
	tk, err := sys.Store.GetTask(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// createOneSecondApart creates n tasks at the Berlin center, one clock second apart (so that the batch
// works them in creation order), and leaves the clock one second after the last.
func createOneSecondApart(t *testing.T, sys *dispatchtest.System, n int) []dispatch.Task {
	t.Helper()
	out := make([]dispatch.Task, n)
	for i := range out {
		out[i] = create(t, sys, nil)
		sys.Clock.Advance(time.Second)
	}
	return out
}

// wantWaiting checks that tk waits (PENDING, searched once, due after the first back-off) with a
// decision that excluded exactly the couriers in excluded for an open offer.
func wantWaiting(t *testing.T, sys *dispatchtest.System, tk dispatch.Task, excluded ...string) {
	t.Helper()
	got := stored(t, sys, tk.ID)
	if got.State != dispatch.StatePending || got.Searches != 1 || !got.DueTime.Equal(sys.Clock.Now().Add(dispatch.DefaultRetryBackoff)) {
		t.Fatalf("task %s = %s, %d searches, due %v; want PENDING, 1 search, due %v", tk.ID, got.State, got.Searches, got.DueTime, sys.Clock.Now().Add(dispatch.DefaultRetryBackoff))
	}
	ds, err := sys.Store.Decisions(context.Background(), tk.ID, 10)
	if err != nil || len(ds) != 1 {
		t.Fatalf("decisions of %s = %d, %v; want 1", tk.ID, len(ds), err)
	}
	if ds[0].Outcome != dispatch.OutcomeAllExcluded || len(ds[0].Candidates) != len(excluded) {
		t.Fatalf("decision of %s = %s with %d candidates, want %s with %d", tk.ID, ds[0].Outcome, len(ds[0].Candidates), dispatch.OutcomeAllExcluded, len(excluded))
	}
	for _, c := range ds[0].Candidates {
		if c.Excluded != dispatch.ExcludedOtherOffer {
			t.Fatalf("candidate %s of %s excluded for %q, want %q", c.CourierID, tk.ID, c.Excluded, dispatch.ExcludedOtherOffer)
		}
	}
}

func wantOffered(t *testing.T, sys *dispatchtest.System, tk dispatch.Task, courierID string) dispatch.Offer {
	t.Helper()
	got := stored(t, sys, tk.ID)
	o := got.CurrentOffer()
	if got.State != dispatch.StateOffered || o == nil || o.CourierID != courierID {
		t.Fatalf("task %s = %s, offer %+v; want OFFERED to %s", tk.ID, got.State, o, courierID)
	}
	return *o
}

// A batch with more tasks than couriers: the oldest task goes to the nearest courier, the next to the
// other one (the nearest has the batch's first offer open), the third waits, its decision excluding
// both for their open offers. The batch searched once per task up front (and the third widened its
// search alone), asked route once for every courier and pickup, and wrote one offer to each courier.
func TestBatchWithMoreTasksThanCouriers(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	near := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 200), geo.Bicycle, true)
	far := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 900), geo.Bicycle, true)
	tasks := createOneSecondApart(t, sys, 3)
	workOnce(t, sys, 3)

	wantOffered(t, sys, tasks[0], near.ID)
	wantOffered(t, sys, tasks[1], far.ID)
	wantWaiting(t, sys, tasks[2], near.ID, far.ID)
	// 3 first searches, then the third task's widenings: 6 km, 12 km, 15 km.
	if got := sys.Couriers.Calls("FindNearby"); got != 6 {
		t.Errorf("FindNearby calls = %d, want 6", got)
	}
	if m, one := sys.Routes.MatricesCalls(), sys.Routes.Calls(); m != 1 || one != 0 {
		t.Errorf("route calls = %d Matrices and %d Matrix, want 1 and 0", m, one)
	}
	for _, c := range []dispatchtest.Courier{near, far} {
		ds, err := sys.Store.Deliveries(context.Background(), c.ID, 0, 10)
		if err != nil || len(ds) != 1 || ds[0].Kind != dispatch.DeliveryOffer {
			t.Errorf("deliveries of %s = %+v, %v; want one offer", c.ID, ds, err)
		}
	}
}

// A courier with room for five tasks gets one offer from a batch of four (one open offer at a time);
// once it accepted, the next batch offers it the oldest of the others, whose ETA now counts the
// accepted task's work.
func TestBatchCountsItsOwnOffers(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	c := dispatchtest.Courier{ID: uuid.NewString(), UserID: uuid.NewString()}
	c.Ctx = dispatchtest.CourierUser(c.UserID)
	at := dispatchtest.Near(dispatchtest.Berlin, 300)
	sys.Couriers.Add(c.UserID, dispatch.CourierInfo{ID: c.ID, DisplayName: "roomy", Mode: geo.Bicycle, Capacity: 5}, &at)
	sys.Connect(t, c.ID)
	tasks := createOneSecondApart(t, sys, 4)
	workOnce(t, sys, 4)

	o := wantOffered(t, sys, tasks[0], c.ID)
	for _, tk := range tasks[1:] {
		wantWaiting(t, sys, tk, c.ID)
	}
	res := sys.Service.Execute(c.Ctx, c.ID, "accept-1", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}})
	if res.Err != nil || res.Task == nil || res.Task.State != dispatch.StateAssigned {
		t.Fatalf("accept = %+v", res)
	}
	waitFor(t, "the claim", func() bool { return sys.Couriers.Claims()[tasks[0].ID] == c.ID })

	sys.Clock.Advance(dispatch.DefaultRetryBackoff)
	workOnce(t, sys, 3)
	second := wantOffered(t, sys, tasks[1], c.ID)
	if second.PickupETA <= o.PickupETA {
		t.Errorf("second offer's pickup ETA %v, want more than the first's %v (the courier holds a task)", second.PickupETA, o.PickupETA)
	}
	for _, tk := range tasks[2:] {
		if got := stored(t, sys, tk.ID); got.State != dispatch.StatePending || got.Searches != 2 {
			t.Errorf("task %s = %s after %d searches, want PENDING after 2", tk.ID, got.State, got.Searches)
		}
	}
}

// A task that changed after the batch read it (here: cancelled) fails only its own write: the batch's
// other offers are committed, the courier chosen for it is told nothing, and the cancelled task stays
// cancelled.
func TestBatchWriteFailureKeepsTheOthers(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	var cs []dispatchtest.Courier
	for _, m := range []float64{100, 500, 900} {
		cs = append(cs, sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, m), geo.Bicycle, true))
	}
	tasks := createOneSecondApart(t, sys, 3)
	read := make([]dispatch.Task, len(tasks))
	for i, tk := range tasks {
		read[i] = stored(t, sys, tk.ID)
	}
	cancelled, err := sys.Service.CancelTask(dispatchtest.Dispatcher(), dispatch.CancelRequest{ID: tasks[1].ID, Reason: dispatch.CancelOther})
	if err != nil {
		t.Fatal(err)
	}
	sys.Service.AssignBatch(context.Background(), read)

	wantOffered(t, sys, tasks[0], cs[0].ID)
	wantOffered(t, sys, tasks[2], cs[2].ID) // the second courier was the cancelled task's choice
	if got := stored(t, sys, tasks[1].ID); got.State != dispatch.StateCancelled || got.Version != cancelled.Version || len(got.Offers) != 0 {
		t.Errorf("cancelled task = %s version %d with %d offers, want CANCELLED version %d with none", got.State, got.Version, len(got.Offers), cancelled.Version)
	}
	if ds, err := sys.Store.Decisions(context.Background(), tasks[1].ID, 10); err != nil || len(ds) != 0 {
		t.Errorf("decisions of the cancelled task = %d, %v; want none written", len(ds), err)
	}
	for i, want := range []int{1, 0, 1} {
		ds, err := sys.Store.Deliveries(context.Background(), cs[i].ID, 0, 10)
		if err != nil || len(ds) != want {
			t.Errorf("deliveries of courier %d = %+v, %v; want %d", i, ds, err, want)
		}
	}
}

// Two batches working at once on one replica never offer one courier two tasks: whichever reserves the
// courier first offers it its task, the other's task waits.
func TestConcurrentBatchesOfferACourierOnce(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	c := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	tasks := createOneSecondApart(t, sys, 2)
	var wg sync.WaitGroup
	for _, tk := range tasks {
		read := stored(t, sys, tk.ID)
		wg.Add(1)
		go func() {
			defer wg.Done()
			sys.Service.AssignBatch(context.Background(), []dispatch.Task{read})
		}()
	}
	wg.Wait()
	states := map[dispatch.State]int{}
	for _, tk := range tasks {
		states[stored(t, sys, tk.ID).State]++
	}
	if states[dispatch.StateOffered] != 1 || states[dispatch.StatePending] != 1 {
		t.Errorf("task states %v, want one OFFERED and one PENDING", states)
	}
	ds, err := sys.Store.Deliveries(context.Background(), c.ID, 0, 10)
	if err != nil || len(ds) != 1 || ds[0].Kind != dispatch.DeliveryOffer {
		t.Errorf("deliveries of the courier = %+v, %v; want one offer", ds, err)
	}
}

// A task created on this replica is searched for while the work loop leases it (its searches, reads
// and matrix start beside the lease), and that prefetch is what the decision uses: one search and one
// matrix per task, as when the prefetch follows the lease, and each offer goes to the nearest courier
// without an open offer.
func TestCreatedTaskIsPrefetchedOnceBesideItsLease(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	var couriers []dispatchtest.Courier
	for _, m := range []float64{200, 500, 900} {
		couriers = append(couriers, sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, m), geo.Bicycle, true))
	}
	for i, c := range couriers {
		tk := create(t, sys, nil)
		if _, o := offered(t, sys, tk.ID); o.CourierID != c.ID {
			t.Fatalf("task %d offered to %s, want %s", i, o.CourierID, c.ID)
		}
		if got := sys.Couriers.Calls("FindNearby"); got != i+1 {
			t.Errorf("FindNearby calls after %d tasks = %d, want %d", i+1, got, i+1)
		}
		if m, one := sys.Routes.MatricesCalls(), sys.Routes.Calls(); m != i+1 || one != 0 {
			t.Errorf("route calls after %d tasks = %d Matrices and %d Matrix, want %d and 0", i+1, m, one, i+1)
		}
	}
}

// A courier whose reservation another batch of this replica still holds counts as having an open offer
// (that batch's offer may be on its way), but the store may already know better: the offer it became
// may have been answered while that batch's goroutine had yet to end it. The task that found nobody else
// waits for the back-off and is not searched again while the reservation stands (the loop turns without
// leasing it), but the end of the reservation makes it due and kicks the work loop: the task is then
// offered to the courier at the same instant.
func TestContendedTaskWaitsForTheReservationsEnd(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	c := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	end := sys.Service.Reserve(c.ID)
	tk := create(t, sys, nil)
	sys.Service.Kicked() // CreateTask's
	workOnce(t, sys, 1)

	now := sys.Clock.Now()
	if got := stored(t, sys, tk.ID); got.State != dispatch.StatePending || got.Searches != 1 || !got.DueTime.Equal(now.Add(dispatch.DefaultRetryBackoff)) {
		t.Fatalf("task = %s, %d searches, due %v; want PENDING, 1 search, due after the back-off (%v)", got.State, got.Searches, got.DueTime, now.Add(dispatch.DefaultRetryBackoff))
	}
	ds, err := sys.Store.Decisions(context.Background(), tk.ID, 10)
	if err != nil || len(ds) != 1 || ds[0].Outcome != dispatch.OutcomeAllExcluded || len(ds[0].Candidates) != 1 || ds[0].Candidates[0].Excluded != dispatch.ExcludedOtherOffer {
		t.Fatalf("decisions = %+v, %v; want one, %s, the courier excluded for %s", ds, err, dispatch.OutcomeAllExcluded, dispatch.ExcludedOtherOffer)
	}
	for range 3 { // the loop turns (polls, other kicks) while the reservation stands
		workOnce(t, sys, 0)
	}
	if sys.Service.Kicked() {
		t.Fatal("the loop was kicked while the other batch still holds the courier")
	}
	end()
	if !sys.Service.Kicked() {
		t.Fatal("the end of the reservation the task waited for did not kick the loop")
	}
	if got := stored(t, sys, tk.ID); !got.DueTime.Equal(now) {
		t.Fatalf("task due %v after the reservation ended, want now (%v)", got.DueTime, now)
	}
	workOnce(t, sys, 1)
	wantOffered(t, sys, tk, c.ID)
}

// A contended task whose reservations all ended before its batch unleased it (so that no end of a
// reservation will wake it) is made due at once by its own batch, which kicks the loop.
func TestContendedTaskWhoseReservationEndedMeanwhileIsDue(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	tk := create(t, sys, nil)
	sys.Service.Kicked()
	workOnce(t, sys, 1) // no courier at all: the back-off
	if got := stored(t, sys, tk.ID); !got.DueTime.After(sys.Clock.Now()) {
		t.Fatalf("task due %v, want after now", got.DueTime)
	}
	sys.Service.WakeContended(tk.ID, "a-courier-nobody-reserves")
	if got := stored(t, sys, tk.ID); !got.DueTime.Equal(sys.Clock.Now()) {
		t.Fatalf("task due %v, want now (%v)", got.DueTime, sys.Clock.Now())
	}
	if !sys.Service.Kicked() {
		t.Fatal("the loop was not kicked for the task due again")
	}
}

// A task that found no courier with nobody reserved by another batch waits for the back-off, as always,
// and nothing kicks the loop for it.
func TestUncontendedTaskWaitsForTheBackOff(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	tk := create(t, sys, nil)
	sys.Service.Kicked()
	workOnce(t, sys, 1)
	if got := stored(t, sys, tk.ID); got.State != dispatch.StatePending || !got.DueTime.Equal(sys.Clock.Now().Add(dispatch.DefaultRetryBackoff)) {
		t.Fatalf("task = %s, due %v; want PENDING, due after the back-off (%v)", got.State, got.DueTime, sys.Clock.Now().Add(dispatch.DefaultRetryBackoff))
	}
	if sys.Service.Kicked() {
		t.Error("the loop was kicked for a task that waits for the back-off")
	}
}

// A courier freed while a batch searches (here: the release job of the task they handed back, which
// lands while the batch's search found them busy with it) wakes the task the batch deferred: it is
// offered to them on the next lease, not after a back-off. The work loop's own wake for the freed
// courier (WakeFreed, which the loop runs beside the batch) misses it: the task is due already, under
// the batch's lease. TestAcceptAgainAfterLosingTheTask once failed so under load ("never became
// offered"): the back-off of the test's clock never passes.
func TestCourierFreedDuringTheSearchWakesTheDeferredTask(t *testing.T) {
	// One search per task (no widening), the one the hook below runs in.
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true, Options: dispatch.Options{SearchRadius: 3000, MaxRadius: 3000}})
	ctx := context.Background()
	c := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 300), geo.Bicycle, true)
	first := create(t, sys, nil)
	workOnce(t, sys, 1)
	o := wantOffered(t, sys, first, c.ID)
	if r := sys.Service.Execute(c.Ctx, c.ID, "a1", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}}); r.Err != nil {
		t.Fatalf("accept = %+v", r.Err)
	}
	waitFor(t, "the claim of the accepted task", func() bool { return sys.Couriers.Claims()[first.ID] == c.ID })

	// The courier hands the task back; the release of its claim waits at the gate.
	gate := make(chan struct{})
	var openGate sync.Once
	defer openGate.Do(func() { close(gate) })
	sys.Couriers.OnRelease(func(_, taskID string) {
		if taskID == first.ID {
			<-gate
		}
	})
	if r := sys.Service.Execute(c.Ctx, c.ID, "r1", dispatch.Command{Release: &dispatch.ReleaseCmd{TaskID: first.ID, Reason: dispatch.ReleaseOther}}); r.Err != nil {
		t.Fatalf("release = %+v", r.Err)
	}
	// The new task's pickup is its own, so that its search is told from the handed-back task's (which
	// finds the courier too, to show them as excluded: DECLINED).
	secondPickup := dispatchtest.Near(dispatchtest.Berlin, 500)
	second := create(t, sys, func(r *dispatch.CreateRequest) { r.Pickup.Location = secondPickup })

	// The batch's search for the new task finds the courier busy; while its answer is on its way, the
	// claim is released, the courier freed, and the loop's wake for them runs.
	var searches atomic.Int32
	sys.Couriers.OnFindNearby(func(q dispatch.NearbyQuery) {
		if q.Center != secondPickup || searches.Add(1) != 1 {
			return
		}
		before := sys.Service.CouriersFreed()
		openGate.Do(func() { close(gate) })
		// A hang guard (this runs in the batch's goroutine: no t.Fatal).
		for deadline := time.Now().Add(time.Minute); sys.Service.CouriersFreed() == before; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Error("the release job never freed the courier")
				return
			}
		}
		sys.Service.WakeFreed(ctx)
	})
	workOnce(t, sys, 2) // the handed-back task (the courier is excluded from it) and the new one
	sys.Couriers.OnFindNearby(nil)
	if got := stored(t, sys, second.ID); got.State != dispatch.StatePending || got.Searches != 1 {
		t.Fatalf("new task = %s after %d searches, want PENDING after 1 (the courier was busy)", got.State, got.Searches)
	}

	// The test's clock stands still: only a wake makes the deferred tasks due again.
	if n, err := sys.Service.WorkOnce(ctx); err != nil || n != 2 {
		t.Fatalf("WorkOnce = %d, %v; want the 2 tasks deferred while the courier was freed woken", n, err)
	}
	wantOffered(t, sys, second, c.ID)
}
