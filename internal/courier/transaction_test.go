package courier_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

// The rules below run inside the Store's transaction, as closures the Service hands it (see
// courier.Store); these tests drive them through the Service on the real SQLite store.

// availableHours returns the available slot starts of courier id in [hour(0), hour(6)).
func (f *fixture) availableHours(t *testing.T, id string) []time.Time {
	t.Helper()
	slots, err := f.svc.GetAvailability(adminCtx(testContext(t)), id, hour(0), hour(6))
	if err != nil {
		t.Fatalf("GetAvailability: %v", err)
	}
	var out []time.Time
	for _, s := range slots {
		if s.Available {
			out = append(out, s.Start)
		}
	}
	return out
}

func TestUpdateCourierStaleEtag(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := adminCtx(testContext(t))
	c := f.register(t, 1, courier.ModeBicycle, 3)
	if _, err := f.svc.UpdateCourier(ctx, courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{courier.FieldDisplayName},
		DisplayName: "First", Etag: "1"}); err != nil {
		t.Fatalf("UpdateCourier(etag 1): %v", err)
	}
	tests := []struct {
		name string
		etag string
	}{
		{"stale", "1"},   // another writer already moved the courier to version 2
		{"ahead", "3"},   // stored is 2
		{"skipped", "4"}, // nonsense
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.svc.UpdateCourier(ctx, courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{courier.FieldDisplayName},
				DisplayName: "Lost update", Etag: tt.etag})
			apperrtest.WantCode(t, fmt.Sprintf("UpdateCourier(etag %s over version 2)", tt.etag), err, apperr.Aborted)
		})
	}
	got, err := f.svc.GetCourier(ctx, courier.Lookup{ID: c.ID})
	if err != nil || got.DisplayName != "First" || got.Version != 2 {
		t.Errorf("after rejected updates GetCourier = %q version %d, %v; want %q version 2", got.DisplayName, got.Version, err, "First")
	}
}

func TestUpdateCourierCapacityBelowClaims(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := testContext(t)
	c := f.available(t, 1, courier.ModeBicycle, 3)
	for task := 1; task <= 2; task++ {
		if _, _, err := f.svc.ClaimCourier(serviceCtx(ctx, "dispatch"), courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(task)}); err != nil {
			t.Fatal(err)
		}
	}
	req := courier.UpdateRequest{ID: c.ID, Fields: []courier.Field{courier.FieldCapacity}, Capacity: 1}
	_, err := f.svc.UpdateCourier(adminCtx(ctx), req)
	apperrtest.WantCode(t, "UpdateCourier(capacity 1 below 2 claims)", err, apperr.FailedPrecondition)
	if got, err := f.svc.GetCourier(adminCtx(ctx), courier.Lookup{ID: c.ID}); err != nil || got.Capacity != 3 || got.Version != 1 {
		t.Errorf("after refused update GetCourier capacity %d version %d, %v; want 3 version 1", got.Capacity, got.Version, err)
	}

	req.Capacity = 2 // exactly the claims: allowed, and the courier is then full
	got, err := f.svc.UpdateCourier(adminCtx(ctx), req)
	if err != nil {
		t.Fatalf("UpdateCourier(capacity 2 with 2 claims): %v", err)
	}
	if got.Capacity != 2 || got.ActiveTasks != 2 || got.EffectiveStatus() != courier.StatusBusy {
		t.Errorf("UpdateCourier = capacity %d, active %d, effective %s; want 2, 2, busy", got.Capacity, got.ActiveTasks, got.EffectiveStatus())
	}
}

func TestSetStatusOfflineWithClaims(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := adminCtx(testContext(t))
	c := f.available(t, 1, courier.ModeBicycle, 3)
	if _, _, err := f.svc.ClaimCourier(serviceCtx(ctx, "dispatch"), courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(1)}); err != nil {
		t.Fatal(err)
	}

	_, err := f.svc.SetStatus(ctx, c.ID, courier.StatusOffline)
	apperrtest.WantCode(t, "SetStatus(offline with a claim)", err, apperr.FailedPrecondition)
	snap, err := f.svc.SetStatus(ctx, c.ID, courier.StatusOnBreak)
	if err != nil {
		t.Fatalf("SetStatus(on_break with a claim): %v", err)
	}
	if snap.Courier.Status != courier.StatusOnBreak || snap.Courier.ActiveTasks != 1 {
		t.Errorf("SetStatus(on_break) = status %s, active %d, want on_break, 1", snap.Courier.Status, snap.Courier.ActiveTasks)
	}
	_, err = f.svc.SetStatus(ctx, c.ID, courier.StatusOffline)
	apperrtest.WantCode(t, "SetStatus(offline from on_break with a claim)", err, apperr.FailedPrecondition)

	if _, released, err := f.svc.ReleaseCourier(serviceCtx(ctx, "dispatch"), c.ID, taskID(1)); err != nil || !released {
		t.Fatalf("ReleaseCourier = %v, %v, want true, nil", released, err)
	}
	if snap, err := f.svc.SetStatus(ctx, c.ID, courier.StatusOffline); err != nil || snap.Courier.Status != courier.StatusOffline {
		t.Errorf("SetStatus(offline without claims) = %s, %v, want offline, nil", snap.Courier.Status, err)
	}
}

