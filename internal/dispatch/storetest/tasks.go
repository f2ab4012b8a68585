package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/platform/apperr"
)

func testCreateAndGet(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	in := newTask(1)
	in.Proofs = []dispatch.Proof{{Kind: dispatch.ProofBarcode, Stage: dispatch.StagePickup, Value: "BC-1", CaptureTime: at(2), CreateTime: at(3)}}
	in.Excluded = []dispatch.Exclusion{{CourierID: courierID(9), Reason: dispatch.ExcludedDeclined}}
	in = offer(in, 1, 1, 4)
	out, created, err := s.CreateTask(ctx, in)
	if err != nil || !created {
		t.Fatalf("CreateTask = created %v, %v, want true, nil", created, err)
	}
	want := in.Stored()
	want.Version = 1
	if diff := cmp.Diff(want, out, cmpOpts...); diff != "" {
		t.Errorf("CreateTask result (-want +got):\n%s", diff)
	}
	got := mustGet(ctx, t, s, in.ID)
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("GetTask (-want +got):\n%s", diff)
	}
	if got.CreateTime.Location() != time.UTC || got.CreateTime.Nanosecond()%1000 != 0 {
		t.Errorf("GetTask CreateTime = %v, want UTC whole microseconds", got.CreateTime)
	}
	_, err = s.GetTask(ctx, taskID(2))
	wantCode(t, "GetTask(unknown)", err, apperr.NotFound)
	_, _, err = s.CreateTask(ctx, dispatch.Task{})
	wantCode(t, "CreateTask(no id)", err, apperr.Invalid)
}

func testCreateDuplicateRequest(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	first := mustCreate(ctx, t, s, newTask(1))

	again := newTask(2)
	again.RequestID = first.RequestID
	out, created, err := s.CreateTask(ctx, again)
	if err != nil || created {
		t.Fatalf("CreateTask(same request) = created %v, %v, want false, nil", created, err)
	}
	if diff := cmp.Diff(first, out, cmpOpts...); diff != "" {
		t.Errorf("CreateTask(same request) returned (-first +got):\n%s", diff)
	}
	_, err = s.GetTask(ctx, again.ID)
	wantCode(t, "GetTask(deduplicated task)", err, apperr.NotFound)

	// The same request id from another creator is another request.
	other := newTask(3)
	other.RequestID, other.CreatedBy = first.RequestID, "customer-2"
	mustCreate(ctx, t, s, other)
	// Requests without an id are never deduplicated.
	for n := 4; n <= 5; n++ {
		task := newTask(n)
		task.RequestID = ""
		mustCreate(ctx, t, s, task)
	}
	if n, err := s.CountTasks(ctx, dispatch.TaskFilter{}); err != nil || n != 4 {
		t.Errorf("CountTasks = %d, %v, want 4, nil", n, err)
	}
}

