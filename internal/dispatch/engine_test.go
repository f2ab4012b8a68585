package dispatch_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
	"lastmile/internal/platform/apperr"
)

var (
	pickup = geo.LatLng{Lat: 52.52, Lng: 13.405}
	now    = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
)

// north returns the point meters north of pickup.
func north(meters float64) geo.LatLng {
	return geo.LatLng{Lat: pickup.Lat + geo.Degrees(meters/geo.EarthRadiusMeters), Lng: pickup.Lng}
}

// courier returns an available, fresh, empty bicycle courier meters north of the pickup.
func courier(id string, meters float64) dispatch.CourierInfo {
	return dispatch.CourierInfo{
		ID: id, Mode: geo.Bicycle, Status: dispatch.CourierAvailable, AvailableNow: true,
		Fix: &dispatch.Fix{Location: north(meters), Time: now.Add(-10 * time.Second)}, LocationAge: 10 * time.Second,
		Capacity: 2,
	}
}

// fakeCouriers answers FindNearby from a list as the courier service does: within the radius, of the
// modes asked, not excluded, nearest first (then by id), at most Limit. With raw set it returns everyone
// within the radius, whatever their mode, so that the engine's own checks can be seen.
type fakeCouriers struct {
	dispatch.Couriers
	all     []dispatch.CourierInfo
	raw     bool
	err     error
	queries []dispatch.NearbyQuery
}

func (f *fakeCouriers) FindNearby(_ context.Context, q dispatch.NearbyQuery) ([]dispatch.CourierInfo, error) {
	f.queries = append(f.queries, q)
	if f.err != nil {
		return nil, f.err
	}
	var out []dispatch.CourierInfo
	for _, c := range f.all {
		c.Distance = geo.Distance(q.Center, c.Fix.Location)
		if c.Distance > q.Radius || slices.Contains(q.Exclude, c.ID) || (!f.raw && !slices.Contains(q.Modes, c.Mode)) {
			continue
		}
		out = append(out, c)
	}
	slices.SortStableFunc(out, func(a, b dispatch.CourierInfo) int {
		return cmp.Or(cmp.Compare(a.Distance, b.Distance), cmp.Compare(a.ID, b.ID))
	})
	return out[:min(len(out), q.Limit)], nil
}

// fakeRoutes answers Matrix with each origin's travel at a fixed speed of 5 m/s over the straight line,
// or with err; a destination-less origin in noRoute has no route.
type fakeRoutes struct {
	err     error
	noRoute map[geo.LatLng]bool
	calls   []geo.TransportMode
}

func (f *fakeRoutes) Matrix(_ context.Context, origins []geo.LatLng, dest geo.LatLng, mode geo.TransportMode, _ time.Time) ([]dispatch.Leg, string, error) {
	f.calls = append(f.calls, mode)
	if f.err != nil {
		return nil, "", f.err
	}
	legs := make([]dispatch.Leg, len(origins))
	for i, o := range origins {
		if f.noRoute[o] {
			continue
		}
		d := geo.Distance(o, dest)
		legs[i] = dispatch.Leg{Found: true, Distance: d, Duration: time.Duration(math.Round(d/5)) * time.Second}
	}
	return legs, "osrm", nil
}

func newEngine(c *fakeCouriers, r *fakeRoutes) *dispatch.Engine {
	return dispatch.NewEngine(c, r, dispatch.Options{})
}

func newTask() dispatch.Task {
	return dispatch.Task{ID: "task-1", State: dispatch.StatePending, Size: dispatch.SizeSmall, Priority: dispatch.PriorityNormal,
		Pickup: dispatch.Stop{Location: pickup}, Dropoff: dispatch.Stop{Location: north(-2000)}}
}

func decide(t *testing.T, e *dispatch.Engine, task dispatch.Task, env dispatch.DecideEnv) dispatch.Decision {
	t.Helper()
	if env.Now.IsZero() {
		env.Now = now
	}
	d, err := e.Decide(t.Context(), task, dispatch.TriggerAutomatic, env)
	if err != nil {
		t.Fatalf("Decide = %v", err)
	}
	return d
}

// summary renders candidates as "id:rank:reason" for exact comparisons.
func summary(d dispatch.Decision) []string {
	var out []string
	for _, c := range d.Candidates {
		out = append(out, fmt.Sprintf("%s:%d:%s", c.CourierID, c.Rank, c.Excluded))
	}
	return out
}

