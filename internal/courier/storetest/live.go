package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
)

// testClaimCourierLive: after every claim, ClaimCourierLive answers what LiveState
// answers right after it (the courier, its claims in their order, the hour's availability), whether
// decide stored a claim (later, earlier or at the same time as the claims held, in any hour and zone) or
// nothing; decide sees what ClaimCourier's sees; a refusal, a lost race and an unknown courier fail as
// ClaimCourier's do.
func testClaimCourierLive(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	c.Capacity = 10
	mustCreate(ctx, t, s, c)
	mustCreate(ctx, t, s, newCourier(2))
	h := hoursFrom(base, 3)
	if err := s.SetAvailability(ctx, c.ID, h[:1], true, allow); err != nil {
		t.Fatalf("SetAvailability(h0, true): %v", err)
	}
	if err := s.SetAvailability(ctx, c.ID, h[1:2], false, allow); err != nil {
		t.Fatalf("SetAvailability(h1, false): %v", err)
	}
	mustClaim(ctx, t, s, claim(2, 50, base, base.Add(time.Hour))) // another courier's claim must not show

	steps := []struct {
		name  string
		hour  time.Time
		claim *courier.Claim
	}{
		{"first claim, available hour", h[0], ptr(claim(1, 5, base.Add(2*time.Minute), base.Add(time.Hour)))},
		{"earlier claim, inside the hour in another zone", h[0].Add(59*time.Minute + time.Nanosecond).In(zone), ptr(claim(1, 9, base.Add(time.Minute), base.Add(time.Hour)))},
		{"same time, lower task id, unavailable hour", h[1].Add(time.Minute), ptr(claim(1, 2, base.Add(2*time.Minute), base.Add(2*time.Hour)))},
		{"same time, higher task id, unset hour", h[2], ptr(claim(1, 7, base.Add(2*time.Minute), base.Add(2*time.Hour)))},
		{"later claim", h[0], ptr(claim(1, 1, base.Add(3*time.Minute), base.Add(time.Hour)))},
		{"nothing stored", h[0], nil},
		{"nothing stored, unavailable hour", h[1], nil},
	}
	held := 0
	for _, st := range steps {
		task := taskID(99)
		if st.claim != nil {
			task = st.claim.TaskID
		}
		wantSeen := mustGet(ctx, t, s, c.ID)
		var seen courier.Courier
		var holder string
		got, err := s.ClaimCourierLive(ctx, c.ID, task, st.hour, func(cur courier.Courier, h string) (*courier.Claim, error) {
			seen, holder = cur, h
			return st.claim, nil
		})
		if err != nil {
			t.Fatalf("%s: ClaimCourierLive: %v", st.name, err)
		}
		if diff := cmp.Diff(wantSeen, seen, cmpOpts...); diff != "" || holder != "" {
			t.Errorf("%s: decide saw holder %q and (-GetCourier +seen):\n%s", st.name, holder, diff)
		}
		if st.claim != nil {
			held++
		}
		wantLive(ctx, t, s, "ClaimCourierLive", st.name, c.ID, st.hour, got, held)
	}

	// The holder of a held task, and the errors.
	var holder string
	_, err := s.ClaimCourierLive(ctx, courierID(2), taskID(5), h[0], func(_ courier.Courier, h string) (*courier.Claim, error) {
		holder = h
		return nil, nil
	})
	if err != nil || holder != c.ID {
		t.Errorf("ClaimCourierLive(held task) = %v, decide saw holder %q; want nil, %q", err, holder, c.ID)
	}
	refusal := apperr.Errorf(apperr.FailedPrecondition, "refused by the rule")
	if _, err := s.ClaimCourierLive(ctx, c.ID, taskID(60), h[0], func(courier.Courier, string) (*courier.Claim, error) {
		return ptr(claim(1, 60, base, base.Add(time.Hour))), refusal
	}); !errors.Is(err, refusal) {
		t.Errorf("ClaimCourierLive(refused) error = %v, want the refusal itself", err)
	}
	_, err = s.ClaimCourierLive(ctx, c.ID, taskID(50), h[0], func(courier.Courier, string) (*courier.Claim, error) {
		return ptr(claim(1, 50, base, base.Add(time.Hour))), nil
	})
	wantCode(t, "ClaimCourierLive(task held by another courier, let through)", err, apperr.Conflict)
	_, err = s.ClaimCourierLive(ctx, courierID(99), taskID(7), h[0], func(courier.Courier, string) (*courier.Claim, error) { return nil, nil })
	wantCode(t, "ClaimCourierLive(unknown courier)", err, apperr.NotFound)
	if got := mustClaims(ctx, t, s, c.ID); len(got) != held {
		t.Errorf("Claims after the failed claims = %d, want %d", len(got), held)
	}
}