func testCreateConcurrentDuplicates(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	const n = 20
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created []string
		got     = map[string]int{}
		errs    []error
	)
	for i := range n {
		wg.Go(func() {
			task := newTask(i + 1)
			task.RequestID = "same"
			out, c, err := s.CreateTask(ctx, task)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if c {
				created = append(created, out.ID)
			}
			got[out.ID]++
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent CreateTask errors: %v", errors.Join(errs...))
	}
	if len(created) != 1 {
		t.Fatalf("concurrent CreateTask created %d tasks (%v), want exactly 1", len(created), created)
	}
	if want := map[string]int{created[0]: n}; !cmp.Equal(want, got) {
		t.Errorf("concurrent CreateTask returned tasks %v, want %v", got, want)
	}
	if c, err := s.CountTasks(ctx, dispatch.TaskFilter{}); err != nil || c != 1 {
		t.Errorf("CountTasks = %d, %v, want 1, nil", c, err)
	}
}

func testCreateIDConflict(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	first := mustCreate(ctx, t, s, newTask(1))
	dup := newTask(2)
	dup.ID = first.ID
	_, _, err := s.CreateTask(ctx, dup)
	wantCode(t, "CreateTask(existing id, other request)", err, apperr.Conflict)
	if diff := cmp.Diff(first, mustGet(ctx, t, s, first.ID), cmpOpts...); diff != "" {
		t.Errorf("GetTask after the conflict (-want +got):\n%s", diff)
	}
}

func testTaskByOffer(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, offer(newTask(1), 1, 1, 1))
	mustCreate(ctx, t, s, newTask(2))
	got, err := s.TaskByOffer(ctx, offerID(1))
	if err != nil || got.ID != taskID(1) {
		t.Errorf("TaskByOffer(offer 1) = %s, %v, want %s", got.ID, err, taskID(1))
	}
	// An offer made by an update, and the earlier one still found after it.
	set(ctx, t, s, taskID(2), func(cur dispatch.Task) dispatch.Task { return offer(cur, 2, 1, 2) })
	set(ctx, t, s, taskID(2), func(cur dispatch.Task) dispatch.Task {
		cur.Offers[0].State = dispatch.OfferDeclined
		return offer(cur, 3, 2, 3)
	})
	for _, o := range []int{2, 3} {
		got, err := s.TaskByOffer(ctx, offerID(o))
		if err != nil || got.ID != taskID(2) || got.Version != 3 {
			t.Errorf("TaskByOffer(offer %d) = %s version %d, %v, want %s version 3", o, got.ID, got.Version, err, taskID(2))
		}
	}
	_, err = s.TaskByOffer(ctx, offerID(9))
	wantCode(t, "TaskByOffer(unknown)", err, apperr.NotFound)

	// UpdateTaskByOffer: the task of the offer, as UpdateTask would give it, written with its version.
	want := mustGet(ctx, t, s, taskID(2))
	out, err := s.UpdateTaskByOffer(ctx, offerID(2), func(cur dispatch.Task) (dispatch.Change, error) {
		if diff := cmp.Diff(want, cur, cmpOpts...); diff != "" {
			t.Errorf("UpdateTaskByOffer(offer 2) closure got (-stored +got):\n%s", diff)
		}
		return dispatch.Change{Task: assign(cur, 2, 4)}, nil
	})
	if err != nil || out.ID != taskID(2) || out.Version != 4 || out.State != dispatch.StateAssigned {
		t.Errorf("UpdateTaskByOffer(offer 2) = %s version %d %s, %v, want %s version 4 ASSIGNED", out.ID, out.Version, out.State, err, taskID(2))
	}
	if diff := cmp.Diff(out, mustGet(ctx, t, s, taskID(2)), cmpOpts...); diff != "" {
		t.Errorf("GetTask after UpdateTaskByOffer (-want +got):\n%s", diff)
	}
	wantUnknownUntouched(t, "UpdateTaskByOffer(unknown)", func(fn func(dispatch.Task) (dispatch.Change, error)) error {
		_, err := s.UpdateTaskByOffer(ctx, offerID(9), fn)
		return err
	})
}

func testTaskHolder(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newTask(1))
	holder := func(want dispatch.State, wantCourier string) {
		t.Helper()
		cur, err := s.GetTask(ctx, taskID(1))
		if err != nil {
			t.Fatal(err)
		}
		state, courier, version, err := s.TaskHolder(ctx, taskID(1))
		if err != nil || state != want || courier != wantCourier || version != cur.Version {
			t.Errorf("TaskHolder = %s, %q, %d, %v; want %s, %q, %d, nil", state, courier, version, err, want, wantCourier, cur.Version)
		}
	}
	holder(dispatch.StatePending, "")
	set(ctx, t, s, taskID(1), func(cur dispatch.Task) dispatch.Task { return offer(cur, 1, 2, 1) })
	holder(dispatch.StateOffered, "")
	set(ctx, t, s, taskID(1), func(cur dispatch.Task) dispatch.Task { return assign(cur, 2, 2) })
	holder(dispatch.StateAssigned, courierID(2))
	_, _, _, err := s.TaskHolder(ctx, taskID(9))
	wantCode(t, "TaskHolder(unknown)", err, apperr.NotFound)
}

