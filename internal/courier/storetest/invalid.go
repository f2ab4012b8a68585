package storetest

import (
	"testing"
	"time"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
)

// RunInvalid checks that values no store can hold (no id or user, an undefined mode, a capacity out of
// range, a status that is not stored, a claim released before it was made, a limit below 1) are refused
// as Invalid. newStore is as for Run.
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
	updates := []struct {
		name string
		edit func(*courier.Courier)
	}{
		{"capacity 0", func(c *courier.Courier) { c.Capacity = 0 }},
		{"capacity 101", func(c *courier.Courier) { c.Capacity = courier.MaxCapacity + 1 }},
		{"unknown mode", func(c *courier.Courier) { c.Mode = "rocket" }},
		{"busy stored", func(c *courier.Courier) { c.Status = courier.StatusBusy }},
		{"unknown state", func(c *courier.Courier) { c.Status = "sleeping" }},
	}
	for _, tt := range updates {
		_, err := s.UpdateCourier(ctx, good.ID, func(c courier.Courier) (courier.Courier, error) {
			c.Version++
			tt.edit(&c)
			return c, nil
		})
		wantCode(t, "UpdateCourier("+tt.name+")", err, apperr.Invalid)
	}
	if got := mustGet(ctx, t, s, good.ID); got.Version != 1 || got.Capacity != 2 {
		t.Errorf("after refused updates GetCourier version %d capacity %d, want 1 and 2", got.Version, got.Capacity)
	}
	err := s.ClaimCourier(ctx, good.ID, "t1", func(courier.Courier, string) (*courier.Claim, error) {
		return &courier.Claim{CourierID: good.ID, TaskID: "t1", ClaimedAt: now, ExpectedRelease: now}, nil
	})
	wantCode(t, "ClaimCourier(release not after claim)", err, apperr.Invalid)
	_, err = s.ListCouriers(ctx, courier.Filter{}, "", 0)
	wantCode(t, "ListCouriers(limit 0)", err, apperr.Invalid)
}
