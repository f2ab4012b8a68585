package dispatch_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
	"lastmile/internal/platform/eventlog"
)

// watchRun runs a watch in a goroutine, handing what it sends to a channel; wait returns its result.
type watchRun[T any] struct {
	items chan T
	done  chan error
}

func startWatch[T any](t *testing.T, ctx context.Context, watch func(ctx context.Context, send func(T) error) error) *watchRun[T] {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	w := &watchRun[T]{items: make(chan T, 64), done: make(chan error, 1)}
	go func() {
		w.done <- watch(ctx, func(item T) error {
			select {
			case w.items <- item:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-w.done
	})
	return w
}

// recv returns the watch's next item; it fails the test when the watch ends or hangs.
func (w *watchRun[T]) recv(t *testing.T) T {
	t.Helper()
	select {
	case item := <-w.items:
		return item
	case err := <-w.done:
		w.done <- err
		select {
		case item := <-w.items: // sent before the end
			return item
		default:
		}
		t.Fatalf("watch ended with %v, want another item", err)
	case <-time.After(sessTimeout):
		t.Fatal("no item from the watch")
	}
	panic("unreachable")
}

// wait returns the watch's result.
func (w *watchRun[T]) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.done:
		w.done <- err
		return err
	case item := <-w.items:
		t.Fatalf("watch sent %+v, want its end", item)
	case <-time.After(sessTimeout):
		t.Fatal("the watch did not end")
	}
	return nil
}

func describeUpdate(u dispatch.TaskUpdate) string {
	s := ""
	if u.Task != nil {
		s += fmt.Sprintf("task %s v%d", u.Task.State, u.Task.Version)
	}
	if u.Fix != nil {
		s += fmt.Sprintf(" fix %v", u.Fix.Location)
	}
	if u.ETA != nil {
		s += fmt.Sprintf(" eta pickup %s dropoff %s computed %s degraded %v", u.ETA.PickupTime.Format(time.TimeOnly),
			u.ETA.DropoffTime.Format(time.TimeOnly), u.ETA.ComputeTime.Format(time.TimeOnly), u.ETA.Degraded)
	}
	return s
}

// routeTime is the fake route's travel time from a to b.
func routeTime(a, b geo.LatLng) time.Duration {
	return time.Duration(geo.Distance(a, b) / 10 * float64(time.Second)).Round(time.Second)
}

func TestWatchTaskSendsASnapshotThenChangesAndEndsAfterAFinalState(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{TrackInterval: 5 * time.Millisecond})
	f.newTask(t, 1, 1)
	start := geo.LatLng{Lat: 52.5100, Lng: 13.4050}
	f.couriers.setFix(sessCourier(1), geo.Bicycle, start, sessT0)
	w := startWatch(t, asCustomer(sessCtx(t), 601), func(ctx context.Context, send func(dispatch.TaskUpdate) error) error {
		return f.svc.WatchTask(ctx, sessTaskID(1), send)
	})
	if got, want := describeUpdate(w.recv(t)), "task pending v1"; got != want {
		t.Fatalf("snapshot = %q, want %q", got, want)
	}
	f.offer(t, sessTaskID(1), 1, 1)
	if got, want := describeUpdate(w.recv(t)), "task offered v2"; got != want {
		t.Fatalf("after the offer = %q, want %q", got, want)
	}

	f.assign(t, sessTaskID(1), 1)
	now := f.clock.Now()
	eta := func(pickup, dropoff time.Time) string {
		p := "00:00:00"
		if !pickup.IsZero() {
			p = pickup.Format(time.TimeOnly)
		}
		return fmt.Sprintf("eta pickup %s dropoff %s computed %s degraded false", p, dropoff.Format(time.TimeOnly), now.Format(time.TimeOnly))
	}
	toPickup, leg := routeTime(start, sessPickup), routeTime(sessPickup, sessDropoff)
	want := fmt.Sprintf("task assigned v3 fix %v %s", start, eta(now.Add(toPickup), now.Add(toPickup+leg)))
	if got := describeUpdate(w.recv(t)); got != want {
		t.Fatalf("after the assignment = %q, want %q", got, want)
	}

	// From now on the clock stands still, so that only the courier's moves change the estimate.
	f.step = 0
	// The courier moves: the next refresh sends the position and the new estimate, and nothing else.
	moved := geo.LatLng{Lat: 52.5150, Lng: 13.4050}
	f.couriers.setFix(sessCourier(1), geo.Bicycle, moved, sessT0.Add(time.Minute))
	toPickup = routeTime(moved, sessPickup)
	want = fmt.Sprintf(" fix %v %s", moved, eta(now.Add(toPickup), now.Add(toPickup+leg)))
	if got := describeUpdate(w.recv(t)); got != want {
		t.Fatalf("after the courier moved = %q, want %q", got, want)
	}

	f.setState(t, sessTaskID(1), dispatch.StatePickedUp)
	want = fmt.Sprintf("task picked_up v4 %s", eta(time.Time{}, now.Add(routeTime(moved, sessDropoff))))
	if got := describeUpdate(w.recv(t)); got != want {
		t.Fatalf("after the pickup = %q, want %q", got, want)
	}

	f.setState(t, sessTaskID(1), dispatch.StateCancelled)
	if got, want := describeUpdate(w.recv(t)), "task cancelled v5"; got != want {
		t.Fatalf("after the cancellation = %q, want %q", got, want)
	}
	if err := w.wait(t); err != nil {
		t.Errorf("WatchTask after a final state = %v, want nil", err)
	}
}