func testListTasks(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	// Tasks 1..9 created a minute apart; 10 and 11 at the same time as 9 (ties broken by id).
	for n := 1; n <= 11; n++ {
		task := newTask(n)
		if n >= 10 {
			task.CreateTime = newTask(9).CreateTime
		}
		if n%2 == 0 {
			task.CustomerID = "customer-2"
		}
		if n%3 == 0 {
			task = assign(task, 1, n)
		}
		mustCreate(ctx, t, s, task)
	}
	tests := []struct {
		name   string
		filter dispatch.TaskFilter
		want   []int
	}{
		{"all", dispatch.TaskFilter{}, []int{11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{"customer", dispatch.TaskFilter{CustomerID: "customer-2"}, []int{10, 8, 6, 4, 2}},
		{"courier", dispatch.TaskFilter{CourierID: courierID(1)}, []int{9, 6, 3}},
		{"states", dispatch.TaskFilter{States: []dispatch.State{dispatch.StateAssigned, dispatch.StateDelivered}}, []int{9, 6, 3}},
		{"pending of customer 2", dispatch.TaskFilter{States: []dispatch.State{dispatch.StatePending}, CustomerID: "customer-2"}, []int{10, 8, 4, 2}},
		{"none", dispatch.TaskFilter{CourierID: courierID(2)}, nil},
	}
	for _, tt := range tests {
		wantPages(ctx, t, s, tt.name, tt.filter, tt.want)
	}
	page, err := s.ListTasks(ctx, dispatch.TaskQuery{Limit: 1})
	if err != nil || len(page) != 1 {
		t.Fatalf("ListTasks(limit 1) = %d tasks, %v", len(page), err)
	}
	if diff := cmp.Diff(withVersion(newTask(11), newTask(9).CreateTime).Stored(), page[0], cmpOpts...); diff != "" {
		t.Errorf("ListTasks(limit 1) task (-want +got):\n%s", diff)
	}
	_, err = s.ListTasks(ctx, dispatch.TaskQuery{Limit: 0})
	wantCode(t, "ListTasks(limit 0)", err, apperr.Invalid)
}

// withVersion is t created at created, as stored by CreateTask.
// wantPages lists the tasks filter matches in pages of 2, following the keyset cursor to the end, and
// wants the tasks numbered want (taskID), in that order; CountTasks must count as many.
func wantPages(ctx context.Context, t *testing.T, s *sqlstore.Store, name string, filter dispatch.TaskFilter, want []int) {
	t.Helper()
	var wantIDs, got []string
	for _, n := range want {
		wantIDs = append(wantIDs, taskID(n))
	}
	q := dispatch.TaskQuery{Filter: filter, Limit: 2}
	for range 20 {
		page, err := s.ListTasks(ctx, q)
		if err != nil {
			t.Fatalf("ListTasks(%s): %v", name, err)
		}
		got = append(got, ids(page)...)
		if len(page) < 2 {
			break
		}
		last := page[len(page)-1]
		q.AfterCreate, q.AfterID = last.CreateTime, last.ID
	}
	if diff := cmp.Diff(wantIDs, got, cmpOpts...); diff != "" {
		t.Errorf("ListTasks(%s) pages (-want +got):\n%s", name, diff)
	}
	n, err := s.CountTasks(ctx, filter)
	if err != nil || n != len(wantIDs) {
		t.Errorf("CountTasks(%s) = %d, %v, want %d", name, n, err, len(wantIDs))
	}
}

func withVersion(t dispatch.Task, created time.Time) dispatch.Task {
	t.CreateTime, t.Version = created, 1
	return t
}

func testCountTasks(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	want := map[dispatch.State]int{}
	for _, st := range dispatch.States {
		want[st] = 0
	}
	got, err := s.CountByState(ctx)
	if err != nil || !cmp.Equal(want, got) {
		t.Errorf("CountByState(empty) = %v, %v, want %v", got, err, want)
	}
	for n := 1; n <= 6; n++ {
		task := newTask(n)
		switch {
		case n <= 3:
		case n <= 5:
			task = offer(task, n, n, n)
		default:
			task.State = dispatch.StateCancelled
		}
		mustCreate(ctx, t, s, task)
	}
	want[dispatch.StatePending], want[dispatch.StateOffered], want[dispatch.StateCancelled] = 3, 2, 1
	got, err = s.CountByState(ctx)
	if err != nil || !cmp.Equal(want, got) {
		t.Errorf("CountByState = %v, %v, want %v", got, err, want)
	}
}

func testUpdateTask(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	created := mustCreate(ctx, t, s, newTask(1))
	var seen dispatch.Task
	out, err := s.UpdateTask(ctx, created.ID, func(cur dispatch.Task) (dispatch.Change, error) {
		seen = cur.Clone()
		next := offer(cur, 1, 1, 5)
		// Identity is not the closure's to change.
		next.ID, next.CreatedBy, next.RequestID, next.CreateTime = "other", "other", "other", at(99)
		next.Version = 42
		return dispatch.Change{Task: next}, nil
	})
	if err != nil {
		t.Fatalf("UpdateTask: %v", err)
	}
	if diff := cmp.Diff(created, seen, cmpOpts...); diff != "" {
		t.Errorf("UpdateTask closure got (-stored +got):\n%s", diff)
	}
	want := offer(newTask(1), 1, 1, 5).Stored()
	want.Version = 2
	if diff := cmp.Diff(want, out, cmpOpts...); diff != "" {
		t.Errorf("UpdateTask result (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, mustGet(ctx, t, s, created.ID), cmpOpts...); diff != "" {
		t.Errorf("GetTask after UpdateTask (-want +got):\n%s", diff)
	}
	out = set(ctx, t, s, created.ID, func(cur dispatch.Task) dispatch.Task { return assign(cur, 1, 6) })
	if out.Version != 3 || out.State != dispatch.StateAssigned || !out.DueTime.IsZero() {
		t.Errorf("second UpdateTask = version %d state %s due %v, want 3, assigned, zero", out.Version, out.State, out.DueTime)
	}
	if got := mustGet(ctx, t, s, created.ID); got.Version != 3 || !got.DueTime.IsZero() {
		t.Errorf("GetTask after the second update = version %d due %v, want 3, zero", got.Version, got.DueTime)
	}
}

func testUpdateTaskNotFound(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	wantUnknownUntouched(t, "UpdateTask(unknown)", func(fn func(dispatch.Task) (dispatch.Change, error)) error {
		_, err := s.UpdateTask(ctx, taskID(1), fn)
		return err
	})
}

// wantUnknownUntouched checks that update, an update of a task that does not exist, fails with NotFound
// without running the closure it is given.
func wantUnknownUntouched(t *testing.T, what string, update func(fn func(dispatch.Task) (dispatch.Change, error)) error) {
	t.Helper()
	called := false
	err := update(func(cur dispatch.Task) (dispatch.Change, error) {
		called = true
		return dispatch.Change{Task: cur}, nil
	})
	wantCode(t, what, err, apperr.NotFound)
	if called {
		t.Errorf("%s ran the closure", what)
	}
}

func testUpdateTaskFailureWritesNothing(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	created := mustCreate(ctx, t, s, newTask(1))
	before := events(ctx, t, s)
	refused := apperr.Errorf(apperr.FailedPrecondition, "no")
	_, err := s.UpdateTask(ctx, created.ID, func(cur dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{
			Task:       offer(cur, 1, 1, 2),
			Deliveries: []dispatch.Delivery{{CourierID: courierID(1), Kind: dispatch.DeliveryOffer, TaskID: cur.ID, OfferID: offerID(1)}},
			Decision:   &dispatch.Decision{ID: "d1", TaskID: cur.ID, DecideTime: at(2)},
			Command:    &dispatch.CommandRecord{CourierID: courierID(1), CommandID: "c1", TaskID: cur.ID},
			Jobs:       []dispatch.Job{{Kind: dispatch.JobClaim, CourierID: courierID(1), TaskID: cur.ID}},
		}, refused
	})
	if !errors.Is(err, refused) {
		t.Errorf("UpdateTask(failing closure) error = %v, want the closure's", err)
	}
	if diff := cmp.Diff(eventsOf(before), eventsOf(events(ctx, t, s))); diff != "" {
		t.Errorf("events after a failing closure (-before +after):\n%s", diff)
	}
	// A write that fails in the database after the closure leaves nothing either: the command's key is
	// taken by a stored record, so the insert fails after the task row was written.
	if err := s.SaveCommand(ctx, dispatch.CommandRecord{CourierID: courierID(1), CommandID: "taken", CreateTime: at(1)}); err != nil {
		t.Fatalf("SaveCommand: %v", err)
	}
	before = events(ctx, t, s)
	_, err = s.UpdateTask(ctx, created.ID, func(cur dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{
			Task:       offer(cur, 1, 1, 2),
			Deliveries: []dispatch.Delivery{{CourierID: courierID(1), Kind: dispatch.DeliveryOffer, TaskID: cur.ID, OfferID: offerID(1)}},
			Decision:   &dispatch.Decision{ID: "d1", TaskID: cur.ID, DecideTime: at(2)},
			Command:    &dispatch.CommandRecord{CourierID: courierID(1), CommandID: "taken", TaskID: cur.ID},
			Jobs:       []dispatch.Job{{Kind: dispatch.JobClaim, CourierID: courierID(1), TaskID: cur.ID}},
		}, nil
	})
	wantCode(t, "UpdateTask(command id taken)", err, apperr.Conflict)

	if diff := cmp.Diff(created, mustGet(ctx, t, s, created.ID), cmpOpts...); diff != "" {
		t.Errorf("GetTask after failed updates (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(eventsOf(before), eventsOf(events(ctx, t, s))); diff != "" {
		t.Errorf("events after failed updates (-before +after):\n%s", diff)
	}
	if d, err := s.Deliveries(ctx, courierID(1), 0, 10); err != nil || len(d) != 0 {
		t.Errorf("Deliveries after failed updates = %v, %v, want none", d, err)
	}
	if d, err := s.Decisions(ctx, created.ID, 10); err != nil || len(d) != 0 {
		t.Errorf("Decisions after failed updates = %v, %v, want none", d, err)
	}
	if _, found, err := s.Command(ctx, courierID(1), "c1"); err != nil || found {
		t.Errorf("Command(c1) after failed updates = found %v, %v, want false", found, err)
	}
	if _, err := s.TaskByOffer(ctx, offerID(1)); apperr.CodeOf(err) != apperr.NotFound {
		t.Errorf("TaskByOffer after failed updates error = %v, want NotFound", err)
	}
	if j := riverJobs(ctx, t, s); len(j) != 0 {
		t.Errorf("jobs after failed updates = %v, want none", j)
	}
}

// testUpdateTaskConcurrentAccept is fifty couriers accepting one offer at once: each closure accepts only
// an OFFERED task, so exactly one wins and the others see it ASSIGNED.
func testUpdateTaskConcurrentAccept(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, offer(newTask(1), 1, 1, 1))
	const n = 50
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []int
		refused int
		errs    []error
	)
	for i := range n {
		wg.Go(func() {
			_, err := s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
				if cur.State != dispatch.StateOffered {
					return dispatch.Change{}, apperr.Errorf(apperr.FailedPrecondition, "task is %s", cur.State)
				}
				return dispatch.Change{Task: assign(cur, 100+i, 2)}, nil
			})
			mu.Lock()
			defer mu.Unlock()
			switch apperr.CodeOf(err) {
			case "":
				winners = append(winners, 100+i)
			case apperr.FailedPrecondition:
				refused++
			default:
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("concurrent UpdateTask errors: %v", errors.Join(errs...))
	}
	if len(winners) != 1 || refused != n-1 {
		t.Fatalf("concurrent accepts: winners %v, refused %d; want exactly 1 winner and %d refused", winners, refused, n-1)
	}
	got := mustGet(ctx, t, s, taskID(1))
	if got.State != dispatch.StateAssigned || got.CourierID != courierID(winners[0]) || got.Version != 2 {
		t.Errorf("task after concurrent accepts = %s by %s version %d, want assigned by %s version 2",
			got.State, got.CourierID, got.Version, courierID(winners[0]))
	}
}

// testUpdateTaskConcurrentNoLostUpdate: concurrent read-modify-write closures never lose an update.
func testUpdateTaskConcurrentNoLostUpdate(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newTask(1))
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			_, errs[i] = s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
				cur.Searches++
				return dispatch.Change{Task: cur}, nil
			})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent UpdateTask: %v", err)
	}
	got := mustGet(ctx, t, s, taskID(1))
	if got.Searches != n || got.Version != n+1 {
		t.Errorf("after %d concurrent increments: Searches %d, Version %d; want %d, %d", n, got.Searches, got.Version, n, n+1)
	}
}

