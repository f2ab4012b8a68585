package courier_test

import (
	"testing"
	"time"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
)

// wantError checks err's code and message; an empty code means nil.
func wantError(t *testing.T, call string, err error, code apperr.Code, message string) {
	t.Helper()
	if got := apperr.CodeOf(err); got != code {
		t.Fatalf("%s code = %q (%v), want %q", call, got, err, code)
	}
	if got := apperr.MessageOf(err); got != message {
		t.Errorf("%s message = %q, want %q", call, got, message)
	}
}

// storableCourier is a courier as a store returns it.
func storableCourier() courier.Courier {
	return courier.Courier{ID: "c1", UserID: "u1", DisplayName: "A", Mode: courier.ModeCar, Capacity: 2, Status: courier.StatusAvailable, CreatedAt: t0, UpdatedAt: t0, Version: 1}
}

func TestCheckProfileUpdate(t *testing.T) {
	stored := storableCourier()
	stored.Version, stored.ActiveTasks = 3, 2
	tests := []struct {
		name    string
		edit    func(*courier.Courier)
		code    apperr.Code
		message string
	}{
		{"next version", func(*courier.Courier) {}, "", ""},
		{"capacity down to the claims", func(c *courier.Courier) { c.Capacity = 2 }, "", ""},
		{"stale version", func(c *courier.Courier) { c.Version = 3 }, apperr.Aborted, "courier c1 changed since it was read (version 3, expected 2)"},
		{"capacity below the claims", func(c *courier.Courier) { c.Capacity = 1 }, apperr.FailedPrecondition, "capacity 1 is below the 2 tasks claimed on courier c1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := stored
			next.Version, next.Capacity = 4, 5
			tt.edit(&next)
			wantError(t, "CheckProfileUpdate()", stored.CheckProfileUpdate(next), tt.code, tt.message)
		})
	}
}

func TestCheckClaimable(t *testing.T) {
	tests := []struct {
		name    string
		status  courier.Status
		active  int
		code    apperr.Code
		message string
	}{
		{"free capacity", courier.StatusAvailable, 1, "", ""},
		{"full", courier.StatusAvailable, 2, apperr.FailedPrecondition, "courier c1 has no free capacity (2 of 2 tasks claimed)"},
		{"on break", courier.StatusOnBreak, 0, apperr.FailedPrecondition, "courier c1 is on_break, not available"},
		{"offline", courier.StatusOffline, 0, apperr.FailedPrecondition, "courier c1 is offline, not available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := storableCourier()
			c.Status, c.ActiveTasks = tt.status, tt.active
			wantError(t, "CheckClaimable()", c.CheckClaimable(), tt.code, tt.message)
		})
	}
}

func TestCheckClaim(t *testing.T) {
	tests := []struct {
		name    string
		holder  string
		status  courier.Status
		active  int
		already bool
		code    apperr.Code
		message string
	}{
		{"unclaimed task", "", courier.StatusAvailable, 1, false, "", ""},
		{"task held by this courier", "c1", courier.StatusAvailable, 1, true, "", ""},
		// Idempotent by task id: the first claim stands while the courier is full or on break.
		{"held task, full courier", "c1", courier.StatusAvailable, 2, true, "", ""},
		{"held task, courier on break", "c1", courier.StatusOnBreak, 1, true, "", ""},
		{"task held by another courier", "c2", courier.StatusAvailable, 0, false, apperr.FailedPrecondition, "task t1 is claimed on another courier"},
		{"unclaimed task, full courier", "", courier.StatusAvailable, 2, false, apperr.FailedPrecondition, "courier c1 has no free capacity (2 of 2 tasks claimed)"},
		{"unclaimed task, offline courier", "", courier.StatusOffline, 0, false, apperr.FailedPrecondition, "courier c1 is offline, not available"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := storableCourier()
			c.Status, c.ActiveTasks = tt.status, tt.active
			already, err := c.CheckClaim(tt.holder, "t1")
			if already != tt.already {
				t.Errorf("CheckClaim(%q) already = %v, want %v", tt.holder, already, tt.already)
			}
			wantError(t, "CheckClaim()", err, tt.code, tt.message)
		})
	}
}

func TestCheckStatusChange(t *testing.T) {
	tests := []struct {
		name    string
		active  int
		status  courier.Status
		code    apperr.Code
		message string
	}{
		{"offline without claims", 0, courier.StatusOffline, "", ""},
		{"on break with claims", 2, courier.StatusOnBreak, "", ""},
		{"offline with claims", 2, courier.StatusOffline, apperr.FailedPrecondition, "courier c1 holds 2 claimed tasks and cannot go offline"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := storableCourier()
			c.ActiveTasks = tt.active
			wantError(t, "CheckStatusChange()", c.CheckStatusChange(tt.status), tt.code, tt.message)
		})
	}
}

func TestCheckUnclaimedHours(t *testing.T) {
	nine := t0.Truncate(time.Hour) // 09:00 UTC
	claims := []courier.Claim{
		{CourierID: "c1", TaskID: "t1", ClaimedAt: nine.Add(20 * time.Minute), ExpectedRelease: nine.Add(80 * time.Minute)},
		{CourierID: "c1", TaskID: "t2", ClaimedAt: nine.Add(3 * time.Hour), ExpectedRelease: nine.Add(4 * time.Hour)},
	}
	berlin := time.FixedZone("CET", 3600)
	tests := []struct {
		name    string
		hours   []time.Time
		code    apperr.Code
		message string
	}{
		{"no hours", nil, "", ""},
		{"uncovered", []time.Time{nine.Add(2 * time.Hour), nine.Add(4 * time.Hour)}, "", ""},
		{"covered", []time.Time{nine.Add(2 * time.Hour), nine.Add(time.Hour)}, apperr.FailedPrecondition,
			"hour 2031-03-14T10:00:00Z carries task t1 claimed on courier c1 and cannot be made unavailable"},
		{"first covered hour named", []time.Time{nine.Add(3 * time.Hour), nine}, apperr.FailedPrecondition,
			"hour 2031-03-14T12:00:00Z carries task t2 claimed on courier c1 and cannot be made unavailable"},
		{"normalised to the hour in UTC", []time.Time{nine.Add(3*time.Hour + 30*time.Minute).In(berlin)}, apperr.FailedPrecondition,
			"hour 2031-03-14T12:00:00Z carries task t2 claimed on courier c1 and cannot be made unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantError(t, "CheckUnclaimedHours()", courier.CheckUnclaimedHours("c1", tt.hours, claims), tt.code, tt.message)
		})
	}
}
