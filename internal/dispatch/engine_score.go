package dispatch

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The scales of the score's bounded transforms.
const (
	// ETAScale is the pickup ETA at which the ETA component is half its weight.
	ETAScale = 10 * time.Minute
	// DistanceScale is the pickup distance at which the distance component is half its weight.
	DistanceScale = 3000.0
	// FairnessHorizon is the idle time at which the fairness component reaches its full weight.
	FairnessHorizon = 30 * time.Minute
)

// score returns c's score for the trip leg to the pickup (its Duration including busy, the time c needs
// to finish the tasks it holds), with idle its idle time. Each component is
// bounded in [0, weight] and depends on this courier alone, never on who else was found, so that adding a
// far courier to a decision cannot change the order of two near ones:
//
//	ETA       = Weights.ETA      × ETAScale / (ETAScale + eta)             (1 at 0 s, ½ at 10 min)
//	Distance  = Weights.Distance × DistanceScale / (DistanceScale + meters) (1 at 0 m, ½ at 3 km)
//	Load      = Weights.Load     × free / capacity                          (free = capacity - active)
//	Fairness  = Weights.Fairness × min(idle / FairnessHorizon, 1)
func (e *Engine) score(c CourierInfo, leg Leg, busy, idle time.Duration) Score {
	w := e.opts.Weights
	s := Score{
		PickupETA: leg.Duration, PickupDistance: leg.Distance, HeldWork: busy,
		ActiveTasks: c.ActiveTasks, Capacity: c.Capacity, Idle: idle,
	}
	s.ETAScore = w.ETA * float64(ETAScale) / float64(ETAScale+max(leg.Duration, 0))
	s.DistanceScore = w.Distance * DistanceScale / (DistanceScale + max(leg.Distance, 0))
	if c.Capacity > 0 {
		s.LoadScore = w.Load * float64(c.Capacity-c.ActiveTasks) / float64(c.Capacity)
	}
	s.FairnessScore = w.Fairness * min(float64(idle)/float64(FairnessHorizon), 1)
	s.Total = s.ETAScore + s.DistanceScore + s.LoadScore + s.FairnessScore
	return s
}

// idleOf returns how long c has been idle for fairness: since its last assignment when dispatch knows it
// (known; capped at FairnessHorizon, which is also the idle time of a courier never assigned), else
// FairnessHorizon for a courier holding no task and 0 for one holding some.
func idleOf(c CourierInfo, last map[string]time.Time, known bool, now time.Time) time.Duration {
	if !known {
		if c.ActiveTasks == 0 {
			return FairnessHorizon
		}
		return 0
	}
	at, ok := last[c.ID]
	if !ok {
		return FairnessHorizon
	}
	return min(max(now.Sub(at), 0), FairnessHorizon)
}

// rank orders candidates as a Decision holds them, ranking the eligible ones: eligible first by total
// score (higher first), then earlier ETA, then courier id, so that equal inputs give equal decisions;
// then the excluded ones in the order they were found.
func rank(cands []Candidate) []Candidate {
	out := make([]Candidate, 0, len(cands))
	for _, c := range cands {
		if c.Excluded == "" {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b Candidate) int {
		if c := cmp.Compare(b.Score.Total, a.Score.Total); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Score.PickupETA, b.Score.PickupETA); c != 0 {
			return c
		}
		return strings.Compare(a.CourierID, b.CourierID)
	})
	for i := range out {
		out[i].Rank = i + 1
	}
	for _, c := range cands {
		if c.Excluded != "" {
			c.Rank = 0
			out = append(out, c)
		}
	}
	return out
}

// conclude sets d's Outcome, Winner and Rationale from its ranked candidates.
func (e *Engine) conclude(d *Decision, t *Task, taskExcluded map[string]ExclusionReason) {
	within := "within " + km(d.SearchRadius)
	if len(d.Candidates) == 0 {
		d.Outcome = OutcomeNoCandidates
		d.Rationale = "no available courier " + within + "; retrying"
		return
	}
	if win := d.Candidates[0]; win.Rank == 1 {
		d.Outcome = OutcomeOffered
		d.Winner = win.CourierID
		d.Rationale = winRationale(d)
		return
	}
	counts := map[ExclusionReason]int{}
	late, permanent := 0, 0
	for _, c := range d.Candidates {
		counts[c.Excluded]++
		if c.Excluded == ExcludedPickupWindow {
			late++
		} else if _, ok := taskExcluded[c.CourierID]; ok {
			permanent++
		}
	}
	reasons := make([]string, 0, len(counts))
	for r, n := range counts {
		reasons = append(reasons, fmt.Sprintf("%d %s", n, r))
	}
	slices.Sort(reasons)
	if late > 0 && late+permanent == len(d.Candidates) {
		d.Outcome = OutcomeUnassignable
		d.Rationale = fmt.Sprintf("no courier %s can reach the pickup before its window closes at %s (%s)",
			within, t.Pickup.Window.End.UTC().Format(time.RFC3339), strings.Join(reasons, ", "))
		return
	}
	d.Outcome = OutcomeAllExcluded
	d.Rationale = fmt.Sprintf("all %d couriers %s excluded (%s); retrying", len(d.Candidates), within, strings.Join(reasons, ", "))
}

// winRationale says why the winner won, such as "earliest ETA to pickup (4m10s), 1 of 3 tasks held, best
// of 4 eligible".
func winRationale(d *Decision) string {
	el := d.Candidates[:eligible(d.Candidates)]
	win := el[0].Score
	first := el[0]
	for _, c := range el[1:] {
		if c.Score.PickupETA < first.Score.PickupETA {
			first = c
		}
	}
	var b strings.Builder
	if first.CourierID == el[0].CourierID {
		fmt.Fprintf(&b, "earliest ETA to pickup (%s)", win.PickupETA)
	} else {
		var why []string
		if win.LoadScore > first.Score.LoadScore {
			why = append(why, "more free capacity")
		}
		if win.FairnessScore > first.Score.FairnessScore {
			why = append(why, "longer idle")
		}
		if win.DistanceScore > first.Score.DistanceScore {
			why = append(why, "shorter distance")
		}
		fmt.Fprintf(&b, "ETA to pickup %s, over %s's earlier %s for %s", win.PickupETA, first.CourierID, first.Score.PickupETA, strings.Join(why, " and "))
	}
	fmt.Fprintf(&b, ", %d of %d tasks held", win.ActiveTasks, win.Capacity)
	if win.HeldWork > 0 {
		fmt.Fprintf(&b, " (free in %s)", win.HeldWork)
	}
	if len(el) > 1 {
		fmt.Fprintf(&b, ", best of %d eligible", len(el))
	}
	if d.Degraded {
		b.WriteString("; ETAs estimated locally (route unavailable)")
	}
	return b.String()
}

// eligible returns how many of ranked candidates, which hold the eligible ones first, are eligible.
func eligible(ranked []Candidate) int {
	n := 0
	for n < len(ranked) && ranked[n].Rank > 0 {
		n++
	}
	return n
}

// km renders meters as kilometres for rationales: "15 km", "1.5 km".
func km(meters float64) string {
	return strconv.FormatFloat(meters/1000, 'f', -1, 64) + " km"
}
