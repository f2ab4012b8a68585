package courier_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

func TestClaimAndReleaseAreIdempotent(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := serviceCtx(testContext(t), "dispatch")
	c := f.available(t, 1, courier.ModeVan, 2)

	snap, already, err := f.svc.ClaimCourier(ctx, courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(1)})
	if err != nil || already || snap.Courier.ActiveTasks != 1 {
		t.Fatalf("ClaimCourier = %d active, already %v, %v; want 1, false, nil", snap.Courier.ActiveTasks, already, err)
	}
	snap, already, err = f.svc.ClaimCourier(ctx, courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(1)})
	if err != nil || !already || snap.Courier.ActiveTasks != 1 {
		t.Errorf("ClaimCourier(again) = %d active, already %v, %v; want 1, true, nil", snap.Courier.ActiveTasks, already, err)
	}

	snap, released, err := f.svc.ReleaseCourier(ctx, c.ID, taskID(1))
	if err != nil || !released || snap.Courier.ActiveTasks != 0 {
		t.Errorf("ReleaseCourier = %d active, released %v, %v; want 0, true, nil", snap.Courier.ActiveTasks, released, err)
	}
	for _, task := range []string{taskID(1), taskID(7)} {
		snap, released, err = f.svc.ReleaseCourier(ctx, c.ID, task)
		if err != nil || released || snap.Courier.ActiveTasks != 0 {
			t.Errorf("ReleaseCourier(%s, nothing held) = %d active, released %v, %v; want 0, false, nil", task, snap.Courier.ActiveTasks, released, err)
		}
	}
	_, _, err = f.svc.ReleaseCourier(ctx, missingID, taskID(1))
	apperrtest.WantCode(t, "ReleaseCourier(missing courier)", err, apperr.NotFound)
}

func TestClaimRules(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := testContext(t)
	dispatch := serviceCtx(ctx, "dispatch")
	full := f.available(t, 1, courier.ModeCar, 1)
	other := f.available(t, 2, courier.ModeCar, 3)
	offline := f.register(t, 3, courier.ModeCar, 3)
	onBreak := f.available(t, 4, courier.ModeCar, 3)
	if _, err := f.svc.SetStatus(courierCtx(ctx, 4), onBreak.ID, courier.StatusOnBreak); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.ClaimCourier(dispatch, courier.ClaimRequest{CourierID: full.ID, TaskID: taskID(1)}); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		req  courier.ClaimRequest
		want apperr.Code
	}{
		{"no free capacity", courier.ClaimRequest{CourierID: full.ID, TaskID: taskID(2)}, apperr.FailedPrecondition},
		{"task held by another courier", courier.ClaimRequest{CourierID: other.ID, TaskID: taskID(1)}, apperr.FailedPrecondition},
		{"offline", courier.ClaimRequest{CourierID: offline.ID, TaskID: taskID(3)}, apperr.FailedPrecondition},
		{"on break", courier.ClaimRequest{CourierID: onBreak.ID, TaskID: taskID(3)}, apperr.FailedPrecondition},
		{"missing courier", courier.ClaimRequest{CourierID: missingID, TaskID: taskID(3)}, apperr.NotFound},
		{"malformed task", courier.ClaimRequest{CourierID: other.ID, TaskID: "t-1"}, apperr.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := f.svc.ClaimCourier(dispatch, tt.req)
			apperrtest.WantCode(t, "ClaimCourier", err, tt.want)
		})
	}

	// Users, even dispatchers and the courier themself, never claim: only services do.
	for name, userCtx := range map[string]func() error{
		"dispatcher": func() error {
			_, _, err := f.svc.ClaimCourier(dispatcherCtx(ctx), courier.ClaimRequest{CourierID: other.ID, TaskID: taskID(5)})
			return err
		},
		"courier": func() error {
			_, _, err := f.svc.ReleaseCourier(courierCtx(ctx, 1), full.ID, taskID(1))
			return err
		},
	} {
		apperrtest.WantCode(t, "claim or release as "+name, userCtx(), apperr.PermissionDenied)
	}
}