func TestDecideRanksByETA(t *testing.T) {
	c := &fakeCouriers{all: []dispatch.CourierInfo{courier("far", 2000), courier("near", 500), courier("mid", 1000)}}
	r := &fakeRoutes{}
	d := decide(t, newEngine(c, r), newTask(), dispatch.DecideEnv{})
	if got, want := summary(d), []string{"near:1:", "mid:2:", "far:3:"}; !slices.Equal(got, want) {
		t.Fatalf("candidates = %v, want %v", got, want)
	}
	if d.Outcome != dispatch.OutcomeOffered || d.Winner != "near" || d.TaskID != "task-1" || d.Trigger != dispatch.TriggerAutomatic ||
		!d.DecideTime.Equal(now) || d.Degraded || d.ETAProvider != "osrm" || d.DegradationDetail != "" ||
		d.SearchRadius != 3000 || d.Weights != dispatch.DefaultWeights {
		t.Errorf("decision = %+v", d)
	}
	if want := "earliest ETA to pickup (1m40s), 0 of 2 tasks held, best of 3 eligible"; d.Rationale != want {
		t.Errorf("Rationale = %q, want %q", d.Rationale, want)
	}
	s := d.Candidates[0].Score
	// 500 m at 5 m/s: 100 s. ETA = 1 × 600/(600+100); distance = 0.25 × 3000/3500; load = 0.5 × 2/2;
	// fairness = 0.2 × 1 (holds no task, idle time unknown).
	wantETA, wantDist := 600.0/700, 0.25*3000/(3000+s.PickupDistance)
	if s.PickupETA != 100*time.Second || s.ETAScore != wantETA || s.DistanceScore != wantDist || s.LoadScore != 0.5 ||
		s.FairnessScore != 0.2 || s.Idle != dispatch.FairnessHorizon || s.Total != wantETA+wantDist+0.5+0.2 ||
		s.ActiveTasks != 0 || s.Capacity != 2 {
		t.Errorf("winner's score = %+v", s)
	}
	if d.Candidates[0].Mode != geo.Bicycle || d.Candidates[0].Location != north(500) {
		t.Errorf("winner = %+v", d.Candidates[0])
	}
	if !slices.Equal(r.calls, []geo.TransportMode{geo.Bicycle}) {
		t.Errorf("Matrix calls = %v, want one for bicycle", r.calls)
	}
	q := c.queries[0]
	if len(c.queries) != 1 || q.Center != pickup || q.Radius != 3000 || q.Limit != dispatch.DefaultCandidates ||
		!slices.Equal(q.Modes, geo.Modes) || len(q.Exclude) != 0 || q.MaxAge != dispatch.DefaultMaxLocationAge {
		t.Errorf("queries = %+v", c.queries)
	}
}

func TestDecideLoadAndFairnessOutweighSmallETAGap(t *testing.T) {
	busy := courier("busy", 500)
	busy.ActiveTasks = 1
	c := &fakeCouriers{all: []dispatch.CourierInfo{busy, courier("free", 2000)}}
	last := func(context.Context, []string) (map[string]time.Time, error) {
		return map[string]time.Time{"busy": now.Add(-time.Minute), "free": now.Add(-15 * time.Minute)}, nil
	}
	// busy holds a parcel on board for a dropoff where it is: 2 minutes of work.
	held := func(_ context.Context, ids []string) (map[string][]dispatch.Task, error) {
		if !slices.Equal(ids, []string{"busy"}) {
			t.Errorf("Held asked about %v, want busy only", ids)
		}
		return map[string][]dispatch.Task{"busy": {{ID: "other", State: dispatch.StatePickedUp, Dropoff: dispatch.Stop{Location: north(500)}}}}, nil
	}
	d := decide(t, newEngine(c, &fakeRoutes{}), newTask(), dispatch.DecideEnv{LastAssigned: last, Held: held})
	if got, want := summary(d), []string{"free:1:", "busy:2:"}; !slices.Equal(got, want) {
		t.Fatalf("candidates = %v, want %v", got, want)
	}
	if f, b := d.Candidates[0].Score, d.Candidates[1].Score; f.Idle != 15*time.Minute || f.FairnessScore != 0.1 || f.HeldWork != 0 ||
		b.Idle != time.Minute || b.LoadScore != 0.25 || b.HeldWork != dispatch.StopTime || b.PickupETA != dispatch.StopTime+100*time.Second {
		t.Errorf("scores = %+v, %+v", f, b)
	}
	if want := "ETA to pickup 6m40s, over busy's earlier 3m40s for more free capacity and longer idle, 0 of 2 tasks held, best of 2 eligible"; d.Rationale != want {
		t.Errorf("Rationale = %q, want %q", d.Rationale, want)
	}
}

