package sqlstore

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr/apperrtest"
)

// t0 is a fixture time on a whole second.
var t0 = time.Date(2031, 3, 14, 9, 20, 0, 0, time.UTC)

// storableCourier is a courier every store can hold.
func storableCourier() courier.Courier {
	return courier.Courier{ID: "c1", UserID: "u1", DisplayName: "A", Mode: courier.ModeCar, Capacity: 2, Status: courier.StatusAvailable, CreatedAt: t0, UpdatedAt: t0, Version: 1}
}

func TestCheckCourier(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*courier.Courier)
		fields []string
	}{
		{"valid", func(*courier.Courier) {}, nil},
		{"max capacity", func(c *courier.Courier) { c.Capacity = courier.MaxCapacity }, nil},
		{"no id", func(c *courier.Courier) { c.ID = "" }, []string{"id"}},
		{"unknown mode", func(c *courier.Courier) { c.Mode = "rocket" }, []string{"mode"}},
		{"capacity 0", func(c *courier.Courier) { c.Capacity = 0 }, []string{"capacity"}},
		{"capacity above max", func(c *courier.Courier) { c.Capacity = courier.MaxCapacity + 1 }, []string{"capacity"}},
		{"no user", func(c *courier.Courier) { c.UserID = "" }, []string{"user_id"}},
		{"busy", func(c *courier.Courier) { c.Status = courier.StatusBusy }, []string{"status"}},
		{"unknown status", func(c *courier.Courier) { c.Status = "sleeping" }, []string{"status"}},
		{"empty", func(c *courier.Courier) { *c = courier.Courier{} }, []string{"id", "mode", "capacity", "user_id", "status"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := storableCourier()
			tt.edit(&c)
			apperrtest.WantViolations(t, "checkCourier()", checkCourier(c), tt.fields)
		})
	}
}

func TestCheckClaim(t *testing.T) {
	tests := []struct {
		name   string
		claim  courier.Claim
		fields []string
	}{
		{"valid", courier.Claim{CourierID: "c1", TaskID: "t1", ClaimedAt: t0, ExpectedRelease: t0.Add(time.Microsecond)}, nil},
		{"no courier", courier.Claim{TaskID: "t1", ClaimedAt: t0, ExpectedRelease: t0.Add(time.Hour)}, []string{"courier_id"}},
		{"no task", courier.Claim{CourierID: "c1", ClaimedAt: t0, ExpectedRelease: t0.Add(time.Hour)}, []string{"task_id"}},
		{"another courier", courier.Claim{CourierID: "c2", TaskID: "t1", ClaimedAt: t0, ExpectedRelease: t0.Add(time.Hour)}, []string{"courier_id"}},
		{"another task", courier.Claim{CourierID: "c1", TaskID: "t2", ClaimedAt: t0, ExpectedRelease: t0.Add(time.Hour)}, []string{"task_id"}},
		{"release at claim", courier.Claim{CourierID: "c1", TaskID: "t1", ClaimedAt: t0, ExpectedRelease: t0}, []string{"expected_release"}},
		{"release before claim", courier.Claim{CourierID: "c1", TaskID: "t1", ClaimedAt: t0, ExpectedRelease: t0.Add(-time.Hour)}, []string{"expected_release"}},
		// Stores keep microseconds, so a release later only by nanoseconds would be stored equal.
		{"release later within the microsecond", courier.Claim{CourierID: "c1", TaskID: "t1", ClaimedAt: t0, ExpectedRelease: t0.Add(999 * time.Nanosecond)}, []string{"expected_release"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apperrtest.WantViolations(t, "checkClaim()", checkClaim(tt.claim, "c1", "t1"), tt.fields)
		})
	}
}

func TestCheckFixes(t *testing.T) {
	good := courier.LocationFix{CourierID: "c1", Lat: 52.5, Lng: 13.4, RecordedAt: t0, SpeedMPS: -1, Heading: -1}
	with := func(edit func(*courier.LocationFix)) courier.LocationFix {
		f := good
		edit(&f)
		return f
	}
	tests := []struct {
		name   string
		fixes  []courier.LocationFix
		fields []string
	}{
		{"none", nil, nil},
		{"valid", []courier.LocationFix{good, good}, nil},
		{"no courier", []courier.LocationFix{good, with(func(f *courier.LocationFix) { f.CourierID = "" })}, []string{"fixes[1].courier_id"}},
		{"NaN", []courier.LocationFix{with(func(f *courier.LocationFix) { f.Lat = math.NaN() })}, []string{"fixes[0]"}},
		{"infinite", []courier.LocationFix{with(func(f *courier.LocationFix) { f.Heading = math.Inf(-1) })}, []string{"fixes[0]"}},
		{"first bad fix only", []courier.LocationFix{with(func(f *courier.LocationFix) { f.SpeedMPS = math.Inf(1) }), {}}, []string{"fixes[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			apperrtest.WantViolations(t, "checkFixes()", checkFixes(tt.fixes), tt.fields)
		})
	}
}

func TestNewestFixes(t *testing.T) {
	fix := func(id string, at time.Time, lat float64) courier.LocationFix {
		return courier.LocationFix{CourierID: id, RecordedAt: at, Lat: lat}
	}
	tests := []struct {
		name  string
		fixes []courier.LocationFix
		want  []courier.LocationFix
	}{
		{"none", nil, []courier.LocationFix{}},
		{
			"newest of each, by courier",
			[]courier.LocationFix{fix("c2", t0, 1), fix("c1", t0.Add(time.Second), 2), fix("c2", t0.Add(time.Second), 3), fix("c1", t0, 4)},
			[]courier.LocationFix{fix("c1", t0.Add(time.Second), 2), fix("c2", t0.Add(time.Second), 3)},
		},
		{
			"first of equals",
			[]courier.LocationFix{fix("c1", t0, 1), fix("c1", t0, 2)},
			[]courier.LocationFix{fix("c1", t0, 1)},
		},
		{
			// Stored to the microsecond, the two are equal: the later nanoseconds do not win.
			"equal to the microsecond",
			[]courier.LocationFix{fix("c1", t0, 1), fix("c1", t0.Add(999*time.Nanosecond), 2)},
			[]courier.LocationFix{fix("c1", t0, 1)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, newestFixes(tt.fixes)); diff != "" {
				t.Errorf("newestFixes() (-want +got):\n%s", diff)
			}
		})
	}
}
