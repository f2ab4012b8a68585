package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/jobargs"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
)

func testJobs(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, offer(newTask(1), 1, 1, 1))
	release := at(30).Add(789)
	_, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{Task: assign(cur, 1, 2), Jobs: []dispatch.Job{
			{Kind: dispatch.JobClaim, CourierID: courierID(1), TaskID: cur.ID, ExpectedRelease: release},
			{Kind: dispatch.JobRelease, CourierID: courierID(2), TaskID: cur.ID},
		}}, nil
	})
	if err != nil {
		t.Fatalf("UpdateTask(with jobs): %v", err)
	}
	want := []riverJob{
		{Kind: jobargs.KindClaim, Args: map[string]any{"courier_id": courierID(1), "task_id": taskID(1),
			"expected_release": release.UTC().Format(time.RFC3339Nano)}},
		{Kind: jobargs.KindRelease, Args: map[string]any{"courier_id": courierID(2), "task_id": taskID(1)}},
	}
	if diff := cmp.Diff(want, riverJobs(ctx, t, s)); diff != "" {
		t.Errorf("jobs after the update (-want +got):\n%s", diff)
	}
	// A failing closure enqueues nothing.
	_, err = s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{Task: cur, Jobs: []dispatch.Job{{Kind: dispatch.JobRelease, CourierID: courierID(1), TaskID: cur.ID}}},
			apperr.Errorf(apperr.FailedPrecondition, "no")
	})
	wantCode(t, "UpdateTask(failing, with jobs)", err, apperr.FailedPrecondition)
	// Nor does a job of an unknown kind, which fails the whole change.
	_, err = s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		cur.Notes = "changed"
		return dispatch.Change{Task: cur, Jobs: []dispatch.Job{
			{Kind: dispatch.JobRelease, CourierID: courierID(1), TaskID: cur.ID},
			{Kind: "teleport", CourierID: courierID(1), TaskID: cur.ID},
		}}, nil
	})
	wantCode(t, "UpdateTask(unknown job kind)", err, apperr.Internal)
	if diff := cmp.Diff(want, riverJobs(ctx, t, s)); diff != "" {
		t.Errorf("jobs after failed updates (-want +got):\n%s", diff)
	}
	if got := mustGet(ctx, t, s, taskID(1)); got.Version != 2 || got.Notes == "changed" {
		t.Errorf("task after failed updates = version %d notes %q, want version 2 and the notes unchanged", got.Version, got.Notes)
	}
}

func testJobsWithoutQueue(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newTask(1))
	_, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		cur = assign(cur, 1, 2)
		return dispatch.Change{Task: cur, Jobs: []dispatch.Job{{Kind: dispatch.JobClaim, CourierID: courierID(1), TaskID: cur.ID}}}, nil
	})
	wantCode(t, "UpdateTask(jobs, no queue)", err, apperr.Internal)
	if got := mustGet(ctx, t, s, taskID(1)); got.Version != 1 || got.State != dispatch.StatePending {
		t.Errorf("task after the refused update = version %d %s, want 1 pending", got.Version, got.State)
	}
	// Without jobs a change needs no queue.
	if out := set(ctx, t, s, taskID(1), func(cur dispatch.Task) dispatch.Task { return assign(cur, 1, 2) }); out.Version != 2 {
		t.Errorf("UpdateTask(no jobs) version = %d, want 2", out.Version)
	}
}

func testDeliveries(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newTask(1))
	mustCreate(ctx, t, s, newTask(2))
	deliver := func(id string, ds ...dispatch.Delivery) {
		t.Helper()
		_, err := s.UpdateTask(ctx, id, func(cur dispatch.Task) (dispatch.Change, error) {
			cur.UpdateTime = at(50)
			return dispatch.Change{Task: cur, Deliveries: ds}, nil
		})
		if err != nil {
			t.Fatalf("UpdateTask(deliveries): %v", err)
		}
	}
	d := func(c int, kind dispatch.DeliveryKind, task, o int, r dispatch.NoticeReason, m int) dispatch.Delivery {
		dl := dispatch.Delivery{CourierID: courierID(c), Kind: kind, TaskID: taskID(task), Reason: r}
		if o > 0 {
			dl.OfferID = offerID(o)
		}
		if m > 0 {
			dl.CreateTime = at(m)
		}
		return dl
	}
	deliver(taskID(1), d(1, dispatch.DeliveryOffer, 1, 1, "", 3), d(2, dispatch.DeliveryTask, 1, 0, dispatch.NoticeCancelled, 3))
	deliver(taskID(2), d(1, dispatch.DeliveryOfferClosed, 2, 2, "", 4))
	deliver(taskID(1), d(1, dispatch.DeliveryTask, 1, 0, dispatch.NoticeAssigned, 0)) // time from the task's update

	all, err := s.Deliveries(ctx, courierID(1), 0, 100)
	if err != nil {
		t.Fatalf("Deliveries: %v", err)
	}
	want := []dispatch.Delivery{
		d(1, dispatch.DeliveryOffer, 1, 1, "", 3),
		d(1, dispatch.DeliveryOfferClosed, 2, 2, "", 4),
		d(1, dispatch.DeliveryTask, 1, 0, dispatch.NoticeAssigned, 50),
	}
	for i := range want {
		want[i].CreateTime = utc(want[i].CreateTime)
		if len(all) == len(want) {
			want[i].Cursor = all[i].Cursor
		}
	}
	if diff := cmp.Diff(want, all, cmpOpts...); diff != "" {
		t.Fatalf("Deliveries(courier 1) (-want +got):\n%s", diff)
	}
	for i := 1; i < len(all); i++ {
		if all[i].Cursor <= all[i-1].Cursor {
			t.Errorf("cursors %d then %d: want strictly increasing", all[i-1].Cursor, all[i].Cursor)
		}
	}
	if all[0].Cursor <= 0 {
		t.Errorf("first cursor %d, want positive", all[0].Cursor)
	}
	after, err := s.Deliveries(ctx, courierID(1), all[0].Cursor, 1)
	if diff := cmp.Diff(all[1:2], after, cmpOpts...); err != nil || diff != "" {
		t.Errorf("Deliveries(after the first, limit 1) error %v (-want +got):\n%s", err, diff)
	}
	if rest, err := s.Deliveries(ctx, courierID(1), all[2].Cursor, 10); err != nil || len(rest) != 0 {
		t.Errorf("Deliveries(after the last) = %v, %v, want none", rest, err)
	}
	other, err := s.Deliveries(ctx, courierID(2), 0, 10)
	if err != nil || len(other) != 1 || other[0].Reason != dispatch.NoticeCancelled || other[0].Cursor <= all[0].Cursor || other[0].Cursor >= all[1].Cursor {
		t.Errorf("Deliveries(courier 2) = %+v, %v, want the one cancellation notice, its cursor between courier 1's first two", other, err)
	}
	for c, want := range map[int]int64{1: all[2].Cursor, 2: other[0].Cursor, 3: 0} {
		if got, err := s.LastCursor(ctx, courierID(c)); err != nil || got != want {
			t.Errorf("LastCursor(courier %d) = %d, %v, want %d", c, got, err, want)
		}
	}
	_, err = s.Deliveries(ctx, courierID(1), 0, 0)
	wantCode(t, "Deliveries(limit 0)", err, apperr.Invalid)
}