// A task id in upper case is the same UUID: the watch, by its customer or through a share link, gets
// the task's changes and ends after its final state, not only the snapshot.
func TestWatchTaskByAnUpperCaseID(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{TrackInterval: time.Hour})
	f.newTask(t, 1, 1)
	id := strings.ToUpper(sessTaskID(1))
	customer := asCustomer(sessCtx(t), 601)
	link, err := f.svc.CreateShareLink(customer, sessTaskID(1), 0)
	if err != nil {
		t.Fatal(err)
	}
	watches := map[string]*watchRun[dispatch.TaskUpdate]{
		"customer": startWatch(t, customer, func(ctx context.Context, send func(dispatch.TaskUpdate) error) error {
			return f.svc.WatchTask(ctx, id, send)
		}),
		"share link": startWatch(t, sessCtx(t), func(ctx context.Context, send func(dispatch.TaskUpdate) error) error {
			return f.svc.WatchSharedTask(ctx, id, link.Token, send)
		}),
	}
	for name, w := range watches {
		if got, want := describeUpdate(w.recv(t)), "task pending v1"; got != want {
			t.Fatalf("%s: snapshot = %q, want %q", name, got, want)
		}
	}
	f.setState(t, sessTaskID(1), dispatch.StateCancelled)
	for name, w := range watches {
		if got, want := describeUpdate(w.recv(t)), "task cancelled v2"; got != want {
			t.Fatalf("%s: after the cancellation = %q, want %q", name, got, want)
		}
		if err := w.wait(t); err != nil {
			t.Errorf("%s: WatchTask after a final state = %v, want nil", name, err)
		}
	}
}

func TestWatchTaskFallsBackToTheLocalEstimate(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{TrackInterval: time.Hour})
	f.newTask(t, 1, 1)
	f.assign(t, sessTaskID(1), 1)
	f.couriers.setFix(sessCourier(1), geo.Bicycle, sessPickup, sessT0)
	f.routes.mu.Lock()
	f.routes.down = true
	f.routes.mu.Unlock()
	w := startWatch(t, asDispatcher(sessCtx(t)), func(ctx context.Context, send func(dispatch.TaskUpdate) error) error {
		return f.svc.WatchTask(ctx, sessTaskID(1), send)
	})
	u := w.recv(t)
	if u.Task == nil || u.Fix == nil || u.ETA == nil {
		t.Fatalf("snapshot = %q, want the task, the position and an estimate", describeUpdate(u))
	}
	now := f.clock.Now()
	// From the pickup itself: 0 s to the pickup; then geo's estimate to the dropoff.
	leg, _ := geo.EstimateTravel(sessPickup, sessDropoff, geo.Bicycle)
	if leg <= 0 {
		t.Fatalf("EstimateTravel(pickup, dropoff) = %v, want a positive duration", leg)
	}
	if !u.ETA.Degraded || !u.ETA.PickupTime.Equal(now) || !u.ETA.DropoffTime.Equal(now.Add(leg).Truncate(time.Second)) {
		t.Errorf("ETA with route down = %+v, want degraded, pickup %v, dropoff %v", u.ETA, now, now.Add(leg))
	}
}