// TestDecideHeldWork: a busy courier's ETA is the time to finish the stops it holds, served nearest
// first and waiting for a pickup window to open, then the trip from its last stop; without env.Held each
// held task counts for HeldTaskTime from where the courier is.
func TestDecideHeldWork(t *testing.T) {
	busy := courier("busy", 500)
	busy.ActiveTasks, busy.Capacity = 2, 3
	c := &fakeCouriers{all: []dispatch.CourierInfo{busy}}
	r := &fakeRoutes{}
	d := decide(t, newEngine(c, r), newTask(), dispatch.DecideEnv{})
	if s := d.Candidates[0].Score; s.HeldWork != 2*dispatch.HeldTaskTime || s.PickupETA != 2*dispatch.HeldTaskTime+100*time.Second ||
		d.Rationale != "earliest ETA to pickup (21m40s), 2 of 3 tasks held (free in 20m0s)" {
		t.Errorf("without Held: score %+v, rationale %q", s, d.Rationale)
	}

	// It holds A (assigned: pickup 1 km further north, ready in 10 minutes, dropoff 2 km further) and B
	// (on board, dropoff 200 m south of it). Nearest first: B's dropoff, A's pickup (waiting for it to be
	// ready), A's dropoff; then the trip from there.
	a := dispatch.Task{ID: "a", State: dispatch.StateAssigned,
		Pickup:  dispatch.Stop{Location: north(1500), Window: &dispatch.Window{Start: now.Add(10 * time.Minute), End: now.Add(time.Hour)}},
		Dropoff: dispatch.Stop{Location: north(3500)}}
	b := dispatch.Task{ID: "b", State: dispatch.StatePickedUp, Dropoff: dispatch.Stop{Location: north(300)}}
	held := func(context.Context, []string) (map[string][]dispatch.Task, error) {
		return map[string][]dispatch.Task{"busy": {a, b}}, nil
	}
	d = decide(t, newEngine(c, r), newTask(), dispatch.DecideEnv{Held: held})
	toB, _ := geo.EstimateTravel(north(500), north(300), geo.Bicycle)
	toA, _ := geo.EstimateTravel(north(300), north(1500), geo.Bicycle)
	aTrip, _ := geo.EstimateTravel(north(1500), north(3500), geo.Bicycle)
	arriveA := max(toB+dispatch.StopTime+toA, 10*time.Minute)
	work := arriveA + dispatch.StopTime + aTrip + dispatch.StopTime
	if toB+dispatch.StopTime+toA >= 10*time.Minute {
		t.Fatalf("the test wants the courier early at A's pickup")
	}
	// The fake route answers 5 m/s from A's dropoff, 3.5 km from the pickup: 700 s.
	if s := d.Candidates[0].Score; s.HeldWork != work || s.PickupETA != work+700*time.Second || s.PickupDistance != geo.Distance(north(3500), pickup) {
		t.Errorf("with Held: score %+v, want held work %v and ETA %v", s, work, work+700*time.Second)
	}
	if got := d.Candidates[0].Location; got != north(500) {
		t.Errorf("Location = %v, want the courier's fix", got)
	}

	boom := errors.New("store down")
	_, err := newEngine(c, r).Decide(t.Context(), newTask(), dispatch.TriggerAutomatic, dispatch.DecideEnv{Now: now,
		Held: func(context.Context, []string) (map[string][]dispatch.Task, error) { return nil, boom }})
	if !errors.Is(err, boom) {
		t.Errorf("Decide with Held failing = %v, want %v", err, boom)
	}
}

