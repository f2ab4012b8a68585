package courier_test

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
)

// wantViolations checks that err is Invalid with exactly the given violated fields, in order, or nil
// when fields is empty.
func wantViolations(t *testing.T, call string, err error, fields []string) {
	t.Helper()
	if len(fields) == 0 {
		if err != nil {
			t.Errorf("%s = %v, want nil", call, err)
		}
		return
	}
	e := apperr.As(err)
	if e == nil || e.Code != apperr.Invalid {
		t.Fatalf("%s = %v, want an Invalid *apperr.Error", call, err)
	}
	var got []string
	for _, v := range e.Violations {
		got = append(got, v.Field)
	}
	if diff := cmp.Diff(fields, got); diff != "" {
		t.Errorf("%s violated fields (-want +got):\n%s", call, diff)
	}
}

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

func TestStoreLimit(t *testing.T) {
	tests := []struct {
		limit, want int
	}{
		{1, 1},
		{500, 500},
		{courier.MaxStoreLimit, courier.MaxStoreLimit},
		{courier.MaxStoreLimit + 1, courier.MaxStoreLimit},
	}
	for _, tt := range tests {
		got, err := courier.StoreLimit(tt.limit)
		if err != nil || got != tt.want {
			t.Errorf("StoreLimit(%d) = %d, %v, want %d, nil", tt.limit, got, err, tt.want)
		}
	}
	for _, limit := range []int{0, -1} {
		_, err := courier.StoreLimit(limit)
		wantViolations(t, "StoreLimit", err, []string{"limit"})
	}
}

// storableCourier is a courier every store can hold.
func storableCourier() courier.Courier {
	return courier.Courier{ID: "c1", UserID: "u1", DisplayName: "A", Mode: courier.ModeCar, Capacity: 2, Status: courier.StatusAvailable, CreatedAt: t0, UpdatedAt: t0, Version: 1}
}

func TestCourierCheckStorable(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*courier.Courier)
		fields  []string
		profile []string // the violations of CheckStorableProfile
	}{
		{"valid", func(*courier.Courier) {}, nil, nil},
		{"max capacity", func(c *courier.Courier) { c.Capacity = courier.MaxCapacity }, nil, nil},
		{"no id", func(c *courier.Courier) { c.ID = "" }, []string{"id"}, []string{"id"}},
		{"unknown mode", func(c *courier.Courier) { c.Mode = "rocket" }, []string{"mode"}, []string{"mode"}},
		{"capacity 0", func(c *courier.Courier) { c.Capacity = 0 }, []string{"capacity"}, []string{"capacity"}},
		{"capacity above max", func(c *courier.Courier) { c.Capacity = courier.MaxCapacity + 1 }, []string{"capacity"}, []string{"capacity"}},
		{"no user", func(c *courier.Courier) { c.UserID = "" }, []string{"user_id"}, nil},
		{"busy", func(c *courier.Courier) { c.Status = courier.StatusBusy }, []string{"status"}, nil},
		{"unknown status", func(c *courier.Courier) { c.Status = "sleeping" }, []string{"status"}, nil},
		{"empty", func(c *courier.Courier) { *c = courier.Courier{} }, []string{"id", "mode", "capacity", "user_id", "status"}, []string{"id", "mode", "capacity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := storableCourier()
			tt.edit(&c)
			wantViolations(t, "CheckStorable()", c.CheckStorable(), tt.fields)
			wantViolations(t, "CheckStorableProfile()", c.CheckStorableProfile(), tt.profile)
		})
	}
}

func TestClaimCheckStorable(t *testing.T) {
	tests := []struct {
		name   string
		claim  courier.Claim
		fields []string
	}{
		{"valid", courier.Claim{CourierID: "c1", TaskID: "t1", ClaimedAt: t0, ExpectedRelease: t0.Add(time.Microsecond)}, nil},
		{"no courier", courier.Claim{TaskID: "t1", ClaimedAt: t0, ExpectedRelease: t0.Add(time.Hour)}, []string{"courier_id"}},
		{"no task", courier.Claim{CourierID: "c1", ClaimedAt: t0, ExpectedRelease: t0.Add(time.Hour)}, []string{"task_id"}},
		{"release at claim", courier.Claim{CourierID: "c1", TaskID: "t1", ClaimedAt: t0, ExpectedRelease: t0}, []string{"expected_release"}},
		{"release before claim", courier.Claim{CourierID: "c1", TaskID: "t1", ClaimedAt: t0, ExpectedRelease: t0.Add(-time.Hour)}, []string{"expected_release"}},
		// Stores keep microseconds, so a release later only by nanoseconds would be stored equal.
		{"release later within the microsecond", courier.Claim{CourierID: "c1", TaskID: "t1", ClaimedAt: t0, ExpectedRelease: t0.Add(999 * time.Nanosecond)}, []string{"expected_release"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantViolations(t, "CheckStorable()", tt.claim.CheckStorable(), tt.fields)
		})
	}
}

func TestCheckStorableFixes(t *testing.T) {
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
			wantViolations(t, "CheckStorableFixes()", courier.CheckStorableFixes(tt.fixes), tt.fields)
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
			if diff := cmp.Diff(tt.want, courier.NewestFixes(tt.fixes)); diff != "" {
				t.Errorf("NewestFixes() (-want +got):\n%s", diff)
			}
		})
	}
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
