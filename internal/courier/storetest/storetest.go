// Package storetest is the conformance suite of courier.Store: the shared SQL store runs it on SQLite and
// on PostgreSQL. It uses nothing but the Store interface, so both engines are held to exactly the same
// behaviour. It checks storage (what is written and read back, precision, locking under concurrency,
// that a closure's refusal writes nothing); the business rules that run inside the closures are the
// domain's and are tested there, through the Service.
//
// Times go in with nanoseconds and in a zone other than UTC, and must come back truncated to the
// microsecond and in UTC: the suite compares them exactly, never approximately.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
)

// Run runs the conformance suite. newStore must return an empty store, ready to use, that lives until
// the test ends; every subtest gets its own.
func Run(t *testing.T, newStore func(t *testing.T) courier.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s courier.Store)
	}{
		{"CreateAndGet", testCreateAndGet},
		{"CreateConflict", testCreateConflict},
		{"GetNotFound", testGetNotFound},
		{"UpdateCourier", testUpdateCourier},
		{"UpdateCourierNoChange", testUpdateCourierNoChange},
		{"UpdateCourierError", testUpdateCourierError},
		{"ListCouriers", testListCouriers},
		{"UpdateCourierStatus", testUpdateCourierStatus},
		{"Availability", testAvailability},
		{"AvailableAt", testAvailableAt},
		{"SetAvailabilityCheck", testSetAvailabilityCheck},
		{"ClaimCourier", testClaimCourier},
		{"ClaimOfHeldTask", testClaimOfHeldTask},
		{"Release", testRelease},
		{"ClaimsOrder", testClaimsOrder},
		{"LiveState", testLiveState},
		{"ClaimCourierLive", testClaimCourierLive},
		{"ReleaseCourierLive", testReleaseCourierLive},
		{"ClaimGenerations", testClaimGenerations},
		{"ConcurrentClaimsRespectCapacity", testConcurrentClaimsRespectCapacity},
		{"ConcurrentClaimsOfOneTask", testConcurrentClaimsOfOneTask},
		{"ConcurrentClaimsOfOneTaskOnManyCouriers", testConcurrentClaimsOfOneTaskOnManyCouriers},
		{"SaveLocations", testSaveLocations},
		{"SaveLocationsNeverGoesBack", testSaveLocationsNeverGoesBack},
		{"SaveLocationsLargeBatch", testSaveLocationsLargeBatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// RunDurable checks that everything a store keeps survives closing and reopening it. open returns an
// empty store and a function that closes that store and opens the same database again (migrations
// included), as a restarted process would.
func RunDurable(t *testing.T, open func(t *testing.T) (s courier.Store, reopen func() courier.Store)) {
	ctx := testContext(t)
	s, reopen := open(t)
	c := newCourier(1)
	c.Capacity = 2
	mustCreate(ctx, t, s, c)
	c1 := claim(1, 1, base, base.Add(90*time.Minute))
	c2 := claim(1, 2, base.Add(time.Minute), base.Add(2*time.Hour))
	mustClaim(ctx, t, s, c1)
	mustClaim(ctx, t, s, c2)
	hours := []time.Time{base, base.Add(time.Hour), base.Add(3 * time.Hour)}
	if err := s.SetAvailability(ctx, c.ID, hours, true, allow); err != nil {
		t.Fatalf("SetAvailability: %v", err)
	}
	fix := newFix(1, base.Add(5*time.Minute))
	if err := s.SaveLocations(ctx, []courier.LocationFix{fix}); err != nil {
		t.Fatalf("SaveLocations: %v", err)
	}

	s = reopen()

	want := stored(c)
	want.ActiveTasks = 2
	got, err := s.GetCourier(ctx, c.ID)
	if err != nil {
		t.Fatalf("GetCourier after reopening: %v", err)
	}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("GetCourier after reopening (-want +got):\n%s", diff)
	}
	claims, err := s.Claims(ctx, c.ID)
	if err != nil {
		t.Fatalf("Claims after reopening: %v", err)
	}
	if diff := cmp.Diff([]courier.Claim{storedClaim(c1), storedClaim(c2)}, claims, cmpOpts...); diff != "" {
		t.Errorf("Claims after reopening (-want +got):\n%s", diff)
	}
	avail, err := s.AvailableHours(ctx, c.ID, base, base.Add(24*time.Hour))
	if err != nil {
		t.Fatalf("AvailableHours after reopening: %v", err)
	}
	if diff := cmp.Diff(utcAll(hours), avail, cmpOpts...); diff != "" {
		t.Errorf("AvailableHours after reopening (-want +got):\n%s", diff)
	}
	locs, err := s.LoadLocations(ctx)
	if err != nil {
		t.Fatalf("LoadLocations after reopening: %v", err)
	}
	if diff := cmp.Diff([]courier.LocationFix{storedFix(fix)}, locs, cmpOpts...); diff != "" {
		t.Errorf("LoadLocations after reopening (-want +got):\n%s", diff)
	}

	// The restored claims still count against capacity and still make their task idempotent.
	already, err := claimCourier(ctx, s, c2)
	if err != nil || !already {
		t.Errorf("ClaimCourier(held task) after reopening = %v, %v, want true, nil", already, err)
	}
	_, err = claimCourier(ctx, s, claim(1, 3, base, base.Add(time.Hour)))
	wantCode(t, "ClaimCourier(beyond capacity) after reopening", err, apperr.FailedPrecondition)
}

// base is a whole hour in UTC; fixtures add minutes and nanoseconds to it.
var base = time.Date(2031, 3, 14, 9, 0, 0, 0, time.UTC)

// zone is where fixture times are expressed, so a store that does not convert to UTC fails.
var zone = time.FixedZone("UTC+05:30", 5*3600+30*60)

// cmpOpts compare times exactly, location included, and treat nil and empty slices alike.
var cmpOpts = []cmp.Option{
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) && a.Location() == b.Location() }),
	cmpopts.EquateEmpty(),
}

func courierID(n int) string { return fmt.Sprintf("0190a000-0000-7000-8000-%012d", n) }
func userID(n int) string    { return fmt.Sprintf("0190b000-0000-7000-8000-%012d", n) }
func taskID(n int) string    { return fmt.Sprintf("0190c000-0000-7000-8000-%012d", n) }

