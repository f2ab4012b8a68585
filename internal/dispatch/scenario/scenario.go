// Package scenario is dispatch's deterministic quality harness: a synthetic city on a simulated clock,
// with couriers, tasks and courier behaviour all drawn from one seed, in which an assignment policy is
// run and measured. It judges dispatch.Engine (the same Decide the service calls, over in-memory ports
// fed from the simulation) against a baseline (the nearest idle courier, one task each, one offer at a
// time), and it is what later engines (batching, continuous re-solving) will be judged by.
//
// # The world
//
// A disc of City.Radius around City.Center. Couriers start at uniform points of it; each has a transport
// mode (45 % bicycle, 25 % scooter, 15 % car, 5 % van, 10 % walking) and a capacity of 1 to 3 tasks, and
// stays available for the whole run. Tasks arrive as a Poisson process of Load.TasksPerHour for
// Load.Hours: a pickup uniform in the disc, a dropoff 0.5 to 4 km away in a uniform direction (inside the
// disc), 70 % small, 20 % medium, 10 % large parcels; the parcel is ready 0 to 10 minutes after the task
// is created, its pickup window lasts PickupWindow from then, and it is on time when delivered within
// DeliverWithin of being ready. Couriers travel in straight lines at geo.EstimateTravel's speeds and
// distances (great circle × circuity), take 1 to 3 minutes at each stop, wait at a pickup until the parcel
// is ready, and serve the tasks they hold greedily: the nearest next stop first (a held task's pickup, or
// the dropoff of a parcel on board).
//
// # Offers
//
// As the contract says: an offer goes to one courier at a time and expires after Options.OfferTimeout
// (20 s); a courier answers after 2 to 15 s, declining 30 % of offers and letting 5 % expire; a courier
// who declined or let an offer expire is never offered that task again. After a decline or an expiry the
// task goes to the next candidate of the same choice still able to take it, then to a new search; a
// search that finds nobody is retried after RetryBackoff, doubling per search up to 12 times it. A task
// still waiting when its pickup window closes is unassignable.
//
// # Determinism
//
// Everything random comes from math/rand/v2 PCG streams of the seed: the world from one stream, courier
// behaviour from another. The event queue orders equal times by insertion. Every decision, offer, answer,
// pickup and delivery is written to a log (simulated times only, never wall-clock timings), so the same
// seed and policy give a byte-identical log; Result.LogHash is its SHA-256.
package scenario

import (
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
)

// City is the synthetic city: a disc.
type City struct {
	Center geo.LatLng
	Radius float64
}

// Berlin is the default city: 8 km around Berlin's centre.
var Berlin = City{Center: geo.LatLng{Lat: 52.52, Lng: 13.405}, Radius: 8000}

// Load is how busy a run is.
type Load struct {
	// Name labels the load in reports: "light", "normal", "peak".
	Name string
	// Couriers is how many couriers are on shift.
	Couriers int
	// TasksPerHour is the Poisson arrival rate of tasks.
	TasksPerHour float64
	// Hours is how long tasks arrive for; the run then goes on until every task is final.
	Hours float64
}

// The loads of the quality report, for 40 couriers: light leaves most couriers idle, normal keeps the
// baseline busy, peak is more than one task per courier at a time can serve.
var (
	Light  = Load{Name: "light", Couriers: 40, TasksPerHour: 30, Hours: 3}
	Normal = Load{Name: "normal", Couriers: 40, TasksPerHour: 70, Hours: 3}
	Peak   = Load{Name: "peak", Couriers: 40, TasksPerHour: 120, Hours: 3}
)

// Loads lists the report's loads, lightest first.
var Loads = []Load{Light, Normal, Peak}

// Behaviour is how couriers answer offers.
type Behaviour struct {
	// Decline and Ignore are the probabilities that a courier declines an offer or lets it expire; the
	// rest are accepted.
	Decline, Ignore float64
	// MinDelay and MaxDelay bound the time a courier takes to answer (uniform).
	MinDelay, MaxDelay time.Duration
}

// DefaultBehaviour declines 30 % of offers and ignores 5 %, answering after 2 to 15 s.
var DefaultBehaviour = Behaviour{Decline: 0.30, Ignore: 0.05, MinDelay: 2 * time.Second, MaxDelay: 15 * time.Second}

// Config is one run.
type Config struct {
	Seed      uint64
	City      City
	Load      Load
	Behaviour Behaviour
	// PickupWindow is how long a parcel may be picked up after it is ready; DeliverWithin is the promise
	// from ready to delivered.
	PickupWindow, DeliverWithin time.Duration
	// OfferTimeout and RetryBackoff are the service's (dispatch.DefaultOfferTimeout,
	// dispatch.DefaultRetryBackoff when zero).
	OfferTimeout, RetryBackoff time.Duration
	// Start is the simulated clock's start.
	Start time.Time
}

// Defaults of Config.
const (
	DefaultPickupWindow  = 25 * time.Minute
	DefaultDeliverWithin = 45 * time.Minute
)

// DefaultStart is the simulated clock's default start, a Monday at 11:00 UTC.
var DefaultStart = time.Date(2026, 11, 30, 11, 0, 0, 0, time.UTC)

// NewConfig returns the run of load with seed in Berlin with the default behaviour and promises.
func NewConfig(load Load, seed uint64) Config {
	return Config{Seed: seed, City: Berlin, Load: load, Behaviour: DefaultBehaviour}
}

func (c *Config) defaults() {
	if c.City == (City{}) {
		c.City = Berlin
	}
	if c.Behaviour == (Behaviour{}) {
		c.Behaviour = DefaultBehaviour
	}
	if c.PickupWindow <= 0 {
		c.PickupWindow = DefaultPickupWindow
	}
	if c.DeliverWithin <= 0 {
		c.DeliverWithin = DefaultDeliverWithin
	}
	if c.OfferTimeout <= 0 {
		c.OfferTimeout = dispatch.DefaultOfferTimeout
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = dispatch.DefaultRetryBackoff
	}
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
}
