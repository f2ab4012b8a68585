package courier_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

// hour returns the start of the n-th hour slot after t0's (09:00 UTC).
func hour(n int) time.Time { return t0.Truncate(time.Hour).Add(time.Duration(n) * time.Hour) }

func TestSetAvailabilityRules(t *testing.T) {
	tests := []struct {
		name      string
		hours     []time.Time
		available bool
		want      apperr.Code
		// wantSlots is checked when want is "".
		wantSlots []courier.Slot
	}{
		{
			name:      "current hour, truncated",
			hours:     []time.Time{t0},
			available: true,
			wantSlots: []courier.Slot{{Start: hour(0), Available: true}},
		},
		{
			name:      "other zones and duplicates collapse to UTC hours in order",
			hours:     []time.Time{hour(2).Add(59 * time.Minute).In(time.FixedZone("X", -7*3600)), hour(1), hour(1).Add(time.Minute)},
			available: true,
			wantSlots: []courier.Slot{{Start: hour(1), Available: true}, {Start: hour(2), Available: true}},
		},
		{
			name:      "claimed slot may stay available",
			hours:     []time.Time{hour(0), hour(3)},
			available: true,
			wantSlots: []courier.Slot{{Start: hour(0), Available: true, AssignedTasks: 1}, {Start: hour(3), Available: true}},
		},
		{
			name:      "unclaimed slot may become unavailable",
			hours:     []time.Time{hour(5)},
			available: false,
			wantSlots: []courier.Slot{{Start: hour(5)}},
		},
		{name: "claimed slot cannot become unavailable", hours: []time.Time{hour(5), hour(0)}, available: false, want: apperr.FailedPrecondition},
		{name: "slot inside a long claim cannot become unavailable", hours: []time.Time{hour(2)}, want: apperr.FailedPrecondition},
		{name: "ended hour", hours: []time.Time{hour(-1)}, available: true, want: apperr.Invalid},
		{name: "last minute of the previous hour", hours: []time.Time{hour(0).Add(-time.Nanosecond)}, available: true, want: apperr.Invalid},
		{name: "zero time", hours: []time.Time{{}}, available: true, want: apperr.Invalid},
		{name: "more than 90 days ahead", hours: []time.Time{t0.Add(90*24*time.Hour + time.Hour)}, available: true, want: apperr.Invalid},
		{name: "no hours", available: true, want: apperr.Invalid},
		{name: "more than 744 hours", hours: make([]time.Time, 745), available: true, want: apperr.Invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, courier.Options{})
			ctx := testContext(t)
			c := f.available(t, 1, courier.ModeBicycle, 3)
			// One claim for the current hour only, one from now until 11:30 (slots 09, 10 and 11).
			if _, _, err := f.svc.ClaimCourier(serviceCtx(ctx, "dispatch"), courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(1)}); err != nil {
				t.Fatal(err)
			}
			if _, _, err := f.svc.ClaimCourier(serviceCtx(ctx, "dispatch"), courier.ClaimRequest{
				CourierID: c.ID, TaskID: taskID(2), ExpectedRelease: hour(2).Add(30 * time.Minute)}); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.SetAvailability(courierCtx(ctx, 1), c.ID, []time.Time{hour(5)}, true); err != nil {
				t.Fatal(err)
			}

			got, err := f.svc.SetAvailability(courierCtx(ctx, 1), c.ID, tt.hours, tt.available)
			apperrtest.WantCode(t, "SetAvailability", err, tt.want)
			if tt.want != "" {
				// All or nothing: the slot marked before is untouched.
				slot, err := f.svc.IsAvailable(courierCtx(ctx, 1), c.ID, hour(5))
				if err != nil || !slot.Available {
					t.Errorf("IsAvailable(hour 5) after refused change = %+v, %v, want available", slot, err)
				}
				return
			}
			// The second claim also covers 10:00 and 11:00; the first only 09:00.
			for i := range tt.wantSlots {
				if s := tt.wantSlots[i].Start; s.Equal(hour(1)) || s.Equal(hour(2)) {
					tt.wantSlots[i].AssignedTasks = 1
				}
				if tt.wantSlots[i].Start.Equal(hour(0)) {
					tt.wantSlots[i].AssignedTasks = 2
				}
			}
			if diff := cmp.Diff(tt.wantSlots, got); diff != "" {
				t.Errorf("SetAvailability (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGetAvailability(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := testContext(t)
	c := f.available(t, 1, courier.ModeWalking, 2)
	if _, err := f.svc.SetAvailability(dispatcherCtx(ctx), c.ID, []time.Time{hour(1), hour(3)}, true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.svc.ClaimCourier(serviceCtx(ctx, "dispatch"), courier.ClaimRequest{
		CourierID: c.ID, TaskID: taskID(1), ExpectedRelease: hour(1).Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}

	got, err := f.svc.GetAvailability(courierCtx(ctx, 1), c.ID, t0, hour(4).Add(time.Minute))
	if err != nil {
		t.Fatalf("GetAvailability: %v", err)
	}
	want := []courier.Slot{
		{Start: hour(0), AssignedTasks: 1},
		{Start: hour(1), Available: true, AssignedTasks: 1},
		{Start: hour(2)},
		{Start: hour(3), Available: true},
		{Start: hour(4)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetAvailability (-want +got):\n%s", diff)
	}

	slot, err := f.svc.IsAvailable(courierCtx(ctx, 1), c.ID, hour(3).Add(59*time.Minute))
	if diff := cmp.Diff(courier.Slot{Start: hour(3), Available: true}, slot); err != nil || diff != "" {
		t.Errorf("IsAvailable(03:59 past t0) = %v (-want +got):\n%s", err, diff)
	}
	slot, err = f.svc.IsAvailable(courierCtx(ctx, 1), c.ID, time.Time{})
	if diff := cmp.Diff(courier.Slot{Start: hour(0), AssignedTasks: 1}, slot); err != nil || diff != "" {
		t.Errorf("IsAvailable(now) = %v (-want +got):\n%s", err, diff)
	}

	for name, rng := range map[string][2]time.Time{
		"end before start": {hour(2), hour(1)},
		"empty range":      {hour(2), hour(2)},
		"over 744 hours":   {hour(0), hour(745)},
		"missing start":    {{}, hour(1)},
	} {
		_, err := f.svc.GetAvailability(courierCtx(ctx, 1), c.ID, rng[0], rng[1])
		apperrtest.WantCode(t, "GetAvailability("+name+")", err, apperr.Invalid)
	}
	_, err = f.svc.GetAvailability(adminCtx(ctx), missingID, hour(0), hour(1))
	apperrtest.WantCode(t, "GetAvailability(missing courier)", err, apperr.NotFound)
}

func TestSetStatus(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := testContext(t)
	c := f.register(t, 1, courier.ModeCar, 1)

	snap, err := f.svc.SetStatus(courierCtx(ctx, 1), c.ID, courier.StatusAvailable)
	if err != nil || snap.Status() != courier.StatusAvailable {
		t.Fatalf("SetStatus(available) = %v, %v, want available", snap.Status(), err)
	}
	snap, _, err = f.svc.ClaimCourier(serviceCtx(ctx, "dispatch"), courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(1)})
	if err != nil || snap.Status() != courier.StatusBusy || snap.Courier.Status != courier.StatusAvailable {
		t.Fatalf("ClaimCourier(last unit) = effective %v stored %v, %v, want busy over available", snap.Status(), snap.Courier.Status, err)
	}
	for _, st := range []courier.Status{courier.StatusBusy, "", "lunch"} {
		_, err = f.svc.SetStatus(courierCtx(ctx, 1), c.ID, st)
		apperrtest.WantCode(t, "SetStatus("+string(st)+")", err, apperr.Invalid)
	}
	_, err = f.svc.SetStatus(courierCtx(ctx, 1), c.ID, courier.StatusOffline)
	apperrtest.WantCode(t, "SetStatus(offline) with a claim", err, apperr.FailedPrecondition)

	snap, err = f.svc.SetStatus(dispatcherCtx(ctx), c.ID, courier.StatusOnBreak)
	if err != nil || snap.Status() != courier.StatusOnBreak {
		t.Errorf("SetStatus(on_break) with a claim = %v, %v, want on_break", snap.Status(), err)
	}
	_, err = f.svc.SetStatus(dispatcherCtx(ctx), missingID, courier.StatusOnBreak)
	apperrtest.WantCode(t, "SetStatus(missing courier)", err, apperr.NotFound)
}

func TestGetCourierStatus(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := testContext(t)
	c := f.available(t, 1, courier.ModeBicycle, 3)
	if _, err := f.svc.SetAvailability(courierCtx(ctx, 1), c.ID, []time.Time{hour(0)}, true); err != nil {
		t.Fatal(err)
	}
	fix := courier.Fix{Lat: 52.52, Lng: 13.405, RecordedAt: t0.Add(-30 * time.Second), AccuracyMeters: 8,
		Speed: 4.5, HasSpeed: true}
	f.report(t, c.ID, fix)
	for _, task := range []int{2, 1} {
		if _, _, err := f.svc.ClaimCourier(serviceCtx(ctx, "dispatch"), courier.ClaimRequest{CourierID: c.ID, TaskID: taskID(task)}); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Second)
	}

	got, err := f.svc.GetCourierStatus(serviceCtx(ctx, "dispatch"), c.ID)
	if err != nil {
		t.Fatalf("GetCourierStatus: %v", err)
	}
	wantCourier := c
	wantCourier.Status, wantCourier.ActiveTasks = courier.StatusAvailable, 2
	want := courier.Snapshot{
		Courier:      wantCourier,
		TaskIDs:      []string{taskID(2), taskID(1)},
		AvailableNow: true,
		Location: courier.LocationFix{CourierID: c.ID, Lat: 52.52, Lng: 13.405, RecordedAt: fix.RecordedAt,
			AccuracyMeters: 8, SpeedMPS: 4.5, Heading: -1},
		HasLocation: true,
		LocationAge: 32 * time.Second,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("GetCourierStatus (-want +got):\n%s", diff)
	}
}