// newCourier returns an available bicycle courier with capacity 3, whose times carry nanoseconds and a
// non-UTC zone.
func newCourier(n int) courier.Courier {
	created := base.Add(time.Duration(n)*time.Second + 123_456_789).In(zone)
	return courier.Courier{
		ID:          courierID(n),
		UserID:      userID(n),
		DisplayName: fmt.Sprintf("Courier %d", n),
		Mode:        courier.ModeBicycle,
		Capacity:    3,
		Status:      courier.StatusAvailable,
		CreatedAt:   created,
		UpdatedAt:   created.Add(1_001),
		Version:     1,
	}
}

// stored is c as a store returns it: times truncated to the microsecond in UTC, no claims.
func stored(c courier.Courier) courier.Courier {
	c.CreatedAt = utc(c.CreatedAt)
	c.UpdatedAt = utc(c.UpdatedAt)
	c.ActiveTasks = 0
	return c
}

func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

func utcAll(ts []time.Time) []time.Time {
	out := make([]time.Time, len(ts))
	for i, t := range ts {
		out[i] = utc(t)
	}
	return out
}

// claim returns the claim of task task on courier n, with nanoseconds added to both times.
func claim(n, task int, at, release time.Time) courier.Claim {
	return courier.Claim{
		CourierID:       courierID(n),
		TaskID:          taskID(task),
		ClaimedAt:       at.Add(777).In(zone),
		ExpectedRelease: release.Add(999).In(zone),
	}
}

func storedClaim(c courier.Claim) courier.Claim {
	c.ClaimedAt = utc(c.ClaimedAt)
	c.ExpectedRelease = utc(c.ExpectedRelease)
	return c
}

// newFix returns a fix of courier n at `at` whose floats use every bit of their mantissa, so a store
// that rounds them fails.
func newFix(n int, at time.Time) courier.LocationFix {
	return courier.LocationFix{
		CourierID:      courierID(n),
		Lat:            52.520008123456789 + float64(n)/3,
		Lng:            13.404954987654321 - float64(n)/7,
		RecordedAt:     at.Add(4_321).In(zone),
		AccuracyMeters: 4.2 + float64(n)/11,
		SpeedMPS:       5.55 + float64(n)/13,
		Heading:        271.3 + float64(n)/17,
	}
}

func storedFix(f courier.LocationFix) courier.LocationFix {
	f.RecordedAt = utc(f.RecordedAt)
	return f
}

// testContext bounds every store call of a test, so a deadlock fails instead of hanging the run.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustCreate(ctx context.Context, t *testing.T, s courier.Store, c courier.Courier) {
	t.Helper()
	if err := s.CreateCourier(ctx, c); err != nil {
		t.Fatalf("CreateCourier(%s): %v", c.ID, err)
	}
}

// allow is a SetAvailability check that refuses nothing.
func allow([]courier.Claim) error { return nil }

// claimCourier stores claim c under the domain's rule (courier.Courier.CheckClaim), as the Service does,
// and reports whether the courier already held the task.
func claimCourier(ctx context.Context, s courier.Store, c courier.Claim) (already bool, err error) {
	err = s.ClaimCourier(ctx, c.CourierID, c.TaskID, func(cur courier.Courier, holder string) (*courier.Claim, error) {
		var err error
		already, err = cur.CheckClaim(holder, c.TaskID)
		if err != nil || already {
			return nil, err
		}
		return &c, nil
	})
	return already, err
}

// setStatus stores status st of courier id and returns the courier afterwards.
func setStatus(ctx context.Context, s courier.Store, id string, st courier.Status) (courier.Courier, error) {
	return s.UpdateCourier(ctx, id, func(c courier.Courier) (courier.Courier, error) {
		c.Status = st
		return c, nil
	})
}

func mustClaim(ctx context.Context, t *testing.T, s courier.Store, c courier.Claim) {
	t.Helper()
	already, err := claimCourier(ctx, s, c)
	if err != nil || already {
		t.Fatalf("ClaimCourier(%s, %s) = %v, %v, want false, nil", c.CourierID, c.TaskID, already, err)
	}
}

func mustGet(ctx context.Context, t *testing.T, s courier.Store, id string) courier.Courier {
	t.Helper()
	c, err := s.GetCourier(ctx, id)
	if err != nil {
		t.Fatalf("GetCourier(%s): %v", id, err)
	}
	return c
}

func mustClaims(ctx context.Context, t *testing.T, s courier.Store, id string) []courier.Claim {
	t.Helper()
	claims, err := s.Claims(ctx, id)
	if err != nil {
		t.Fatalf("Claims(%s): %v", id, err)
	}
	return claims
}

func wantCode(t *testing.T, call string, err error, want apperr.Code) {
	t.Helper()
	if got := apperr.CodeOf(err); got != want {
		t.Errorf("%s error = %v (code %q), want code %q", call, err, got, want)
	}
}

func testCreateAndGet(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	c.ActiveTasks = 7 // ignored on writes
	mustCreate(ctx, t, s, c)

	want := stored(c)
	got, err := s.GetCourier(ctx, c.ID)
	if err != nil {
		t.Fatalf("GetCourier: %v", err)
	}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("GetCourier (-want +got):\n%s", diff)
	}
	got, err = s.GetCourierByUser(ctx, c.UserID)
	if err != nil {
		t.Fatalf("GetCourierByUser: %v", err)
	}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("GetCourierByUser (-want +got):\n%s", diff)
	}
}

func testCreateConflict(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	mustCreate(ctx, t, s, c)

	sameID := newCourier(2)
	sameID.ID = c.ID
	wantCode(t, "CreateCourier(existing id)", s.CreateCourier(ctx, sameID), apperr.Conflict)

	sameUser := newCourier(3)
	sameUser.UserID = c.UserID
	wantCode(t, "CreateCourier(user with a courier)", s.CreateCourier(ctx, sameUser), apperr.Conflict)

	_, err := s.GetCourier(ctx, sameUser.ID)
	wantCode(t, "GetCourier(rejected courier)", err, apperr.NotFound)
	if diff := cmp.Diff(stored(c), mustGet(ctx, t, s, c.ID), cmpOpts...); diff != "" {
		t.Errorf("GetCourier after conflicts (-want +got):\n%s", diff)
	}
	if n, err := s.CountCouriers(ctx, courier.Filter{}); err != nil || n != 1 {
		t.Errorf("CountCouriers = %d, %v, want 1, nil", n, err)
	}
}

