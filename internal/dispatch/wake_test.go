package dispatch_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/dispatch/postgres"
	"lastmile/internal/geo"
	"lastmile/internal/platform/database/databasetest"

	"github.com/google/uuid"
)

// offeredNow waits until task id is offered to courierID, and checks that the offer was made at the
// clock's current time: before the task's back-off ended (the tests' clocks never reach it).
func offeredNow(t *testing.T, sys *dispatchtest.System, id, courierID string) {
	t.Helper()
	tk, o := offered(t, sys, id)
	if o.CourierID != courierID || !o.CreateTime.Equal(sys.Clock.Now()) {
		t.Fatalf("task %s offered to %s at %s, want %s at %s (searched %d times)", id, o.CourierID, o.CreateTime, courierID, sys.Clock.Now(), tk.Searches)
	}
}

// waitFollowed waits until sys's follower handled n courier events in all.
func waitFollowed(t *testing.T, sys *dispatchtest.System, n int64) {
	t.Helper()
	waitFor(t, "the follower handled the courier's events", func() bool { return sys.Service.FollowedEvents() >= n })
}

// A connected courier on a break next to a waiting task turns AVAILABLE: the task is offered to them at
// once, not when its back-off ends (the clock never moves here).
func TestCourierTurningAvailableWakesTheWaitingTask(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	sys.Couriers.SetStatus(a.ID, dispatch.CourierOnBreak)
	tk := create(t, sys, nil)
	waitingLater(t, sys, tk.ID)
	sys.Couriers.SetStatus(a.ID, dispatch.CourierAvailable)
	offeredNow(t, sys, tk.ID, a.ID)
}

// A courier whose capacity is raised (the courier service's UpdateCourier) while they are full is free
// for a waiting task at once.
func TestCourierCapacityRaisedWakesTheWaitingTask(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true) // capacity 1
	if _, err := sys.Couriers.Claim(context.Background(), a.ID, "another-task", time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	tk := create(t, sys, nil)
	waitingLater(t, sys, tk.ID)
	sys.Couriers.SetCapacity(a.ID, 2)
	offeredNow(t, sys, tk.ID, a.ID)
}

// A courier who moves within reach of a waiting task (the engine's largest search radius, 15 km by
// default) wakes it; a move that stays out of reach wakes nothing. The back-off is an hour, so that the
// clock may pass the interval between two moves' wakes without ending it.
func TestCourierMovingIntoReachWakesTheWaitingTask(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{Options: dispatch.Options{RetryBackoff: time.Hour, MaxRetryBackoff: time.Hour}})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 40_000), geo.Car, true)
	// The follower handles the courier's arrival before the task is searched and before the clock moves:
	// handled during the task's search, that arrival is a courier freed, which wakes the task once the
	// search deferred it (contention.freed); handled late, it would satisfy the wait for the first move's
	// event below, and that move, handled after the clock moved again, would keep the second from waking
	// anything (one courier's moves wake tasks at most once per wakeMoveEvery).
	waitFollowed(t, sys, 1)
	tk := create(t, sys, nil)
	waitingLater(t, sys, tk.ID)
	before := stored(t, sys, tk.ID)

	n := sys.Service.FollowedEvents()
	sys.Clock.Advance(time.Minute)
	sys.Connect(t, a.ID) // a fresh heartbeat
	freed := sys.Service.CouriersFreed()
	sys.Couriers.Move(a.ID, dispatchtest.Near(dispatchtest.Berlin, 16_000)) // 24 km closer, still out of reach
	waitFollowed(t, sys, n+1)
	// A move is not a courier freed: batches searching meanwhile keep their deferred tasks asleep.
	if got := sys.Service.CouriersFreed(); got != freed {
		t.Fatalf("a move counted %d couriers freed, want 0", got-freed)
	}
	if got := stored(t, sys, tk.ID); got.State != dispatch.StatePending || !got.DueTime.Equal(before.DueTime) || got.Searches != 1 {
		t.Fatalf("after a move out of reach the task is %s, due %s, searched %d times; want PENDING, due %s, searched once",
			got.State, got.DueTime, got.Searches, before.DueTime)
	}

	sys.Clock.Advance(time.Minute)
	sys.Connect(t, a.ID)
	sys.Couriers.Move(a.ID, dispatchtest.Near(dispatchtest.Berlin, 1_000))
	offeredNow(t, sys, tk.ID, a.ID)
}

// A task waits because its only courier is on a break; the courier service restarts (its stream of
// courier states ends) and stays down for a while, during which the courier turns AVAILABLE. Once it is
// back, the follower's new stream opens with a snapshot that shows the courier available: the task is
// offered at once.
func TestCourierStreamReopensAfterACourierRestart(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	sys.Couriers.SetStatus(a.ID, dispatch.CourierOnBreak)
	tk := create(t, sys, nil)
	waitingLater(t, sys, tk.ID)
	waitFor(t, "the follower opened the courier stream", func() bool { return sys.Couriers.Calls("WatchCouriers") == 1 })

	sys.Couriers.SetDown(true)
	sys.Couriers.Restart()
	waitFor(t, "the follower tried to open the stream again", func() bool { return sys.Couriers.Calls("WatchCouriers") >= 2 })
	sys.Couriers.SetStatus(a.ID, dispatch.CourierAvailable) // no stream tells
	if got := stored(t, sys, tk.ID); got.State != dispatch.StatePending {
		t.Fatalf("task %s is %s while the courier service is down, want PENDING", tk.ID, got.State)
	}
	sys.Couriers.SetDown(false)
	offeredNow(t, sys, tk.ID, a.ID)
}

