package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
)

// TestTwoReplicasOnPostgreSQL runs two dispatch replicas on one PostgreSQL database: the offer made by
// whichever replica works the task reaches the courier's session on replica B, the acceptance through B
// is seen by a WatchTask on replica A, and a task leased by a replica that died is taken over once its
// lease runs out.
func TestTwoReplicasOnPostgreSQL(t *testing.T) {
	a, b := twoReplicas(t, dispatchtest.Config{}) // the accounts, shared too, are all active: this test sets none

	c := a.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 200), geo.Bicycle, false)
	ctx, cancel := context.WithTimeout(c.Ctx, time.Minute)
	defer cancel()
	sess, err := b.Service.OpenSession(ctx, dispatch.Hello{})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()

	tk := create(t, a, nil)
	// Replica A watches the task.
	updates := make(chan dispatch.Task, 64)
	go func() {
		_ = a.Service.WatchTask(dispatchtest.Dispatcher(), tk.ID, func(u dispatch.TaskUpdate) error {
			if u.Task != nil {
				updates <- *u.Task
			}
			return nil
		})
	}()

	out, err := sess.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out.Offer == nil || out.Offer.Task.ID != tk.ID || out.Offer.Offer.CourierID != c.ID {
		t.Fatalf("session on B got %+v, want the offer of task %s", out, tk.ID)
	}
	res := sess.Execute(ctx, "accept-1", dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: out.Offer.Offer.ID}})
	if res.Err != nil {
		t.Fatalf("accept through B: %+v", res.Err)
	}
	for {
		select {
		case u := <-updates:
			if u.State != dispatch.StateAssigned {
				continue
			}
			if u.CourierID != c.ID {
				t.Fatalf("watch on A saw holder %s, want %s", u.CourierID, c.ID)
			}
		case <-ctx.Done():
			t.Fatal("the watch on replica A never saw the acceptance made through replica B")
		}
		break
	}

	// A replica that leased a task and died: nobody works it until the lease runs out, then a live
	// replica does. The task is stored due 10 s from now, so that only the dead replica (whose clock we
	// play) can lease it at first.
	now := a.Clock.Now()
	req := dispatchtest.Request("dead-lease", dispatchtest.Berlin, c.UserID)
	tk2, created, err := b.Store.CreateTask(context.Background(), dispatch.Task{
		ID: uuid.NewString(), CustomerID: c.UserID, CreatedBy: "test", RequestID: "dead-lease", State: dispatch.StatePending,
		Pickup: req.Pickup, Dropoff: req.Dropoff, Priority: dispatch.PriorityNormal, Size: dispatch.SizeSmall,
		History:    []dispatch.StateChange{{State: dispatch.StatePending, At: now, Actor: dispatch.ActorCustomer}},
		CreateTime: now, UpdateTime: now, DueTime: now.Add(10 * time.Second), SearchStart: now,
	})
	if err != nil || !created {
		t.Fatalf("create = %v, %v", created, err)
	}
	leased, err := b.Store.LeaseDue(context.Background(), "replica-dead", now.Add(10*time.Second), 30*time.Second, 10)
	if err != nil || len(leased) != 1 || leased[0].ID != tk2.ID {
		t.Fatalf("the dead replica leased %+v, %v; want task %s", leased, err, tk2.ID)
	}
	// c2 is connected (and has a fresh fix) before the lease runs out, not after: a live replica works
	// the task on its next poll once the lease ended, and a search that ran before c2 was connected
	// would defer the task by a back-off of the test's clock, which never passes (the test once failed
	// so under load, Searches 1). So the clock moves in two steps: past the due time while the dead
	// lease still holds (c2 connects then), then past the lease, with c2's heartbeat 16 s old (live).
	c2 := b.AddCourier(t, dispatchtest.Near(dispatchtest.Berlin, 100), geo.Bicycle, false)
	a.Clock.Advance(25 * time.Second) // past the due time, within the dead lease (until now+40 s)
	b.Connect(t, c2.ID)
	a.Couriers.Move(c2.ID, dispatchtest.Near(dispatchtest.Berlin, 100))
	a.Clock.Advance(16 * time.Second) // past the dead lease
	got := a.WaitTask(t, tk2.ID, "offered after the dead replica's lease ran out", dispatchtest.InState(dispatch.StateOffered))
	o := got.CurrentOffer()
	if o.CourierID != c2.ID {
		t.Fatalf("offer to %s, want %s", o.CourierID, c2.ID)
	}
	if want := now.Add(41 * time.Second); !o.CreateTime.Equal(want) {
		t.Fatalf("offer made at %s, want %s: only once the dead replica's lease ran out", o.CreateTime, want)
	}
}
