package dispatch

import (
	"context"
	"fmt"
	"slices"
	"time"

	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
)

// Engine decides which courier should get a task: it searches couriers near the pickup (widening the
// radius up to a bound), asks route for pickup ETAs (falling back to a local geodesic estimate when route
// is unavailable), excludes who cannot or must not take the task (each with its reason), scores the rest
// with the Weights and ranks them. It makes no change: the Service turns its Decision into an offer.
type Engine struct {
	couriers Couriers
	routes   Routes
	opts     Options
	// plans are the busy couriers' planned routes (planHeld), shared by the copies over makes.
	plans *heldPlans
}

// NewEngine returns an engine over the courier and route services, with opts' search and score
// settings. Zero settings take their defaults (DefaultSearchRadius, DefaultMaxRadius, DefaultCandidates,
// DefaultMaxLocationAge, DefaultWeights), as in NewService.
func NewEngine(couriers Couriers, routes Routes, opts Options) *Engine {
	setDefault(&opts.SearchRadius, DefaultSearchRadius)
	setDefault(&opts.MaxRadius, DefaultMaxRadius)
	setDefault(&opts.Candidates, DefaultCandidates)
	setDefault(&opts.MaxLocationAge, DefaultMaxLocationAge)
	if opts.Weights == (Weights{}) {
		opts.Weights = DefaultWeights
	}
	opts.MaxRadius = max(opts.MaxRadius, opts.SearchRadius)
	return &Engine{couriers: couriers, routes: routes, opts: opts, plans: &heldPlans{}}
}

// DecideEnv is what the engine asks of dispatch's own state while deciding.
type DecideEnv struct {
	// Now is the decision's time.
	Now time.Time
	// OfferOpen reports which couriers are answering another offer (excluded: OTHER_OFFER_OPEN). Nil
	// means none is.
	OfferOpen func(ctx context.Context, courierIDs []string) (map[string]bool, error)
	// Connected reports which couriers hold a live session (others excluded: NOT_CONNECTED). Nil means
	// every courier is connected.
	Connected func(ctx context.Context, courierIDs []string) (map[string]bool, error)
	// LastAssigned reports when each courier was last assigned a task, for the fairness component; a
	// courier missing from the map has no recorded assignment and counts as idle for the whole
	// FairnessHorizon. Nil means dispatch does not know: couriers holding no task then count as idle for
	// the whole horizon, the others as not idle (Score.Idle 0).
	LastAssigned func(ctx context.Context, courierIDs []string) (map[string]time.Time, error)
	// Held reports the tasks each courier holds (ASSIGNED or PICKED_UP), asked only about candidates
	// holding some. The engine plans each busy courier's remaining stops (engine_held.go): its pickup ETA
	// is the time to finish them plus the trip from the last one. Nil means dispatch does not say: each
	// held task then counts for HeldTaskTime, and the trip is from the courier's position.
	Held func(ctx context.Context, courierIDs []string) (map[string][]Task, error)
}

// Search bounds.
const (
	// MaxExcludeIDs is how many courier ids one nearby search may exclude (the courier contract's bound
	// on exclude_courier_ids). Excluded couriers of the task beyond it may come back from the search;
	// the engine then records them with their exclusion reason.
	MaxExcludeIDs = 100
	// maxSearches bounds the searches of one decision (widenings and pages of a full answer).
	maxSearches = 16
	// MaxShownExcluded is how many of the couriers who declined the task or let its offer expire (the
	// most recent) a search does not exclude: found again, they are recorded in the decision with that
	// reason (and never offered the task), so that ExplainAssignment shows them. The search asks for as
	// many more couriers, so that they take no eligible courier's place.
	MaxShownExcluded = 20
	// maxNearbyLimit is the courier contract's bound on a nearby search's limit.
	maxNearbyLimit = 100
	// LocalETAProvider is Decision.ETAProvider when the ETAs are dispatch's own estimate.
	LocalETAProvider = "local-geodesic"
)

