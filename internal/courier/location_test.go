package courier_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

// metersNorth is the latitude difference of d meters along a meridian.
func metersNorth(d float64) float64 { return d / (courier.EarthRadiusMeters * math.Pi / 180) }

func TestFixValidation(t *testing.T) {
	const lat, lng = 52.5, 13.4
	prev := t0.Add(-time.Minute) // the last accepted fix, at lat, lng
	later := prev.Add(10 * time.Second)
	withSpeed := func(f courier.Fix, v float64) courier.Fix { f.Speed, f.HasSpeed = v, true; return f }
	withHeading := func(f courier.Fix, h float64) courier.Fix { f.Heading, f.HasHeading = h, true; return f }
	withAccuracy := func(f courier.Fix, a float64) courier.Fix { f.AccuracyMeters = a; return f }
	tests := []struct {
		name string
		mode courier.Mode
		fix  courier.Fix
		want courier.RejectReason // "" accepts
	}{
		{"plausible bicycle move", courier.ModeBicycle, fixAt(lat+metersNorth(100), lng, later), ""},
		{"heading without a value flag is ignored", courier.ModeBicycle, courier.Fix{Lat: lat, Lng: lng, RecordedAt: later, Heading: 400}, ""},
		{"speed and heading in range", courier.ModeCar, withHeading(withSpeed(fixAt(lat, lng, later), 100), 359.9), ""},
		{"missing location", courier.ModeCar, fixAt(math.NaN(), math.NaN(), later), courier.RejectInvalid},
		{"latitude over 90", courier.ModeCar, fixAt(90.0001, lng, later), courier.RejectInvalid},
		{"longitude under -180", courier.ModeCar, fixAt(lat, -180.0001, later), courier.RejectInvalid},
		{"infinite longitude", courier.ModeCar, fixAt(lat, math.Inf(1), later), courier.RejectInvalid},
		{"missing timestamp", courier.ModeCar, fixAt(lat, lng, time.Time{}), courier.RejectInvalid},
		{"negative accuracy", courier.ModeCar, withAccuracy(fixAt(lat, lng, later), -1), courier.RejectInvalid},
		{"accuracy over 10 km", courier.ModeCar, withAccuracy(fixAt(lat, lng, later), 10_001), courier.RejectInvalid},
		{"speed over 100", courier.ModeCar, withSpeed(fixAt(lat, lng, later), 100.1), courier.RejectInvalid},
		{"NaN speed", courier.ModeCar, withSpeed(fixAt(lat, lng, later), math.NaN()), courier.RejectInvalid},
		{"heading 360", courier.ModeCar, withHeading(fixAt(lat, lng, later), 360), courier.RejectInvalid},
		{"within clock skew", courier.ModeCar, fixAt(lat, lng, t0.Add(29*time.Second)), ""},
		{"beyond clock skew", courier.ModeCar, fixAt(lat, lng, t0.Add(31*time.Second)), courier.RejectFuture},
		{"too old", courier.ModeCar, fixAt(lat, lng, t0.Add(-10*time.Minute-time.Second)), courier.RejectStale},
		{"same time as last", courier.ModeCar, fixAt(lat, lng, prev), courier.RejectOutOfOrder},
		{"before last", courier.ModeCar, fixAt(lat, lng, prev.Add(-time.Nanosecond)), courier.RejectOutOfOrder},
		{"walking 10 m/s", courier.ModeWalking, fixAt(lat+metersNorth(100), lng, later), courier.RejectImplausibleSpeed},
		{"walking 3 m/s", courier.ModeWalking, fixAt(lat+metersNorth(30), lng, later), ""},
		{"bicycle 20 m/s", courier.ModeBicycle, fixAt(lat+metersNorth(200), lng, later), courier.RejectImplausibleSpeed},
		{"bicycle 20 m/s within accuracy slack", courier.ModeBicycle, withAccuracy(fixAt(lat+metersNorth(200), lng, later), 40), ""},
		{"accuracy slack is capped", courier.ModeBicycle, withAccuracy(fixAt(lat+metersNorth(1500), lng, later), 10_000), courier.RejectImplausibleSpeed},
		{"scooter 35 m/s", courier.ModeScooter, fixAt(lat+metersNorth(350), lng, later), courier.RejectImplausibleSpeed},
		{"car 50 m/s", courier.ModeCar, fixAt(lat+metersNorth(500), lng, later), ""},
		{"van 70 m/s", courier.ModeVan, fixAt(lat+metersNorth(700), lng, later), courier.RejectImplausibleSpeed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, courier.Options{})
			c := f.register(t, 1, tt.mode, 1)
			f.report(t, c.ID, fixAt(lat, lng, prev))

			got := f.report(t, c.ID, tt.fix)
			want := courier.IngestResult{Accepted: 1, Rejected: map[courier.RejectReason]int{}}
			if tt.want != "" {
				want = courier.IngestResult{Rejected: map[courier.RejectReason]int{tt.want: 1}}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("report(%+v) (-want +got):\n%s", tt.fix, diff)
			}
		})
	}
}

