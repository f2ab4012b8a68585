package scenario

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
)

// EnginePolicy runs dispatch.Engine: the very Decide the service calls, over ports that read the
// simulation (FindNearby over the simulated couriers as the courier service answers it, Matrix from
// geo.EstimateTravel as route's geodesic provider answers it with a flat congestion profile, and
// DecideEnv's OfferOpen, LastAssigned and Held from the simulation's offers and tasks). A courier may
// hold up to its capacity. One EnginePolicy serves one run at a time.
type EnginePolicy struct {
	engine  *dispatch.Engine
	ports   *simPorts
	variant Variant
}

// Variant switches parts of the engine's world off, for the report's ablations.
type Variant struct {
	// OneTask makes every courier hold one task at a time (the courier service reports every capacity
	// as 1): the engine's ranking without the stacking of tasks.
	OneTask bool
	// NoHeld leaves DecideEnv.Held nil, so that the engine counts dispatch.HeldTaskTime per held task
	// instead of planning the courier's stops.
	NoHeld bool
}

// NewEnginePolicy returns the engine with opts (zero fields take the service's defaults) in variant v
// (the zero Variant is the engine as the service runs it).
func NewEnginePolicy(opts dispatch.Options, v Variant) *EnginePolicy {
	p := &simPorts{oneTask: v.OneTask}
	return &EnginePolicy{engine: dispatch.NewEngine(p, p, opts), ports: p, variant: v}
}

// Name returns "engine", followed by its variant's changes.
func (p *EnginePolicy) Name() string {
	name := "engine"
	if p.variant.OneTask {
		name += ", one task each"
	}
	if p.variant.NoHeld {
		name += ", held tasks unknown"
	}
	return name
}

// Takes reports whether c has free capacity.
func (p *EnginePolicy) Takes(c CourierView) bool { return c.Active < p.ports.capacity(c) }

// Choose runs Engine.Decide for the task and returns its eligible candidates in rank order.
func (p *EnginePolicy) Choose(ctx context.Context, r *Run, taskID string, trigger dispatch.Trigger) (Choice, error) {
	p.ports.run = r
	env := dispatch.DecideEnv{
		Now: r.Now(),
		OfferOpen: func(_ context.Context, ids []string) (map[string]bool, error) {
			m := make(map[string]bool, len(ids))
			for _, id := range ids {
				c, _ := r.Courier(id)
				m[id] = c.OfferOpen
			}
			return m, nil
		},
		LastAssigned: func(_ context.Context, ids []string) (map[string]time.Time, error) {
			m := make(map[string]time.Time, len(ids))
			for _, id := range ids {
				if c, _ := r.Courier(id); !c.LastAssigned.IsZero() {
					m[id] = c.LastAssigned
				}
			}
			return m, nil
		},
	}
	if !p.variant.NoHeld {
		env.Held = func(_ context.Context, ids []string) (map[string][]dispatch.Task, error) { return r.held(ids), nil }
	}
	d, err := p.engine.Decide(ctx, r.Task(taskID), trigger, env)
	if err != nil {
		return Choice{}, fmt.Errorf("decide task %s: %w", taskID, err)
	}
	ch := Choice{Outcome: d.Outcome, Elapsed: d.Elapsed}
	for _, c := range d.Eligible() {
		ch.Couriers = append(ch.Couriers, c.CourierID)
	}
	ch.Log = decisionLog(d)
	return ch, nil
}

