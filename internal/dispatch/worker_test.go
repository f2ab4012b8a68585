package dispatch_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
)

// offered waits until tk is OFFERED and returns it with its open offer.
func offered(t *testing.T, sys *dispatchtest.System, id string) (dispatch.Task, dispatch.Offer) {
	t.Helper()
	tk := sys.WaitTask(t, id, "offered", dispatchtest.InState(dispatch.StateOffered))
	return tk, *tk.CurrentOffer()
}

// declineToNext waits for task id's first offer, which must go to a, declines it as a (a decline's result
// has no task), and waits for the offer to b. It returns the task as offered to b and a's offer.
func declineToNext(t *testing.T, sys *dispatchtest.System, id string, a, b dispatchtest.Courier) (dispatch.Task, dispatch.Offer) {
	t.Helper()
	_, o := offered(t, sys, id)
	if o.CourierID != a.ID {
		t.Fatalf("first offer to %s, want %s", o.CourierID, a.ID)
	}
	res := sys.Service.Execute(a.Ctx, a.ID, "d1", dispatch.Command{Decline: &dispatch.DeclineCmd{OfferID: o.ID, Reason: dispatch.DeclineTooFar}})
	if res.Err != nil || res.Task != nil {
		t.Fatalf("decline = %+v, want a result without error or task", res)
	}
	next := sys.WaitTask(t, id, "offered to b", func(x dispatch.Task) bool { o := x.CurrentOffer(); return o != nil && o.CourierID == b.ID })
	return next, o
}

func create(t *testing.T, sys *dispatchtest.System, edit func(*dispatch.CreateRequest)) dispatch.Task {
	t.Helper()
	req := dispatchtest.Request(uuid.NewString(), dispatchtest.Berlin, "")
	if edit != nil {
		edit(&req)
	}
	tk, err := sys.Service.CreateTask(dispatchtest.Customer(uuid.NewString()), req)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func TestOfferGoesToTheNearestConnectedCourierAndIsAccepted(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	far := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 1500), geo.Bicycle, true)
	near := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 300), geo.Bicycle, true)
	offline := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 50), geo.Bicycle, false) // no session
	tk := create(t, sys, nil)
	got, o := offered(t, sys, tk.ID)
	if o.CourierID != near.ID {
		t.Fatalf("offer to %s, want the nearest connected courier %s (far %s, disconnected %s)", o.CourierID, near.ID, far.ID, offline.ID)
	}
	if o.ResponseTimeout != dispatch.DefaultOfferTimeout || !o.ExpireTime.Equal(o.CreateTime.Add(dispatch.DefaultOfferTimeout)) || o.DecisionID == "" {
		t.Fatalf("offer %+v", o)
	}
	exp, err := sys.Service.ExplainAssignment(dispatchtest.Dispatcher(), tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	d := exp.Decisions[0]
	if d.ID != o.DecisionID || d.Winner != near.ID || d.Outcome != dispatch.OutcomeOffered || d.Degraded {
		t.Fatalf("decision %+v", d)
	}
	reasons := map[string]dispatch.ExclusionReason{}
	for _, c := range d.Candidates {
		reasons[c.CourierID] = c.Excluded
		if c.CourierID == near.ID && (c.Rank != 1 || c.OfferID != o.ID || c.OfferState != dispatch.OfferOpen) {
			t.Fatalf("winner candidate %+v", c)
		}
	}
	if reasons[offline.ID] != dispatch.ExcludedNotConnected {
		t.Fatalf("disconnected courier excluded for %q, want %q", reasons[offline.ID], dispatch.ExcludedNotConnected)
	}
	if got.History[len(got.History)-1].OfferID != o.ID {
		t.Fatalf("history %+v", got.History)
	}
	// The offer is delivered to the courier's session log.
	ds, err := sys.Store.Deliveries(context.Background(), near.ID, 0, 10)
	if err != nil || len(ds) != 1 || ds[0].Kind != dispatch.DeliveryOffer || ds[0].OfferID != o.ID {
		t.Fatalf("deliveries %+v, %v", ds, err)
	}
	res := sys.Service.Execute(near.Ctx, near.ID, "accept-1", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}})
	if res.Err != nil || res.Task == nil || res.Task.State != dispatch.StateAssigned || res.Task.CourierID != near.ID {
		t.Fatalf("accept = %+v", res)
	}
	waitFor(t, "the claim", func() bool { return sys.Couriers.Claims()[tk.ID] == near.ID })
}