// TestFirstFixHasNoSpeedCheck: with nothing to compare with, any valid recent fix is accepted.
func TestFirstFixHasNoSpeedCheck(t *testing.T) {
	f := newFixture(t, courier.Options{})
	c := f.register(t, 1, courier.ModeWalking, 1)
	got := f.report(t, c.ID, fixAt(-33.9, 151.2, t0.Add(-time.Minute)))
	if got.Accepted != 1 {
		t.Errorf("first fix: %+v, want accepted", got)
	}
}

func TestFixRateLimit(t *testing.T) {
	f := newFixture(t, courier.Options{FixesPerSecond: 10, FixBurst: 100})
	c := f.register(t, 1, courier.ModeCar, 1)
	fixes := func(from, n int) []courier.Fix {
		out := make([]courier.Fix, n)
		for i := range out {
			out[i] = fixAt(52.5, 13.4, t0.Add(time.Duration(from+i-300)*time.Second))
		}
		return out
	}
	r := f.svc.NewLocationReport()
	ctx := courierCtx(testContext(t), 1)
	for _, batch := range [][]courier.Fix{fixes(0, 100), fixes(100, 20)} {
		if err := r.Add(ctx, c.ID, batch); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Advance(time.Second) // 10 more tokens
	if err := r.Add(ctx, c.ID, fixes(120, 15)); err != nil {
		t.Fatal(err)
	}
	want := courier.IngestResult{Accepted: 110, Rejected: map[courier.RejectReason]int{courier.RejectRateLimited: 25}}
	if diff := cmp.Diff(want, r.Result()); diff != "" {
		t.Errorf("rate-limited report (-want +got):\n%s", diff)
	}
	if got := r.Result().RejectedCount(); got != 25 {
		t.Errorf("RejectedCount() = %d, want 25", got)
	}
}

func TestLocationReportRules(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := testContext(t)
	a := f.register(t, 1, courier.ModeCar, 1)
	b := f.register(t, 2, courier.ModeCar, 1)
	one := []courier.Fix{fixAt(52.5, 13.4, t0)}

	r := f.svc.NewLocationReport()
	if err := r.Add(courierCtx(ctx, 1), a.ID, one); err != nil {
		t.Fatalf("Add(own courier): %v", err)
	}
	apperrtest.WantCode(t, "Add(second courier in one stream)", r.Add(courierCtx(ctx, 1), b.ID, one), apperr.Invalid)
	apperrtest.WantCode(t, "Add(no fixes)", r.Add(courierCtx(ctx, 1), a.ID, nil), apperr.Invalid)
	apperrtest.WantCode(t, "Add(101 fixes)", r.Add(courierCtx(ctx, 1), a.ID, make([]courier.Fix, 101)), apperr.Invalid)
	apperrtest.WantCode(t, "Add(other courier)", f.svc.NewLocationReport().Add(courierCtx(ctx, 2), a.ID, one), apperr.PermissionDenied)
	apperrtest.WantCode(t, "Add(missing courier)", f.svc.NewLocationReport().Add(serviceCtx(ctx, "simulator"), missingID, one), apperr.NotFound)
	apperrtest.WantCode(t, "Add(malformed id)", f.svc.NewLocationReport().Add(serviceCtx(ctx, "simulator"), "c-1", one), apperr.Invalid)
	if got := r.Result(); got.Accepted != 1 || got.RejectedCount() != 0 {
		t.Errorf("Result() = %+v, want 1 accepted", got)
	}
}

// TestFlushAndWarmStart: accepted fixes reach the store in batches, the last one when Run ends, and a new
// Service over the same store starts with them.
func TestFlushAndWarmStart(t *testing.T) {
	f := newFixture(t, courier.Options{FlushInterval: time.Hour, FlushBatch: 2})
	c1 := f.available(t, 1, courier.ModeCar, 1)
	c2 := f.available(t, 2, courier.ModeCar, 1)
	c3 := f.available(t, 3, courier.ModeCar, 1)

	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() { done <- f.svc.Run(ctx) }()

	f.report(t, c1.ID, fixAt(52.5, 13.4, t0.Add(-2*time.Second)))
	f.report(t, c1.ID, fixAt(52.5001, 13.4, t0.Add(-time.Second)))
	f.report(t, c2.ID, fixAt(48.85, 2.35, t0.Add(-time.Second)))
	// Two couriers pending: the flusher runs early, long before the hour-long interval.
	waitFor(t, "early flush", func() bool {
		locs, err := f.store.LoadLocations(testContext(t))
		return err == nil && len(locs) == 2
	})

	f.report(t, c3.ID, fixAt(40.4, -3.7, t0))
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run() = %v, want nil", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return after cancel")
	}
	locs, err := f.store.LoadLocations(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	want := []courier.LocationFix{
		{CourierID: c1.ID, Lat: 52.5001, Lng: 13.4, RecordedAt: t0.Add(-time.Second), SpeedMPS: -1, Heading: -1},
		{CourierID: c2.ID, Lat: 48.85, Lng: 2.35, RecordedAt: t0.Add(-time.Second), SpeedMPS: -1, Heading: -1},
		{CourierID: c3.ID, Lat: 40.4, Lng: -3.7, RecordedAt: t0, SpeedMPS: -1, Heading: -1},
	}
	sortByID := cmpopts.SortSlices(func(a, b courier.LocationFix) bool { return a.CourierID < b.CourierID })
	if diff := cmp.Diff(want, locs, sortByID); diff != "" {
		t.Errorf("stored locations after shutdown (-want +got):\n%s", diff)
	}

	restarted := courier.NewService(f.store, f.users, courier.Options{Now: f.clock.Now})
	if err := restarted.Load(testContext(t)); err != nil {
		t.Fatal(err)
	}
	near, err := restarted.FindNearbyCouriers(serviceCtx(testContext(t), "dispatch"),
		courier.NearbyQuery{Lat: 40.4, Lng: -3.7, RadiusMeters: 1000})
	if err != nil || len(near) != 1 || near[0].Snapshot.Courier.ID != c3.ID || near[0].DistanceMeters != 0 {
		t.Errorf("FindNearbyCouriers after warm start = %+v, %v, want courier 3 at 0 m", near, err)
	}
	// The warmed last fix still guards ordering: an older fix is out of order.
	got := reportTo(t, restarted, c1.ID, fixAt(52.5, 13.4, t0.Add(-2*time.Second)))
	if got.Rejected[courier.RejectOutOfOrder] != 1 {
		t.Errorf("older fix after warm start: %+v, want out_of_order", got)
	}
}