func TestWatchTaskHidesOthersTasks(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	f.newTask(t, 1, 1)
	for name, ctx := range map[string]context.Context{
		"another customer": asCustomer(sessCtx(t), 602),
		"a courier":        asCourier(sessCtx(t), 1),
	} {
		err := f.svc.WatchTask(ctx, sessTaskID(1), func(u dispatch.TaskUpdate) error {
			t.Errorf("WatchTask as %s sent %q", name, describeUpdate(u))
			return nil
		})
		apperrtest.WantCode(t, "WatchTask as "+name, err, apperr.NotFound)
	}
	err := f.svc.WatchTask(asDispatcher(sessCtx(t)), sessTaskID(99), func(dispatch.TaskUpdate) error { return nil })
	apperrtest.WantCode(t, "WatchTask of a missing task", err, apperr.NotFound)
}

// A courier who held a task, or was offered it, may still watch it once another courier holds it, but,
// like the holder's id, the holder's position and ETA are not theirs to see.
func TestWatchTaskSendsOtherCouriersNoPositionOfTheHolder(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{TrackInterval: 5 * time.Millisecond})
	f.newTask(t, 1, 1)
	hold := func(courier int) {
		f.update(t, sessTaskID(1), func(task *dispatch.Task) []dispatch.Delivery {
			now := f.clock.Now()
			task.State, task.CourierID, task.AssignTime = dispatch.StateAssigned, sessCourier(courier), now
			task.History = append(task.History, dispatch.StateChange{State: dispatch.StateAssigned, At: now,
				Actor: dispatch.ActorDispatcher, ActorUserID: sessUser(900), CourierID: sessCourier(courier)})
			return nil
		})
	}
	f.couriers.setFix(sessCourier(1), geo.Bicycle, sessPickup, sessT0)
	second := geo.LatLng{Lat: 52.5100, Lng: 13.4050}
	f.couriers.setFix(sessCourier(2), geo.Bicycle, second, sessT0)
	hold(1)
	watchAs := func(ctx context.Context) *watchRun[dispatch.TaskUpdate] {
		return startWatch(t, ctx, func(ctx context.Context, send func(dispatch.TaskUpdate) error) error {
			return f.svc.WatchTask(ctx, sessTaskID(1), send)
		})
	}
	w := watchAs(asCourier(sessCtx(t), 1))
	if u := w.recv(t); u.Task == nil || u.Fix == nil || u.Fix.Location != sessPickup || u.ETA == nil {
		t.Fatalf("the holder's snapshot = %q, want the task, their own position and an estimate", describeUpdate(u))
	}

	hold(2)
	u := w.recv(t)
	for u.Task == nil { // a refresh of their own position and estimate, sent before the reassignment was seen
		u = w.recv(t)
	}
	if u.Task.CourierID != "" || u.Fix != nil || u.ETA != nil {
		t.Fatalf("the former holder's update after the reassignment = %q (courier %q), want the task alone, without a courier",
			describeUpdate(u), u.Task.CourierID)
	}
	f.couriers.setFix(sessCourier(2), geo.Bicycle, sessPickup, sessT0.Add(time.Minute)) // the new holder moves
	f.setState(t, sessTaskID(1), dispatch.StatePickedUp)
	if got, want := describeUpdate(w.recv(t)), "task picked_up v4"; got != want {
		t.Fatalf("the former holder's next update = %q, want %q (no position, no estimate)", got, want)
	}
	if u := watchAs(asCourier(sessCtx(t), 1)).recv(t); u.Task == nil || u.Fix != nil || u.ETA != nil {
		t.Errorf("a new watch of the former holder = %q, want the task alone", describeUpdate(u))
	}

	// The new holder, the customer and staff still get the holder's position.
	for name, ctx := range map[string]context.Context{
		"the holder":     asCourier(sessCtx(t), 2),
		"the customer":   asCustomer(sessCtx(t), 601),
		"the dispatcher": asDispatcher(sessCtx(t)),
	} {
		if u := watchAs(ctx).recv(t); u.Task == nil || u.Fix == nil || u.Fix.Location != sessPickup || u.ETA == nil {
			t.Errorf("the snapshot of %s = %q, want the task, the holder's position and an estimate", name, describeUpdate(u))
		}
	}
}