func TestDecideExclusions(t *testing.T) {
	walker := courier("walker", 100)
	walker.Mode = geo.Walking
	offline := courier("offline", 200)
	offline.Status = dispatch.CourierOffline
	onBreak := courier("break", 250)
	onBreak.Status = dispatch.CourierOnBreak
	stale := courier("stale", 300)
	stale.LocationAge = dispatch.DefaultMaxLocationAge + time.Second
	full := courier("full", 400)
	full.ActiveTasks = 2
	all := []dispatch.CourierInfo{
		walker, offline, onBreak, stale, full,
		courier("declined", 50), courier("expired", 60), courier("offering", 500), courier("gone", 600),
		courier("noroute", 700), courier("ok", 2500),
	}
	c := &fakeCouriers{all: all, raw: true}
	r := &fakeRoutes{noRoute: map[geo.LatLng]bool{north(700): true}}
	task := newTask()
	task.Size = dispatch.SizeMedium
	task.Excluded = []dispatch.Exclusion{{CourierID: "declined", Reason: dispatch.ExcludedDeclined}, {CourierID: "expired", Reason: dispatch.ExcludedOfferExpired}}
	var offerAsked, connAsked []string
	env := dispatch.DecideEnv{
		OfferOpen: func(_ context.Context, ids []string) (map[string]bool, error) {
			offerAsked = ids
			return map[string]bool{"offering": true}, nil
		},
		Connected: func(_ context.Context, ids []string) (map[string]bool, error) {
			connAsked = ids
			m := map[string]bool{}
			for _, id := range ids {
				m[id] = id != "gone"
			}
			return m, nil
		},
	}
	d := decide(t, newEngine(c, r), task, env)
	want := []string{
		"ok:1:", "declined:0:declined", "expired:0:offer_expired",
		"walker:0:transport_mode", "offline:0:unavailable", "break:0:unavailable", "stale:0:stale_location",
		"full:0:no_capacity", "offering:0:other_offer_open", "gone:0:not_connected", "noroute:0:no_route",
	}
	if got := summary(d); !slices.Equal(got, want) {
		t.Fatalf("candidates = %v, want %v", got, want)
	}
	// The couriers who declined or let the offer expire are searched for, with room for them.
	if q := c.queries[0]; len(q.Exclude) != 0 || q.Limit != dispatch.DefaultCandidates+2 {
		t.Errorf("Exclude = %v, limit %d; want none, %d", q.Exclude, q.Limit, dispatch.DefaultCandidates+2)
	}
	if want := []string{"offering", "gone", "noroute", "ok"}; !slices.Equal(connAsked, want) {
		t.Errorf("Connected asked about %v, want %v", connAsked, want)
	}
	if want := []string{"offering", "noroute", "ok"}; !slices.Equal(offerAsked, want) {
		t.Errorf("OfferOpen asked about %v, want %v", offerAsked, want)
	}
	for _, cand := range d.Candidates[1:] {
		if cand.Score != nil {
			t.Errorf("excluded %s has a score", cand.CourierID)
		}
	}
	if d.Winner != "ok" || d.Outcome != dispatch.OutcomeOffered {
		t.Errorf("winner %q, outcome %v", d.Winner, d.Outcome)
	}
}

// TestDecideDeclinerNeverWins: the most recent MaxShownExcluded couriers who declined the task or let its
// offer expire are searched for, and recorded as such when found, never ranked; the others are excluded
// from the search, so a decision records a bounded number of them.
func TestDecideDeclinerNeverWins(t *testing.T) {
	task := newTask()
	for i := range dispatch.MaxExcludeIDs {
		task.Excluded = append(task.Excluded, dispatch.Exclusion{CourierID: fmt.Sprintf("old-%03d", i), Reason: dispatch.ExcludedOfferExpired})
	}
	task.Excluded = append(task.Excluded, dispatch.Exclusion{CourierID: "decliner", Reason: dispatch.ExcludedDeclined})
	c := &fakeCouriers{all: []dispatch.CourierInfo{courier("decliner", 100), courier("other", 2000), courier("old-007", 50), courier("old-090", 60)}}
	d := decide(t, newEngine(c, &fakeRoutes{}), task, dispatch.DecideEnv{})
	if got, want := summary(d), []string{"other:1:", "old-090:0:offer_expired", "decliner:0:declined"}; !slices.Equal(got, want) {
		t.Fatalf("candidates = %v, want %v", got, want)
	}
	// The decliner and old-081 to old-099 are searched for; the older ones are not.
	shown := dispatch.MaxShownExcluded - 1
	if q := c.queries[0]; len(q.Exclude) != dispatch.MaxExcludeIDs-shown || q.Exclude[0] != "old-000" || q.Exclude[len(q.Exclude)-1] != fmt.Sprintf("old-%03d", dispatch.MaxExcludeIDs-shown-1) ||
		q.Limit != dispatch.DefaultCandidates+dispatch.MaxShownExcluded {
		t.Errorf("Exclude = %d ids %v…, limit %d; want the task's first %d, limit %d", len(q.Exclude), q.Exclude[:2], q.Limit,
			dispatch.MaxExcludeIDs-shown, dispatch.DefaultCandidates+dispatch.MaxShownExcluded)
	}
	if d.Winner != "other" {
		t.Errorf("Winner = %q, want other", d.Winner)
	}

	// Only the decliner near: everyone excluded, retried.
	c = &fakeCouriers{all: []dispatch.CourierInfo{courier("decliner", 100)}}
	d = decide(t, newEngine(c, &fakeRoutes{}), task, dispatch.DecideEnv{})
	if d.Outcome != dispatch.OutcomeAllExcluded || d.Winner != "" || d.SearchRadius != 15000 ||
		d.Rationale != "all 1 couriers within 15 km excluded (1 declined); retrying" {
		t.Errorf("decision = %+v", d)
	}
	if got := len(c.queries); got != 4 {
		t.Errorf("%d searches, want 4 (3, 6, 12, 15 km)", got)
	}
}