// TestFlushFailureKeepsFixes: a failed flush keeps the fixes for the next one.
func TestFlushFailureKeepsFixes(t *testing.T) {
	f := newFixture(t, courier.Options{})
	c := f.register(t, 1, courier.ModeCar, 1)
	f.report(t, c.ID, fixAt(52.5, 13.4, t0))
	f.store.SetErr(errors.New("disk full"))
	if err := f.svc.Flush(testContext(t)); err == nil {
		t.Fatal("Flush() with a failing store = nil, want error")
	}
	f.store.SetErr(nil)
	if err := f.svc.Flush(testContext(t)); err != nil {
		t.Fatalf("Flush() = %v", err)
	}
	locs, err := f.store.LoadLocations(testContext(t))
	if err != nil || len(locs) != 1 || locs[0].CourierID != c.ID {
		t.Errorf("stored locations = %+v, %v, want the kept fix", locs, err)
	}
}

func reportTo(t *testing.T, svc *courier.Service, id string, fixes ...courier.Fix) courier.IngestResult {
	t.Helper()
	r := svc.NewLocationReport()
	if err := r.Add(serviceCtx(testContext(t), "simulator"), id, fixes); err != nil {
		t.Fatalf("LocationReport.Add: %v", err)
	}
	return r.Result()
}

// waitFor polls cond until it holds or testTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