func describeItem(it dispatch.WatchItem) string {
	switch {
	case it.Task != nil:
		return fmt.Sprintf("%s %s", it.Task.ID, it.Task.State)
	case it.SnapshotComplete != nil:
		return fmt.Sprintf("complete %d truncated %v", it.SnapshotComplete.TaskCount, it.SnapshotComplete.Truncated)
	}
	return "empty"
}

func TestWatchTasksSendsTheSnapshotThenChangesAndDropOuts(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	f.newTask(t, 1, 1)
	f.newTask(t, 2, 1)
	f.newTask(t, 3, 1)
	f.newTask(t, 5, 2)
	f.offer(t, sessTaskID(2), 2, 1)
	f.setState(t, sessTaskID(3), dispatch.StateDelivered)

	filter := dispatch.TaskFilter{States: []dispatch.State{dispatch.StatePending, dispatch.StateOffered}}
	w := startWatch(t, asDispatcher(sessCtx(t)), func(ctx context.Context, send func(dispatch.WatchItem) error) error {
		return f.svc.WatchTasks(ctx, filter, "", send)
	})
	var got []string
	for range 4 {
		got = append(got, describeItem(w.recv(t)))
	}
	want := []string{
		sessTaskID(2) + " offered", // the most recently updated first
		sessTaskID(5) + " pending",
		sessTaskID(1) + " pending",
		"complete 3 truncated false",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("snapshot (-want +got):\n%s", diff)
	}

	f.newTask(t, 4, 1)
	f.assign(t, sessTaskID(1), 1) // stops matching: sent once more
	got = nil
	for range 2 {
		got = append(got, describeItem(w.recv(t)))
	}
	// Changes of different tasks may come in either order (a lagging watcher's updates are coalesced per
	// task); each task's latest state must be there.
	want = []string{sessTaskID(4) + " pending", sessTaskID(1) + " assigned"}
	slices.Sort(got)
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("live changes (-want +got):\n%s", diff)
	}
	f.setState(t, sessTaskID(1), dispatch.StatePickedUp)  // no longer matching: not sent
	f.setState(t, sessTaskID(5), dispatch.StateCancelled) // stops matching: sent once more
	if got, want := describeItem(w.recv(t)), sessTaskID(5)+" cancelled"; got != want {
		t.Errorf("after task 1 was picked up and task 5 cancelled: %q, want %q", got, want)
	}
}

