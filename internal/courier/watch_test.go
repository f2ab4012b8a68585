package courier_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
)

// next returns the next batch of events of w, failing the test when none comes within testTimeout.
func next(t *testing.T, w *courier.Watch) []courier.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	evs, err := w.Next(ctx)
	if err != nil {
		t.Fatalf("Watch.Next: %v", err)
	}
	return evs
}

// wantNothingPending checks that w has no event ready: Next with an already-expired context returns
// the context's error only when nothing is pending.
func wantNothingPending(t *testing.T, w *courier.Watch) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if evs, err := w.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Watch.Next = %d events, %v; want nothing pending", len(evs), err)
	}
}

type seen struct {
	ID      string
	Changes []courier.Change
	Lat     float64
	Lng     float64
	Status  courier.Status
}

func summarize(evs []courier.Event) []seen {
	out := make([]seen, len(evs))
	for i, ev := range evs {
		out[i] = seen{ev.Snapshot.Courier.ID, ev.Changes, ev.Snapshot.Location.Lat, ev.Snapshot.Location.Lng, ev.Snapshot.Status()}
	}
	return out
}

// TestWatchLaggingConsumer: while one watcher does not read, ingest goes on at full speed and another
// watcher keeps up; when the laggard reads, it gets one event per courier with the exact latest state,
// not the backlog.
func TestWatchLaggingConsumer(t *testing.T) {
	f := newFixture(t, courier.Options{FixBurst: 1000})
	ctx := testContext(t)
	const couriers, rounds = 20, 200
	var ids []string
	for n := 1; n <= couriers; n++ {
		ids = append(ids, f.available(t, n, courier.ModeCar, 1).ID)
	}
	lagging, err := f.svc.Watch(dispatcherCtx(ctx), courier.WatchFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer lagging.Close()
	reading, err := f.svc.Watch(serviceCtx(ctx, "dispatch"), courier.WatchFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer reading.Close()

	// Courier i moves north by 0.0001 degrees (11 m) a second, from latitude 10+i; its last fix, at t0,
	// is round number `rounds`.
	lat := func(i, round int) float64 { return 10 + float64(i) + float64(round)*0.0001 }
	finalLat := map[string]float64{}
	for i, id := range ids {
		finalLat[id] = lat(i, rounds)
	}

	// The reader drains its watch concurrently until it has seen every courier's final fix.
	readerDone := make(chan error, 1)
	go func() {
		final := map[string]bool{}
		for len(final) < couriers {
			evs, err := reading.Next(ctx)
			if err != nil {
				readerDone <- err
				return
			}
			for _, ev := range evs {
				if id := ev.Snapshot.Courier.ID; ev.Snapshot.Location.Lat == finalLat[id] {
					final[id] = true
				}
			}
		}
		readerDone <- nil
	}()

	// Ingest runs on its own goroutine, bounded by the test timeout: it must finish with the laggard
	// never reading.
	ingested := make(chan error, 1)
	go func() {
		ingest := func(id string, fix courier.Fix) error {
			return f.svc.NewLocationReport().Add(serviceCtx(ctx, "simulator"), id, []courier.Fix{fix})
		}
		for r := range rounds {
			for i, id := range ids {
				if err := ingest(id, fixAt(lat(i, r), 20, t0.Add(time.Duration(r-rounds)*time.Second))); err != nil {
					ingested <- err
					return
				}
			}
		}
		for i, id := range ids {
			if err := ingest(id, fixAt(lat(i, rounds), 20, t0)); err != nil {
				ingested <- err
				return
			}
		}
		ingested <- nil
	}()
	select {
	case err := <-ingested:
		if err != nil {
			t.Fatalf("ingest: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("ingest blocked behind a watcher that does not read")
	}
	select {
	case err := <-readerDone:
		if err != nil {
			t.Fatalf("reading watcher: %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("the reading watcher did not see every final fix")
	}

	want := make([]seen, couriers)
	for i, id := range ids {
		want[i] = seen{id, []courier.Change{courier.ChangeSnapshot, courier.ChangeLocation}, lat(i, rounds), 20, courier.StatusAvailable}
	}
	// Couriers became pending in snapshot order, which is id order.
	slices.SortFunc(want, func(a, b seen) int { return strings.Compare(a.ID, b.ID) })
	if diff := cmp.Diff(want, summarize(next(t, lagging))); diff != "" {
		t.Errorf("lagging watcher's events (-want +got):\n%s", diff)
	}
	wantNothingPending(t, lagging)
}

// TestWatchBounds: a box across the antimeridian; a courier is followed while inside, gets one
// LEFT_BOUNDS event when it leaves and nothing more while outside; couriers outside never show up.
func TestWatchBounds(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := testContext(t)
	a := f.available(t, 1, courier.ModeCar, 1)
	b := f.available(t, 2, courier.ModeCar, 1)
	at := t0.Add(-9 * time.Minute)
	f.report(t, b.ID, fixAt(0, 170, at)) // outside, before the watch opens

	w, err := f.svc.Watch(dispatcherCtx(ctx), courier.WatchFilter{Bounds: &courier.Box{South: -1, West: 179.9, North: 1, East: -179.9}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	wantNothingPending(t, w) // a has no location, b is outside: no snapshot events

	steps := []struct {
		name string
		lat  float64
		lng  float64
		want []seen
	}{
		{"enters west of the antimeridian", 0, 179.95, []seen{{a.ID, []courier.Change{courier.ChangeLocation}, 0, 179.95, courier.StatusAvailable}}},
		{"crosses the antimeridian inside", 0, -179.95, []seen{{a.ID, []courier.Change{courier.ChangeLocation}, 0, -179.95, courier.StatusAvailable}}},
		{"leaves to the east", 0, -179.85, []seen{{a.ID, []courier.Change{courier.ChangeLocation, courier.ChangeLeftBounds}, 0, -179.85, courier.StatusAvailable}}},
		{"moves outside", 0, -179.8, nil},
		{"comes back", 0, -179.905, []seen{{a.ID, []courier.Change{courier.ChangeLocation}, 0, -179.905, courier.StatusAvailable}}},
	}
	for _, st := range steps {
		// 0.1 degrees of longitude at the equator (11 km) in 200 s is within a car's 60 m/s.
		f.clock.Advance(200 * time.Second)
		at = f.clock.Now().Add(-time.Second)
		if got := f.report(t, a.ID, fixAt(st.lat, st.lng, at)); got.Accepted != 1 {
			t.Fatalf("%s: report = %+v, want accepted", st.name, got)
		}
		if _, err := f.svc.SetStatus(adminCtx(ctx), b.ID, courier.StatusOnBreak); err != nil {
			t.Fatal(err)
		}
		if _, err := f.svc.SetStatus(adminCtx(ctx), b.ID, courier.StatusAvailable); err != nil {
			t.Fatal(err)
		}
		if st.want == nil {
			wantNothingPending(t, w)
			continue
		}
		if diff := cmp.Diff(st.want, summarize(next(t, w))); diff != "" {
			t.Errorf("%s: events (-want +got):\n%s", st.name, diff)
		}
	}

	// A status change of a courier inside is an event too.
	if _, err := f.svc.SetStatus(adminCtx(ctx), a.ID, courier.StatusOnBreak); err != nil {
		t.Fatal(err)
	}
	want := []seen{{a.ID, []courier.Change{courier.ChangeStatus}, 0, -179.905, courier.StatusOnBreak}}
	if diff := cmp.Diff(want, summarize(next(t, w))); diff != "" {
		t.Errorf("status change inside: events (-want +got):\n%s", diff)
	}
}

// TestWatchChanges: snapshot at open (offline couriers left out), then status, claim and profile
// changes, filtered by courier id.
func TestWatchChanges(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := testContext(t)
	a := f.available(t, 1, courier.ModeBicycle, 1)
	b := f.available(t, 2, courier.ModeBicycle, 1)
	f.register(t, 3, courier.ModeBicycle, 1) // offline

	all, err := f.svc.Watch(adminCtx(ctx), courier.WatchFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Close()
	onlyB, err := f.svc.Watch(adminCtx(ctx), courier.WatchFilter{CourierIDs: []string{b.ID}})
	if err != nil {
		t.Fatal(err)
	}
	defer onlyB.Close()

	snapshot := func(id string) seen {
		return seen{id, []courier.Change{courier.ChangeSnapshot}, 0, 0, courier.StatusAvailable}
	}
	// Snapshot events come in id order.
	first, second := a.ID, b.ID
	if second < first {
		first, second = second, first
	}
	if diff := cmp.Diff([]seen{snapshot(first), snapshot(second)}, summarize(next(t, all))); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]seen{snapshot(b.ID)}, summarize(next(t, onlyB))); diff != "" {
		t.Errorf("snapshot of b (-want +got):\n%s", diff)
	}

	if _, _, err := f.svc.ClaimCourier(serviceCtx(ctx, "dispatch"), courier.ClaimRequest{CourierID: b.ID, TaskID: taskID(1)}); err != nil {
		t.Fatal(err)
	}
	want := []seen{{b.ID, []courier.Change{courier.ChangeStatus}, 0, 0, courier.StatusBusy}}
	if diff := cmp.Diff(want, summarize(next(t, onlyB))); diff != "" {
		t.Errorf("claim (-want +got):\n%s", diff)
	}
	if _, err := f.svc.UpdateCourier(adminCtx(ctx), courier.UpdateRequest{ID: a.ID,
		Fields: []courier.Field{courier.FieldMode}, Mode: courier.ModeScooter}); err != nil {
		t.Fatal(err)
	}
	evs := next(t, all)
	want = []seen{
		{b.ID, []courier.Change{courier.ChangeStatus}, 0, 0, courier.StatusBusy},
		{a.ID, []courier.Change{courier.ChangeProfile}, 0, 0, courier.StatusAvailable},
	}
	if diff := cmp.Diff(want, summarize(evs)); diff != "" {
		t.Errorf("claim then profile (-want +got):\n%s", diff)
	}
	if evs[1].Snapshot.Courier.Mode != courier.ModeScooter {
		t.Errorf("profile event mode = %v, want scooter", evs[1].Snapshot.Courier.Mode)
	}
	wantNothingPending(t, onlyB)
}

// TestWatchEndsOnShutdown: when Run ends, open watches end with Unavailable and new ones are refused.
func TestWatchEndsOnShutdown(t *testing.T) {
	f := newFixture(t, courier.Options{})
	ctx := testContext(t)
	w, err := f.svc.Watch(adminCtx(ctx), courier.WatchFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.svc.Run(runCtx) }()

	nextErr := make(chan error, 1)
	go func() {
		_, err := w.Next(ctx)
		nextErr <- err
	}()
	cancel()
	select {
	case err := <-nextErr:
		apperrtest.WantCode(t, "Watch.Next after shutdown", err, apperr.Unavailable)
	case <-time.After(testTimeout):
		t.Fatal("Watch.Next did not return after shutdown")
	}
	if err := <-done; err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
	_, err = f.svc.Watch(adminCtx(ctx), courier.WatchFilter{})
	apperrtest.WantCode(t, "Watch after shutdown", err, apperr.Unavailable)
	_, err = f.svc.Watch(courierCtx(ctx, 1), courier.WatchFilter{})
	apperrtest.WantCode(t, "Watch as a courier", err, apperr.PermissionDenied)
}

// TestHourTurnUpdatesAvailableNow: when the hour turns, couriers whose availability differs between the
// two hours get a STATUS event, and nearby results show the new availability.
func TestHourTurnUpdatesAvailableNow(t *testing.T) {
	f := newFixture(t, courier.Options{FlushInterval: time.Millisecond})
	ctx := testContext(t)
	c := f.available(t, 1, courier.ModeCar, 1)
	if _, err := f.svc.SetAvailability(courierCtx(ctx, 1), c.ID, []time.Time{hour(1)}, true); err != nil {
		t.Fatal(err)
	}
	w, err := f.svc.Watch(adminCtx(ctx), courier.WatchFilter{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if evs := next(t, w); len(evs) != 1 || evs[0].Snapshot.AvailableNow {
		t.Fatalf("snapshot = %+v, want one event, not available now", evs)
	}

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.svc.Run(runCtx) }()
	defer func() {
		cancel()
		<-done
	}()
	f.clock.Advance(time.Hour)
	evs := next(t, w)
	if len(evs) != 1 || !evs[0].Snapshot.AvailableNow || !slices.Equal(evs[0].Changes, []courier.Change{courier.ChangeStatus}) {
		t.Errorf("after the hour turned: %+v, want one STATUS event with available now", evs)
	}
}