func TestDecideWidensRadius(t *testing.T) {
	c := &fakeCouriers{all: []dispatch.CourierInfo{courier("far", 10_000), courier("farther", 11_000)}}
	d := decide(t, newEngine(c, &fakeRoutes{}), newTask(), dispatch.DecideEnv{})
	var radii []float64
	for _, q := range c.queries {
		radii = append(radii, q.Radius)
	}
	if !slices.Equal(radii, []float64{3000, 6000, 12000}) {
		t.Errorf("radii = %v, want 3000, 6000, 12000", radii)
	}
	if got, want := summary(d), []string{"far:1:", "farther:2:"}; !slices.Equal(got, want) || d.SearchRadius != 12000 {
		t.Errorf("candidates = %v radius %v, want %v at 12000", got, d.SearchRadius, want)
	}

	// Couriers excluded at a smaller radius are excluded from the wider searches and kept.
	busy := courier("busy", 1000)
	busy.ActiveTasks = 2
	c = &fakeCouriers{all: []dispatch.CourierInfo{busy, courier("far", 5000)}}
	d = decide(t, newEngine(c, &fakeRoutes{}), newTask(), dispatch.DecideEnv{})
	if got, want := summary(d), []string{"far:1:", "busy:0:no_capacity"}; !slices.Equal(got, want) || d.SearchRadius != 6000 {
		t.Errorf("candidates = %v radius %v, want %v at 6000", got, d.SearchRadius, want)
	}
	if len(c.queries) != 2 || !slices.Equal(c.queries[1].Exclude, []string{"busy"}) {
		t.Errorf("queries = %+v, want the second to exclude busy", c.queries)
	}

	// Nobody within the maximum radius.
	c = &fakeCouriers{all: []dispatch.CourierInfo{courier("away", 20_000)}}
	d = decide(t, newEngine(c, &fakeRoutes{}), newTask(), dispatch.DecideEnv{})
	if d.Outcome != dispatch.OutcomeNoCandidates || d.SearchRadius != 15000 || len(d.Candidates) != 0 ||
		d.Rationale != "no available courier within 15 km; retrying" {
		t.Errorf("decision = %+v", d)
	}
}

// TestDecidePagesFullAnswer: when a search comes back full of excluded couriers, the engine asks again at
// the same radius without them before widening.
func TestDecidePagesFullAnswer(t *testing.T) {
	var all []dispatch.CourierInfo
	for i := range 3 {
		b := courier(fmt.Sprintf("busy-%d", i), float64(100+i*100))
		b.ActiveTasks = 2
		all = append(all, b)
	}
	all = append(all, courier("free", 1000))
	c := &fakeCouriers{all: all}
	e := dispatch.NewEngine(c, &fakeRoutes{}, dispatch.Options{Candidates: 3})
	d := decide(t, e, newTask(), dispatch.DecideEnv{})
	if d.Winner != "free" || d.SearchRadius != 3000 || len(c.queries) != 2 ||
		!slices.Equal(c.queries[1].Exclude, []string{"busy-0", "busy-1", "busy-2"}) {
		t.Errorf("winner %q radius %v queries %+v", d.Winner, d.SearchRadius, c.queries)
	}
}

