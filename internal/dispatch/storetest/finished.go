package storetest

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/sqlstore"
	"lastmile/internal/platform/apperr"
)

// testFinishedTasks checks FinishedTasks: final states only, updated at or after since (to the
// microsecond), the most recently updated first then by id descending, filtered like ListTasks, limited.
func testFinishedTasks(t *testing.T, s *sqlstore.Store) {
	ctx := testContext(t)
	finish := func(n int, st dispatch.State, m int, customer string, courier int) {
		task := newTask(n)
		task.CustomerID = customer
		if courier > 0 {
			task = assign(task, courier, n)
		}
		mustCreate(ctx, t, s, task)
		set(ctx, t, s, taskID(n), func(cur dispatch.Task) dispatch.Task {
			cur.State, cur.UpdateTime, cur.DueTime = st, at(m), time.Time{}
			return cur
		})
	}
	mustCreate(ctx, t, s, newTask(1)) // open, PENDING
	finish(2, dispatch.StateDelivered, 10, "customer-1", 1)
	finish(3, dispatch.StateCancelled, 20, "customer-2", 0)
	finish(4, dispatch.StateFailed, 30, "customer-1", 1)
	finish(5, dispatch.StateDelivered, 5, "customer-1", 1)  // finished before since
	mustCreate(ctx, t, s, assign(newTask(6), 1, 40))        // open, ASSIGNED, updated after since
	finish(7, dispatch.StateDelivered, 20, "customer-2", 2) // same update time as 3: by id descending
	since := utc(at(10))

	tests := []struct {
		name   string
		filter dispatch.TaskFilter
		since  time.Time
		limit  int
		want   []int
	}{
		{"all", dispatch.TaskFilter{}, since, 10, []int{4, 7, 3, 2}},
		{"a microsecond later", dispatch.TaskFilter{}, since.Add(time.Microsecond), 10, []int{4, 7, 3}},
		{"from the start", dispatch.TaskFilter{}, utc(at(0)), 10, []int{4, 7, 3, 2, 5}},
		{"after every change", dispatch.TaskFilter{}, utc(at(31)), 10, nil},
		{"limit", dispatch.TaskFilter{}, since, 2, []int{4, 7}},
		{"customer", dispatch.TaskFilter{CustomerID: "customer-2"}, since, 10, []int{7, 3}},
		{"courier", dispatch.TaskFilter{CourierID: courierID(1)}, since, 10, []int{4, 2}},
		{"states", dispatch.TaskFilter{States: []dispatch.State{dispatch.StateDelivered, dispatch.StatePending}}, since, 10, []int{7, 2}},
		{"open states only", dispatch.TaskFilter{States: []dispatch.State{dispatch.StatePending, dispatch.StateAssigned}}, since, 10, nil},
	}
	for _, tt := range tests {
		got, err := s.FinishedTasks(ctx, tt.filter, tt.since, tt.limit)
		if err != nil {
			t.Fatalf("FinishedTasks(%s): %v", tt.name, err)
		}
		var want []string
		for _, n := range tt.want {
			want = append(want, taskID(n))
		}
		if diff := cmp.Diff(want, ids(got), cmpOpts...); diff != "" {
			t.Errorf("FinishedTasks(%s) (-want +got):\n%s", tt.name, diff)
		}
	}
	got, err := s.FinishedTasks(ctx, dispatch.TaskFilter{}, since, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("FinishedTasks(limit 1) = %d tasks, %v, want 1", len(got), err)
	}
	if diff := cmp.Diff(mustGet(ctx, t, s, taskID(4)), got[0], cmpOpts...); diff != "" {
		t.Errorf("FinishedTasks(limit 1) task (-want +got):\n%s", diff)
	}
	if got[0].State != dispatch.StateFailed || !got[0].UpdateTime.Equal(utc(at(30))) {
		t.Errorf("FinishedTasks(limit 1) = %s updated %v, want FAILED updated %v", got[0].State, got[0].UpdateTime, utc(at(30)))
	}
	_, err = s.FinishedTasks(ctx, dispatch.TaskFilter{}, since, 0)
	wantCode(t, "FinishedTasks(limit 0)", err, apperr.Invalid)
}