func testDecisions(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newTask(1))
	mustCreate(ctx, t, s, newTask(2))
	decision := func(n, m int) dispatch.Decision {
		return dispatch.Decision{
			ID: fmt.Sprintf("decision-%d", n), TaskID: taskID(1), DecideTime: at(m), Trigger: dispatch.TriggerAutomatic,
			Outcome: dispatch.OutcomeOffered, Degraded: true, ETAProvider: "osrm", DegradationDetail: "fallback",
			Weights: dispatch.DefaultWeights, SearchRadius: 3000,
			Candidates: []dispatch.Candidate{
				{CourierID: courierID(1), Rank: 1, OfferID: offerID(n), Mode: "bicycle",
					Score: &dispatch.Score{PickupETA: 3 * time.Minute, PickupDistance: 812.25, ActiveTasks: 1, Capacity: 3, Idle: time.Hour,
						ETAScore: 0.123456789012345, Total: 0.987654321098765}},
				{CourierID: courierID(2), Excluded: dispatch.ExcludedNoCapacity},
			},
			Winner: courierID(1), Rationale: "nearest", Elapsed: 1234567 * time.Nanosecond,
		}
	}
	put := func(id string, d dispatch.Decision) {
		t.Helper()
		_, err := s.UpdateTask(ctx, id, func(cur dispatch.Task) (dispatch.Change, error) {
			return dispatch.Change{Task: cur, Decision: &d}, nil
		})
		if err != nil {
			t.Fatalf("UpdateTask(decision %s): %v", d.ID, err)
		}
	}
	d1, d2, d3 := decision(1, 1), decision(2, 3), decision(3, 2)
	put(taskID(1), d1)
	put(taskID(1), d2)
	put(taskID(1), d3)
	other := decision(4, 9)
	other.TaskID = ""
	put(taskID(2), other) // a decision without a task id is the updated task's
	storedDecision := func(d dispatch.Decision) dispatch.Decision {
		d.DecideTime = utc(d.DecideTime)
		return d
	}
	got, err := s.Decisions(ctx, taskID(1), 10)
	if err != nil {
		t.Fatalf("Decisions: %v", err)
	}
	if diff := cmp.Diff([]dispatch.Decision{storedDecision(d2), storedDecision(d3), storedDecision(d1)}, got, cmpOpts...); diff != "" {
		t.Errorf("Decisions newest first (-want +got):\n%s", diff)
	}
	got, err = s.Decisions(ctx, taskID(1), 1)
	if err != nil || len(got) != 1 || got[0].ID != d2.ID {
		t.Errorf("Decisions(limit 1) = %v, %v, want [%s]", got, err, d2.ID)
	}
	// The same id replaces the decision.
	d1.Outcome, d1.DecideTime = dispatch.OutcomeDeferred, at(5)
	put(taskID(1), d1)
	got, err = s.Decisions(ctx, taskID(1), 10)
	if err != nil {
		t.Fatalf("Decisions: %v", err)
	}
	if diff := cmp.Diff([]dispatch.Decision{storedDecision(d1), storedDecision(d2), storedDecision(d3)}, got, cmpOpts...); diff != "" {
		t.Errorf("Decisions after replacing one (-want +got):\n%s", diff)
	}
	other.TaskID = taskID(2)
	got, err = s.Decisions(ctx, taskID(2), 10)
	if diff := cmp.Diff([]dispatch.Decision{storedDecision(other)}, got, cmpOpts...); err != nil || diff != "" {
		t.Errorf("Decisions(task 2) error %v (-want +got):\n%s", err, diff)
	}
	_, err = s.Decisions(ctx, taskID(1), 0)
	wantCode(t, "Decisions(limit 0)", err, apperr.Invalid)
}