func TestDecideRouteDownIsDegraded(t *testing.T) {
	scooter := courier("scooter", 1200)
	scooter.Mode = geo.Scooter
	c := &fakeCouriers{all: []dispatch.CourierInfo{courier("bike", 1000), scooter}}
	// The cause, with the transport's words, stays out of the decision, which dispatchers read.
	r := &fakeRoutes{err: fmt.Errorf("compute matrix: %w", apperr.Wrap(apperr.Unavailable,
		errors.New("rpc error: code = Unavailable desc = dial tcp 10.0.0.7:9090: connect: connection refused"), "route service unavailable"))}
	d := decide(t, newEngine(c, r), newTask(), dispatch.DecideEnv{})
	if !d.Degraded || d.ETAProvider != dispatch.LocalETAProvider || d.DegradationDetail != "route service unavailable" {
		t.Errorf("degraded %v provider %q detail %q", d.Degraded, d.ETAProvider, d.DegradationDetail)
	}
	bikeETA, bikeDist := geo.EstimateTravel(north(1000), pickup, geo.Bicycle)
	scootETA, _ := geo.EstimateTravel(north(1200), pickup, geo.Scooter)
	if got, want := summary(d), []string{"scooter:1:", "bike:2:"}; !slices.Equal(got, want) {
		t.Fatalf("candidates = %v, want %v (scooter %v, bike %v)", got, want, scootETA, bikeETA)
	}
	if s := d.Candidates[1].Score; s.PickupETA != bikeETA || s.PickupDistance != bikeDist {
		t.Errorf("bike score = %+v, want %v, %v m", s, bikeETA, bikeDist)
	}
	if d.Outcome != dispatch.OutcomeOffered || d.Winner != "scooter" ||
		d.Rationale != fmt.Sprintf("earliest ETA to pickup (%s), 0 of 2 tasks held, best of 2 eligible; ETAs estimated locally (route unavailable)", scootETA) {
		t.Errorf("outcome %v winner %q rationale %q", d.Outcome, d.Winner, d.Rationale)
	}
	if !slices.Equal(r.calls, []geo.TransportMode{geo.Bicycle}) {
		t.Errorf("Matrix calls = %v, want bicycle only (no retry of a failed route)", r.calls)
	}

	// The context's end is not a degradation.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := newEngine(c, r).Decide(ctx, newTask(), dispatch.TriggerAutomatic, dispatch.DecideEnv{Now: now}); !errors.Is(err, context.Canceled) {
		t.Errorf("Decide with an ended context = %v, want context.Canceled", err)
	}
}

func TestDecideTiesAreDeterministic(t *testing.T) {
	for _, order := range [][]string{{"b", "a", "c"}, {"c", "b", "a"}, {"a", "c", "b"}} {
		var all []dispatch.CourierInfo
		for _, id := range order {
			all = append(all, courier(id, 800))
		}
		// The fake sorts equal distances by id; shuffle that away.
		c := &fakeCouriers{all: all, raw: true}
		d := decide(t, newEngine(c, &fakeRoutes{}), newTask(), dispatch.DecideEnv{})
		if got, want := summary(d), []string{"a:1:", "b:2:", "c:3:"}; !slices.Equal(got, want) {
			t.Errorf("order %v: candidates = %v, want %v", order, got, want)
		}
	}
}