func TestWatchTasksScopesCustomersAndCouriersToTheirOwn(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	f.newTask(t, 1, 1)
	f.newTask(t, 2, 2)
	f.assign(t, sessTaskID(2), 1)

	for _, tc := range []struct {
		name   string
		ctx    context.Context
		filter dispatch.TaskFilter
		want   []string
	}{
		{"customer", asCustomer(sessCtx(t), 601), dispatch.TaskFilter{}, []string{sessTaskID(1) + " pending", "complete 1 truncated false"}},
		{"courier", asCourier(sessCtx(t), 1), dispatch.TaskFilter{}, []string{sessTaskID(2) + " assigned", "complete 1 truncated false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWatch(t, tc.ctx, func(ctx context.Context, send func(dispatch.WatchItem) error) error {
				return f.svc.WatchTasks(ctx, tc.filter, dispatch.ViewBasic, send)
			})
			var got []string
			for range tc.want {
				got = append(got, describeItem(w.recv(t)))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("snapshot (-want +got):\n%s", diff)
			}
		})
	}

	for _, tc := range []struct {
		name   string
		ctx    context.Context
		filter dispatch.TaskFilter
	}{
		{"customer asking for another's", asCustomer(sessCtx(t), 601), dispatch.TaskFilter{CustomerID: sessUser(602)}},
		{"courier asking for another's", asCourier(sessCtx(t), 1), dispatch.TaskFilter{CourierID: sessCourier(2)}},
	} {
		err := f.svc.WatchTasks(tc.ctx, tc.filter, "", func(it dispatch.WatchItem) error {
			t.Errorf("WatchTasks(%s) sent %q", tc.name, describeItem(it))
			return nil
		})
		apperrtest.WantCode(t, "WatchTasks("+tc.name+")", err, apperr.PermissionDenied)
	}
}

// With a one-event buffer, a change with a delivery (two events) drops the hub from the feed: the list
// watcher takes a fresh snapshot, and still sees the task leave its filter.
func TestWatchTasksAfterTheHubFellBehind(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{}, eventlog.Options{Poll: 5 * time.Millisecond, Buffer: 1})
	f.newTask(t, 1, 1)
	f.newTask(t, 2, 1)
	filter := dispatch.TaskFilter{States: []dispatch.State{dispatch.StatePending}}
	w := startWatch(t, asDispatcher(sessCtx(t)), func(ctx context.Context, send func(dispatch.WatchItem) error) error {
		return f.svc.WatchTasks(ctx, filter, dispatch.ViewBasic, send)
	})
	var got []string
	for range 3 {
		got = append(got, describeItem(w.recv(t)))
	}
	want := []string{sessTaskID(2) + " pending", sessTaskID(1) + " pending", "complete 2 truncated false"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("snapshot (-want +got):\n%s", diff)
	}
	f.assign(t, sessTaskID(1), 1)
	if got, want := describeItem(w.recv(t)), sessTaskID(1)+" assigned"; got != want {
		t.Errorf("after the assignment = %q, want %q", got, want)
	}
	f.newTask(t, 3, 1)
	if got, want := describeItem(w.recv(t)), sessTaskID(3)+" pending"; got != want {
		t.Errorf("after a new task = %q, want %q", got, want)
	}
}

