package storetest

import (
	"testing"
	"time"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
)

// RunInvalid checks that values no store can hold (courier.Courier.CheckStorable and its kin, a status
// that cannot be set, a limit below 1) are refused as Invalid. The SQL stores run it; the in-memory
// couriertest.Store holds whatever it is given, so it does not. newStore is as for Run.
func RunInvalid(t *testing.T, newStore func(t *testing.T) courier.Store) {
	ctx := testContext(t)
	s := newStore(t)
	now := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	good := courier.Courier{ID: "c1", UserID: "u1", DisplayName: "A", Mode: courier.ModeCar, Capacity: 2, Status: courier.StatusAvailable, CreatedAt: now, UpdatedAt: now, Version: 1}
	if err := s.CreateCourier(ctx, good); err != nil {
		t.Fatalf("CreateCourier: %v", err)
	}
	creates := []struct {
		name string
		edit func(*courier.Courier)
	}{
		{"no id", func(c *courier.Courier) { c.ID = "" }},
		{"no user", func(c *courier.Courier) { c.UserID = "" }},
		{"unknown mode", func(c *courier.Courier) { c.Mode = "rocket" }},
		{"capacity 0", func(c *courier.Courier) { c.Capacity = 0 }},
		{"capacity 101", func(c *courier.Courier) { c.Capacity = courier.MaxCapacity + 1 }},
		{"busy stored", func(c *courier.Courier) { c.Status = courier.StatusBusy }},
		{"unknown state", func(c *courier.Courier) { c.Status = "sleeping" }},
	}
	for _, tt := range creates {
		c := good
		c.ID, c.UserID = "c2", "u2"
		tt.edit(&c)
		wantCode(t, "CreateCourier("+tt.name+")", s.CreateCourier(ctx, c), apperr.Invalid)
	}
	bad := good
	bad.Capacity, bad.Version = 0, 2
	_, err := s.UpdateCourier(ctx, bad)
	wantCode(t, "UpdateCourier(capacity 0)", err, apperr.Invalid)
	_, err = s.SetStatus(ctx, good.ID, courier.StatusBusy)
	wantCode(t, "SetStatus(busy)", err, apperr.Invalid)
	_, err = s.ClaimCourier(ctx, courier.Claim{CourierID: good.ID, TaskID: "t1", ClaimedAt: now, ExpectedRelease: now})
	wantCode(t, "ClaimCourier(release not after claim)", err, apperr.Invalid)
	_, err = s.ListCouriers(ctx, courier.Filter{}, "", 0)
	wantCode(t, "ListCouriers(limit 0)", err, apperr.Invalid)
}