// testDeliveriesConcurrent: deliveries appended by concurrent changes get distinct cursors, increasing
// per courier in the order the changes committed.
func testDeliveriesConcurrent(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	const n = 10
	for i := 1; i <= n; i++ {
		mustCreate(ctx, t, s, newTask(i))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 1; i <= n; i++ {
		wg.Go(func() {
			_, errs[i-1] = s.UpdateTask(ctx, taskID(i), func(cur dispatch.Task) (dispatch.Change, error) {
				return dispatch.Change{Task: cur, Deliveries: []dispatch.Delivery{
					{CourierID: courierID(1), Kind: dispatch.DeliveryTask, TaskID: cur.ID, Reason: dispatch.NoticeUpdated, CreateTime: at(i)},
					{CourierID: courierID(1), Kind: dispatch.DeliveryTask, TaskID: cur.ID, Reason: dispatch.NoticeUpdated, CreateTime: at(i)},
				}}, nil
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent UpdateTask: %v", err)
	}
	all, err := s.Deliveries(ctx, courierID(1), 0, 100)
	if err != nil || len(all) != 2*n {
		t.Fatalf("Deliveries = %d, %v, want %d", len(all), err, 2*n)
	}
	// Each change's two deliveries are adjacent: changes commit one after the other.
	for i := 0; i < len(all); i += 2 {
		if all[i].TaskID != all[i+1].TaskID || all[i+1].Cursor <= all[i].Cursor {
			t.Errorf("deliveries %d and %d: tasks %s, %s cursors %d, %d; want one task's two, increasing",
				i, i+1, all[i].TaskID, all[i+1].TaskID, all[i].Cursor, all[i+1].Cursor)
		}
		if i > 0 && all[i].Cursor <= all[i-1].Cursor {
			t.Errorf("cursor %d after %d, want increasing", all[i].Cursor, all[i-1].Cursor)
		}
	}
}

func testCommands(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, offer(newTask(1), 1, 1, 1))
	if _, found, err := s.Command(ctx, courierID(1), "cmd-1"); err != nil || found {
		t.Errorf("Command(none) = found %v, %v, want false, nil", found, err)
	}
	ok := dispatch.CommandRecord{CourierID: courierID(1), CommandID: "cmd-1", Fingerprint: "fp-accept", TaskID: taskID(1), CreateTime: at(2)}
	_, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{Task: assign(cur, 1, 2), Command: &ok}, nil
	})
	if err != nil {
		t.Fatalf("UpdateTask(with command): %v", err)
	}
	storedRec := func(r dispatch.CommandRecord) dispatch.CommandRecord {
		r.CreateTime = utc(r.CreateTime)
		return r
	}
	got, found, err := s.Command(ctx, courierID(1), "cmd-1")
	if diff := cmp.Diff(storedRec(ok), got, cmpOpts...); err != nil || !found || diff != "" {
		t.Errorf("Command(cmd-1) found %v, %v (-want +got):\n%s", found, err, diff)
	}
	// The same command id in another change is Conflict, and the change is not written.
	_, err = s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		cur.State = dispatch.StatePickedUp
		return dispatch.Change{Task: cur, Command: &ok}, nil
	})
	wantCode(t, "UpdateTask(command id reused)", err, apperr.Conflict)
	if got := mustGet(ctx, t, s, taskID(1)); got.State != dispatch.StateAssigned || got.Version != 2 {
		t.Errorf("task after the reused command = %s version %d, want assigned version 2", got.State, got.Version)
	}

	failed := dispatch.CommandRecord{CourierID: courierID(1), CommandID: "cmd-2", Fingerprint: "fp-decline", TaskID: taskID(1),
		Err: &dispatch.CommandError{Code: apperr.FailedPrecondition, Message: "offer expired", Reason: "OFFER_EXPIRED",
			Metadata: map[string]string{"offer_id": offerID(1)}, RetryAfter: 1500 * time.Millisecond},
		CreateTime: at(3)}
	if err := s.SaveCommand(ctx, failed); err != nil {
		t.Fatalf("SaveCommand: %v", err)
	}
	// Saving it again keeps the first record.
	again := failed
	again.Fingerprint, again.Err = "other", &dispatch.CommandError{Code: apperr.Invalid}
	if err := s.SaveCommand(ctx, again); err != nil {
		t.Fatalf("SaveCommand(again): %v", err)
	}
	if err := s.SaveCommand(ctx, ok); err != nil { // a success stored by UpdateTask is kept too
		t.Fatalf("SaveCommand(existing success): %v", err)
	}
	for _, want := range []dispatch.CommandRecord{failed, ok} {
		got, found, err := s.Command(ctx, want.CourierID, want.CommandID)
		if diff := cmp.Diff(storedRec(want), got, cmpOpts...); err != nil || !found || diff != "" {
			t.Errorf("Command(%s) found %v, %v (-want +got):\n%s", want.CommandID, found, err, diff)
		}
	}
	// Keys are per courier.
	if _, found, err := s.Command(ctx, courierID(2), "cmd-1"); err != nil || found {
		t.Errorf("Command(other courier) = found %v, %v, want false, nil", found, err)
	}
	wantCode(t, "SaveCommand(no key)", s.SaveCommand(ctx, dispatch.CommandRecord{CourierID: courierID(1)}), apperr.Invalid)
}