// testCreateOpenQuota: CreateTaskCapped counts the customer's open tasks, the new one included, in the
// create's transaction: a task that reaches a final state (by UpdateTask or by UpdateTasks) stops
// counting, a refusal writes nothing, a request made before is answered at the cap, another customer has
// a count of its own, and concurrent creates of one customer never get past the cap together.
func testCreateOpenQuota(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	create := func(n int, customer string, max int64) error {
		task := newTask(n)
		task.CustomerID = customer
		_, created, err := s.CreateTaskCapped(ctx, task, max)
		if err == nil && !created {
			t.Fatalf("CreateTaskCapped(%d) created nothing", n)
		}
		return err
	}
	for n := 1; n <= 3; n++ {
		if err := create(n, "customer-1", 3); err != nil {
			t.Fatalf("CreateTaskCapped(%d) = %v", n, err)
		}
	}
	before := len(events(ctx, t, s))
	if err := create(4, "customer-1", 3); !errors.Is(err, dispatch.ErrTooManyOpenTasks) {
		t.Fatalf("CreateTaskCapped(4th open task, cap 3) = %v, want ErrTooManyOpenTasks", err)
	}
	_, err := s.GetTask(ctx, taskID(4))
	wantCode(t, "GetTask(refused task)", err, apperr.NotFound)
	if n := len(events(ctx, t, s)); n != before {
		t.Fatalf("events after the refusal = %d, want %d", n, before)
	}
	if err := create(5, "customer-2", 3); err != nil {
		t.Fatalf("another customer's create: %v", err)
	}
	// A request made before is answered at the cap.
	again := newTask(6)
	again.RequestID = newTask(1).RequestID
	if out, created, err := s.CreateTaskCapped(ctx, again, 3); err != nil || created || out.ID != taskID(1) {
		t.Fatalf("CreateTaskCapped(request made before, at the cap) = %s created %v, %v; want task %s", out.ID, created, err, taskID(1))
	}

	finish := func(state dispatch.State) func(dispatch.Task) (dispatch.Change, error) {
		return func(tk dispatch.Task) (dispatch.Change, error) {
			tk.State = state
			return dispatch.Change{Task: tk}, nil
		}
	}
	// Open to open counts the same; open to final counts one less, by either write path.
	if _, err := s.UpdateTask(ctx, taskID(1), finish(dispatch.StateUnassignable)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateTask(ctx, taskID(2), finish(dispatch.StateCancelled)); err != nil {
		t.Fatal(err)
	}
	if _, errs := s.UpdateTasks(ctx, []dispatch.TaskWrite{{ID: taskID(3), Fn: finish(dispatch.StateFailed)}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	for n := 7; n <= 8; n++ {
		if err := create(n, "customer-1", 3); err != nil {
			t.Fatalf("CreateTaskCapped(%d) after two tasks finished = %v", n, err)
		}
	}
	if err := create(9, "customer-1", 3); !errors.Is(err, dispatch.ErrTooManyOpenTasks) {
		t.Fatalf("CreateTaskCapped(at the cap again) = %v, want ErrTooManyOpenTasks", err)
	}

	// 3 open; concurrent creates under a cap of 8 make exactly 5 more.
	const max = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		made    int
		refused int
	)
	for i := range 20 {
		wg.Go(func() {
			err := create(100+i, "customer-1", max)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, dispatch.ErrTooManyOpenTasks):
				refused++
			case err != nil:
				t.Errorf("concurrent CreateTaskCapped: %v", err)
			default:
				made++
			}
		})
	}
	wg.Wait()
	if made != 5 || refused != 15 {
		t.Fatalf("20 concurrent creates under a cap of %d with 3 open = %d made, %d refused; want 5, 15", max, made, refused)
	}
	if n, err := s.CountTasks(ctx, dispatch.TaskFilter{CustomerID: "customer-1", States: []dispatch.State{dispatch.StatePending, dispatch.StateUnassignable}}); err != nil || n != max {
		t.Fatalf("open tasks of customer-1 = %d, %v; want %d", n, err, max)
	}
}