func TestUnavailableHoursWithClaims(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := adminCtx(testContext(t))
	dispatch := serviceCtx(ctx, "dispatch")
	c := f.available(t, 1, courier.ModeBicycle, 3)
	h := []time.Time{hour(0), hour(1), hour(2), hour(3), hour(4), hour(5)}
	if _, err := f.svc.SetAvailability(ctx, c.ID, h, true); err != nil {
		t.Fatal(err)
	}
	// Claimed from now (09:20) to exactly h[2]: it covers h[0] and h[1], not h[2] (the expected
	// release is exclusive).
	if _, _, err := f.svc.ClaimCourier(dispatch, courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(1), ExpectedRelease: h[2]}); err != nil {
		t.Fatal(err)
	}

	refused := [][]time.Time{{h[0]}, {h[1]}, {h[2], h[1]}, {h[2], h[3], h[0], h[4]}}
	for _, hours := range refused {
		_, err := f.svc.SetAvailability(ctx, c.ID, hours, false)
		apperrtest.WantCode(t, fmt.Sprintf("SetAvailability(%v, false) over a claim", hours), err, apperr.FailedPrecondition)
	}
	// All or nothing: the refused calls changed no slot.
	if diff := cmp.Diff(h, f.availableHours(t, c.ID)); diff != "" {
		t.Errorf("available hours after refused changes (-want +got):\n%s", diff)
	}

	if _, err := f.svc.SetAvailability(ctx, c.ID, []time.Time{h[2], h[3]}, false); err != nil {
		t.Errorf("SetAvailability(h2 h3, false) next to a claim: %v", err)
	}
	// Making covered slots available again is always allowed.
	if _, err := f.svc.SetAvailability(ctx, c.ID, []time.Time{h[0], h[1]}, true); err != nil {
		t.Errorf("SetAvailability(h0 h1, true) under a claim: %v", err)
	}
	if diff := cmp.Diff([]time.Time{h[0], h[1], h[4], h[5]}, f.availableHours(t, c.ID)); diff != "" {
		t.Errorf("available hours after allowed changes (-want +got):\n%s", diff)
	}

	// Another courier's claim does not pin this courier's hours, and a released claim pins nothing.
	other := f.available(t, 2, courier.ModeBicycle, 3)
	if _, _, err := f.svc.ClaimCourier(dispatch, courier.ClaimRequest{CourierID: other.ID, TaskID: taskID(2), ExpectedRelease: h[5]}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SetAvailability(ctx, c.ID, []time.Time{h[4]}, false); err != nil {
		t.Errorf("SetAvailability(h4, false) with another courier's claim: %v", err)
	}
	if _, _, err := f.svc.ReleaseCourier(dispatch, c.ID, taskID(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.SetAvailability(ctx, c.ID, []time.Time{h[0], h[1]}, false); err != nil {
		t.Errorf("SetAvailability(h0 h1, false) after the release: %v", err)
	}
}

func TestClaimHeldTaskIsIdempotent(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := serviceCtx(testContext(t), "dispatch")
	c := f.available(t, 1, courier.ModeBicycle, 1)
	other := f.available(t, 2, courier.ModeBicycle, 3)
	if _, _, err := f.svc.ClaimCourier(ctx, courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(1), ExpectedRelease: hour(1)}); err != nil {
		t.Fatal(err)
	}

	// Claimed again later, with a longer release, while the courier is full: the first claim stands
	// unchanged, so it still covers only the current hour.
	f.clock.Advance(5 * time.Minute)
	snap, already, err := f.svc.ClaimCourier(ctx, courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(1), ExpectedRelease: hour(3)})
	if err != nil || !already || snap.Courier.ActiveTasks != 1 {
		t.Fatalf("ClaimCourier(held task, full courier) = %d active, already %v, %v; want 1, true, nil", snap.Courier.ActiveTasks, already, err)
	}
	slots, err := f.svc.GetAvailability(adminCtx(ctx), c.ID, hour(0), hour(3))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range slots {
		if want := map[int]int{0: 1}[i]; s.AssignedTasks != want {
			t.Errorf("slot %s carries %d tasks after a repeated claim, want %d", s.Start.Format(time.Kitchen), s.AssignedTasks, want)
		}
	}

	// And after the courier went on break.
	if _, err := f.svc.SetStatus(adminCtx(ctx), c.ID, courier.StatusOnBreak); err != nil {
		t.Fatal(err)
	}
	if _, already, err := f.svc.ClaimCourier(ctx, courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(1)}); err != nil || !already {
		t.Errorf("ClaimCourier(held task, courier on break) = already %v, %v, want true, nil", already, err)
	}
	// The task stays on its courier: another courier cannot take it, and holds nothing.
	_, _, err = f.svc.ClaimCourier(ctx, courier.ClaimRequest{CourierID: other.ID, TaskID: taskID(1)})
	apperrtest.WantCode(t, "ClaimCourier(task held by another courier)", err, apperr.FailedPrecondition)
	snap, err = f.svc.GetCourierStatus(adminCtx(ctx), other.ID)
	if err != nil || len(snap.TaskIDs) != 0 {
		t.Errorf("GetCourierStatus(other) = tasks %v, %v, want none", snap.TaskIDs, err)
	}
	snap, err = f.svc.GetCourierStatus(adminCtx(ctx), c.ID)
	if diff := cmp.Diff([]string{taskID(1)}, snap.TaskIDs); err != nil || diff != "" {
		t.Errorf("GetCourierStatus: %v (-want +got):\n%s", err, diff)
	}
}