func TestFiftyCouriersAcceptTheSameOfferOnlyTheOfferedOneWins(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	winner := sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, true)
	tk := create(t, sys, nil)
	_, o := offered(t, sys, tk.ID)
	var others []dispatchtest.Courier
	for range 49 {
		others = append(others, sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 5000), geo.Bicycle, false))
	}
	var wg sync.WaitGroup
	results := make([]dispatch.CommandResult, 50)
	start := make(chan struct{})
	for i := range 50 {
		c := winner
		if i > 0 {
			c = others[i-1]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = sys.Service.Execute(c.Ctx, c.ID, "accept", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}})
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	for i, r := range results {
		switch {
		case r.Err == nil:
			wins++
			if i != 0 {
				t.Fatalf("courier %d won", i)
			}
		case r.Err.Code != apperr.NotFound:
			t.Fatalf("loser %d got %+v, want NotFound", i, r.Err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d winners, want 1", wins)
	}
	// The same courier accepting fifty times at once: one transition, every answer a success.
	// The winner is full once its claim lands; only then is the second courier the one candidate.
	waitFor(t, "the winner's claim", func() bool { return sys.Couriers.Claims()[tk.ID] == winner.ID })
	second := sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, true)
	tk2 := create(t, sys, nil)
	_, o2 := offered(t, sys, tk2.ID)
	if o2.CourierID != second.ID {
		t.Fatalf("second offer to %s, want %s", o2.CourierID, second.ID)
	}
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := sys.Service.Execute(second.Ctx, second.ID, "", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o2.ID}})
			if r.Err != nil && r.Err.Code != apperr.Aborted {
				t.Errorf("accept %d: %+v", i, r.Err)
			}
		}()
	}
	wg.Wait()
	final := sys.WaitTask(t, tk2.ID, "assigned", dispatchtest.InState(dispatch.StateAssigned))
	n := 0
	for _, h := range final.History {
		if h.State == dispatch.StateAssigned {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d ASSIGNED transitions, want 1", n)
	}
}

func TestDeclineAndExpiryMoveToTheNextCandidateAndNeverBack(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	b := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 400), geo.Bicycle, true)
	c := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 900), geo.Bicycle, true)
	tk := create(t, sys, nil)
	next, o := declineToNext(t, sys, tk.ID, a, b)
	ob := *next.CurrentOffer()
	if ob.DecisionID != o.DecisionID {
		t.Fatalf("next offer from decision %s, want the same decision %s", ob.DecisionID, o.DecisionID)
	}
	// b lets the offer expire.
	sys.Clock.Advance(dispatch.DefaultOfferTimeout + dispatch.DefaultOfferGrace + time.Second)
	sys.Connect(t, c.ID)
	sys.Connect(t, a.ID)
	third := sys.WaitTask(t, tk.ID, "offered to c", func(x dispatch.Task) bool { o := x.CurrentOffer(); return o != nil && o.CourierID == c.ID })
	if st := third.Offer(ob.ID).State; st != dispatch.OfferExpired {
		t.Fatalf("b's offer is %s, want expired", st)
	}
	ds, err := sys.Store.Deliveries(context.Background(), b.ID, 0, 10)
	if err != nil || len(ds) != 2 || ds[1].Kind != dispatch.DeliveryOfferClosed {
		t.Fatalf("b's deliveries %+v, %v", ds, err)
	}
	// c declines too: a and b are excluded for good, nobody is left: the task waits.
	oc := *third.CurrentOffer()
	if r := sys.Service.Execute(c.Ctx, c.ID, "d2", dispatch.Command{Decline: &dispatch.DeclineCmd{OfferID: oc.ID, Reason: dispatch.DeclineTooBusy}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	waiting := sys.WaitTask(t, tk.ID, "pending after every candidate dropped out", func(x dispatch.Task) bool {
		return x.State == dispatch.StatePending && x.Searches > 1
	})
	for _, off := range waiting.Offers {
		if off.State == dispatch.OfferOpen {
			t.Fatalf("open offer left: %+v", off)
		}
	}
	if len(waiting.Offers) != 3 {
		t.Fatalf("%d offers, want 3 (a decliner is never offered the task again)", len(waiting.Offers))
	}
	exp, err := sys.Service.ExplainAssignment(dispatchtest.Dispatcher(), tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	if exp.Decisions[0].Outcome == dispatch.OutcomeOffered {
		t.Fatalf("latest decision %+v, want one without an offer", exp.Decisions[0])
	}
	// The search found them again: the decision says why each was left out.
	latest := exp.Decisions[0]
	reasons := map[string]dispatch.ExclusionReason{}
	for _, cand := range latest.Candidates {
		if cand.OfferID != "" || cand.Rank != 0 {
			t.Fatalf("candidate %+v of the latest decision was ranked or offered the task", cand)
		}
		reasons[cand.CourierID] = cand.Excluded
	}
	want := map[string]dispatch.ExclusionReason{a.ID: dispatch.ExcludedDeclined, b.ID: dispatch.ExcludedOfferExpired, c.ID: dispatch.ExcludedDeclined}
	if !maps.Equal(reasons, want) || latest.Outcome != dispatch.OutcomeAllExcluded {
		t.Fatalf("latest decision: outcome %s, exclusions %v; want %s, %v", latest.Outcome, reasons, dispatch.OutcomeAllExcluded, want)
	}
	// A new courier comes along and gets it.
	sys.Clock.Advance(time.Minute)
	d := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 2000), geo.Bicycle, true)
	if err := sys.Store.WakePending(context.Background(), sys.Clock.Now()); err != nil {
		t.Fatal(err)
	}
	sys.WaitTask(t, tk.ID, "offered to d", func(x dispatch.Task) bool { o := x.CurrentOffer(); return o != nil && o.CourierID == d.ID })
}