// testQuietChange: a quiet change (dispatch.Change.Quiet) is written, by UpdateTask and by UpdateTasks,
// with its decision, without a new version and without a task event; the next change that is not quiet
// gets the next version and its event.
func testQuietChange(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newTask(1))
	before := len(events(ctx, t, s))
	defer1 := func(n int) func(dispatch.Task) (dispatch.Change, error) {
		return func(cur dispatch.Task) (dispatch.Change, error) {
			cur.Searches, cur.DueTime = n, at(100+n)
			return dispatch.Change{Task: cur, Quiet: true, Decision: &dispatch.Decision{ID: fmt.Sprintf("d%d", n), TaskID: cur.ID, DecideTime: at(n), Outcome: dispatch.OutcomeNoCandidates}}, nil
		}
	}
	out, err := s.UpdateTask(ctx, taskID(1), defer1(1))
	if err != nil || out.Version != 1 || out.Searches != 1 {
		t.Fatalf("quiet UpdateTask = version %d, searches %d, %v; want 1, 1", out.Version, out.Searches, err)
	}
	outs, errs := s.UpdateTasks(ctx, []dispatch.TaskWrite{{ID: taskID(1), Fn: defer1(2)}})
	if errs[0] != nil || outs[0].Version != 1 || outs[0].Searches != 2 {
		t.Fatalf("quiet UpdateTasks = version %d, searches %d, %v; want 1, 2", outs[0].Version, outs[0].Searches, errs[0])
	}
	got := mustGet(ctx, t, s, taskID(1))
	if got.Version != 1 || got.Searches != 2 || !got.DueTime.Equal(utc(at(102))) {
		t.Fatalf("task after quiet changes = version %d, searches %d, due %s; want 1, 2, %s", got.Version, got.Searches, got.DueTime, utc(at(102)))
	}
	if ds, err := s.Decisions(ctx, taskID(1), 10); err != nil || len(ds) != 2 {
		t.Fatalf("decisions = %d, %v; want 2", len(ds), err)
	}
	if n := len(events(ctx, t, s)); n != before {
		t.Fatalf("events after quiet changes = %d, want %d", n, before)
	}
	out, err = s.UpdateTask(ctx, taskID(1), func(cur dispatch.Task) (dispatch.Change, error) {
		cur.State = dispatch.StateUnassignable
		return dispatch.Change{Task: cur}, nil
	})
	if err != nil || out.Version != 2 || len(events(ctx, t, s)) != before+1 {
		t.Fatalf("UpdateTask after quiet changes = version %d, %v, %d events; want 2 and %d events", out.Version, err, len(events(ctx, t, s)), before+1)
	}
}