func testGetNotFound(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newCourier(1))
	_, err := s.GetCourier(ctx, courierID(2))
	wantCode(t, "GetCourier(unknown)", err, apperr.NotFound)
	_, err = s.GetCourierByUser(ctx, userID(2))
	wantCode(t, "GetCourierByUser(unknown)", err, apperr.NotFound)
	// A courier id is not a user id.
	_, err = s.GetCourierByUser(ctx, courierID(1))
	wantCode(t, "GetCourierByUser(courier id)", err, apperr.NotFound)
}

func testUpdateCourier(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	mustCreate(ctx, t, s, c)
	mustClaim(ctx, t, s, claim(1, 1, base, base.Add(time.Hour)))

	want := stored(c)
	want.DisplayName, want.Mode, want.Capacity, want.Status = "Renamed", courier.ModeVan, 5, courier.StatusOnBreak
	want.UpdatedAt = utc(base.Add(time.Hour + 555))
	want.Version = 2
	want.ActiveTasks = 1
	var seen courier.Courier
	got, err := s.UpdateCourier(ctx, c.ID, func(cur courier.Courier) (courier.Courier, error) {
		seen = cur
		u := cur
		u.DisplayName = "Renamed"
		u.Mode = courier.ModeVan
		u.Capacity = 5
		u.Status = courier.StatusOnBreak
		u.UpdatedAt = base.Add(time.Hour + 555).In(zone)
		u.Version = 2
		// Never written by UpdateCourier:
		u.ID = courierID(98)
		u.UserID = userID(99)
		u.CreatedAt = base.Add(-time.Hour)
		u.ActiveTasks = 9
		return u, nil
	})
	if err != nil {
		t.Fatalf("UpdateCourier: %v", err)
	}
	// update sees the courier as stored, its claims counted.
	wantSeen := stored(c)
	wantSeen.ActiveTasks = 1
	if diff := cmp.Diff(wantSeen, seen, cmpOpts...); diff != "" {
		t.Errorf("courier passed to update (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("UpdateCourier result (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, mustGet(ctx, t, s, c.ID), cmpOpts...); diff != "" {
		t.Errorf("GetCourier after UpdateCourier (-want +got):\n%s", diff)
	}
	if _, err := s.GetCourier(ctx, courierID(98)); apperr.CodeOf(err) != apperr.NotFound {
		t.Errorf("GetCourier(id update returned) = %v, want NotFound: the id is never written", err)
	}

	called := false
	_, err = s.UpdateCourier(ctx, courierID(2), func(cur courier.Courier) (courier.Courier, error) {
		called = true
		return cur, nil
	})
	wantCode(t, "UpdateCourier(unknown)", err, apperr.NotFound)
	if called {
		t.Error("UpdateCourier(unknown) ran update")
	}
}

// testUpdateCourierNoChange: an update that returns the courier unchanged writes nothing and returns the
// stored courier.
func testUpdateCourierNoChange(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	mustCreate(ctx, t, s, c)
	got, err := s.UpdateCourier(ctx, c.ID, func(cur courier.Courier) (courier.Courier, error) { return cur, nil })
	if err != nil {
		t.Fatalf("UpdateCourier(unchanged): %v", err)
	}
	if diff := cmp.Diff(stored(c), got, cmpOpts...); diff != "" {
		t.Errorf("UpdateCourier(unchanged) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(stored(c), mustGet(ctx, t, s, c.ID), cmpOpts...); diff != "" {
		t.Errorf("GetCourier after UpdateCourier(unchanged) (-want +got):\n%s", diff)
	}
}

// testUpdateCourierError: update's error is returned as is and nothing is written.
func testUpdateCourierError(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	mustCreate(ctx, t, s, c)
	refusal := apperr.Errorf(apperr.FailedPrecondition, "refused by the rule")
	_, err := s.UpdateCourier(ctx, c.ID, func(cur courier.Courier) (courier.Courier, error) {
		cur.DisplayName, cur.Version = "Lost update", 2
		return cur, refusal
	})
	if !errors.Is(err, refusal) {
		t.Errorf("UpdateCourier(refused) error = %v, want the refusal itself", err)
	}
	if diff := cmp.Diff(stored(c), mustGet(ctx, t, s, c.ID), cmpOpts...); diff != "" {
		t.Errorf("GetCourier after a refused update (-want +got):\n%s", diff)
	}
}

// listFixture creates twelve couriers, in an order unrelated to their ids, with every mode and
// status, some full and some holding claims with capacity to spare, and returns them as a store
// should (ActiveTasks filled), ordered by id.
func listFixture(ctx context.Context, t *testing.T, s courier.Store) []courier.Courier {
	t.Helper()
	const n = 12
	statuses := []courier.Status{courier.StatusAvailable, courier.StatusAvailable, courier.StatusOffline, courier.StatusOnBreak}
	all := make([]courier.Courier, n)
	task := 0
	for k := range n {
		i := (k * 5) % n // 0, 5, 10, 3, 8, ...: creation order is not id order
		c := newCourier(i + 1)
		c.Mode = courier.Modes[i%len(courier.Modes)]
		c.Capacity = 1 + i%2
		c.Status = courier.StatusAvailable
		mustCreate(ctx, t, s, c)
		want := stored(c)
		// Available couriers with index 0 mod 8 are filled (busy), those with 1 mod 4 hold one task
		// with capacity to spare, those with 4 mod 8 hold none, and the on-break ones keep the claim
		// they took while available.
		claims := 0
		switch {
		case i%8 == 0:
			claims = c.Capacity
		case i%4 == 1:
			claims = 1
		case statuses[i%4] == courier.StatusOnBreak:
			claims = 1
		}
		for range claims {
			task++
			mustClaim(ctx, t, s, claim(i+1, task, base, base.Add(time.Hour)))
		}
		want.ActiveTasks = claims
		if st := statuses[i%4]; st != courier.StatusAvailable {
			if _, err := setStatus(ctx, s, c.ID, st); err != nil {
				t.Fatalf("SetStatus(%s, %s): %v", c.ID, st, err)
			}
			want.Status = st
		}
		all[i] = want
	}
	return all
}

func testListCouriers(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	all := listFixture(ctx, t, s)

	filters := []courier.Filter{
		{},
		{Mode: courier.ModeBicycle},
		{Mode: courier.ModeWalking},
		{Status: courier.StatusAvailable},
		{Status: courier.StatusBusy},
		{Status: courier.StatusOffline},
		{Status: courier.StatusOnBreak},
		{Mode: courier.ModeBicycle, Status: courier.StatusBusy},
		{Mode: courier.ModeScooter, Status: courier.StatusAvailable},
	}
	for _, f := range filters {
		var want []courier.Courier
		for _, c := range all {
			if (f.Mode == "" || c.Mode == f.Mode) && (f.Status == "" || c.EffectiveStatus() == f.Status) {
				want = append(want, c)
			}
		}
		n, err := s.CountCouriers(ctx, f)
		if err != nil || n != len(want) {
			t.Errorf("CountCouriers(%+v) = %d, %v, want %d, nil", f, n, err, len(want))
		}
		for _, size := range []int{1, 4, len(want), 50} {
			if size == 0 {
				continue
			}
			t.Run(fmt.Sprintf("mode=%s,status=%s,size=%d", f.Mode, f.Status, size), func(t *testing.T) {
				var got []courier.Courier
				after := ""
				for range len(all) + 2 { // bounded: a store that never ends the walk fails
					page, err := s.ListCouriers(ctx, f, after, size)
					if err != nil {
						t.Fatalf("ListCouriers(%+v, %q, %d): %v", f, after, size, err)
					}
					if len(page) > size {
						t.Fatalf("ListCouriers(%+v, %q, %d) returned %d couriers", f, after, size, len(page))
					}
					got = append(got, page...)
					if len(page) < size {
						break
					}
					after = page[len(page)-1].ID
				}
				if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
					t.Errorf("couriers walked page by page (-want +got):\n%s", diff)
				}
			})
		}
	}

	// The keyset cursor need not be an existing id.
	after := courierID(6) + "~"
	got, err := s.ListCouriers(ctx, courier.Filter{}, after, 3)
	if err != nil {
		t.Fatalf("ListCouriers(after %q): %v", after, err)
	}
	if diff := cmp.Diff(all[6:9], got, cmpOpts...); diff != "" {
		t.Errorf("ListCouriers(after %q) (-want +got):\n%s", after, diff)
	}
	got, err = s.ListCouriers(ctx, courier.Filter{}, all[len(all)-1].ID, 10)
	if err != nil || len(got) != 0 {
		t.Errorf("ListCouriers(after the last id) = %d couriers, %v, want none", len(got), err)
	}
}

func testUpdateCourierStatus(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	c.Status = courier.StatusOffline
	mustCreate(ctx, t, s, c)

	want := stored(c)
	for _, st := range []courier.Status{courier.StatusAvailable, courier.StatusAvailable, courier.StatusOnBreak, courier.StatusOffline, courier.StatusOffline} {
		want.Status = st
		got, err := setStatus(ctx, s, c.ID, st)
		if err != nil {
			t.Fatalf("SetStatus(%s): %v", st, err)
		}
		// Status is not part of the profile: neither UpdatedAt nor Version move.
		if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
			t.Errorf("SetStatus(%s) (-want +got):\n%s", st, diff)
		}
		if diff := cmp.Diff(want, mustGet(ctx, t, s, c.ID), cmpOpts...); diff != "" {
			t.Errorf("GetCourier after SetStatus(%s) (-want +got):\n%s", st, diff)
		}
	}
	_, err := setStatus(ctx, s, courierID(2), courier.StatusAvailable)
	wantCode(t, "SetStatus(unknown courier)", err, apperr.NotFound)
}

func hoursFrom(start time.Time, n int) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = start.Add(time.Duration(i) * time.Hour)
	}
	return out
}

