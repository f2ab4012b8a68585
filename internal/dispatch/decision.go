package dispatch

import (
	"time"

	"lastmile/internal/geo"
)

// ExclusionReason is why a courier found near a pickup was not eligible for a task.
type ExclusionReason string

// The exclusion reasons.
const (
	ExcludedDeclined      ExclusionReason = "declined"
	ExcludedOfferExpired  ExclusionReason = "offer_expired"
	ExcludedNoCapacity    ExclusionReason = "no_capacity"
	ExcludedTransportMode ExclusionReason = "transport_mode"
	ExcludedNoRoute       ExclusionReason = "no_route"
	ExcludedPickupWindow  ExclusionReason = "pickup_window"
	ExcludedOtherOffer    ExclusionReason = "other_offer_open"
	ExcludedUnavailable   ExclusionReason = "unavailable"
	ExcludedStaleLocation ExclusionReason = "stale_location"
	ExcludedNotConnected  ExclusionReason = "not_connected"
)

// Trigger is what started an assignment decision.
type Trigger string

// The triggers.
const (
	TriggerAutomatic Trigger = "automatic"
	TriggerRetry     Trigger = "retry"
	TriggerOverride  Trigger = "dispatcher_override"
)

// Outcome is how a decision ended.
type Outcome string

// The outcomes.
const (
	OutcomeOffered            Outcome = "offered"
	OutcomeDispatcherAssigned Outcome = "dispatcher_assigned"
	OutcomeNoCandidates       Outcome = "no_candidates"
	OutcomeAllExcluded        Outcome = "all_excluded"
	OutcomeDeferred           Outcome = "deferred"
	OutcomeUnassignable       Outcome = "unassignable"
)

// Weights are the weights of the score components.
type Weights struct {
	ETA, Distance, Load, Fairness float64
}

// DefaultWeights rank mostly by ETA to pickup, then load, then fairness (DESIGN.md §4).
var DefaultWeights = Weights{ETA: 1, Distance: 0.25, Load: 0.5, Fairness: 0.2}

// Score breaks a candidate's score down; higher is better. Each *Score field is a weighted contribution.
type Score struct {
	// PickupETA is when the courier can be at the pickup: HeldWork, then the trip from where that work
	// ends (the courier's position when it holds nothing). PickupDistance is that trip's length.
	PickupETA      time.Duration
	PickupDistance float64
	// HeldWork is the engine's estimate of the time the courier needs to finish the stops of the tasks
	// it holds (engine_held.go); 0 when it holds none.
	HeldWork    time.Duration
	ActiveTasks int
	Capacity    int
	Idle        time.Duration

	ETAScore, DistanceScore, LoadScore, FairnessScore, Total float64
}

// Candidate is one courier the engine considered.
type Candidate struct {
	CourierID string
	// Rank is the position among the eligible candidates, 1 the best; 0 when excluded.
	Rank     int
	Score    *Score
	Excluded ExclusionReason
	Mode     geo.TransportMode
	Location geo.LatLng
	// OfferID is the offer made to this candidate from this decision; empty for none.
	OfferID string
	// OfferState and DeclineReason say what became of that offer; filled when the decision is read
	// (ExplainAssignment), from the task's offers.
	OfferState    OfferState
	DeclineReason DeclineReason
}

// Decision is one run of the engine for a task, or one dispatcher override.
type Decision struct {
	ID         string
	TaskID     string
	DecideTime time.Time
	Trigger    Trigger
	Outcome    Outcome
	// Degraded is true when ETAs are the local geodesic estimate because route was unavailable.
	Degraded          bool
	ETAProvider       string
	DegradationDetail string
	Weights           Weights
	SearchRadius      float64
	// Candidates are the eligible candidates best first, then the excluded ones.
	Candidates []Candidate
	Winner     string
	Rationale  string
	// Elapsed is how long the engine took to decide, for metrics and the decision log.
	Elapsed time.Duration
}

// Eligible returns the eligible candidates in rank order.
func (d *Decision) Eligible() []Candidate {
	var out []Candidate
	for _, c := range d.Candidates {
		if c.Rank > 0 {
			out = append(out, c)
		}
	}
	return out
}
