package dispatch

import (
	"context"
	"fmt"
	"strings"
	"time"

	"lastmile/internal/geo"
)

// Estimates of a busy courier's remaining work.
const (
	// StopTime is the time a courier spends at each stop (parking, finding the door, the handover).
	StopTime = 2 * time.Minute
	// HeldTaskTime is what one held task is taken to cost a courier when DecideEnv.Held is nil and the
	// engine cannot plan its stops: about a pickup and a dropoff across town.
	HeldTaskTime = 10 * time.Minute
)

// heldWork is what a candidate must do before heading for the new pickup: for busy long, ending at from.
type heldWork struct {
	busy time.Duration
	from geo.LatLng
}

// heldWork returns, indexed like s.cands, the held work of the open candidates. Couriers holding nothing
// are free at once where they are. For the others, with env.Held, the engine plans their stops as a
// courier would serve them (planHeld); without it, each held task counts for HeldTaskTime.
func (s *search) heldWork(ctx context.Context, open []int, info func(int) CourierInfo) ([]heldWork, error) {
	work := make([]heldWork, len(s.cands))
	var busy []int
	for _, i := range open {
		c := info(i)
		work[i].from = c.Fix.Location
		if c.ActiveTasks > 0 {
			busy = append(busy, i)
		}
	}
	if len(busy) == 0 {
		return work, nil
	}
	if s.env.Held == nil {
		for _, i := range busy {
			work[i].busy = time.Duration(info(i).ActiveTasks) * HeldTaskTime
		}
		return work, nil
	}
	held, err := s.env.Held(ctx, s.ids(busy))
	if err != nil {
		return nil, fmt.Errorf("read the tasks the candidates for task %s hold: %w", s.t.ID, err)
	}
	for _, i := range busy {
		c := info(i)
		work[i].busy, work[i].from = planHeld(c.Fix.Location, c.Mode, held[c.ID], s.now)
	}
	return work, nil
}

// planHeld returns how long a courier at from travelling by mode needs to finish the stops of tasks
// (picking up what is ASSIGNED, delivering what is picked up) and where it ends. It serves them as a
// courier would, greedily: always the nearest next stop (by geo.EstimateTravel; ties by task id, pickups
// first), a parcel's dropoff only once it is on board, waiting at a pickup for its window to open, and
// StopTime at each stop. The estimate is local even when route answers: it is dispatch's own model of
// the courier's work, not a trip route was asked about.
func planHeld(from geo.LatLng, mode geo.TransportMode, tasks []Task, now time.Time) (time.Duration, geo.LatLng) {
	type stop struct {
		task   *Task
		pickup bool
	}
	var stops []stop
	for i := range tasks {
		switch tasks[i].State {
		case StateAssigned:
			stops = append(stops, stop{&tasks[i], true})
		case StatePickedUp:
			stops = append(stops, stop{&tasks[i], false})
		}
	}
	at, here := now, from
	for len(stops) > 0 {
		best, bestDur := -1, time.Duration(0)
		for k, st := range stops {
			to := st.task.Dropoff.Location
			if st.pickup {
				to = st.task.Pickup.Location
			}
			dur, _ := geo.EstimateTravel(here, to, mode)
			if best < 0 || dur < bestDur || dur == bestDur && before(st.task, st.pickup, stops[best].task, stops[best].pickup) {
				best, bestDur = k, dur
			}
		}
		st := stops[best]
		at = at.Add(bestDur)
		if st.pickup {
			here = st.task.Pickup.Location
			if w := st.task.Pickup.Window; w != nil && at.Before(w.Start) {
				at = w.Start
			}
			stops[best].pickup = false // its dropoff is next to serve
		} else {
			here = st.task.Dropoff.Location
			stops = append(stops[:best], stops[best+1:]...)
		}
		at = at.Add(StopTime)
	}
	return at.Sub(now), here
}

// before orders equally near stops: by task id, a pickup before a dropoff.
func before(a *Task, aPickup bool, b *Task, bPickup bool) bool {
	if c := strings.Compare(a.ID, b.ID); c != 0 {
		return c < 0
	}
	return aPickup && !bPickup
}