// TestConcurrentClaimsRespectCapacity: many claims at once never exceed capacity, and repeating a task
// never counts twice.
func TestConcurrentClaimsRespectCapacity(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := serviceCtx(testContext(t), "dispatch")
	c := f.available(t, 1, courier.ModeVan, 5)

	const workers = 40
	var wg sync.WaitGroup
	results := make([]error, workers)
	for i := range workers {
		wg.Go(func() {
			// Tasks 0..19, each claimed twice.
			_, _, results[i] = f.svc.ClaimCourier(ctx, courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(i % 20)})
		})
	}
	wg.Wait()
	won := map[string]bool{}
	for i, err := range results {
		switch apperr.CodeOf(err) {
		case "":
			won[taskID(i%20)] = true
		case apperr.FailedPrecondition:
		default:
			t.Errorf("ClaimCourier(task %d) error = %v, want nil or FailedPrecondition", i%20, err)
		}
	}
	snap, err := f.svc.GetCourierStatus(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(won) != 5 || snap.Courier.ActiveTasks != 5 || len(snap.TaskIDs) != 5 || snap.Status() != courier.StatusBusy {
		t.Errorf("after concurrent claims: %d tasks won, %d active, tasks %v, status %v; want 5, 5, 5 ids, busy",
			len(won), snap.Courier.ActiveTasks, snap.TaskIDs, snap.Status())
	}
	for _, id := range snap.TaskIDs {
		if !won[id] {
			t.Errorf("claimed task %s was never reported as won", id)
		}
	}
}

// TestClaimsSurviveRestart: claims live in the store, so a new Service over the same store sees them.
func TestClaimsSurviveRestart(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := serviceCtx(testContext(t), "dispatch")
	c := f.available(t, 1, courier.ModeVan, 1)
	if _, _, err := f.svc.ClaimCourier(ctx, courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(1),
		ExpectedRelease: t0.Add(2 * time.Hour)}); err != nil {
		t.Fatal(err)
	}

	restarted := courier.NewService(f.store, f.users, courier.Options{Now: f.clock.Now})
	if err := restarted.Load(ctx); err != nil {
		t.Fatal(err)
	}
	_, already, err := restarted.ClaimCourier(ctx, courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(1)})
	if err != nil || !already {
		t.Errorf("ClaimCourier(same task) after restart = already %v, %v; want true, nil", already, err)
	}
	_, _, err = restarted.ClaimCourier(ctx, courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(2)})
	apperrtest.WantCode(t, "ClaimCourier(beyond capacity) after restart", err, apperr.FailedPrecondition)
	snap, err := restarted.GetCourierStatus(ctx, c.ID)
	if diff := cmp.Diff([]string{taskID(1)}, snap.TaskIDs); err != nil || diff != "" {
		t.Errorf("GetCourierStatus after restart: %v (-want +got):\n%s", err, diff)
	}
}

// racingStore is the SQLite store, except that ClaimCourier answers as the PostgreSQL store does when
// another courier's claim of the same task commits while this one is being decided: Conflict from the
// key on task_id.
type racingStore struct{ courier.Store }

func (racingStore) ClaimCourier(context.Context, string, string, func(courier.Courier, string) (*courier.Claim, error)) error {
	return apperr.Wrap(apperr.Conflict, errors.New("duplicate key value violates unique constraint \"claims_pkey\""), "task is already claimed")
}

func (r racingStore) ClaimCourierLive(ctx context.Context, id, task string, _ time.Time, decide func(courier.Courier, string) (*courier.Claim, error)) (courier.LiveRecord, error) {
	return courier.LiveRecord{}, r.ClaimCourier(ctx, id, task, decide)
}

func (r racingStore) ClaimCourierHolding(ctx context.Context, id, task string, hour time.Time, decide func(courier.Courier, courier.Holding) (*courier.Claim, error)) (courier.LiveRecord, error) {
	return r.ClaimCourierLive(ctx, id, task, hour, nil)
}

// TestClaimLostRace: a claim that loses the race for a task to another courier is refused as the task
// being held, FailedPrecondition, like one decided after the winner committed.
func TestClaimLostRace(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := serviceCtx(testContext(t), "dispatch")
	c := f.available(t, 1, courier.ModeVan, 2)
	svc := courier.NewService(racingStore{f.store}, f.users, courier.Options{Now: f.clock.Now})
	_, _, err := svc.ClaimCourier(ctx, courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(1)})
	apperrtest.WantCode(t, "ClaimCourier(lost race)", err, apperr.FailedPrecondition)
	if got, want := apperr.MessageOf(err), "task "+taskID(1)+" is claimed on another courier"; got != want {
		t.Errorf("ClaimCourier(lost race) message = %q, want %q", got, want)
	}
}