// testListTasksAnyHolder: with AnyHolder, a courier's filter keeps every task the courier held at some
// point: handed back (UpdateTask), moved to another courier (UpdateTasks, PostgreSQL's batched writes),
// held again after a hand-back (once), as well as those it holds; in pages, counted, with the other
// conditions.
func testListTasksAnyHolder(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	for n := 1; n <= 6; n++ {
		task := newTask(n)
		switch n {
		case 1, 2, 3, 5:
			task = assign(task, 1, n)
		case 4:
			task = assign(task, 2, n)
		}
		mustCreate(ctx, t, s, task)
	}
	handBack := func(x dispatch.Task) (dispatch.Change, error) {
		x.State, x.CourierID, x.DueTime = dispatch.StatePending, "", at(30)
		return dispatch.Change{Task: x}, nil
	}
	for _, n := range []int{1, 5} {
		if _, err := s.UpdateTask(ctx, taskID(n), handBack); err != nil {
			t.Fatalf("hand task %d back: %v", n, err)
		}
	}
	if _, err := s.UpdateTask(ctx, taskID(5), func(x dispatch.Task) (dispatch.Change, error) {
		return dispatch.Change{Task: assign(x, 1, 31)}, nil
	}); err != nil {
		t.Fatalf("assign task 5 again: %v", err)
	}
	_, errs := s.UpdateTasks(ctx, []dispatch.TaskWrite{
		{ID: taskID(2), Fn: func(x dispatch.Task) (dispatch.Change, error) { return dispatch.Change{Task: assign(x, 2, 32)}, nil }},
		{ID: taskID(6), Fn: func(x dispatch.Task) (dispatch.Change, error) {
			x.UpdateTime = at(32)
			return dispatch.Change{Task: x}, nil
		}},
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("UpdateTasks #%d: %v", i, err)
		}
	}
	tests := []struct {
		name   string
		filter dispatch.TaskFilter
		want   []int
	}{
		{"courier 1, any holder", dispatch.TaskFilter{CourierID: courierID(1), AnyHolder: true}, []int{5, 3, 2, 1}},
		{"courier 1, holder", dispatch.TaskFilter{CourierID: courierID(1)}, []int{5, 3}},
		{"courier 1, pending", dispatch.TaskFilter{CourierID: courierID(1), AnyHolder: true, States: []dispatch.State{dispatch.StatePending}}, []int{1}},
		{"courier 1, another customer", dispatch.TaskFilter{CourierID: courierID(1), AnyHolder: true, CustomerID: "customer-2"}, nil},
		{"courier 2, any holder", dispatch.TaskFilter{CourierID: courierID(2), AnyHolder: true}, []int{4, 2}},
		{"courier 3, any holder", dispatch.TaskFilter{CourierID: courierID(3), AnyHolder: true}, nil},
	}
	for _, tt := range tests {
		wantPages(ctx, t, s, tt.name, tt.filter, tt.want)
	}
}