func testLeaseDue(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	now := at(100)
	// 1: due, normal, oldest. 2: due, urgent. 3: due, urgent, newer. 4: due later. 5: never due (held).
	// 6: due, low.
	prio := map[int]dispatch.Priority{1: dispatch.PriorityNormal, 2: dispatch.PriorityUrgent, 3: dispatch.PriorityUrgent,
		4: dispatch.PriorityUrgent, 5: dispatch.PriorityUrgent, 6: dispatch.PriorityLow}
	for n := 1; n <= 6; n++ {
		task := newTask(n)
		task.Priority = prio[n]
		switch n {
		case 4:
			task.DueTime = now.Add(time.Microsecond)
		case 5:
			task = assign(task, 1, n)
		}
		mustCreate(ctx, t, s, task)
	}
	lease := func(owner string, now time.Time, limit int) []string {
		t.Helper()
		got, err := s.LeaseDue(ctx, owner, now, time.Minute, limit)
		if err != nil {
			t.Fatalf("LeaseDue(%s): %v", owner, err)
		}
		for _, task := range got {
			if task.Version != 1 || task.CreatedBy == "" {
				t.Errorf("LeaseDue returned task %s version %d, want it whole at version 1", task.ID, task.Version)
			}
		}
		return ids(got)
	}
	if diff := cmp.Diff([]string{taskID(2), taskID(3)}, lease("a", now, 2)); diff != "" {
		t.Errorf("LeaseDue(a, 2): highest priority, then oldest (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{taskID(1), taskID(6)}, lease("b", now, 10)); diff != "" {
		t.Errorf("LeaseDue(b): the unleased due tasks (-want +got):\n%s", diff)
	}
	if got := lease("c", now, 10); len(got) != 0 {
		t.Errorf("LeaseDue(c) = %v, want none: every due task is leased", got)
	}
	// Unlease by another owner does nothing; by the owner, frees the task.
	if err := s.Unlease(ctx, taskID(1), "a"); err != nil {
		t.Fatalf("Unlease: %v", err)
	}
	if got := lease("c", now, 10); len(got) != 0 {
		t.Errorf("LeaseDue(c) after another owner's Unlease = %v, want none", got)
	}
	if err := s.Unlease(ctx, taskID(1), "b"); err != nil {
		t.Fatalf("Unlease: %v", err)
	}
	if diff := cmp.Diff([]string{taskID(1)}, lease("c", now, 10)); diff != "" {
		t.Errorf("LeaseDue(c) after Unlease (-want +got):\n%s", diff)
	}
	// A lease holds through its end (to the microsecond), and is taken over after it. Task 4 is due by
	// then, and free.
	if diff := cmp.Diff([]string{taskID(4)}, lease("d", now.Add(time.Minute), 10)); diff != "" {
		t.Errorf("LeaseDue(d) at the leases' end (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{taskID(2), taskID(3), taskID(1), taskID(6)}, lease("e", now.Add(time.Minute+time.Microsecond), 10)); diff != "" {
		t.Errorf("LeaseDue(e) after the leases ended (-want +got):\n%s", diff)
	}
	// An update does not touch the lease.
	set(ctx, t, s, taskID(2), func(cur dispatch.Task) dispatch.Task { cur.Searches++; return cur })
	if got := lease("f", now.Add(time.Minute+time.Microsecond), 10); len(got) != 0 {
		t.Errorf("LeaseDue(f) after an update = %v, want none", got)
	}
	_, err := s.LeaseDue(ctx, "a", now, time.Minute, 0)
	wantCode(t, "LeaseDue(limit 0)", err, apperr.Invalid)
	_, err = s.LeaseDue(ctx, "", now, time.Minute, 1)
	wantCode(t, "LeaseDue(no owner)", err, apperr.Invalid)
}

// testLeaseDueExclusive: owners leasing at once never get the same task, and together get every one.
func testLeaseDueExclusive(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	const tasks, owners = 30, 6
	for n := 1; n <= tasks; n++ {
		mustCreate(ctx, t, s, newTask(n))
	}
	now := at(tasks + 1)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		got  = map[string][]string{}
		errs []error
	)
	for o := range owners {
		owner := fmt.Sprintf("owner-%d", o)
		wg.Go(func() {
			for range tasks {
				leased, err := s.LeaseDue(ctx, owner, now, time.Hour, 2)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				}
				for _, task := range leased {
					got[task.ID] = append(got[task.ID], owner)
				}
				mu.Unlock()
				if err != nil || len(leased) == 0 {
					return
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent LeaseDue: %v", errors.Join(errs...))
	}
	if len(got) != tasks {
		t.Errorf("concurrent LeaseDue leased %d tasks, want %d", len(got), tasks)
	}
	for id, by := range got {
		if len(by) != 1 {
			t.Errorf("task %s leased by %v, want exactly one owner", id, by)
		}
	}
}

func testWakePending(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	now := at(10)
	later := at(20)
	for n := 1; n <= 3; n++ {
		task := newTask(n)
		switch n {
		case 1: // pending, backing off: woken
			task.DueTime = later
		case 2: // pending, already due: unchanged
		case 3: // offered, due when its offer expires: unchanged
			task = offer(task, 1, 1, 3)
			task.DueTime = later
		}
		mustCreate(ctx, t, s, task)
	}
	if err := s.WakePending(ctx, now); err != nil {
		t.Fatalf("WakePending: %v", err)
	}
	wantDue(ctx, t, s, "WakePending", map[int]time.Time{1: utc(now), 2: utc(at(2)), 3: utc(later)})
	leased, err := s.LeaseDue(ctx, "a", now, time.Minute, 10)
	if err != nil || !slices.Equal(ids(leased), []string{taskID(1), taskID(2)}) {
		t.Errorf("LeaseDue after WakePending = %v, %v, want tasks 1 and 2", ids(leased), err)
	}
}

// testWakeNext: the tasks woken are the pending ones due later, in LeaseDue's order (highest priority,
// then oldest), up to the limit; due and offered tasks are not counted, and versions stay.
func testWakeNext(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	now := at(10)
	later := at(20)
	for n := 1; n <= 5; n++ {
		task := newTask(n)
		task.DueTime = later
		switch n {
		case 2: // the most urgent: woken first
			task.Priority = dispatch.PriorityHigh
		case 4: // already due: not counted
			task.DueTime = at(4)
		case 5: // offered, due when its offer expires: not counted
			task = offer(task, 1, 1, 3)
			task.DueTime = later
		}
		mustCreate(ctx, t, s, task)
	}
	if err := s.WakeNext(ctx, now, 2); err != nil {
		t.Fatalf("WakeNext: %v", err)
	}
	wantDue(ctx, t, s, "WakeNext(2)", map[int]time.Time{1: utc(now), 2: utc(now), 3: utc(later), 4: utc(at(4)), 5: utc(later)})
	if err := s.WakeNext(ctx, now, 0); apperr.CodeOf(err) != apperr.Invalid {
		t.Errorf("WakeNext(0) = %v, want Invalid", err)
	}
	if err := s.WakeNext(ctx, now, 10); err != nil {
		t.Fatalf("WakeNext(10): %v", err)
	}
	leased, err := s.LeaseDue(ctx, "a", now, time.Minute, 10)
	if err != nil || !slices.Equal(ids(leased), []string{taskID(2), taskID(1), taskID(3), taskID(4)}) {
		t.Errorf("LeaseDue after WakeNext(10) = %v, %v, want tasks 2, 1, 3 and 4", ids(leased), err)
	}
}

// testWakeTasks: only the pending tasks named that are due later are woken; versions stay.
func testWakeTasks(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	now := at(10)
	later := at(20)
	for n := 1; n <= 4; n++ {
		task := newTask(n)
		task.DueTime = later
		switch n {
		case 3: // offered: unchanged
			task = offer(task, 1, 1, 3)
			task.DueTime = later
		case 4: // already due: unchanged
			task.DueTime = at(4)
		}
		mustCreate(ctx, t, s, task)
	}
	if err := s.WakeTasks(ctx, now, []string{taskID(1), taskID(3), taskID(4), taskID(9)}); err != nil {
		t.Fatalf("WakeTasks: %v", err)
	}
	wantDue(ctx, t, s, "WakeTasks", map[int]time.Time{1: utc(now), 2: utc(later), 3: utc(later), 4: utc(at(4))})
}

// wantDue checks that each task n of want is due at want[n] (in UTC) and still at version 1 after call.
func wantDue(ctx context.Context, t *testing.T, s *sqlstore.Store, call string, want map[int]time.Time) {
	t.Helper()
	for n, due := range want {
		got := mustGet(ctx, t, s, taskID(n))
		if !got.DueTime.Equal(due) || got.DueTime.Location() != time.UTC || got.Version != 1 {
			t.Errorf("task %d after %s: due %v version %d, want due %v version 1", n, call, got.DueTime, got.Version, due)
		}
	}
}

func testHeldAndOffered(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	// Courier 1 holds 3 (assigned at minute 9) and 2 (picked up, assigned at minute 5), and has an open
	// offer for 4; 5 was delivered by courier 1; courier 2 has an open offer for 6 and 7.
	mustCreate(ctx, t, s, newTask(1))
	mustCreate(ctx, t, s, assign(newTask(3), 1, 9))
	picked := assign(newTask(2), 1, 5)
	picked.State = dispatch.StatePickedUp
	mustCreate(ctx, t, s, picked)
	mustCreate(ctx, t, s, offer(newTask(4), 4, 1, 4))
	done := assign(newTask(5), 1, 1)
	done.State = dispatch.StateDelivered
	mustCreate(ctx, t, s, done)
	mustCreate(ctx, t, s, offer(newTask(6), 6, 2, 8))
	mustCreate(ctx, t, s, offer(newTask(7), 7, 2, 7))

	check := func(call string, got []dispatch.Task, err error, want ...int) {
		t.Helper()
		var wantIDs []string
		for _, n := range want {
			wantIDs = append(wantIDs, taskID(n))
		}
		if diff := cmp.Diff(wantIDs, ids(got), cmpOpts...); err != nil || diff != "" {
			t.Errorf("%s error %v (-want +got):\n%s", call, err, diff)
		}
	}
	held, err := s.HeldTasks(ctx, courierID(1))
	check("HeldTasks(courier 1)", held, err, 2, 3)
	held, err = s.HeldTasks(ctx, courierID(2))
	check("HeldTasks(courier 2)", held, err)
	checkOf := func(call string, got map[string][]dispatch.Task, err error, want map[string][]int) {
		t.Helper()
		wantIDs := map[string][]string{}
		for c, ns := range want {
			for _, n := range ns {
				wantIDs[c] = append(wantIDs[c], taskID(n))
			}
		}
		gotIDs := map[string][]string{}
		for c, ts := range got {
			gotIDs[c] = ids(ts)
		}
		if diff := cmp.Diff(wantIDs, gotIDs); err != nil || diff != "" {
			t.Errorf("%s error %v (-want +got):\n%s", call, err, diff)
		}
	}
	heldOf, err := s.HeldTasksOf(ctx, []string{courierID(1), courierID(2), courierID(3)})
	checkOf("HeldTasksOf(couriers 1, 2, 3)", heldOf, err, map[string][]int{courierID(1): {2, 3}})
	// Of each task, what planning the courier's stops needs, and nothing else.
	full := mustGet(ctx, t, s, taskID(2))
	want := dispatch.Task{ID: full.ID, State: full.State, CourierID: full.CourierID, Pickup: full.Pickup, Dropoff: full.Dropoff,
		AssignTime: full.AssignTime, Version: full.Version}
	if diff := cmp.Diff(want, heldOf[courierID(1)][0], cmpOpts...); diff != "" {
		t.Errorf("HeldTasksOf's task 2 (-want +got):\n%s", diff)
	}
	heldOf, err = s.HeldTasksOf(ctx, []string{courierID(2)})
	checkOf("HeldTasksOf(courier 2)", heldOf, err, map[string][]int{})
	heldOf, err = s.HeldTasksOf(ctx, nil)
	checkOf("HeldTasksOf(none)", heldOf, err, map[string][]int{})
	offered, err := s.OfferedTasks(ctx, courierID(1))
	check("OfferedTasks(courier 1)", offered, err, 4)
	offered, err = s.OfferedTasks(ctx, courierID(2))
	check("OfferedTasks(courier 2)", offered, err, 7, 6)

	open, err := s.OfferOpen(ctx, []string{courierID(1), courierID(2), courierID(3)})
	if want := map[string]bool{courierID(1): true, courierID(2): true}; err != nil || !cmp.Equal(want, open) {
		t.Errorf("OfferOpen = %v, %v, want %v", open, err, want)
	}
	// Accepting the offer closes it.
	set(ctx, t, s, taskID(4), func(cur dispatch.Task) dispatch.Task { return assign(cur, 1, 10) })
	open, err = s.OfferOpen(ctx, []string{courierID(1), courierID(2)})
	if want := map[string]bool{courierID(2): true}; err != nil || !cmp.Equal(want, open) {
		t.Errorf("OfferOpen after acceptance = %v, %v, want %v", open, err, want)
	}
	offered, err = s.OfferedTasks(ctx, courierID(1))
	check("OfferedTasks(courier 1) after acceptance", offered, err)
	held, err = s.HeldTasks(ctx, courierID(1))
	check("HeldTasks(courier 1) after acceptance", held, err, 2, 3, 4)
	// Courier 2 now holds 6 (assigned at minute 12) and 7 (assigned at minute 11): each courier's tasks
	// come oldest assignment first, as HeldTasks orders them.
	set(ctx, t, s, taskID(6), func(cur dispatch.Task) dispatch.Task { return assign(cur, 2, 12) })
	set(ctx, t, s, taskID(7), func(cur dispatch.Task) dispatch.Task { return assign(cur, 2, 11) })
	heldOf, err = s.HeldTasksOf(ctx, []string{courierID(2), courierID(1)})
	checkOf("HeldTasksOf(couriers 2, 1) after acceptance", heldOf, err,
		map[string][]int{courierID(1): {2, 3, 4}, courierID(2): {7, 6}})
	// A held task read before and changed since is read as it is now (a store may keep what it read of
	// a task, but only for the version it read).
	set(ctx, t, s, taskID(2), func(cur dispatch.Task) dispatch.Task {
		cur.State = dispatch.StatePickedUp
		cur.Dropoff.Location.Lat += 0.001
		return cur
	})
	heldOf, err = s.HeldTasksOf(ctx, []string{courierID(1)})
	checkOf("HeldTasksOf(courier 1) after a pickup", heldOf, err, map[string][]int{courierID(1): {2, 3, 4}})
	full = mustGet(ctx, t, s, taskID(2))
	want = dispatch.Task{ID: full.ID, State: dispatch.StatePickedUp, CourierID: full.CourierID, Pickup: full.Pickup, Dropoff: full.Dropoff,
		AssignTime: full.AssignTime, Version: full.Version}
	if diff := cmp.Diff(want, heldOf[courierID(1)][0], cmpOpts...); err == nil && diff != "" {
		t.Errorf("HeldTasksOf's task 2 after a pickup (-want +got):\n%s", diff)
	}
	// CourierStates answers what Connected, OfferOpen and HeldTasksOf answer, in one read.
	for n, sess := range map[int]dispatch.Session{1: {SessionID: "a", Open: true, Heartbeat: at(5)}, 3: {SessionID: "b", Open: false, Heartbeat: at(5)}} {
		if _, err := s.UpdateSession(ctx, courierID(n), func(dispatch.Session) (dispatch.Session, error) { return sess, nil }); err != nil {
			t.Fatalf("UpdateSession(courier %d): %v", n, err)
		}
	}
	some := []string{courierID(1), courierID(2), courierID(3)}
	states, err := s.CourierStates(ctx, some, at(1), []string{courierID(2), courierID(1), courierID(3)})
	if err != nil {
		t.Fatalf("CourierStates: %v", err)
	}
	if want := map[string]bool{courierID(1): true}; !cmp.Equal(want, states.Connected) {
		t.Errorf("CourierStates' Connected = %v, want %v", states.Connected, want)
	}
	if want, err := s.OfferOpen(ctx, some); err != nil || !cmp.Equal(want, states.OfferOpen) {
		t.Errorf("CourierStates' OfferOpen = %v, want %v (%v)", states.OfferOpen, want, err)
	}
	checkOf("CourierStates' Held", states.Held, nil, map[string][]int{courierID(1): {2, 3, 4}, courierID(2): {7, 6}})
	if want, err := s.HeldTasksOf(ctx, some); err != nil || !cmp.Equal(want, states.Held, cmpOpts...) {
		t.Errorf("CourierStates' Held = %v, want %v (%v)", states.Held, want, err)
	}
	if states, err := s.CourierStates(ctx, some, at(6), nil); err != nil || len(states.Connected) != 0 || len(states.Held) != 0 {
		t.Errorf("CourierStates(since minute 6, no held) = %+v, %v, want none connected, no held", states, err)
	}
	if states, err := s.CourierStates(ctx, nil, at(1), []string{courierID(2)}); err != nil || len(states.Connected) != 0 || len(states.OfferOpen) != 0 || len(states.Held[courierID(2)]) != 2 {
		t.Errorf("CourierStates(held of courier 2 only) = %+v, %v, want its 2 tasks", states, err)
	}
	if states, err := s.CourierStates(ctx, nil, at(1), nil); err != nil || len(states.Connected)+len(states.OfferOpen)+len(states.Held) != 0 {
		t.Errorf("CourierStates(none) = %+v, %v, want empty", states, err)
	}
	if open, err := s.OfferOpen(ctx, nil); err != nil || len(open) != 0 {
		t.Errorf("OfferOpen(none) = %v, %v, want empty", open, err)
	}
	// Ids are any text (a store may read a courier's tasks as one list of ids and versions); the same
	// tasks read again come back the same, and a task delivered leaves its courier's.
	odd := []string{"odd,1:2", "odd:3,", "9:x,7"}
	for k, id := range odd {
		task := assign(newTask(20+k), 4, 20+k)
		task.ID = id
		mustCreate(ctx, t, s, task)
	}
	for _, call := range []string{"first", "again"} {
		states, err = s.CourierStates(ctx, nil, at(1), []string{courierID(4)})
		if got := ids(states.Held[courierID(4)]); err != nil || !slices.Equal(got, odd) {
			t.Errorf("CourierStates(held of courier 4, %s) = %q, %v, want %q", call, got, err, odd)
		}
	}
	set(ctx, t, s, odd[1], func(cur dispatch.Task) dispatch.Task { cur.State = dispatch.StateDelivered; return cur })
	states, err = s.CourierStates(ctx, nil, at(1), []string{courierID(4)})
	if got, want := ids(states.Held[courierID(4)]), []string{odd[0], odd[2]}; err != nil || !slices.Equal(got, want) {
		t.Errorf("CourierStates(held of courier 4) after a delivery = %q, %v, want %q", got, err, want)
	}
}

// testQueueConcurrent runs what replicas do at once (lease due tasks, update them, unlease them, wake
// the pending ones) and checks that nothing fails (no deadlock survives the store's retries) and no
// update is lost.
func testQueueConcurrent(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	const tasks, workers, rounds = 12, 4, 15
	for n := 1; n <= tasks; n++ {
		mustCreate(ctx, t, s, newTask(n))
	}
	now := at(tasks + 1)
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		updates = map[string]int{}
		errs    []error
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	for w := range workers {
		owner := fmt.Sprintf("replica-%d", w)
		wg.Go(func() {
			for r := range rounds {
				if err := s.WakePending(ctx, now); err != nil {
					fail(fmt.Errorf("WakePending: %w", err))
					return
				}
				leased, err := s.LeaseDue(ctx, owner, now, time.Hour, 3)
				if err != nil {
					fail(fmt.Errorf("LeaseDue: %w", err))
					return
				}
				for _, task := range leased {
					_, err := s.UpdateTask(ctx, task.ID, func(cur dispatch.Task) (dispatch.Change, error) {
						cur.Searches++
						cur.DueTime = now.Add(time.Duration(r+1) * time.Minute) // backing off: WakePending wakes it
						return dispatch.Change{Task: cur, Deliveries: []dispatch.Delivery{
							{CourierID: courierID(w), Kind: dispatch.DeliveryTask, TaskID: cur.ID, Reason: dispatch.NoticeUpdated},
						}}, nil
					})
					if err != nil {
						fail(fmt.Errorf("UpdateTask: %w", err))
						return
					}
					mu.Lock()
					updates[task.ID]++
					mu.Unlock()
					if err := s.Unlease(ctx, task.ID, owner); err != nil {
						fail(fmt.Errorf("unlease %s: %w", task.ID, err))
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent queue work: %v", errors.Join(errs...))
	}
	total := 0
	for n := 1; n <= tasks; n++ {
		got := mustGet(ctx, t, s, taskID(n))
		want := updates[taskID(n)]
		total += want
		if got.Searches != want || got.Version != int64(want+1) {
			t.Errorf("task %d: Searches %d, Version %d after %d updates; want %d, %d", n, got.Searches, got.Version, want, want, want+1)
		}
	}
	if total == 0 {
		t.Error("no task was worked")
	}
}

// testWaitingNear: AnyWaiting and WaitingNear see the pending tasks due later only (not those due now,
// nor offered ones), WaitingNear those whose pickup is in the box, in LeaseDue's order (highest
// priority, then oldest), up to the limit, across the antimeridian too, each with its parcel size and
// excluded couriers.
func testWaitingNear(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	now, later := at(10), at(20)
	if any, err := s.AnyWaiting(ctx, now); err != nil || any {
		t.Fatalf("AnyWaiting on an empty store = %v, %v; want false", any, err)
	}
	places := map[int]geo.LatLng{
		1: {Lat: 52.52, Lng: 13.40},  // waiting
		2: {Lat: 52.53, Lng: 13.41},  // waiting, high priority
		3: {Lat: 52.52, Lng: 13.40},  // due now
		4: {Lat: 52.52, Lng: 13.40},  // offered
		5: {Lat: 48.85, Lng: 2.35},   // waiting, elsewhere
		6: {Lat: -17.7, Lng: 179.9},  // waiting, west of the antimeridian
		7: {Lat: -17.7, Lng: -179.9}, // waiting, east of it
	}
	for n := 1; n <= 7; n++ {
		task := newTask(n)
		task.Pickup.Location = places[n]
		task.DueTime = later
		switch n {
		case 1:
			task.Excluded = []dispatch.Exclusion{{CourierID: "courier-9", Reason: dispatch.ExcludedDeclined}, {CourierID: "courier-8", Reason: dispatch.ExcludedOfferExpired}}
		case 2:
			task.Priority = dispatch.PriorityHigh
			task.Size = dispatch.SizeLarge
		case 3:
			task.DueTime = at(3)
		case 4:
			task = offer(task, 1, 1, 3)
			task.DueTime = later
		}
		mustCreate(ctx, t, s, task)
	}
	if any, err := s.AnyWaiting(ctx, now); err != nil || !any {
		t.Fatalf("AnyWaiting = %v, %v; want true", any, err)
	}
	if any, err := s.AnyWaiting(ctx, later); err != nil || any {
		t.Fatalf("AnyWaiting once every task is due = %v, %v; want false", any, err)
	}
	berlin := geo.Box{South: 52.4, West: 13.3, North: 52.6, East: 13.5}
	for _, tc := range []struct {
		name  string
		box   geo.Box
		limit int
		want  []int
	}{
		{"berlin", berlin, 10, []int{2, 1}},
		{"berlin limited", berlin, 1, []int{2}},
		{"paris", geo.Box{South: 48, West: 2, North: 49, East: 3}, 10, []int{5}},
		{"antimeridian", geo.Box{South: -18, West: 179.5, North: -17, East: -179.5}, 10, []int{6, 7}},
		{"world", geo.Box{South: -90, West: -180, North: 90, East: 180}, 10, []int{2, 1, 5, 6, 7}},
		{"nowhere", geo.Box{South: 0, West: 0, North: 1, East: 1}, 10, nil},
	} {
		got, err := s.WaitingNear(ctx, now, tc.box, tc.limit)
		if err != nil {
			t.Fatalf("WaitingNear(%s): %v", tc.name, err)
		}
		var want []dispatch.WaitingTask
		for _, n := range tc.want {
			w := dispatch.WaitingTask{ID: taskID(n), Pickup: places[n], Size: dispatch.SizeMedium}
			switch n {
			case 1:
				w.Excluded = []string{"courier-9", "courier-8"}
			case 2:
				w.Size = dispatch.SizeLarge
			}
			want = append(want, w)
		}
		if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
			t.Errorf("WaitingNear(%s) (-want +got):\n%s", tc.name, diff)
		}
	}
	if _, err := s.WaitingNear(ctx, now, berlin, 0); apperr.CodeOf(err) != apperr.Invalid {
		t.Errorf("WaitingNear(limit 0) = %v, want Invalid", err)
	}
	if _, err := s.WaitingNear(ctx, now, geo.Box{South: 10, North: 5}, 10); apperr.CodeOf(err) != apperr.Invalid {
		t.Errorf("WaitingNear(an invalid box) = %v, want Invalid", err)
	}
}

// WaitingPickupsBackfill checks the migration that adds the pickup columns: s is a store on a database
// migrated up to the migration before it, and migrate applies the rest. The tasks written before are
// found near their pickups after it.
func WaitingPickupsBackfill(t *testing.T, s *sqlstore.Store, migrate func(context.Context) error) {
	ctx := testContext(t)
	task := newTask(1)
	task.DueTime = at(20)
	// The row as the store wrote it before the migration (the store now writes the new columns too);
	// WaitingNear reads the pickup from the columns, not from the document.
	d := s.Dialect()
	doc := fmt.Sprintf(`{"ID":%q,"State":"pending","Pickup":{"Location":{"Lat":%v,"Lng":%v}}}`, task.ID, task.Pickup.Location.Lat, task.Pickup.Location.Lng)
	if _, err := s.DB().ExecContext(ctx, `INSERT INTO tasks (id, state, customer_id, priority_rank, create_time, update_time, due_time, created_by, version, doc)
		VALUES ($1, 'pending', 'customer-1', 1, $2, $2, $3, 'customer-1', 1, $4)`, task.ID, d.Time(at(1)), d.Time(task.DueTime), doc); err != nil {
		t.Fatalf("insert a task before the migration: %v", err)
	}
	// A finished task is not filled: it never waits again.
	done := newTask(2)
	if _, err := s.DB().ExecContext(ctx, `INSERT INTO tasks (id, state, customer_id, priority_rank, create_time, update_time, created_by, version, doc)
		VALUES ($1, 'delivered', 'customer-1', 1, $2, $2, 'customer-1', 1, $3)`, done.ID, d.Time(at(1)),
		fmt.Sprintf(`{"ID":%q,"State":"delivered","Pickup":{"Location":{"Lat":%v,"Lng":%v}}}`, done.ID, done.Pickup.Location.Lat, done.Pickup.Location.Lng)); err != nil {
		t.Fatalf("insert a finished task before the migration: %v", err)
	}
	if err := migrate(ctx); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	var filled bool
	if err := s.DB().QueryRowContext(ctx, `SELECT pickup_lat IS NOT NULL FROM tasks WHERE id = $1`, done.ID).Scan(&filled); err != nil || filled {
		t.Errorf("the finished task's pickup filled = %v, %v; want false (only open tasks are filled)", filled, err)
	}
	got, err := s.WaitingNear(ctx, at(10), geo.Box{South: 52.5, West: 13.3, North: 52.6, East: 13.5}, 10)
	want := []dispatch.WaitingTask{{ID: taskID(1), Pickup: task.Pickup.Location}}
	if err != nil || !cmp.Equal(want, got) {
		t.Errorf("WaitingNear after the migration = %+v, %v; want %+v", got, err, want)
	}
}

func testCouriersWithWork(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	// Courier 1 holds 3 and 4 (ASSIGNED) and has an open offer for 7; courier 2 picked 5 up; courier 3 has
	// an open offer for 2; courier 4 delivered 6; courier 5 holds 8; 1 waits for a courier.
	mustCreate(ctx, t, s, newTask(1))
	mustCreate(ctx, t, s, offer(newTask(2), 2, 3, 2))
	mustCreate(ctx, t, s, assign(newTask(3), 1, 3))
	mustCreate(ctx, t, s, assign(newTask(4), 1, 4))
	picked := assign(newTask(5), 2, 5)
	picked.State = dispatch.StatePickedUp
	mustCreate(ctx, t, s, picked)
	done := assign(newTask(6), 4, 6)
	done.State = dispatch.StateDelivered
	mustCreate(ctx, t, s, done)
	mustCreate(ctx, t, s, offer(newTask(7), 7, 1, 7))
	mustCreate(ctx, t, s, assign(newTask(8), 5, 8))

	check := func(after string, limit int, want ...int) {
		t.Helper()
		wantIDs := []string{}
		for _, n := range want {
			wantIDs = append(wantIDs, courierID(n))
		}
		got, err := s.CouriersWithWork(ctx, after, limit)
		if got == nil {
			got = []string{}
		}
		if diff := cmp.Diff(wantIDs, got); err != nil || diff != "" {
			t.Errorf("CouriersWithWork(%q, %d) error %v (-want +got):\n%s", after, limit, err, diff)
		}
	}
	check("", 10, 1, 3, 5)
	check("", 1, 1)
	check("", 2, 1, 3)
	check(courierID(1), 1, 3)
	check(courierID(3), 2, 5)
	check(courierID(5), 2)
	// The offer to courier 3 closes (declined): it has nothing left.
	set(ctx, t, s, taskID(2), func(cur dispatch.Task) dispatch.Task {
		cur.CurrentOffer().State = dispatch.OfferDeclined
		cur.State = dispatch.StatePending
		return cur
	})
	check("", 10, 1, 5)
	// Courier 5 picks 8 up: it has nothing a barred courier loses.
	set(ctx, t, s, taskID(8), func(cur dispatch.Task) dispatch.Task { cur.State = dispatch.StatePickedUp; return cur })
	check("", 10, 1)
	_, err := s.CouriersWithWork(ctx, "", 0)
	wantCode(t, "CouriersWithWork(limit 0)", err, apperr.Invalid)
}