// Decide runs the engine for task t at env.Now and returns its decision; it changes nothing.
//
// It searches couriers carrying t's size around the pickup, from Options.SearchRadius, doubling up to
// Options.MaxRadius until a search yields an eligible candidate (a search that comes back full is paged
// at the same radius first, excluding who was already looked at). Every courier found is a Candidate:
// excluded (with the first reason that applies, in the order task exclusion, TRANSPORT_MODE,
// UNAVAILABLE, STALE_LOCATION, NO_CAPACITY, NOT_CONNECTED, OTHER_OFFER_OPEN, NO_ROUTE, PICKUP_WINDOW)
// or scored and ranked (engine_score.go). A candidate holding tasks is at the pickup only once it has
// served their stops: its pickup ETA is that work (DecideEnv.Held, engine_held.go) plus the trip from
// where the work ends. The searches leave out the task's excluded couriers but the most recent of those
// who declined it or let its offer expire (exclusions): found again, those are recorded with that reason.
//
// The Outcome is OFFERED with a Winner when someone is eligible; NO_CANDIDATES when nobody was found
// within the maximum radius; UNASSIGNABLE when the pickup window has ended, or when at least one courier
// was late for it and every other was a permanent exclusion of the task (declined, let an offer expire,
// handed it back): nobody found can make it and time only makes it worse; ALL_EXCLUDED otherwise, which
// the Service retries.
//
// When route fails (any error but the end of ctx: the breaker open, Unavailable), every ETA of the
// decision is the local estimate geo.EstimateTravel and the decision says so (Degraded, ETAProvider
// "local-geodesic", DegradationDetail the error's message: degradationDetail). Errors: the courier search's (courier unreachable: the
// task waits), and those of env's functions, wrapped; the context's error when ctx ends.
func (e *Engine) Decide(ctx context.Context, t Task, trigger Trigger, env DecideEnv) (Decision, error) {
	start := time.Now()
	now := env.Now
	d := Decision{TaskID: t.ID, DecideTime: now, Trigger: trigger, Weights: e.opts.Weights}
	if w := t.Pickup.Window; w != nil && !now.Before(w.End) {
		d.Outcome = OutcomeUnassignable
		d.Rationale = fmt.Sprintf("the pickup window ended at %s", w.End.UTC().Format(time.RFC3339))
		d.Elapsed = time.Since(start)
		return d, nil
	}

	taskExcluded, exclude, shown := e.exclusions(&t)

	s := search{e: e, t: &t, env: &env, now: now, taskExcluded: taskExcluded, seen: map[string]bool{}}
	radius := e.opts.SearchRadius
	for n := 1; ; n++ {
		q := e.nearbyQuery(&t, radius, exclude, shown)
		found, err := e.couriers.FindNearby(ctx, q)
		if err != nil {
			return Decision{}, fmt.Errorf("find couriers within %.0f m of the pickup of task %s: %w", radius, t.ID, err)
		}
		fresh, err := s.evaluate(ctx, found)
		if err != nil {
			return Decision{}, err
		}
		d.SearchRadius = radius
		if s.eligible > 0 || n == maxSearches {
			break
		}
		for _, c := range fresh {
			if len(exclude) < MaxExcludeIDs {
				exclude = append(exclude, c.CourierID)
			}
		}
		// A full answer may hide more couriers at this radius: page on before widening.
		if len(found) >= q.Limit && len(fresh) > 0 && len(exclude) < MaxExcludeIDs {
			continue
		}
		if radius >= e.opts.MaxRadius {
			break
		}
		radius = min(radius*2, e.opts.MaxRadius)
	}

	d.Degraded, d.ETAProvider, d.DegradationDetail = s.degraded, s.provider, s.detail
	d.Candidates = rank(s.cands)
	e.conclude(&d, &t, taskExcluded)
	d.Elapsed = time.Since(start)
	return d, nil
}

// exclusions returns t's excluded couriers with their reasons, the ids a nearby search excludes (the
// first MaxExcludeIDs of them), and how many it does not: the most recent of those who declined the
// task or let its offer expire, at most MaxShownExcluded and as many as the search's limit leaves room
// for (maxNearbyLimit beyond Options.Candidates).
func (e *Engine) exclusions(t *Task) (map[string]ExclusionReason, []string, int) {
	taskExcluded := make(map[string]ExclusionReason, len(t.Excluded))
	for _, x := range t.Excluded {
		if _, dup := taskExcluded[x.CourierID]; !dup {
			taskExcluded[x.CourierID] = x.Reason
		}
	}
	room := max(0, min(MaxShownExcluded, maxNearbyLimit-e.opts.Candidates))
	shown := make(map[string]bool, min(room, len(taskExcluded)))
	for i := len(t.Excluded) - 1; i >= 0 && len(shown) < room; i-- {
		switch id := t.Excluded[i].CourierID; taskExcluded[id] {
		case ExcludedDeclined, ExcludedOfferExpired, "":
			shown[id] = true
		}
	}
	exclude := make([]string, 0, min(len(taskExcluded)-len(shown), MaxExcludeIDs))
	seen := make(map[string]bool, len(taskExcluded))
	for _, x := range t.Excluded {
		if shown[x.CourierID] || seen[x.CourierID] {
			continue
		}
		seen[x.CourierID] = true
		if len(exclude) < MaxExcludeIDs {
			exclude = append(exclude, x.CourierID)
		}
	}
	return taskExcluded, exclude, len(shown)
}