// A customer does not see the history entries about couriers other than the one holding the task:
// another courier's offer, their decline (and its reason), a hand-back. The open offer's entry stays,
// without its courier, since it is the task's state.
func TestCustomerHistoryLeavesOutOtherCouriers(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	b := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 400), geo.Bicycle, true)
	customer := uuid.NewString()
	req := dispatchtest.Request(uuid.NewString(), dispatchtest.Berlin, "")
	tk, err := sys.Service.CreateTask(dispatchtest.Customer(customer), req)
	if err != nil {
		t.Fatal(err)
	}
	next, _ := declineToNext(t, sys, tk.ID, a, b)
	history := func() string {
		t.Helper()
		got, err := sys.Service.GetTask(dispatchtest.Customer(customer), tk.ID, dispatch.ViewFull)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range got.History {
			out = append(out, fmt.Sprintf("%s/%s/%q/%q", h.State, h.Actor, h.CourierID, h.Comment))
		}
		return strings.Join(out, " ")
	}
	want := `pending/customer/""/"" offered/system/""/""`
	if got := history(); got != want {
		t.Fatalf("customer's history while offered to b:\n got %s\nwant %s", got, want)
	}
	if r := sys.Service.Execute(b.Ctx, b.ID, "a1", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: next.CurrentOffer().ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	want = fmt.Sprintf(`pending/customer/""/"" offered/system/""/"" assigned/courier/%q/""`, b.ID)
	if got := history(); got != want {
		t.Fatalf("customer's history once b holds the task:\n got %s\nwant %s", got, want)
	}
}

// A courier sees their own history entries, and of the other couriers' only the task's progress with its
// holder, without who, which offer or what they said: not another courier's offer, decline (and its
// reason) or hand-back (and its comment).
func TestCourierHistoryLeavesOutOtherCouriers(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	b := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 400), geo.Bicycle, true)
	c := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 800), geo.Bicycle, true)
	tk := create(t, sys, nil)
	next, _ := declineToNext(t, sys, tk.ID, a, b)
	if r := sys.Service.Execute(b.Ctx, b.ID, "a1", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: next.CurrentOffer().ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if r := sys.Service.Execute(b.Ctx, b.ID, "r1", dispatch.Command{Release: &dispatch.ReleaseCmd{TaskID: tk.ID, Reason: dispatch.ReleaseOther, Comment: "flat tyre"}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	last := sys.WaitTask(t, tk.ID, "offered to c", func(x dispatch.Task) bool { o := x.CurrentOffer(); return o != nil && o.CourierID == c.ID })
	history := func(who dispatchtest.Courier) string {
		t.Helper()
		got, err := sys.Service.GetTask(who.Ctx, tk.ID, dispatch.ViewFull)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, h := range got.History {
			mine := ""
			if h.CourierID != "" {
				mine = map[string]string{a.ID: "a", b.ID: "b", c.ID: "c"}[h.CourierID]
			}
			out = append(out, fmt.Sprintf("%s/%s/%q/%t/%q", h.State, h.Actor, mine, h.OfferID != "", h.Comment))
		}
		return strings.Join(out, " ")
	}
	for _, tc := range []struct {
		who  dispatchtest.Courier
		want string
	}{
		{a, `pending/customer/""/false/"" offered/system/"a"/true/"" pending/courier/"a"/true/"offer declined: too_far" offered/system/""/false/""`},
		{b, `pending/customer/""/false/"" offered/system/"b"/true/"" assigned/courier/"b"/true/"" pending/courier/"b"/false/"handed back: other: flat tyre" offered/system/""/false/""`},
		{c, `pending/customer/""/false/"" offered/system/"c"/true/""`},
	} {
		if got := history(tc.who); got != tc.want {
			t.Errorf("history of the courier %s while offered to c:\n got %s\nwant %s", tc.who.ID[:8], got, tc.want)
		}
	}
	if r := sys.Service.Execute(c.Ctx, c.ID, "a2", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: last.CurrentOffer().ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	for _, tc := range []struct {
		who  dispatchtest.Courier
		want string
	}{
		{a, `pending/customer/""/false/"" offered/system/"a"/true/"" pending/courier/"a"/true/"offer declined: too_far" offered/system/""/false/"" assigned/courier/""/false/""`},
		{c, `pending/customer/""/false/"" offered/system/"c"/true/"" assigned/courier/"c"/true/""`},
	} {
		if got := history(tc.who); got != tc.want {
			t.Errorf("history of the courier %s once c holds the task:\n got %s\nwant %s", tc.who.ID[:8], got, tc.want)
		}
	}
}

func TestNoCourierWithinThePickupWindowMakesTheTaskUnassignable(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	now := sys.Clock.Now()
	tk := create(t, sys, func(r *dispatch.CreateRequest) {
		r.Pickup.Window = &dispatch.Window{Start: now, End: now.Add(10 * time.Minute)}
	})
	sys.WaitTask(t, tk.ID, "searched once", func(x dispatch.Task) bool { return x.Searches >= 1 })
	sys.Clock.Advance(11 * time.Minute)
	if err := sys.Store.WakePending(context.Background(), sys.Clock.Now()); err != nil {
		t.Fatal(err)
	}
	got := sys.WaitTask(t, tk.ID, "unassignable", dispatchtest.InState(dispatch.StateUnassignable))
	if last := got.History[len(got.History)-1]; last.Actor != dispatch.ActorSystem || last.Comment == "" {
		t.Fatalf("last history entry %+v", last)
	}
	exp, err := sys.Service.ExplainAssignment(dispatchtest.Dispatcher(), tk.ID)
	if err != nil || exp.Decisions[0].Outcome != dispatch.OutcomeUnassignable {
		t.Fatalf("explanation %+v, %v", exp, err)
	}
	// A dispatcher may still assign it.
	c := sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, true)
	if _, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID}); err != nil {
		t.Fatal(err)
	}
}