// Two replicas on one PostgreSQL database: replica B, which follows no courier stream, defers a task
// whose only courier is on a break; the courier turning AVAILABLE, seen by replica A's follower, wakes
// it at once.
func TestCourierAvailableWakesATaskDeferredByAnotherReplica(t *testing.T) {
	pool := databasetest.Postgres(t, postgres.Schema)
	b := dispatchtest.Start(t, dispatchtest.Config{Pool: pool, NoWatch: true, Options: dispatch.Options{Replica: "replica-b"}})
	c := b.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	b.Couriers.SetStatus(c.ID, dispatch.CourierOnBreak)
	tk := create(t, b, nil)
	waitingLater(t, b, tk.ID)

	a := dispatchtest.Start(t, dispatchtest.Config{Pool: pool, Couriers: b.Couriers, Clock: b.Clock, Options: dispatch.Options{Replica: "replica-a"}})
	waitFor(t, "replica A follows the courier stream", func() bool { return a.Service.FollowedEvents() >= 1 })
	b.Couriers.SetStatus(c.ID, dispatch.CourierAvailable)
	offeredNow(t, b, tk.ID, c.ID)
}

// A replica's follower that learnt that no task waits asks the store again once another replica defers a
// task: the deferral's TopicWaiting event reaches every replica's hub. Here the other replica's deferral
// is written to the store directly (a task stored waiting for an hour, then deferred by a quiet change
// marked Waiting, as the work loop writes it), so that only the event tells this replica.
func TestWaitingEventOfAnotherReplicaReachesTheFollower(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{})
	ctx := context.Background()
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	waitFollowed(t, sys, 1) // a became available with no task waiting: the follower knows none waits
	sys.Couriers.SetStatus(a.ID, dispatch.CourierOnBreak)
	waitFollowed(t, sys, 2)

	now := sys.Clock.Now()
	req := dispatchtest.Request("elsewhere", dispatchtest.Berlin, a.UserID)
	tk, created, err := sys.Store.CreateTask(ctx, dispatch.Task{
		ID: uuid.NewString(), CustomerID: a.UserID, CreatedBy: "test", RequestID: "elsewhere", State: dispatch.StatePending,
		Pickup: req.Pickup, Dropoff: req.Dropoff, Priority: dispatch.PriorityNormal, Size: dispatch.SizeSmall,
		History:    []dispatch.StateChange{{State: dispatch.StatePending, At: now, Actor: dispatch.ActorCustomer}},
		CreateTime: now, UpdateTime: now, DueTime: now.Add(time.Hour), SearchStart: now,
	})
	if err != nil || !created {
		t.Fatalf("create = %v, %v", created, err)
	}
	gen := sys.Service.WaitGen()
	if _, err := sys.Store.UpdateTask(ctx, tk.ID, func(cur dispatch.Task) (dispatch.Change, error) {
		cur.Searches++
		return dispatch.Change{Task: cur, Quiet: true, Waiting: true}, nil
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the hub routed the TopicWaiting event", func() bool { return sys.Service.WaitGen() > gen })
	sys.Couriers.SetStatus(a.ID, dispatch.CourierAvailable)
	offeredNow(t, sys, tk.ID, a.ID)
}

// A courier wakes only the waiting tasks that may be offered to them: here the four oldest tasks near
// them are two they declined and two large parcels their bicycle cannot carry, and the fifth, which they
// can take, is offered to them at once when they turn AVAILABLE, instead of waiting out its back-off
// while the wake is spent on the four (each searched again for nothing).
func TestCourierWakesOnlyTasksThatMayBeOfferedToThem(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{Options: dispatch.Options{RetryBackoff: time.Hour, MaxRetryBackoff: time.Hour}})
	a := sys.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, true)
	var before []dispatch.Task
	for i := range 2 {
		tk := create(t, sys, nil)
		_, o := offered(t, sys, tk.ID)
		if r := sys.Service.Execute(a.Ctx, a.ID, fmt.Sprintf("decline-%d", i), dispatch.Command{Decline: &dispatch.DeclineCmd{OfferID: o.ID, Reason: dispatch.DeclineTooFar}}); r.Err != nil {
			t.Fatal(r.Err)
		}
		waitingLater(t, sys, tk.ID)
		before = append(before, tk)
		sys.Clock.Advance(time.Second) // the tasks are worked oldest first
	}
	for range 2 {
		tk := create(t, sys, func(r *dispatch.CreateRequest) { r.Size = dispatch.SizeLarge })
		waitingLater(t, sys, tk.ID)
		before = append(before, tk)
		sys.Clock.Advance(time.Second)
	}
	sys.Couriers.SetStatus(a.ID, dispatch.CourierOnBreak)
	tk := create(t, sys, nil)
	waitingLater(t, sys, tk.ID)
	sys.Couriers.SetStatus(a.ID, dispatch.CourierAvailable)
	offeredNow(t, sys, tk.ID, a.ID)
	for _, b := range before {
		if got := stored(t, sys, b.ID); got.State != dispatch.StatePending || !got.DueTime.After(sys.Clock.Now()) {
			t.Errorf("task %s the courier may not be offered is %s, due %s; want PENDING, still waiting", b.ID, got.State, got.DueTime)
		}
	}
}

// A deferral committed before the hub's subscription to the feed started (another replica's, at this
// replica's start or while its hub resubscribed) reaches no subscriber: the hub's new subscription must
// itself tell the courier follower that a task may be waiting, or a follower that learned "none waits"
// before would keep believing it and wake nothing when a courier becomes available.
func TestHubSubscriptionAssumesATaskMayWait(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true})
	gen := sys.Service.WaitGen()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sys.Service.RunHub(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunHub: %v", err)
		}
	})
	waitFor(t, "the hub's subscription counted as a possible deferral", func() bool { return sys.Service.WaitGen() > gen })
}