func testAvailability(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	mustCreate(ctx, t, s, c)
	h := hoursFrom(base, 6) // h[0] .. h[5]

	if err := s.SetAvailability(ctx, c.ID, h[:5], true, allow); err != nil {
		t.Fatalf("SetAvailability(h0..h4, true): %v", err)
	}
	if err := s.SetAvailability(ctx, c.ID, []time.Time{h[1], h[3]}, false, allow); err != nil {
		t.Fatalf("SetAvailability(h1 h3, false): %v", err)
	}
	// Idempotent: setting slots to the state they have changes nothing.
	if err := s.SetAvailability(ctx, c.ID, []time.Time{h[1], h[3]}, false, allow); err != nil {
		t.Fatalf("SetAvailability(h1 h3, false) again: %v", err)
	}
	if err := s.SetAvailability(ctx, c.ID, []time.Time{h[0], h[4]}, true, allow); err != nil {
		t.Fatalf("SetAvailability(h0 h4, true) again: %v", err)
	}
	// A slot set in another zone is the same UTC hour.
	if err := s.SetAvailability(ctx, c.ID, []time.Time{h[5].In(zone)}, true, allow); err != nil {
		t.Fatalf("SetAvailability(h5 in %s, true): %v", zone, err)
	}

	tests := []struct {
		name     string
		from, to time.Time
		want     []time.Time
	}{
		{"all", h[0], h[5].Add(time.Hour), []time.Time{h[0], h[2], h[4], h[5]}},
		{"wide", base.Add(-48 * time.Hour), base.Add(48 * time.Hour), []time.Time{h[0], h[2], h[4], h[5]}},
		{"to is exclusive", h[0], h[2], []time.Time{h[0]}},
		{"from is inclusive", h[2], h[3], []time.Time{h[2]}},
		{"from inside an hour skips it", h[0].Add(time.Nanosecond), h[5], []time.Time{h[2], h[4]}},
		{"to just after a start includes it", h[3], h[4].Add(time.Nanosecond), []time.Time{h[4]}},
		{"only unavailable hours", h[3], h[4], nil},
		{"in another zone", h[4].In(zone), h[5].Add(time.Hour).In(zone), []time.Time{h[4], h[5]}},
		{"before any slot", base.Add(-10 * time.Hour), base, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.AvailableHours(ctx, c.ID, tt.from, tt.to)
			if err != nil {
				t.Fatalf("AvailableHours(%v, %v): %v", tt.from, tt.to, err)
			}
			if diff := cmp.Diff(tt.want, got, cmpOpts...); diff != "" {
				t.Errorf("AvailableHours(%v, %v) (-want +got):\n%s", tt.from, tt.to, diff)
			}
		})
	}

	wantCode(t, "SetAvailability(unknown courier)", s.SetAvailability(ctx, courierID(2), h[:1], true, allow), apperr.NotFound)
	_, err := s.AvailableHours(ctx, courierID(2), h[0], h[5])
	wantCode(t, "AvailableHours(unknown courier)", err, apperr.NotFound)
	// Slots are per courier.
	mustCreate(ctx, t, s, newCourier(3))
	if got, err := s.AvailableHours(ctx, courierID(3), h[0], h[5]); err != nil || len(got) != 0 {
		t.Errorf("AvailableHours(other courier) = %v, %v, want none", got, err)
	}
}