// A task nobody can take is searched again, a few times an hour, until its pickup window ends, and a
// customer may set that years ahead: the decisions it records stay bounded by what ExplainAssignment
// shows, the newest kept.
func TestTaskSearchedManyTimesKeepsItsNewestDecisions(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	ctx := context.Background()
	now := sys.Clock.Now()
	tk := create(t, sys, func(r *dispatch.CreateRequest) {
		r.Pickup.Window = &dispatch.Window{Start: now, End: now.AddDate(50, 0, 0)}
	})
	searches := dispatch.MaxDecisions + 5
	for i := 1; i <= searches; i++ {
		sys.WaitTask(t, tk.ID, fmt.Sprintf("search %d", i), func(x dispatch.Task) bool { return x.Searches >= i })
		if i < searches {
			sys.Clock.Advance(2 * time.Minute)
			if err := sys.Store.WakePending(ctx, sys.Clock.Now()); err != nil {
				t.Fatal(err)
			}
		}
	}
	ds, err := sys.Store.Decisions(ctx, tk.ID, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != dispatch.MaxDecisions {
		t.Fatalf("%d decisions recorded after %d searches, want the newest %d", len(ds), searches, dispatch.MaxDecisions)
	}
	if last := sys.Clock.Now(); !ds[0].DecideTime.Equal(last) || ds[0].Outcome != dispatch.OutcomeNoCandidates {
		t.Fatalf("newest decision %s at %s, want %s at %s", ds[0].Outcome, ds[0].DecideTime, dispatch.OutcomeNoCandidates, last)
	}
	if oldest, want := ds[len(ds)-1].DecideTime, sys.Clock.Now().Add(-time.Duration(dispatch.MaxDecisions-1)*2*time.Minute); !oldest.Equal(want) {
		t.Fatalf("oldest decision kept at %s, want %s", oldest, want)
	}
}

func TestHandedBackTaskIsOfferedToSomeoneElse(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	tk := create(t, sys, nil)
	_, o := offered(t, sys, tk.ID)
	if r := sys.Service.Execute(a.Ctx, a.ID, "acc", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	waitFor(t, "the claim", func() bool { return sys.Couriers.Claims()[tk.ID] == a.ID })
	b := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 800), geo.Bicycle, true)
	r := sys.Service.Execute(a.Ctx, a.ID, "rel", dispatch.Command{Release: &dispatch.ReleaseCmd{TaskID: tk.ID, Reason: dispatch.ReleaseVehicleProblem}})
	if r.Err != nil || r.Task == nil || r.Task.State != dispatch.StatePending {
		t.Fatalf("release = %+v", r)
	}
	sys.WaitTask(t, tk.ID, "offered to b", func(x dispatch.Task) bool { o := x.CurrentOffer(); return o != nil && o.CourierID == b.ID })
	waitFor(t, "a's claim released", func() bool { _, ok := sys.Couriers.Claims()[tk.ID]; return !ok })
	again := sys.Service.Execute(a.Ctx, a.ID, "rel-2", dispatch.Command{Release: &dispatch.ReleaseCmd{TaskID: tk.ID, Reason: dispatch.ReleaseOther}})
	if again.Err == nil || again.Err.Reason != dispatch.ReasonNotHolder {
		t.Fatalf("second release = %+v, want NOT_HOLDER", again)
	}
}

