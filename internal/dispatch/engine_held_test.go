package dispatch

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"lastmile/internal/geo"
)

// TestHeldPlansAnswerPlanHeld: the routes heldPlans keeps give planHeld's answer, call after call, as
// the courier moves, its tasks change state, come and go, change windows, and the clock runs.
func TestHeldPlansAnswerPlanHeld(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	point := func() geo.LatLng {
		return geo.LatLng{Lat: 52.5 + rng.Float64()*0.05, Lng: 13.4 + rng.Float64()*0.05}
	}
	now := time.Date(2031, 1, 2, 3, 4, 5, 0, time.UTC)
	newTask := func(i int) Task {
		t := Task{ID: fmt.Sprintf("t%02d", i), State: StateAssigned, Pickup: Stop{Location: point()}, Dropoff: Stop{Location: point()}}
		if rng.IntN(2) == 0 {
			t.State = StatePickedUp
		}
		if rng.IntN(3) == 0 {
			t.Pickup.Window = &Window{Start: now.Add(time.Duration(rng.IntN(40)) * time.Minute), End: now.Add(2 * time.Hour)}
		}
		return t
	}
	var plans heldPlans
	const couriers = 3
	from := make([]geo.LatLng, couriers)
	tasks := make([][]Task, couriers)
	next := 0
	for c := range couriers {
		from[c] = point()
		for range 1 + c*2 {
			tasks[c] = append(tasks[c], newTask(next))
			next++
		}
	}
	for step := range 400 {
		c := rng.IntN(couriers)
		// Each step changes something or nothing; a slice once planned is never changed in place
		// (as the store's held sets), so every change makes a copy.
		ts := append([]Task(nil), tasks[c]...)
		switch rng.IntN(8) {
		case 0:
			from[c] = point()
		case 1:
			if len(ts) > 0 {
				ts[rng.IntN(len(ts))].State = StatePickedUp
			}
		case 2:
			if len(ts) > 0 {
				i := rng.IntN(len(ts))
				ts = append(ts[:i], ts[i+1:]...)
			}
		case 3:
			ts = append(ts, newTask(next))
			next++
		case 4:
			if len(ts) > 0 {
				ts[rng.IntN(len(ts))].Pickup.Window = &Window{Start: now.Add(time.Duration(rng.IntN(60)) * time.Minute), End: now.Add(3 * time.Hour)}
			}
		case 5:
			if len(ts) > 0 {
				ts[rng.IntN(len(ts))].Dropoff.Location = point()
			}
		case 6:
			now = now.Add(time.Duration(rng.IntN(600)) * time.Second)
		}
		tasks[c] = ts
		mode := geo.Modes[c%len(geo.Modes)]
		id := fmt.Sprintf("c%d", c)
		gotBusy, gotEnd := plans.plan(id, from[c], mode, ts, now)
		wantBusy, wantEnd := planHeld(from[c], mode, ts, now)
		if gotBusy != wantBusy || gotEnd != wantEnd {
			t.Fatalf("step %d: plan(%s) = %v, %v; want planHeld's %v, %v", step, id, gotBusy, gotEnd, wantBusy, wantEnd)
		}
	}
	var none *heldPlans
	ts := tasks[0]
	if got, _ := none.plan("c0", from[0], geo.Bicycle, ts, now); got != mustPlan(from[0], ts, now) {
		t.Errorf("nil heldPlans' plan = %v, want planHeld's %v", got, mustPlan(from[0], ts, now))
	}
}

func mustPlan(from geo.LatLng, ts []Task, now time.Time) time.Duration {
	d, _ := planHeld(from, geo.Bicycle, ts, now)
	return d
}