func testAvailableAt(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	for n := 1; n <= 4; n++ {
		mustCreate(ctx, t, s, newCourier(n))
	}
	h := hoursFrom(base, 2)
	if err := s.SetAvailability(ctx, courierID(1), h, true, allow); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAvailability(ctx, courierID(2), h[:1], true, allow); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAvailability(ctx, courierID(3), h, true, allow); err != nil {
		t.Fatal(err)
	}
	if err := s.SetAvailability(ctx, courierID(3), h[:1], false, allow); err != nil {
		t.Fatal(err)
	}
	ids := []string{courierID(1), courierID(2), courierID(3), courierID(4), courierID(99)}

	tests := []struct {
		name string
		hour time.Time
		ids  []string
		want map[string]bool
	}{
		{"first hour", h[0], ids, map[string]bool{courierID(1): true, courierID(2): true}},
		{"second hour", h[1], ids, map[string]bool{courierID(1): true, courierID(3): true}},
		{"in another zone", h[1].In(zone), ids, map[string]bool{courierID(1): true, courierID(3): true}},
		{"subset", h[0], []string{courierID(2), courierID(3)}, map[string]bool{courierID(2): true}},
		{"hour without slots", h[1].Add(time.Hour), ids, map[string]bool{}},
		{"no ids", h[0], nil, map[string]bool{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.AvailableAt(ctx, tt.hour, tt.ids)
			if err != nil {
				t.Fatalf("AvailableAt: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("AvailableAt(%v, %v) (-want +got):\n%s", tt.hour, tt.ids, diff)
			}
		})
	}
}

// testSetAvailabilityCheck: check sees the courier's claims, and its error is returned as is with no
// slot changed.
func testSetAvailabilityCheck(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	mustCreate(ctx, t, s, c)
	mustCreate(ctx, t, s, newCourier(2))
	h := hoursFrom(base, 3)
	if err := s.SetAvailability(ctx, c.ID, h, true, allow); err != nil {
		t.Fatal(err)
	}
	c1 := claim(1, 1, base.Add(time.Minute), base.Add(2*time.Hour))
	c2 := claim(1, 2, base, base.Add(time.Hour))
	mustClaim(ctx, t, s, c1)
	mustClaim(ctx, t, s, c2)
	mustClaim(ctx, t, s, claim(2, 3, base, base.Add(time.Hour))) // another courier's

	var seen []courier.Claim
	refusal := apperr.Errorf(apperr.FailedPrecondition, "refused by the rule")
	err := s.SetAvailability(ctx, c.ID, h[:2], false, func(claims []courier.Claim) error {
		seen = claims
		return refusal
	})
	if !errors.Is(err, refusal) {
		t.Errorf("SetAvailability(refused) error = %v, want the refusal itself", err)
	}
	if diff := cmp.Diff([]courier.Claim{storedClaim(c2), storedClaim(c1)}, seen, cmpOpts...); diff != "" {
		t.Errorf("claims passed to check (-want +got):\n%s", diff)
	}
	got, err := s.AvailableHours(ctx, c.ID, h[0], h[2].Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(h, got, cmpOpts...); diff != "" {
		t.Errorf("AvailableHours after a refused change (-want +got):\n%s", diff)
	}
	called := false
	err = s.SetAvailability(ctx, courierID(9), h[:1], false, func([]courier.Claim) error { called = true; return nil })
	wantCode(t, "SetAvailability(unknown courier)", err, apperr.NotFound)
	if called {
		t.Error("SetAvailability(unknown courier) ran check")
	}
}

// testClaimCourier: decide sees the courier as stored and the task's holder; the claim it returns is
// stored, nil stores nothing, its error is returned as is, and the one-courier-per-task key refuses a
// second courier's claim of a task even when decide lets it through.
func testClaimCourier(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	mustCreate(ctx, t, s, c)
	mustCreate(ctx, t, s, newCourier(2))
	first := claim(1, 1, base, base.Add(time.Hour))

	type call struct {
		Courier courier.Courier
		Holder  string
	}
	var seen []call
	record := func(ret *courier.Claim, err error) func(courier.Courier, string) (*courier.Claim, error) {
		return func(cur courier.Courier, holder string) (*courier.Claim, error) {
			seen = append(seen, call{cur, holder})
			return ret, err
		}
	}
	if err := s.ClaimCourier(ctx, c.ID, first.TaskID, record(&first, nil)); err != nil {
		t.Fatalf("ClaimCourier: %v", err)
	}
	if err := s.ClaimCourier(ctx, c.ID, first.TaskID, record(nil, nil)); err != nil {
		t.Fatalf("ClaimCourier(nothing to store): %v", err)
	}
	refusal := apperr.Errorf(apperr.FailedPrecondition, "refused by the rule")
	second := claim(1, 2, base, base.Add(time.Hour))
	if err := s.ClaimCourier(ctx, c.ID, second.TaskID, record(&second, refusal)); !errors.Is(err, refusal) {
		t.Errorf("ClaimCourier(refused) error = %v, want the refusal itself", err)
	}
	taken := claim(2, 1, base, base.Add(time.Hour))
	err := s.ClaimCourier(ctx, courierID(2), taken.TaskID, record(&taken, nil))
	wantCode(t, "ClaimCourier(task held by another courier, let through)", err, apperr.Conflict)

	once := stored(c)
	once.ActiveTasks = 1
	want := []call{{stored(c), ""}, {once, c.ID}, {once, ""}, {stored(newCourier(2)), c.ID}}
	if diff := cmp.Diff(want, seen, cmpOpts...); diff != "" {
		t.Errorf("what decide saw (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]courier.Claim{storedClaim(first)}, mustClaims(ctx, t, s, c.ID), cmpOpts...); diff != "" {
		t.Errorf("Claims (-want +got):\n%s", diff)
	}
	if got := mustClaims(ctx, t, s, courierID(2)); len(got) != 0 {
		t.Errorf("Claims(%s) = %v, want none", courierID(2), got)
	}

	other := claim(2, 5, base, base.Add(time.Hour))
	err = s.ClaimCourier(ctx, c.ID, other.TaskID, func(courier.Courier, string) (*courier.Claim, error) { return &other, nil })
	wantCode(t, "ClaimCourier(claim of another courier)", err, apperr.Invalid)
	err = s.ClaimCourier(ctx, courierID(99), taskID(7), record(nil, nil))
	wantCode(t, "ClaimCourier(unknown courier)", err, apperr.NotFound)
	_, err = s.Claims(ctx, courierID(99))
	wantCode(t, "Claims(unknown courier)", err, apperr.NotFound)
}

// testClaimOfHeldTask: under the domain's rule a repeated claim of a held task is idempotent and leaves
// the first claim as it was.
func testClaimOfHeldTask(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	mustCreate(ctx, t, s, c)
	first := claim(1, 1, base, base.Add(time.Hour))
	mustClaim(ctx, t, s, first)

	again := claim(1, 1, base.Add(5*time.Minute), base.Add(3*time.Hour))
	already, err := claimCourier(ctx, s, again)
	if err != nil || !already {
		t.Fatalf("ClaimCourier(same task again) = %v, %v, want true, nil", already, err)
	}
	// The first claim stands unchanged.
	if diff := cmp.Diff([]courier.Claim{storedClaim(first)}, mustClaims(ctx, t, s, c.ID), cmpOpts...); diff != "" {
		t.Errorf("Claims after a repeated claim (-want +got):\n%s", diff)
	}
	if got := mustGet(ctx, t, s, c.ID).ActiveTasks; got != 1 {
		t.Errorf("ActiveTasks = %d, want 1", got)
	}
}

func testRelease(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	c.Capacity = 1
	mustCreate(ctx, t, s, c)
	mustCreate(ctx, t, s, newCourier(2))
	mustClaim(ctx, t, s, claim(1, 1, base, base.Add(time.Hour)))
	mustClaim(ctx, t, s, claim(2, 2, base, base.Add(time.Hour)))

	tests := []struct {
		name    string
		courier string
		task    string
		want    bool
	}{
		{"held", courierID(1), taskID(1), true},
		{"already released", courierID(1), taskID(1), false},
		{"never claimed", courierID(1), taskID(77), false},
		{"held by another courier", courierID(1), taskID(2), false},
	}
	for _, tt := range tests {
		released, err := s.ReleaseCourier(ctx, tt.courier, tt.task)
		if err != nil || released != tt.want {
			t.Errorf("ReleaseCourier(%s: %s, %s) = %v, %v, want %v, nil", tt.name, tt.courier, tt.task, released, err, tt.want)
		}
	}
	_, err := s.ReleaseCourier(ctx, courierID(99), taskID(2))
	wantCode(t, "ReleaseCourier(unknown courier)", err, apperr.NotFound)

	if got := mustGet(ctx, t, s, courierID(1)).ActiveTasks; got != 0 {
		t.Errorf("ActiveTasks after release = %d, want 0", got)
	}
	if got := mustGet(ctx, t, s, courierID(2)).ActiveTasks; got != 1 {
		t.Errorf("other courier's ActiveTasks = %d, want 1 (its claim is untouched)", got)
	}
	// The freed capacity can be claimed again, by a new task or by the released one.
	mustClaim(ctx, t, s, claim(1, 1, base.Add(time.Minute), base.Add(time.Hour)))
}

func testClaimsOrder(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	c.Capacity = 10
	mustCreate(ctx, t, s, c)
	// Claimed in an order that is neither time nor id order; tasks 5 and 2 share a time.
	in := []courier.Claim{
		claim(1, 5, base.Add(2*time.Minute), base.Add(time.Hour)),
		claim(1, 9, base.Add(time.Minute), base.Add(time.Hour)),
		claim(1, 2, base.Add(2*time.Minute), base.Add(2*time.Hour)),
		claim(1, 1, base.Add(3*time.Minute), base.Add(time.Hour)),
	}
	for _, cl := range in {
		mustClaim(ctx, t, s, cl)
	}
	want := []courier.Claim{storedClaim(in[1]), storedClaim(in[2]), storedClaim(in[0]), storedClaim(in[3])}
	if diff := cmp.Diff(want, mustClaims(ctx, t, s, c.ID), cmpOpts...); diff != "" {
		t.Errorf("Claims (-want +got):\n%s", diff)
	}
}

// testLiveState checks that LiveState answers what GetCourier, Claims and AvailableHours over the hour
// answer: without claims or with several (in their order), with the hour available, unavailable or unset,
// for an hour given inside itself and in another zone, and NotFound for a courier that does not exist.
func testLiveState(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	c.Capacity = 10
	mustCreate(ctx, t, s, c)
	mustCreate(ctx, t, s, newCourier(2)) // another courier's claims and hours must not show
	h := hoursFrom(base, 3)
	if err := s.SetAvailability(ctx, c.ID, h[:1], true, allow); err != nil {
		t.Fatalf("SetAvailability(h0, true): %v", err)
	}
	if err := s.SetAvailability(ctx, c.ID, h[1:2], false, allow); err != nil {
		t.Fatalf("SetAvailability(h1, false): %v", err)
	}
	if err := s.SetAvailability(ctx, courierID(2), h, true, allow); err != nil {
		t.Fatalf("SetAvailability(courier 2, h0..h2, true): %v", err)
	}
	mustClaim(ctx, t, s, claim(2, 7, base, base.Add(time.Hour)))

	check := func(name string, hour time.Time) {
		t.Helper()
		got, claims, avail, err := s.LiveState(ctx, c.ID, hour)
		if err != nil {
			t.Fatalf("%s: LiveState(%v): %v", name, hour, err)
		}
		start := hour.UTC().Truncate(time.Hour)
		hours, err := s.AvailableHours(ctx, c.ID, start, start.Add(time.Hour))
		if err != nil {
			t.Fatalf("%s: AvailableHours: %v", name, err)
		}
		if diff := cmp.Diff(mustGet(ctx, t, s, c.ID), got, cmpOpts...); diff != "" {
			t.Errorf("%s: LiveState(%v) courier (-GetCourier +got):\n%s", name, hour, diff)
		}
		if diff := cmp.Diff(mustClaims(ctx, t, s, c.ID), claims, cmpOpts...); diff != "" {
			t.Errorf("%s: LiveState(%v) claims (-Claims +got):\n%s", name, hour, diff)
		}
		if want := len(hours) > 0; avail != want {
			t.Errorf("%s: LiveState(%v) available = %v, want %v", name, hour, avail, want)
		}
	}
	hourCases := func(name string) {
		check(name+", available hour", h[0])
		check(name+", available hour, inside it in another zone", h[0].Add(59*time.Minute+time.Nanosecond).In(zone))
		check(name+", unavailable hour", h[1].Add(time.Minute))
		check(name+", unset hour", h[2])
	}
	hourCases("no claim")
	for _, cl := range []courier.Claim{
		claim(1, 5, base.Add(2*time.Minute), base.Add(time.Hour)),
		claim(1, 9, base.Add(time.Minute), base.Add(time.Hour)),
		claim(1, 2, base.Add(2*time.Minute), base.Add(2*time.Hour)),
	} {
		mustClaim(ctx, t, s, cl)
	}
	hourCases("three claims")
	if got, claims, avail, err := s.LiveState(ctx, c.ID, h[0]); err == nil && (got.ActiveTasks != 3 || len(claims) != 3 || !avail) {
		t.Errorf("LiveState(h0) = %d active, %d claims, available %v; want 3, 3, true", got.ActiveTasks, len(claims), avail)
	}

	_, _, _, err := s.LiveState(ctx, courierID(3), h[0])
	wantCode(t, "LiveState(unknown courier)", err, apperr.NotFound)
}

// race starts n calls of fn at once and returns their results in call order.
func race[T any](n int, fn func(i int) (T, error)) ([]T, []error) {
	results := make([]T, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return results, errs
}

func testConcurrentClaimsRespectCapacity(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	c := newCourier(1)
	c.Capacity = 3
	mustCreate(ctx, t, s, c)

	const n = 20
	already, errs := race(n, func(i int) (bool, error) {
		return claimCourier(ctx, s, claim(1, 100+i, base, base.Add(time.Hour)))
	})
	won := map[string]bool{}
	refused := 0
	for i, err := range errs {
		switch apperr.CodeOf(err) {
		case "":
			if already[i] {
				t.Errorf("ClaimCourier(task %d) reported already claimed for a new task", 100+i)
			}
			won[taskID(100+i)] = true
		case apperr.FailedPrecondition:
			refused++
		default:
			t.Errorf("ClaimCourier(task %d) error = %v, want nil or FailedPrecondition", 100+i, err)
		}
	}
	if len(won) != c.Capacity || refused != n-c.Capacity {
		t.Errorf("%d concurrent claims on capacity %d: %d succeeded, %d refused; want %d and %d", n, c.Capacity, len(won), refused, c.Capacity, n-c.Capacity)
	}
	claims := mustClaims(ctx, t, s, c.ID)
	held := map[string]bool{}
	for _, cl := range claims {
		held[cl.TaskID] = true
	}
	if len(claims) != c.Capacity || !cmp.Equal(won, held) {
		t.Errorf("stored claims = %v, want exactly the %d that succeeded: %v", claims, c.Capacity, won)
	}
	if got := mustGet(ctx, t, s, c.ID); got.ActiveTasks != c.Capacity || got.EffectiveStatus() != courier.StatusBusy {
		t.Errorf("after the race ActiveTasks = %d, effective status %s; want %d, busy", got.ActiveTasks, got.EffectiveStatus(), c.Capacity)
	}
}

func testConcurrentClaimsOfOneTask(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newCourier(1))

	const n = 20
	already, errs := race(n, func(int) (bool, error) {
		return claimCourier(ctx, s, claim(1, 1, base, base.Add(time.Hour)))
	})
	firsts := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("ClaimCourier(same task) #%d: %v", i, err)
			continue
		}
		if !already[i] {
			firsts++
		}
	}
	if firsts != 1 {
		t.Errorf("%d concurrent claims of one task: %d reported a new claim, want exactly 1", n, firsts)
	}
	if got := mustClaims(ctx, t, s, courierID(1)); len(got) != 1 {
		t.Errorf("stored claims = %v, want one", got)
	}
}

func testConcurrentClaimsOfOneTaskOnManyCouriers(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	const n = 10
	for i := 1; i <= n; i++ {
		mustCreate(ctx, t, s, newCourier(i))
	}
	_, errs := race(n, func(i int) (bool, error) {
		return claimCourier(ctx, s, claim(i+1, 1, base, base.Add(time.Hour)))
	})
	var winners []string
	for i, err := range errs {
		switch apperr.CodeOf(err) {
		case "":
			winners = append(winners, courierID(i+1))
		case apperr.FailedPrecondition: // decided after the winner committed: the task has a holder
		case apperr.Conflict: // decided before the winner committed: the key on task_id refused the insert
		default:
			t.Errorf("ClaimCourier(%s, shared task) error = %v, want nil, FailedPrecondition or Conflict", courierID(i+1), err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("one task claimed concurrently on %d couriers: won by %v, want exactly one", n, winners)
	}
	for i := 1; i <= n; i++ {
		want := 0
		if courierID(i) == winners[0] {
			want = 1
		}
		if got := len(mustClaims(ctx, t, s, courierID(i))); got != want {
			t.Errorf("Claims(%s) holds %d claims, want %d", courierID(i), got, want)
		}
	}
}

func testSaveLocations(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	for n := 1; n <= 3; n++ {
		mustCreate(ctx, t, s, newCourier(n))
	}
	if err := s.SaveLocations(ctx, nil); err != nil {
		t.Fatalf("SaveLocations(nil): %v", err)
	}
	if got, err := s.LoadLocations(ctx); err != nil || len(got) != 0 {
		t.Fatalf("LoadLocations of an empty store = %v, %v, want none", got, err)
	}

	newest1 := newFix(1, base.Add(3*time.Minute))
	newest3 := newFix(3, base.Add(time.Minute))
	newest3.SpeedMPS, newest3.Heading = -1, -1 // unknown
	batch := []courier.LocationFix{
		newFix(1, base.Add(time.Minute)),
		newest3,
		newest1,
		newFix(99, base.Add(time.Minute)), // unknown courier: skipped
		newFix(1, base.Add(2*time.Minute)),
	}
	if err := s.SaveLocations(ctx, batch); err != nil {
		t.Fatalf("SaveLocations: %v", err)
	}
	got, err := s.LoadLocations(ctx)
	if err != nil {
		t.Fatalf("LoadLocations: %v", err)
	}
	if diff := cmp.Diff([]courier.LocationFix{storedFix(newest1), storedFix(newest3)}, got, cmpOpts...); diff != "" {
		t.Errorf("LoadLocations (-want +got):\n%s", diff)
	}
}

func testSaveLocationsNeverGoesBack(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	mustCreate(ctx, t, s, newCourier(1))
	mustCreate(ctx, t, s, newCourier(2))
	at := base.Add(10 * time.Minute)
	first := newFix(1, at)
	if err := s.SaveLocations(ctx, []courier.LocationFix{first, newFix(2, at)}); err != nil {
		t.Fatal(err)
	}

	older := newFix(1, at.Add(-time.Second))
	older.Lat = 1
	same := newFix(1, at)
	same.Lat = 2
	// Within the same microsecond as the stored fix: as stored, not newer.
	sameMicro := first
	sameMicro.RecordedAt = first.RecordedAt.Add(100)
	sameMicro.Lat = 3
	if !utc(sameMicro.RecordedAt).Equal(utc(first.RecordedAt)) {
		t.Fatal("fixture: sameMicro must truncate to the stored time")
	}
	newer2 := newFix(2, at.Add(time.Second))
	newer2.Lng = 4
	for _, f := range []courier.LocationFix{older, same, sameMicro} {
		// Mixed with a newer fix of another courier, so a store cannot pass by ignoring whole batches.
		if err := s.SaveLocations(ctx, []courier.LocationFix{f, newer2}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.LoadLocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]courier.LocationFix{storedFix(first), storedFix(newer2)}, got, cmpOpts...); diff != "" {
		t.Errorf("LoadLocations after older and equal fixes (-want +got):\n%s", diff)
	}

	newer := newFix(1, at.Add(time.Microsecond))
	newer.Lat = 5
	if err := s.SaveLocations(ctx, []courier.LocationFix{newer}); err != nil {
		t.Fatal(err)
	}
	got, err = s.LoadLocations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]courier.LocationFix{storedFix(newer), storedFix(newer2)}, got, cmpOpts...); diff != "" {
		t.Errorf("LoadLocations after a newer fix (-want +got):\n%s", diff)
	}
}

// testSaveLocationsLargeBatch saves a batch of more couriers than the SQL store writes in one statement
// (4,096 on PostgreSQL, 256 on SQLite), with several fixes per courier in no particular order, unknown
// couriers and couriers whose stored fix is later than any in the batch: every known courier must end up
// with its newest fix.
func testSaveLocationsLargeBatch(t *testing.T, s courier.Store) {
	ctx := testContext(t)
	const n = 4_200
	for i := 1; i <= n; i++ {
		mustCreate(ctx, t, s, newCourier(i))
	}
	// Every 97th courier already has a fix later than any of the batch, in both statements' ranges.
	var later []courier.LocationFix
	for i := 97; i <= n; i += 97 {
		f := newFix(i, base.Add(time.Hour))
		f.Lat = 1
		later = append(later, f)
	}
	if err := s.SaveLocations(ctx, later); err != nil {
		t.Fatalf("SaveLocations(%d later fixes): %v", len(later), err)
	}

	var batch []courier.LocationFix
	want := make([]courier.LocationFix, 0, n)
	for i := 1; i <= n; i++ {
		older := newFix(i, base.Add(time.Minute))
		older.Lng = 2
		newest := newFix(i, base.Add(2*time.Minute))
		oldest := newFix(i, base.Add(30*time.Second))
		oldest.Lng = 3
		// The newest fix comes first, in the middle or last, so order within the batch decides nothing.
		switch i % 3 {
		case 0:
			batch = append(batch, newest, older, oldest)
		case 1:
			batch = append(batch, older, newest, oldest)
		default:
			batch = append(batch, oldest, older, newest)
		}
		if i%97 == 0 {
			want = append(want, storedFix(later[i/97-1]))
		} else {
			want = append(want, storedFix(newest))
		}
	}
	for i := n + 1; i <= n+50; i++ {
		batch = append(batch, newFix(i, base.Add(time.Minute))) // unknown couriers: skipped
	}
	if err := s.SaveLocations(ctx, batch); err != nil {
		t.Fatalf("SaveLocations(%d fixes of %d couriers): %v", len(batch), n+50, err)
	}
	got, err := s.LoadLocations(ctx)
	if err != nil {
		t.Fatalf("LoadLocations: %v", err)
	}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Errorf("LoadLocations after a batch of %d couriers (-want +got):\n%s", n+50, diff)
	}
}