// A resumed watch (WatchTasksSince) also sends the tasks that finished at or after since, after the open
// ones, so a reader that was away learns their final states; those finished before are not sent.
func TestWatchTasksSinceSendsTheTasksFinishedSince(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	for n := 1; n <= 4; n++ {
		f.newTask(t, n, 1) // at T0+1s .. T0+4s
	}
	f.newTask(t, 5, 2)                                    // T0+5s, another customer
	f.setState(t, sessTaskID(3), dispatch.StateDelivered) // T0+6s: before since
	since := f.clock.Now().Add(500 * time.Millisecond)
	f.setState(t, sessTaskID(4), dispatch.StateCancelled) // T0+7s
	f.setState(t, sessTaskID(2), dispatch.StateFailed)    // T0+8s

	for _, tc := range []struct {
		name   string
		ctx    context.Context
		filter dispatch.TaskFilter
		since  time.Time
		want   []string
	}{
		{"dispatcher", asDispatcher(sessCtx(t)), dispatch.TaskFilter{}, since, []string{
			sessTaskID(5) + " pending", sessTaskID(1) + " pending", // the open tasks, all of them
			sessTaskID(2) + " failed", sessTaskID(4) + " cancelled", // then the finished, the latest first
			"complete 4 truncated false",
		}},
		{"since exactly the update", asDispatcher(sessCtx(t)), dispatch.TaskFilter{}, sessT0.Add(7 * time.Second), []string{
			sessTaskID(5) + " pending", sessTaskID(1) + " pending",
			sessTaskID(2) + " failed", sessTaskID(4) + " cancelled",
			"complete 4 truncated false",
		}},
		{"a day ago", asDispatcher(sessCtx(t)), dispatch.TaskFilter{}, f.clock.Now().Add(-dispatch.MaxChangedSince), []string{
			sessTaskID(5) + " pending", sessTaskID(1) + " pending",
			sessTaskID(2) + " failed", sessTaskID(4) + " cancelled", sessTaskID(3) + " delivered",
			"complete 5 truncated false",
		}},
		{"without since", asDispatcher(sessCtx(t)), dispatch.TaskFilter{}, time.Time{}, []string{
			sessTaskID(5) + " pending", sessTaskID(1) + " pending",
			"complete 2 truncated false",
		}},
		{"state filter", asDispatcher(sessCtx(t)), dispatch.TaskFilter{States: []dispatch.State{dispatch.StateCancelled, dispatch.StatePending}}, since, []string{
			sessTaskID(5) + " pending", sessTaskID(1) + " pending",
			sessTaskID(4) + " cancelled",
			"complete 3 truncated false",
		}},
		{"customer", asCustomer(sessCtx(t), 602), dispatch.TaskFilter{}, since, []string{
			sessTaskID(5) + " pending",
			"complete 1 truncated false",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWatch(t, tc.ctx, func(ctx context.Context, send func(dispatch.WatchItem) error) error {
				return f.svc.WatchTasksSince(ctx, tc.filter, dispatch.ViewBasic, tc.since, send)
			})
			var got []string
			for range tc.want {
				got = append(got, describeItem(w.recv(t)))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("snapshot (-want +got):\n%s", diff)
			}
		})
	}

	// Live changes follow the snapshot as before.
	w := startWatch(t, asDispatcher(sessCtx(t)), func(ctx context.Context, send func(dispatch.WatchItem) error) error {
		return f.svc.WatchTasksSince(ctx, dispatch.TaskFilter{}, dispatch.ViewBasic, since, send)
	})
	for range 5 {
		w.recv(t)
	}
	f.setState(t, sessTaskID(1), dispatch.StateDelivered)
	// Changes made before the watch began may still be on their way through the feed when its snapshot
	// is taken, and arrive after it again, as they were (a watcher may see a state twice, never an older
	// one): the first news of task 1 must be its delivery.
	for n := 0; ; n++ {
		got := describeItem(w.recv(t))
		if strings.HasPrefix(got, sessTaskID(1)+" ") {
			if want := sessTaskID(1) + " delivered"; got != want {
				t.Errorf("after task 1 was delivered = %q, want %q", got, want)
			}
			break
		}
		if known := map[string]bool{sessTaskID(2) + " failed": true, sessTaskID(3) + " delivered": true, sessTaskID(4) + " cancelled": true}; !known[got] || n == 10 {
			t.Fatalf("after task 1 was delivered: %q, which is neither task 1 nor a state seen before", got)
		}
	}

	now := f.clock.Now()
	for _, bad := range []time.Time{now.Add(-dispatch.MaxChangedSince - time.Microsecond), now.Add(dispatch.MaxChangedSince + time.Second)} {
		err := f.svc.WatchTasksSince(asDispatcher(sessCtx(t)), dispatch.TaskFilter{}, "", bad, func(it dispatch.WatchItem) error {
			t.Errorf("WatchTasksSince(%v) sent %q", bad, describeItem(it))
			return nil
		})
		apperrtest.WantCode(t, fmt.Sprintf("WatchTasksSince(%v)", bad), err, apperr.Invalid)
		apperrtest.WantViolations(t, fmt.Sprintf("WatchTasksSince(%v)", bad), err, []string{"changed_since"})
	}
}