// A release queued while offline is recorded at its occur_time, as the contract says for every
// offline command: the history's hand-back is when the courier decided, not when the command arrived.
func TestOfflineReleaseIsRecordedAtItsOccurTime(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	tk := create(t, sys, nil)
	_, o := offered(t, sys, tk.ID)
	acc := sys.Service.Execute(a.Ctx, a.ID, "acc", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}})
	if acc.Err != nil {
		t.Fatal(acc.Err)
	}
	decided := acc.Task.AssignTime.Add(3 * time.Minute)
	sys.Clock.Advance(10 * time.Minute)
	r := sys.Service.Execute(a.Ctx, a.ID, "rel", dispatch.Command{Release: &dispatch.ReleaseCmd{TaskID: tk.ID, Reason: dispatch.ReleaseVehicleProblem, OccurTime: decided}})
	if r.Err != nil || r.Task == nil {
		t.Fatalf("release = %+v", r)
	}
	if last := r.Task.History[len(r.Task.History)-1]; last.State != dispatch.StatePending || !last.At.Equal(decided) {
		t.Fatalf("hand-back recorded as %s at %s, want PENDING at %s", last.State, last.At, decided)
	}
	if now := sys.Clock.Now(); !r.Task.UpdateTime.Equal(now) {
		t.Fatalf("update time %s, want the time of the change, %s", r.Task.UpdateTime, now)
	}
}

// A failure reported offline after the pickup is recorded no earlier than the pickup, whatever time the
// device gave: the history never has the task fail before it was picked up.
func TestOfflineFailureAfterPickupIsNotRecordedBeforeIt(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	tk := create(t, sys, nil)
	_, o := offered(t, sys, tk.ID)
	if r := sys.Service.Execute(a.Ctx, a.ID, "acc", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	sys.Clock.Advance(10 * time.Minute)
	up := sys.Service.Execute(a.Ctx, a.ID, "up", dispatch.Command{Pickup: &dispatch.PickupCmd{TaskID: tk.ID}})
	if up.Err != nil {
		t.Fatal(up.Err)
	}
	sys.Clock.Advance(10 * time.Minute)
	f := sys.Service.Execute(a.Ctx, a.ID, "fail", dispatch.Command{Fail: &dispatch.FailCmd{TaskID: tk.ID, Reason: dispatch.FailureRecipientUnavailable,
		OccurTime: up.Task.PickupTime.Add(-5 * time.Minute)}})
	if f.Err != nil || f.Task == nil {
		t.Fatalf("failure = %+v", f)
	}
	if last := f.Task.History[len(f.Task.History)-1]; last.State != dispatch.StateFailed || !last.At.Equal(up.Task.PickupTime) {
		t.Fatalf("failure recorded as %s at %s, want FAILED at the pickup, %s", last.State, last.At, up.Task.PickupTime)
	}
}

func TestRefusedClaimPutsTheTaskBack(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	tk := create(t, sys, nil)
	_, o := offered(t, sys, tk.ID)
	sys.Couriers.RefuseClaims(a.ID)
	if r := sys.Service.Execute(a.Ctx, a.ID, "acc", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	got := sys.WaitTask(t, tk.ID, "back to pending", func(x dispatch.Task) bool { return x.State == dispatch.StatePending && len(x.History) > 3 })
	if got.CourierID != "" {
		t.Fatalf("courier %q kept the task", got.CourierID)
	}
	ds, err := sys.Store.Deliveries(context.Background(), a.ID, 0, 10)
	if err != nil || ds[len(ds)-1].Reason != dispatch.NoticeReassigned {
		t.Fatalf("a's deliveries %+v, %v", ds, err)
	}
}

func TestCrashBetweenAcceptanceAndClaimConverges(t *testing.T) {
	// First life: jobs are enqueued but never worked (the process dies before ClaimCourier).
	first := dispatchtest.Start(t, dispatchtest.Config{NoJobs: true})
	a := first.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, true)
	tk := create(t, first, nil)
	_, o := offered(t, first, tk.ID)
	if r := first.Service.Execute(a.Ctx, a.ID, "acc", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	if n := first.Couriers.Calls("Claim"); n != 0 {
		t.Fatalf("%d claims before the restart", n)
	}
	// Second life on the same database: the claim job runs.
	dispatchtest.Start(t, dispatchtest.Config{DB: first.DB, Pool: first.Pool, Couriers: first.Couriers})
	waitFor(t, "the claim after the restart", func() bool { return first.Couriers.Claims()[tk.ID] == a.ID })
}

func TestRouteDownDegradesTheDecisionButStillAssigns(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	sys.Routes.SetDown(true)
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 300), geo.Bicycle, true)
	tk := create(t, sys, nil)
	_, o := offered(t, sys, tk.ID)
	if o.CourierID != a.ID || o.PickupETA <= 0 {
		t.Fatalf("offer %+v", o)
	}
	exp, err := sys.Service.ExplainAssignment(dispatchtest.Dispatcher(), tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	d := exp.Decisions[0]
	if !d.Degraded || d.ETAProvider != "local-geodesic" || d.DegradationDetail == "" {
		t.Fatalf("decision %+v, want degraded with the local estimate", d)
	}
}

func TestCourierServiceDownTasksWait(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, true)
	sys.Couriers.SetDown(true)
	tk := create(t, sys, nil)
	sys.WaitTask(t, tk.ID, "searched while courier is down", func(x dispatch.Task) bool { return x.Searches >= 1 })
	if got, _ := sys.Service.GetTask(dispatchtest.Dispatcher(), tk.ID, ""); got.State != dispatch.StatePending {
		t.Fatalf("state %s, want pending while courier is down", got.State)
	}
	sys.Couriers.SetDown(false)
	sys.Clock.Advance(time.Minute)
	sys.Connect(t, a.ID)
	sys.Couriers.Move(a.ID, dispatchtest.Berlin)
	if err := sys.Store.WakePending(context.Background(), sys.Clock.Now()); err != nil {
		t.Fatal(err)
	}
	_, o := offered(t, sys, tk.ID)
	if o.CourierID != a.ID {
		t.Fatalf("offer to %s, want %s", o.CourierID, a.ID)
	}
}

