package dispatch

import (
	"context"
	"fmt"
	"strings"
	"sync"
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
		work[i].busy, work[i].from = s.e.plans.plan(c.ID, c.Fix.Location, c.Mode, held[c.ID], s.now)
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
	route, end := routeHeld(from, mode, tasks)
	return route.serve(tasks, now), end
}

// heldStep is one stop of a planned route: the trip to it (dur), and which task's pickup or dropoff it
// is (an index into the tasks planned).
type heldStep struct {
	dur    time.Duration
	task   int
	pickup bool
}

// heldRoute is the order in which planHeld serves a courier's held stops, with the trip to each.
type heldRoute []heldStep

// routeHeld returns the route planHeld takes through the stops of tasks from from, and where it ends.
// The order depends only on where the stops are and on the tasks' ids and states, never on the time:
// a pickup window makes the courier wait (serve), it does not change which stop is nearest.
func routeHeld(from geo.LatLng, mode geo.TransportMode, tasks []Task) (heldRoute, geo.LatLng) {
	type stop struct {
		task   int
		pickup bool
	}
	var stops []stop
	for i := range tasks {
		switch tasks[i].State {
		case StateAssigned:
			stops = append(stops, stop{i, true})
		case StatePickedUp:
			stops = append(stops, stop{i, false})
		}
	}
	var route heldRoute
	if len(stops) > 0 {
		route = make(heldRoute, 0, 2*len(stops))
	}
	here := from
	for len(stops) > 0 {
		best, bestDur := -1, time.Duration(0)
		for k, st := range stops {
			to := tasks[st.task].Dropoff.Location
			if st.pickup {
				to = tasks[st.task].Pickup.Location
			}
			dur, _ := geo.EstimateTravel(here, to, mode)
			if best < 0 || dur < bestDur || dur == bestDur && before(&tasks[st.task], st.pickup, &tasks[stops[best].task], stops[best].pickup) {
				best, bestDur = k, dur
			}
		}
		st := stops[best]
		route = append(route, heldStep{dur: bestDur, task: st.task, pickup: st.pickup})
		if st.pickup {
			here = tasks[st.task].Pickup.Location
			stops[best].pickup = false // its dropoff is next to serve
		} else {
			here = tasks[st.task].Dropoff.Location
			stops = append(stops[:best], stops[best+1:]...)
		}
	}
	return route, here
}

// serve returns how long a courier starting at now needs to follow r through the stops of tasks (the
// tasks r was planned for): each trip, the wait at a pickup for its window to open, and StopTime at
// each stop.
func (r heldRoute) serve(tasks []Task, now time.Time) time.Duration {
	at := now
	for _, st := range r {
		at = at.Add(st.dur)
		if st.pickup {
			if w := tasks[st.task].Pickup.Window; w != nil && at.Before(w.Start) {
				at = w.Start
			}
		}
		at = at.Add(StopTime)
	}
	return at.Sub(now)
}

// maxHeldPlans bounds the couriers heldPlans keeps: beyond it, it starts afresh.
const maxHeldPlans = 1 << 14

// heldPlans keeps, per courier, the route planHeld took through its held stops the last time, with what
// that route depends on: where the courier was, its mode, and the id, state, pickup and dropoff of each
// task in order. A busy courier is planned by the prefetch of every batch whose searches find it and
// again by every decision that considers it, mostly with nothing changed: then the route is taken
// again and only served at the new time (the window waits), instead of being searched again with
// O(stops²) geodesic estimates. The answer is planHeld's, always. Safe for concurrent use; the zero
// value is empty.
type heldPlans struct {
	mu sync.Mutex
	by map[string]*heldPlan
}

// heldPlan is one courier's entry of heldPlans; never changed once kept.
type heldPlan struct {
	from  geo.LatLng
	mode  geo.TransportMode
	tasks []heldPlanTask
	route heldRoute
	end   geo.LatLng
}

// heldPlanTask is what the route of a plan depends on of one task.
type heldPlanTask struct {
	id      string
	state   State
	pickup  geo.LatLng
	dropoff geo.LatLng
}

// fits reports whether p was planned from the same position and mode through the same tasks.
func (p *heldPlan) fits(from geo.LatLng, mode geo.TransportMode, tasks []Task) bool {
	if p.from != from || p.mode != mode || len(p.tasks) != len(tasks) {
		return false
	}
	for i := range tasks {
		k, t := &p.tasks[i], &tasks[i]
		if k.id != t.ID || k.state != t.State || k.pickup != t.Pickup.Location || k.dropoff != t.Dropoff.Location {
			return false
		}
	}
	return true
}

// plan returns planHeld(from, mode, tasks, now) for courier courierID, from the route kept for it when
// that still fits (nil: no memory, planHeld itself).
func (h *heldPlans) plan(courierID string, from geo.LatLng, mode geo.TransportMode, tasks []Task, now time.Time) (time.Duration, geo.LatLng) {
	if h == nil {
		return planHeld(from, mode, tasks, now)
	}
	h.mu.Lock()
	p := h.by[courierID]
	h.mu.Unlock()
	if p == nil || !p.fits(from, mode, tasks) {
		p = &heldPlan{from: from, mode: mode, tasks: make([]heldPlanTask, len(tasks))}
		for i := range tasks {
			t := &tasks[i]
			p.tasks[i] = heldPlanTask{id: t.ID, state: t.State, pickup: t.Pickup.Location, dropoff: t.Dropoff.Location}
		}
		p.route, p.end = routeHeld(from, mode, tasks)
		h.mu.Lock()
		if h.by == nil || len(h.by) >= maxHeldPlans {
			h.by = make(map[string]*heldPlan)
		}
		h.by[courierID] = p
		h.mu.Unlock()
	}
	return p.route.serve(tasks, now), p.end
}

// before orders equally near stops: by task id, a pickup before a dropoff.
func before(a *Task, aPickup bool, b *Task, bPickup bool) bool {
	if c := strings.Compare(a.ID, b.ID); c != 0 {
		return c < 0
	}
	return aPickup && !bPickup
}