// nearbyQuery is the search for couriers for t within radius, excluding exclude, with room for shown
// excluded couriers of the task beyond Options.Candidates.
func (e *Engine) nearbyQuery(t *Task, radius float64, exclude []string, shown int) NearbyQuery {
	return NearbyQuery{
		Center: t.Pickup.Location, Radius: radius, Limit: e.opts.Candidates + shown, Modes: t.Size.Modes(),
		Exclude: slices.Clone(exclude), MaxAge: e.opts.MaxLocationAge,
	}
}

// firstQuery is the first search Decide makes for t.
func (e *Engine) firstQuery(t *Task) NearbyQuery {
	_, exclude, shown := e.exclusions(t)
	return e.nearbyQuery(t, e.opts.SearchRadius, exclude, shown)
}

// over returns a copy of e that asks couriers and routes instead of e's.
func (e *Engine) over(couriers Couriers, routes Routes) *Engine {
	c := *e
	c.couriers, c.routes = couriers, routes
	return &c
}

// search is one decision's state across its searches.
type search struct {
	e            *Engine
	t            *Task
	env          *DecideEnv
	now          time.Time
	taskExcluded map[string]ExclusionReason
	// seen are the couriers already evaluated; cands every candidate so far, eligible counts the
	// eligible ones.
	seen     map[string]bool
	cands    []Candidate
	eligible int
	// degraded, provider and detail say where the ETAs came from; once route failed, every later
	// search uses the local estimate too, so that one decision compares like with like.
	degraded bool
	provider string
	detail   string
}

// evaluate turns the couriers of one search that were not seen before into candidates, appending them to
// s.cands, and returns them.
func (s *search) evaluate(ctx context.Context, found []CourierInfo) ([]Candidate, error) {
	first := len(s.cands)
	s.cands = slices.Grow(s.cands, len(found))
	infos := make([]CourierInfo, 0, len(found)) // parallel to s.cands[first:]
	open := make([]int, 0, len(found))          // indexes into s.cands of candidates not excluded yet
	for _, c := range found {
		if s.seen[c.ID] {
			continue
		}
		s.seen[c.ID] = true
		cand := Candidate{CourierID: c.ID, Mode: c.Mode}
		if c.Fix != nil {
			cand.Location = c.Fix.Location
		}
		cand.Excluded = s.staticExclusion(c)
		if cand.Excluded == "" {
			open = append(open, len(s.cands))
		}
		s.cands = append(s.cands, cand)
		infos = append(infos, c)
	}
	fresh := s.cands[first:]
	if len(open) == 0 {
		return fresh, nil
	}
	info := func(i int) CourierInfo { return infos[i-first] }

	var err error
	if open, err = s.filter(ctx, open, s.env.Connected, false, ExcludedNotConnected, "connected"); err != nil {
		return nil, err
	}
	if open, err = s.filter(ctx, open, s.env.OfferOpen, true, ExcludedOtherOffer, "with an open offer"); err != nil {
		return nil, err
	}
	if len(open) == 0 {
		return fresh, nil
	}

	work, err := s.heldWork(ctx, open, info)
	if err != nil {
		return nil, err
	}
	legs, err := s.legs(ctx, open, info, work)
	if err != nil {
		return nil, err
	}
	var last map[string]time.Time
	if s.env.LastAssigned != nil {
		if last, err = s.env.LastAssigned(ctx, s.ids(open)); err != nil {
			return nil, fmt.Errorf("read the last assignments of the candidates for task %s: %w", s.t.ID, err)
		}
	}
	w := s.t.Pickup.Window
	scores := make([]Score, len(open)) // one allocation for every score of this search
	for k, i := range open {
		leg := legs[i]
		leg.Duration += work[i].busy
		switch {
		case !leg.Found:
			s.cands[i].Excluded = ExcludedNoRoute
			continue
		case w != nil && !s.now.Add(leg.Duration).Before(w.End): // the window's end is exclusive
			s.cands[i].Excluded = ExcludedPickupWindow
		}
		scores[k] = s.e.score(info(i), leg, work[i].busy, idleOf(info(i), last, s.env.LastAssigned != nil, s.now))
		s.cands[i].Score = &scores[k]
		if s.cands[i].Excluded == "" {
			s.eligible++
		}
	}
	return fresh, nil
}

// mayTake reports whether the courier service's answer c leaves c free to take some task: available,
// with a fresh fix and room (staticExclusion's checks that do not depend on the task).
func (e *Engine) mayTake(c CourierInfo) bool { return e.courierExclusion(c) == "" }