// waitingLater waits until task id was searched for and waits for its back-off (due after now).
func waitingLater(t *testing.T, sys *dispatchtest.System, id string) {
	t.Helper()
	sys.WaitTask(t, id, "waiting for its back-off", func(x dispatch.Task) bool {
		return x.State == dispatch.StatePending && x.Searches >= 1 && x.DueTime.After(sys.Clock.Now())
	})
}

// A courier who declines an offer is free for another task at once: a task that waits because that
// courier had the offer open is searched again without waiting for its back-off (the clock does not move
// here) and offered to them; the declined task is never offered to them again.
func TestDeclineFreesTheCourierForAWaitingTask(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	first := create(t, sys, nil)
	_, o := offered(t, sys, first.ID)
	second := create(t, sys, nil)
	waitingLater(t, sys, second.ID)
	if r := sys.Service.Execute(a.Ctx, a.ID, "dec", dispatch.Command{Decline: &dispatch.DeclineCmd{OfferID: o.ID, Reason: dispatch.DeclineTooFar}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	sys.WaitTask(t, second.ID, "offered to a", func(x dispatch.Task) bool { o := x.CurrentOffer(); return o != nil && o.CourierID == a.ID })
	if got := stored(t, sys, first.ID); got.State != dispatch.StatePending || len(got.Offers) != 1 {
		t.Errorf("declined task = %s with %d offers, want PENDING with its one declined offer", got.State, len(got.Offers))
	}
}

// A courier whose task ends (here: cancelled after acceptance) is free for another once the courier
// service released it: a task that waited because the courier was full is searched again then, without
// waiting for its back-off, and offered to them.
func TestReleasedCourierGetsAWaitingTask(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true) // capacity 1
	first := create(t, sys, nil)
	_, o := offered(t, sys, first.ID)
	if r := sys.Service.Execute(a.Ctx, a.ID, "acc", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	waitFor(t, "the claim", func() bool { return sys.Couriers.Claims()[first.ID] == a.ID })
	second := create(t, sys, nil)
	waitingLater(t, sys, second.ID)
	if _, err := sys.Service.CancelTask(dispatchtest.Dispatcher(), dispatch.CancelRequest{ID: first.ID, Reason: dispatch.CancelOther}); err != nil {
		t.Fatal(err)
	}
	sys.WaitTask(t, second.ID, "offered to a", func(x dispatch.Task) bool { o := x.CurrentOffer(); return o != nil && o.CourierID == a.ID })
	if _, held := sys.Couriers.Claims()[first.ID]; held {
		t.Error("the cancelled task is still claimed")
	}
}

// acceptedWithoutJobs starts a system whose jobs are never worked, with a task accepted by courier a
// (its claim job enqueued, not run).
func acceptedWithoutJobs(t *testing.T) (*dispatchtest.System, dispatchtest.Courier, dispatch.Task) {
	t.Helper()
	sys := dispatchtest.Start(t, dispatchtest.Config{NoJobs: true})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	tk := create(t, sys, nil)
	_, o := offered(t, sys, tk.ID)
	if r := sys.Service.Execute(a.Ctx, a.ID, "acc", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: o.ID}}); r.Err != nil {
		t.Fatal(r.Err)
	}
	return sys, a, tk
}