func TestDecidePickupWindow(t *testing.T) {
	task := newTask()
	// 600 m at 5 m/s is 2 minutes; 2000 m is 6m40s.
	task.Pickup.Window = &dispatch.Window{Start: now.Add(-time.Hour), End: now.Add(5 * time.Minute)}
	// 1500 m is 5 minutes: at the window's end, which is exclusive.
	c := &fakeCouriers{all: []dispatch.CourierInfo{courier("late", 2000), courier("ontime", 600), courier("edge", 1500)}}
	d := decide(t, newEngine(c, &fakeRoutes{}), task, dispatch.DecideEnv{})
	if got, want := summary(d), []string{"ontime:1:", "edge:0:pickup_window", "late:0:pickup_window"}; !slices.Equal(got, want) {
		t.Fatalf("candidates = %v, want %v", got, want)
	}
	if s := d.Candidates[2].Score; s == nil || s.PickupETA != 400*time.Second {
		t.Errorf("late courier's score = %+v, want its ETA 6m40s recorded", s)
	}

	// Nobody can make it: unassignable, after searching to the maximum radius.
	c = &fakeCouriers{all: []dispatch.CourierInfo{courier("late", 2000)}}
	d = decide(t, newEngine(c, &fakeRoutes{}), task, dispatch.DecideEnv{})
	if d.Outcome != dispatch.OutcomeUnassignable || d.Winner != "" || d.SearchRadius != 15000 ||
		d.Rationale != "no courier within 15 km can reach the pickup before its window closes at 2026-11-30T12:05:00Z (1 pickup_window)" {
		t.Errorf("decision = %+v", d)
	}

	// A late courier and a busy one: the busy one may free up; retried.
	busy := courier("busy", 100)
	busy.ActiveTasks = 2
	c = &fakeCouriers{all: []dispatch.CourierInfo{courier("late", 2000), busy}}
	d = decide(t, newEngine(c, &fakeRoutes{}), task, dispatch.DecideEnv{})
	if d.Outcome != dispatch.OutcomeAllExcluded ||
		d.Rationale != "all 2 couriers within 15 km excluded (1 no_capacity, 1 pickup_window); retrying" {
		t.Errorf("decision = %+v", d)
	}

	// The window already ended: unassignable without a search.
	c = &fakeCouriers{all: []dispatch.CourierInfo{courier("ontime", 600)}}
	d = decide(t, newEngine(c, &fakeRoutes{}), task, dispatch.DecideEnv{Now: now.Add(5 * time.Minute)})
	if d.Outcome != dispatch.OutcomeUnassignable || len(c.queries) != 0 || d.Rationale != "the pickup window ended at 2026-11-30T12:05:00Z" {
		t.Errorf("decision = %+v, %d searches", d, len(c.queries))
	}
}

func TestDecideErrors(t *testing.T) {
	c := &fakeCouriers{err: apperr.Errorf(apperr.Unavailable, "courier service unavailable")}
	_, err := newEngine(c, &fakeRoutes{}).Decide(t.Context(), newTask(), dispatch.TriggerRetry, dispatch.DecideEnv{Now: now})
	if apperr.CodeOf(err) != apperr.Unavailable {
		t.Errorf("Decide with courier down = %v, want Unavailable", err)
	}
	boom := errors.New("store down")
	c = &fakeCouriers{all: []dispatch.CourierInfo{courier("a", 100)}}
	_, err = newEngine(c, &fakeRoutes{}).Decide(t.Context(), newTask(), dispatch.TriggerRetry, dispatch.DecideEnv{Now: now,
		OfferOpen: func(context.Context, []string) (map[string]bool, error) { return nil, boom }})
	if !errors.Is(err, boom) {
		t.Errorf("Decide with OfferOpen failing = %v, want %v", err, boom)
	}
}

// staticCouriers answers every search with the same couriers.
type staticCouriers struct {
	dispatch.Couriers
	found []dispatch.CourierInfo
}

func (s staticCouriers) FindNearby(context.Context, dispatch.NearbyQuery) ([]dispatch.CourierInfo, error) {
	return s.found, nil
}

// BenchmarkDecide measures the engine alone: a search answering the default 20 couriers of mixed modes,
// in-memory ports (no gRPC), every candidate connected, eligible and scored.
func BenchmarkDecide(b *testing.B) {
	var found []dispatch.CourierInfo
	for i := range dispatch.DefaultCandidates {
		c := courier(fmt.Sprintf("c%03d", i), float64(100*i))
		c.Mode = geo.Modes[i%len(geo.Modes)]
		found = append(found, c)
	}
	e := dispatch.NewEngine(staticCouriers{found: found}, &fakeRoutes{}, dispatch.Options{})
	all := func(_ context.Context, ids []string) (map[string]bool, error) {
		m := make(map[string]bool, len(ids))
		for _, id := range ids {
			m[id] = true
		}
		return m, nil
	}
	none := func(context.Context, []string) (map[string]bool, error) { return map[string]bool{}, nil }
	env := dispatch.DecideEnv{Now: now, OfferOpen: none, Connected: all}
	task := newTask()
	b.ReportAllocs()
	for b.Loop() {
		d, err := e.Decide(b.Context(), task, dispatch.TriggerAutomatic, env)
		if err != nil || d.Winner == "" || len(d.Eligible()) != dispatch.DefaultCandidates {
			b.Fatalf("Decide = %d eligible, winner %q, %v", len(d.Eligible()), d.Winner, err)
		}
	}
}