// courierExclusion returns why the courier service's answer c excludes c from every task, "" when it
// does not: unavailable, without a fresh fix, or full.
func (e *Engine) courierExclusion(c CourierInfo) ExclusionReason {
	switch {
	case c.Status != CourierAvailable:
		return ExcludedUnavailable
	case c.Fix == nil || c.LocationAge > e.opts.MaxLocationAge:
		return ExcludedStaleLocation
	case c.ActiveTasks >= c.Capacity:
		return ExcludedNoCapacity
	}
	return ""
}

// staticExclusion returns why c is excluded from what the courier service told: "" when it is not.
func (s *search) staticExclusion(c CourierInfo) ExclusionReason {
	if r, ok := s.taskExcluded[c.ID]; ok {
		if r == "" {
			r = ExcludedDeclined
		}
		return r
	}
	if !s.t.Size.Carries(c.Mode) {
		return ExcludedTransportMode
	}
	return s.e.courierExclusion(c)
}

// filter asks f about the candidates at open and excludes with reason those for which f's answer is
// exclude; it returns the candidates still open. A nil f excludes nobody.
func (s *search) filter(ctx context.Context, open []int, f func(context.Context, []string) (map[string]bool, error), exclude bool, reason ExclusionReason, what string) ([]int, error) {
	if f == nil {
		return open, nil
	}
	got, err := f(ctx, s.ids(open))
	if err != nil {
		return nil, fmt.Errorf("read which candidates for task %s are %s: %w", s.t.ID, what, err)
	}
	kept := open[:0]
	for _, i := range open {
		if got[s.cands[i].CourierID] == exclude {
			s.cands[i].Excluded = reason
			continue
		}
		kept = append(kept, i)
	}
	return kept, nil
}

func (s *search) ids(open []int) []string {
	ids := make([]string, len(open))
	for k, i := range open {
		ids[k] = s.cands[i].CourierID
	}
	return ids
}

// legs returns the travel of each open candidate to the pickup from where it will be free (work[i].from),
// indexed like s.cands: from route, one Matrix call per transport mode (in geo.Modes order), or, once
// route has failed in this decision, from geo.EstimateTravel for all of them.
func (s *search) legs(ctx context.Context, open []int, info func(int) CourierInfo, work []heldWork) ([]Leg, error) {
	legs := make([]Leg, len(s.cands))
	pickup := s.t.Pickup.Location
	if !s.degraded {
		err := s.routeLegs(ctx, open, info, work, legs)
		if err == nil {
			return legs, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("pickup ETAs for task %s: %w", s.t.ID, ctx.Err())
		}
		// The error's message, not its chain: dispatchers read the detail, and the chain may carry
		// the transport's words (addresses).
		s.degraded, s.provider, s.detail = true, LocalETAProvider, degradationDetail(err)
		// Candidates of earlier searches were all excluded before scoring, or scored with route's
		// ETAs; rescore none: they are excluded and stay so.
	}
	for _, i := range open {
		dur, dist := geo.EstimateTravel(work[i].from, pickup, info(i).Mode)
		legs[i] = Leg{Duration: dur, Distance: dist, Found: true}
	}
	return legs, nil
}

// routeLegs fills legs from route, one Matrix call per mode.
func (s *search) routeLegs(ctx context.Context, open []int, info func(int) CourierInfo, work []heldWork, legs []Leg) error {
	if s.e.routes == nil {
		return fmt.Errorf("route service not configured")
	}
	for _, mode := range geo.Modes {
		var idx []int
		var origins []geo.LatLng
		for _, i := range open {
			if info(i).Mode == mode {
				idx = append(idx, i)
				origins = append(origins, work[i].from)
			}
		}
		if len(idx) == 0 {
			continue
		}
		got, provider, err := s.e.routes.Matrix(ctx, origins, s.t.Pickup.Location, mode, s.now)
		if err != nil {
			return err
		}
		if len(got) != len(origins) {
			return fmt.Errorf("route answered %d legs for %d origins", len(got), len(origins))
		}
		for k, i := range idx {
			legs[i] = got[k]
		}
		if s.provider == "" {
			s.provider = provider
		}
	}
	return nil
}

// Weights returns the score weights the engine applies.
func (e *Engine) Weights() Weights { return e.opts.Weights }

// degradationDetail is what a decision says of the route failure err that degraded it: the message of
// its domain error (such as "route service unavailable"), or the error itself when it is none.
func degradationDetail(err error) string {
	if apperr.As(err) != nil {
		return apperr.MessageOf(err) // "internal error" for Internal, as a caller would be told
	}
	return err.Error()
}