// A claim that lands after its task was cancelled, and after the cancellation's release ran (the
// release found nothing to release), is undone by the claim job itself: the courier does not keep a
// claim nothing would ever release.
func TestClaimLandingAfterCancelAndReleaseIsUndone(t *testing.T) {
	sys, a, tk := acceptedWithoutJobs(t)
	ctx := context.Background()
	sys.Couriers.OnClaim(func() {
		sys.Couriers.OnClaim(nil)
		if _, err := sys.Service.CancelTask(dispatchtest.Dispatcher(), dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelOther}); err != nil {
			t.Errorf("CancelTask: %v", err)
		}
		if err := sys.Service.RunJob(ctx, dispatch.Job{Kind: dispatch.JobRelease, CourierID: a.ID, TaskID: tk.ID}); err != nil {
			t.Errorf("the cancellation's release job: %v", err)
		}
	})
	if err := sys.Service.RunJob(ctx, dispatch.Job{Kind: dispatch.JobClaim, CourierID: a.ID, TaskID: tk.ID}); err != nil {
		t.Fatalf("claim job: %v", err)
	}
	if holder, held := sys.Couriers.Claims()[tk.ID]; held {
		t.Errorf("courier service claim of the cancelled task = %s, want none", holder)
	}
	if n := sys.Couriers.Calls("Claim"); n != 1 {
		t.Errorf("Claim calls = %d, want 1", n)
	}
}