func ptr[T any](v T) *T { return &v }

// testReleaseCourierLive: ReleaseCourierLive reports what ReleaseCourier reports and answers what
// LiveState answers right after it, for a held claim, one already released, one never made and another
// courier's; NotFound for a courier that does not exist.
func testReleaseCourierLive(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	c.Capacity = 10
	mustCreate(ctx, t, s, c)
	mustCreate(ctx, t, s, newCourier(2))
	h := hoursFrom(base, 2)
	if err := s.SetAvailability(ctx, c.ID, h[:1], true, allow); err != nil {
		t.Fatalf("SetAvailability(h0, true): %v", err)
	}
	mustClaim(ctx, t, s, claim(1, 1, base, base.Add(time.Hour)))
	mustClaim(ctx, t, s, claim(1, 2, base.Add(time.Minute), base.Add(time.Hour)))
	mustClaim(ctx, t, s, claim(1, 3, base.Add(time.Minute), base.Add(time.Hour)))
	mustClaim(ctx, t, s, claim(2, 4, base, base.Add(time.Hour)))

	tests := []struct {
		name string
		task string
		hour time.Time
		want bool
	}{
		{"held", taskID(2), h[0], true},
		{"already released, another zone", taskID(2), h[0].Add(30 * time.Minute).In(zone), false},
		{"never claimed, unset hour", taskID(77), h[1], false},
		{"held by another courier", taskID(4), h[0], false},
		{"held, the first", taskID(1), h[1], true},
	}
	held := 3
	for _, tt := range tests {
		released, got, err := s.ReleaseCourierLive(ctx, c.ID, tt.task, tt.hour)
		if err != nil || released != tt.want {
			t.Fatalf("ReleaseCourierLive(%s) = %v, %v; want %v, nil", tt.name, released, err, tt.want)
		}
		if released {
			held--
		}
		wantLive(ctx, t, s, "ReleaseCourierLive", tt.name, c.ID, tt.hour, got, held)
	}
	if got := mustGet(ctx, t, s, courierID(2)).ActiveTasks; got != 1 {
		t.Errorf("other courier's ActiveTasks = %d, want 1 (its claim is untouched)", got)
	}
	_, _, err := s.ReleaseCourierLive(ctx, courierID(99), taskID(2), h[0])
	wantCode(t, "ReleaseCourierLive(unknown courier)", err, apperr.NotFound)
}

// wantLive checks that got, what call answered for step name, is what LiveState reads right after it,
// with held claims.
func wantLive(ctx context.Context, t *testing.T, s courier.Store, call, name, courierID string, hour time.Time, got courier.LiveRecord, held int) {
	t.Helper()
	c, claims, avail, err := s.LiveState(ctx, courierID, hour)
	if err != nil {
		t.Fatalf("%s: LiveState: %v", name, err)
	}
	want := courier.LiveRecord{Courier: c, Claims: claims, AvailableNow: avail}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("%s: %s (-LiveState after it +got):\n%s", name, call, diff)
	}
	if got.Courier.ActiveTasks != held || len(got.Claims) != held {
		t.Errorf("%s: %s = %d active, %d claims; want %d", name, call, got.Courier.ActiveTasks, len(got.Claims), held)
	}
}