// decisionLog renders d without its wall-clock timing.
func decisionLog(d dispatch.Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s outcome=%s winner=%s radius=%.0f degraded=%t eta=%s [", d.Trigger, d.Outcome, d.Winner, d.SearchRadius, d.Degraded, d.ETAProvider)
	for i, c := range d.Candidates {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%d", c.CourierID, c.Rank)
		if c.Excluded != "" {
			fmt.Fprintf(&b, ":%s", c.Excluded)
		}
		if c.Score != nil {
			fmt.Fprintf(&b, ":%s:%.6f", c.Score.PickupETA, c.Score.Total)
		}
	}
	fmt.Fprintf(&b, "] %q", d.Rationale)
	return b.String()
}

// simPorts are the engine's Couriers and Routes over a run.
type simPorts struct {
	dispatch.Couriers // only FindNearby is called by the engine
	run               *Run
	oneTask           bool
}

// capacity is c's capacity as the ports report it.
func (p *simPorts) capacity(c CourierView) int {
	if p.oneTask {
		return 1
	}
	return c.Capacity
}

// FindNearby answers as the courier service does: available couriers with free capacity of the modes
// asked, within the radius, not excluded, nearest first (then by id), at most Limit. Positions are exact
// and fresh.
func (p *simPorts) FindNearby(_ context.Context, q dispatch.NearbyQuery) ([]dispatch.CourierInfo, error) {
	r := p.run
	var out []dispatch.CourierInfo
	for _, c := range r.Couriers() {
		if c.Active >= p.capacity(c) || !slices.Contains(q.Modes, c.Mode) || slices.Contains(q.Exclude, c.ID) {
			continue
		}
		d := geo.Distance(q.Center, c.Location)
		if d > q.Radius {
			continue
		}
		out = append(out, dispatch.CourierInfo{
			ID: c.ID, Mode: c.Mode, Status: dispatch.CourierAvailable, AvailableNow: true,
			Fix: &dispatch.Fix{Location: c.Location, Time: r.Now()}, ActiveTasks: c.Active, Capacity: p.capacity(c), Distance: d,
		})
	}
	slices.SortFunc(out, func(a, b dispatch.CourierInfo) int {
		return cmp.Or(cmp.Compare(a.Distance, b.Distance), strings.Compare(a.ID, b.ID))
	})
	return out[:min(len(out), q.Limit)], nil
}

// Matrix answers with geo.EstimateTravel from every origin.
func (p *simPorts) Matrix(_ context.Context, origins []geo.LatLng, dest geo.LatLng, mode geo.TransportMode, _ time.Time) ([]dispatch.Leg, string, error) {
	legs := make([]dispatch.Leg, len(origins))
	for i, o := range origins {
		dur, dist := geo.EstimateTravel(o, dest, mode)
		legs[i] = dispatch.Leg{Duration: dur, Distance: dist, Found: true}
	}
	return legs, "geodesic", nil
}

// Baseline offers a task to the nearest idle courier (holding no task, answering no offer, able to carry
// the parcel, within dispatch.DefaultMaxRadius in a straight line): one task per courier, one offer at a
// time, a new search after each decline or expiry.
type Baseline struct{}

// Name returns "baseline".
func (Baseline) Name() string { return "baseline" }

// Takes reports whether c holds no task.
func (Baseline) Takes(c CourierView) bool { return c.Active == 0 }

// Choose returns the nearest idle courier.
func (Baseline) Choose(_ context.Context, r *Run, taskID string, trigger dispatch.Trigger) (Choice, error) {
	start := time.Now()
	t := r.Task(taskID)
	best, bestDist := "", 0.0
	for _, c := range r.Couriers() {
		if c.Active > 0 || c.OfferOpen || t.IsExcluded(c.ID) || !t.Size.Carries(c.Mode) {
			continue
		}
		d := geo.Distance(t.Pickup.Location, c.Location)
		if d > dispatch.DefaultMaxRadius {
			continue
		}
		if best == "" || d < bestDist {
			best, bestDist = c.ID, d
		}
	}
	ch := Choice{Outcome: dispatch.OutcomeNoCandidates, Elapsed: time.Since(start)}
	if best != "" {
		ch.Outcome, ch.Couriers = dispatch.OutcomeOffered, []string{best}
	}
	ch.Log = fmt.Sprintf("%s outcome=%s winner=%s distance=%.0f", trigger, ch.Outcome, best, bestDist)
	return ch, nil
}
