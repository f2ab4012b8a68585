package dispatch_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
)

// readHookStore is a store whose DeliveriesWithTasks runs a hook once, after its read and before Next
// gets the deliveries: what another goroutine does at that moment.
type readHookStore struct {
	dispatch.Store
	mu   sync.Mutex
	hook func()
}

func (s *readHookStore) DeliveriesWithTasks(ctx context.Context, courierID string, after int64, limit int) ([]dispatch.DeliveryWithTask, error) {
	ds, err := s.Store.DeliveriesWithTasks(ctx, courierID, after, limit)
	s.mu.Lock()
	hook := s.hook
	s.hook = nil
	s.mu.Unlock()
	if hook != nil {
		hook()
	}
	return ds, err
}

// TestNextSkipsADeliveryAcknowledgedWhileItWasRead: an ack is handled by the stream's receiver while
// its sender is in Next. When the ack lands after Next read a batch of deliveries (here: an app flushing,
// right after its hello, the ack of a delivery an earlier session sent), Next must not send the
// deliveries the ack covers: they were acknowledged, and the app would get them again (a duplicate by
// cursor). The next one, unacknowledged, still comes, in cursor order.
func TestNextSkipsADeliveryAcknowledgedWhileItWasRead(t *testing.T) {
	sys := dispatchtest.Start(t, dispatchtest.Config{NoRun: true, NoJobs: true})
	c := dispatchtest.Courier{ID: "0190b100-0000-7000-8000-000000000077", UserID: "0190b000-0000-7000-8000-000000000077"}
	sys.Couriers.Add(c.UserID, dispatch.CourierInfo{ID: c.ID, Capacity: 3, Mode: geo.Bicycle}, &dispatchtest.Berlin)
	var cursors []int64
	for i := range 3 {
		tk, err := sys.Service.CreateTask(dispatchtest.Customer("0190b000-0000-7000-8000-000000000600"),
			dispatchtest.Request(fmt.Sprintf("race-%d", i), dispatchtest.Near(dispatchtest.Berlin, 300), ""))
		if err != nil {
			t.Fatalf("CreateTask: %v", err)
		}
		if _, err := sys.Service.AssignTask(dispatchtest.Dispatcher(), dispatch.AssignRequest{ID: tk.ID, CourierID: c.ID}); err != nil {
			t.Fatalf("AssignTask(%s): %v", tk.ID, err)
		}
		last, err := sys.Store.LastCursor(context.Background(), c.ID)
		if err != nil {
			t.Fatalf("LastCursor: %v", err)
		}
		cursors = append(cursors, last)
	}

	store := &readHookStore{Store: sys.Store}
	svc := dispatch.NewService(dispatch.Deps{Store: store, Couriers: sys.Couriers, Routes: sys.Routes, Events: sys.Events},
		dispatch.Options{Now: sys.Clock.Now})
	ctx := sessCtx(t)
	s, err := svc.OpenSession(dispatchtest.CourierUser(c.UserID), dispatch.Hello{})
	if err != nil {
		t.Fatalf("OpenSession: %v", err)
	}
	t.Cleanup(s.Close)
	var ackErr error
	store.mu.Lock()
	store.hook = func() { ackErr = s.Ack(ctx, cursors[1]) } // Next has read all three
	store.mu.Unlock()

	out, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	if ackErr != nil {
		t.Fatalf("Ack(%d) during the read: %v", cursors[1], ackErr)
	}
	if out.Cursor != cursors[2] || out.Notice == nil || out.Notice.Reason != dispatch.NoticeAssigned {
		t.Errorf("Next() after an ack of %d during its read = %s, want the delivery after it, %d (the acknowledged %d and %d are not sent)",
			cursors[1], sessDescribe(out), cursors[2], cursors[0], cursors[1])
	}
	rec, err := sys.Store.GetSession(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Acked != cursors[1] {
		t.Errorf("acknowledged watermark = %d, want %d", rec.Acked, cursors[1])
	}
}