// A claim job whose claim landed after its task left the courier, and whose undo failed (the courier
// service was unreachable for the release: the job returned the error), is retried by the jobs runner:
// the retry must still undo the claim, although the task is no longer the courier's when it starts.
func TestClaimJobRetryUndoesALandedClaim(t *testing.T) {
	sys, a, tk := acceptedWithoutJobs(t)
	ctx := context.Background()
	// The first run of the claim job read the holder (a), then the task was cancelled and the
	// cancellation's release ran (nothing to release yet); the first run's claim landed, and its undo
	// (claimStillHeld's Release) failed, so the job returned an error.
	if _, err := sys.Service.CancelTask(dispatchtest.Dispatcher(), dispatch.CancelRequest{ID: tk.ID, Reason: dispatch.CancelOther}); err != nil {
		t.Fatal(err)
	}
	if err := sys.Service.RunJob(ctx, dispatch.Job{Kind: dispatch.JobRelease, CourierID: a.ID, TaskID: tk.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := sys.Couriers.Claim(ctx, a.ID, tk.ID, time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	// The retry.
	if err := sys.Service.RunJob(ctx, dispatch.Job{Kind: dispatch.JobClaim, CourierID: a.ID, TaskID: tk.ID}); err != nil {
		t.Fatalf("claim job retry: %v", err)
	}
	if holder, held := sys.Couriers.Claims()[tk.ID]; held {
		t.Errorf("courier service claim of the cancelled task after the claim job's retry = %s, want none", holder)
	}
}

// TestFruitlessSearchesBackOffQuietly: a task nobody can take, with a pickup window that ends in 50
// years, is searched again after 5 s, then twice as long each time up to 5 minutes (long waits
// shortened by up to a fifth, by the task), so about a dozen times an hour rather than every 40 s; those
// searches change nothing a reader sees (the etag, the update time) and append no task event (no
// watcher is told). A courier who opens a session nearby still gets it at once, whatever its back-off.
func TestFruitlessSearchesBackOffQuietly(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	ctx := context.Background()
	start := sys.Clock.Now()
	tk := create(t, sys, func(r *dispatch.CreateRequest) {
		r.Pickup.Window = &dispatch.Window{Start: start, End: start.AddDate(50, 0, 0)}
	})
	sys.WaitTask(t, tk.ID, "searched once", func(x dispatch.Task) bool { return x.Searches >= 1 })
	head, err := sys.Events.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; sys.Clock.Now().Sub(start) < 2*time.Hour; n++ {
		got := stored(t, sys, tk.ID)
		if got.Searches != n {
			t.Fatalf("task searched %d times, want %d", got.Searches, n)
		}
		if want := sys.Clock.Now().Add(sys.Service.RetryBackoff(tk.ID, n-1)); !got.DueTime.Equal(want) {
			t.Fatalf("after search %d: due %s, want %s", n, got.DueTime, want)
		}
		if got.ETag() != tk.ETag() || !got.UpdateTime.Equal(tk.UpdateTime) {
			t.Fatalf("after search %d: etag %s, update time %s; want %s and %s as created", n, got.ETag(), got.UpdateTime, tk.ETag(), tk.UpdateTime)
		}
		sys.Clock.Advance(got.DueTime.Sub(sys.Clock.Now()))
		sys.WaitTask(t, tk.ID, fmt.Sprintf("search %d", n+1), func(x dispatch.Task) bool { return x.Searches > n })
	}
	got := stored(t, sys, tk.ID)
	// 5 s, 10 s, 20 s, 40 s, then 80 s and 160 s less up to a fifth each, then 5 min less up to a fifth:
	// 30 searches in the first two hours without the shortening, 35 with all of it (every 40 s before:
	// about 180).
	if got.Searches < 30 || got.Searches > 35 {
		t.Errorf("searches in two hours = %d, want 30 to 35", got.Searches)
	}
	// No task event: only one TopicWaiting event per deferral, which tells the replicas' courier
	// followers that a task may be waiting.
	now, err := sys.Events.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := sys.Events.Subscribe(ctx, head)
	if err != nil {
		t.Fatal(err)
	}
	waits := 0
	for seq := head; seq < now; {
		ev, err := sub.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Topic != dispatch.TopicWaiting || ev.Key != tk.ID {
			t.Errorf("event %d after the first search = %s %s, want only %s events of task %s", ev.Seq, ev.Topic, ev.Key, dispatch.TopicWaiting, tk.ID)
		}
		seq = ev.Seq
		waits++
	}
	sub.Close()
	if waits != got.Searches-1 {
		t.Errorf("%s events after the first search = %d, want one per search after it, %d", dispatch.TopicWaiting, waits, got.Searches-1)
	}
	if ds, err := sys.Store.Decisions(ctx, tk.ID, 1000); err != nil || len(ds) != min(got.Searches, dispatch.MaxDecisions) {
		t.Errorf("decisions kept = %d, %v; want one per search up to the newest %d, %d", len(ds), err, dispatch.MaxDecisions, min(got.Searches, dispatch.MaxDecisions))
	}
	if d := got.DueTime.Sub(sys.Clock.Now()); d <= 4*time.Minute {
		t.Fatalf("next search in %s, want about 5 minutes", d)
	}

	c := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 200), geo.Bicycle, false)
	sess, err := sys.Service.OpenSession(c.Ctx, dispatch.Hello{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	offeredTask := sys.WaitTask(t, tk.ID, "offered to the courier who opened a session", dispatchtest.InState(dispatch.StateOffered))
	if o := offeredTask.CurrentOffer(); o == nil || o.CourierID != c.ID || offeredTask.ETag() == tk.ETag() {
		t.Fatalf("offered task = %+v with etag %s; want an offer to %s and a new etag", offeredTask.CurrentOffer(), offeredTask.ETag(), c.ID)
	}
}

// The back-off doubles from Options.RetryBackoff up to Options.MaxRetryBackoff; from a minute on it is
// shortened by up to a fifth, by an amount that depends on the task, so that tasks spread.
func TestRetryBackoffSchedule(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	id := uuid.NewString()
	for n, want := range []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second} {
		if got := sys.Service.RetryBackoff(id, n); got != want {
			t.Errorf("back-off after %d searches = %s, want %s", n, got, want)
		}
	}
	spread := map[time.Duration]bool{}
	for n := 4; n < 100; n++ {
		full := min(5*time.Second<<min(n, 30), dispatch.DefaultMaxRetryBackoff)
		got := sys.Service.RetryBackoff(id, n)
		if got > full || got <= full*4/5 {
			t.Errorf("back-off after %d searches = %s, want in (%s, %s]", n, got, full*4/5, full)
		}
		if n >= 9 {
			spread[got] = true
		}
	}
	if len(spread) < 50 {
		t.Errorf("back-offs at the cap take %d values over 91 searches, want them spread", len(spread))
	}
}

// A task without a pickup window whose back-off would run past the maximum wait is searched a last time
// when the wait ends, and becomes UNASSIGNABLE then, not a back-off later.
func TestBackoffEndsAtTheMaximumWait(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{Options: dispatch.Options{MaxWait: 3 * time.Minute}})
	tk := create(t, sys, nil)
	for {
		got := stored(t, sys, tk.ID)
		if got.State == dispatch.StateUnassignable {
			if at, want := got.History[len(got.History)-1].At, tk.CreateTime.Add(3*time.Minute); !at.Equal(want) {
				t.Fatalf("UNASSIGNABLE at %s, want at the end of the maximum wait, %s", at, want)
			}
			return
		}
		if got.Searches == 0 || !got.DueTime.After(sys.Clock.Now()) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if end := tk.CreateTime.Add(3 * time.Minute); got.DueTime.After(end) {
			t.Fatalf("after %d searches: due %s, after the end of the maximum wait %s", got.Searches, got.DueTime, end)
		}
		n := got.Searches
		sys.Clock.Advance(got.DueTime.Sub(sys.Clock.Now()))
		sys.WaitTask(t, tk.ID, fmt.Sprintf("search %d", n+1), func(x dispatch.Task) bool { return x.Searches > n || x.State != dispatch.StatePending })
	}
}
