package scenario

import (
	"cmp"
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/geo"
)

// Policy chooses couriers for tasks in a run. The simulation makes the offers: it offers the task to the
// first courier of the choice still able to take it, to the next one after a decline or an expiry, and
// asks the policy again when the choice is used up.
type Policy interface {
	// Name labels the policy in reports.
	Name() string
	// Choose returns the couriers to offer task id to, best first, and the decision's outcome; an empty
	// choice with dispatch.OutcomeUnassignable ends the task, any other empty choice is retried after a
	// back-off.
	Choose(ctx context.Context, r *Run, taskID string, trigger dispatch.Trigger) (Choice, error)
	// Takes reports whether the courier may be offered one more task (beyond having no open offer and
	// not being excluded from the task, which the simulation checks).
	Takes(c CourierView) bool
}

// Choice is a policy's answer for one task.
type Choice struct {
	Couriers []string
	Outcome  dispatch.Outcome
	// Elapsed is the wall-clock time the policy took, for the decision-time percentiles; never logged.
	Elapsed time.Duration
	// Log is the decision as the log shows it (no wall-clock timings).
	Log string
}

// CourierView is what a policy may read of a simulated courier.
type CourierView struct {
	ID       string
	Mode     geo.TransportMode
	Capacity int
	// Active is how many tasks the courier holds.
	Active int
	// Location is where the courier is now.
	Location geo.LatLng
	// OfferOpen is true while the courier answers an offer.
	OfferOpen bool
	// LastAssigned is when the courier last accepted a task; zero when never.
	LastAssigned time.Time
}

// Run is one simulation in progress; policies read it through its methods.
type Run struct {
	ctx      context.Context
	cfg      Config
	rng      *rand.Rand // courier behaviour
	now      time.Time
	events   eventQueue
	seq      int
	couriers []*simCourier // by id
	byID     map[string]*simCourier
	tasks    map[string]*simTask
	order    []*simTask // in creation order
	policy   Policy
	log      io.Writer
	hash     hash.Hash

	decisions []time.Duration
	km        float64
}

type simCourier struct {
	spec         courierSpec
	pos          geo.LatLng // where the current leg started, or where the courier is when not moving
	leg          *leg
	held         []*simTask
	offer        *simTask
	lastAssigned time.Time
	busy         bool // travelling to or serving a stop
}

// leg is a courier's trip to a stop.
type leg struct {
	from, to       geo.LatLng
	depart, arrive time.Time
	task           *simTask
	pickup         bool
}

type simTask struct {
	spec       taskSpec
	task       dispatch.Task
	state      dispatch.State
	courier    *simCourier
	choice     []string
	next       int // index into choice of the next courier to try
	searches   int
	due        int // sequence of the pending due event; older ones are stale
	offerTo    *simCourier
	offerSeq   int
	firstOffer time.Time
	pickedUp   bool
	delivered  time.Time
}

// Now returns the simulated time.
func (r *Run) Now() time.Time { return r.now }

// Task returns the dispatch view of a task: pickup, dropoff, size, exclusions.
func (r *Run) Task(id string) dispatch.Task { return r.tasks[id].task.Clone() }

// Couriers returns every courier as it is now, in id order.
func (r *Run) Couriers() []CourierView {
	out := make([]CourierView, len(r.couriers))
	for i, c := range r.couriers {
		out[i] = r.view(c)
	}
	return out
}

// Courier returns one courier as it is now; ok is false when there is none.
func (r *Run) Courier(id string) (CourierView, bool) {
	c, ok := r.byID[id]
	if !ok {
		return CourierView{}, false
	}
	return r.view(c), true
}

// held returns the tasks each of ids holds, as dispatch's store would.
func (r *Run) held(ids []string) map[string][]dispatch.Task {
	m := make(map[string][]dispatch.Task, len(ids))
	for _, id := range ids {
		c := r.byID[id]
		if c == nil {
			continue
		}
		for _, t := range c.held {
			m[id] = append(m[id], t.task)
		}
	}
	return m
}

func (r *Run) view(c *simCourier) CourierView {
	return CourierView{
		ID: c.spec.id, Mode: c.spec.mode, Capacity: c.spec.capacity, Active: len(c.held),
		Location: c.location(r.now), OfferOpen: c.offer != nil, LastAssigned: c.lastAssigned,
	}
}

// location returns where c is at now: along its leg (a straight line at a constant pace) or at rest.
func (c *simCourier) location(now time.Time) geo.LatLng {
	l := c.leg
	if l == nil || !now.Before(l.arrive) {
		if l != nil {
			return l.to
		}
		return c.pos
	}
	if !now.After(l.depart) {
		return l.from
	}
	f := float64(now.Sub(l.depart)) / float64(l.arrive.Sub(l.depart))
	return geo.LatLng{Lat: l.from.Lat + f*(l.to.Lat-l.from.Lat), Lng: l.from.Lng + f*(l.to.Lng-l.from.Lng)}
}

// Result is what one run measured.
type Result struct {
	Policy string
	Load   string
	Seed   uint64
	// Tasks created, Delivered, OnTime (delivered within the promise), Unassignable.
	Tasks, Delivered, OnTime, Unassignable int
	// Offers made, Declined, Expired.
	Offers, Declined, Expired int
	// CourierKM is the distance every courier travelled; CourierHours the couriers' time on shift (from
	// the start to the last delivery or the end of arrivals, whichever is later).
	CourierKM, CourierHours float64
	// FirstOffer is each offered task's time from creation to its first offer, in creation order.
	FirstOffer []time.Duration
	// Decisions are the wall-clock times the policy took per choice (not part of the log).
	Decisions []time.Duration
	// LogHash is the SHA-256 of the run's log, hex.
	LogHash string
}

// Simulate runs policy in the world of cfg and returns what it measured. The log, when not nil, receives
// every line the hash covers.
func Simulate(ctx context.Context, cfg Config, policy Policy, log io.Writer) (Result, error) {
	cfg.defaults()
	w := newWorld(cfg)
	r := &Run{
		ctx: ctx, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 2)), now: cfg.Start, byID: map[string]*simCourier{},
		tasks: map[string]*simTask{}, policy: policy, hash: sha256.New(),
	}
	r.log = r.hash
	if log != nil {
		r.log = io.MultiWriter(r.hash, log)
	}
	for _, s := range w.couriers {
		c := &simCourier{spec: s, pos: s.start}
		r.couriers = append(r.couriers, c)
		r.byID[s.id] = c
	}
	for _, s := range w.tasks {
		t := &simTask{spec: s, state: dispatch.StatePending, task: dispatch.Task{
			ID: s.id, State: dispatch.StatePending, Size: s.size, Priority: dispatch.PriorityNormal,
			Pickup:     dispatch.Stop{Location: s.pickup, Window: &dispatch.Window{Start: s.ready, End: s.windowEnd}},
			Dropoff:    dispatch.Stop{Location: s.dropoff, Window: &dispatch.Window{Start: s.ready, End: s.onTimeEdge}},
			CreateTime: s.create, SearchStart: s.create,
		}}
		r.tasks[s.id] = t
		r.order = append(r.order, t)
		r.at(s.create, func() error { return r.arrive(t) })
	}
	for r.events.Len() > 0 {
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		ev := heap.Pop(&r.events).(*event)
		r.now = ev.at
		if err := ev.fn(); err != nil {
			return Result{}, fmt.Errorf("%s at %s: %w", policy.Name(), r.clock(), err)
		}
	}
	return r.result(w), nil
}

func (r *Run) result(w world) Result {
	res := Result{Policy: r.policy.Name(), Load: r.cfg.Load.Name, Seed: r.cfg.Seed, Tasks: len(r.order), CourierKM: r.km / 1000, Decisions: r.decisions}
	last := r.cfg.Start.Add(time.Duration(r.cfg.Load.Hours * float64(time.Hour)))
	for _, t := range r.order {
		switch t.state {
		case dispatch.StateDelivered:
			res.Delivered++
			if !t.delivered.After(t.spec.onTimeEdge) {
				res.OnTime++
			}
			if t.delivered.After(last) {
				last = t.delivered
			}
		case dispatch.StateUnassignable:
			res.Unassignable++
		}
		if !t.firstOffer.IsZero() {
			res.FirstOffer = append(res.FirstOffer, t.firstOffer.Sub(t.spec.create))
		}
		for _, o := range t.task.Excluded {
			switch o.Reason {
			case dispatch.ExcludedDeclined:
				res.Declined++
			case dispatch.ExcludedOfferExpired:
				res.Expired++
			}
		}
		res.Offers += t.offerSeq
	}
	res.CourierHours = float64(len(w.couriers)) * last.Sub(r.cfg.Start).Hours()
	res.LogHash = hex.EncodeToString(r.hash.Sum(nil))
	return res
}

// clock renders the simulated time as the offset from the start, as the log shows it.
func (r *Run) clock() string { return fmt.Sprintf("%8.0f", r.now.Sub(r.cfg.Start).Seconds()) }

func (r *Run) logf(format string, args ...any) {
	fmt.Fprintf(r.log, "%s "+format+"\n", append([]any{r.clock()}, args...)...)
}

// at schedules fn at t (never before now).
func (r *Run) at(t time.Time, fn func() error) {
	r.seq++
	heap.Push(&r.events, &event{at: maxTime(t, r.now), seq: r.seq, fn: fn})
}

func (r *Run) arrive(t *simTask) error {
	r.logf("create %s size=%s", t.spec.id, t.spec.size)
	return r.decide(t, dispatch.TriggerAutomatic)
}

// decide asks the policy for t (pending) and offers, waits or gives up.
func (r *Run) decide(t *simTask, trigger dispatch.Trigger) error {
	if !r.now.Before(t.spec.windowEnd) {
		r.unassignable(t, "pickup window ended")
		return nil
	}
	t.searches++
	t.task.Searches = t.searches
	ch, err := r.policy.Choose(r.ctx, r, t.spec.id, trigger)
	if err != nil {
		return err
	}
	r.decisions = append(r.decisions, ch.Elapsed)
	r.logf("decide %s %s", t.spec.id, ch.Log)
	t.choice, t.next = ch.Couriers, 0
	if r.offerNext(t) {
		return nil
	}
	if ch.Outcome == dispatch.OutcomeUnassignable {
		r.unassignable(t, "nobody can make the pickup window")
		return nil
	}
	backoff := min(r.cfg.RetryBackoff<<min(t.searches-1, 4), 12*r.cfg.RetryBackoff)
	r.schedule(t, r.now.Add(backoff))
	return nil
}

func (r *Run) unassignable(t *simTask, why string) {
	t.state = dispatch.StateUnassignable
	t.task.State = dispatch.StateUnassignable
	r.logf("unassignable %s: %s", t.spec.id, why)
}

// offerNext offers t to the next courier of its choice still able to take it; false when none is.
func (r *Run) offerNext(t *simTask) bool {
	for t.next < len(t.choice) {
		c := r.byID[t.choice[t.next]]
		t.next++
		if c == nil || c.offer != nil || t.task.IsExcluded(c.spec.id) || !r.policy.Takes(r.view(c)) {
			continue
		}
		r.offer(t, c)
		return true
	}
	return false
}

// offer makes an offer of t to c and draws c's answer.
func (r *Run) offer(t *simTask, c *simCourier) {
	t.offerSeq++
	seq := t.offerSeq
	t.offerTo, c.offer = c, t
	t.state, t.task.State = dispatch.StateOffered, dispatch.StateOffered
	if t.firstOffer.IsZero() {
		t.firstOffer = r.now
	}
	b := r.cfg.Behaviour
	u := r.rng.Float64()
	delay := b.MinDelay + time.Duration(r.rng.Int64N(int64(b.MaxDelay-b.MinDelay)+1)).Round(time.Second)
	r.logf("offer %s -> %s", t.spec.id, c.spec.id)
	answered := func() bool { return t.offerSeq == seq && t.offerTo == c }
	switch {
	case u < b.Decline:
		r.at(r.now.Add(delay), func() error {
			if answered() {
				r.closeOffer(t, c, dispatch.ExcludedDeclined)
			}
			return nil
		})
	case u < b.Decline+b.Ignore:
	default:
		r.at(r.now.Add(delay), func() error {
			if answered() {
				r.accept(t, c)
			}
			return nil
		})
	}
	r.at(r.now.Add(r.cfg.OfferTimeout), func() error {
		if answered() {
			r.closeOffer(t, c, dispatch.ExcludedOfferExpired)
		}
		return nil
	})
}

// closeOffer ends t's open offer to c without acceptance and moves on: the next courier of the choice,
// else a new search.
func (r *Run) closeOffer(t *simTask, c *simCourier, why dispatch.ExclusionReason) {
	t.offerTo, c.offer = nil, nil
	t.state, t.task.State = dispatch.StatePending, dispatch.StatePending
	t.task.Exclude(c.spec.id, why)
	r.logf("%s %s by %s", why, t.spec.id, c.spec.id)
	if r.offerNext(t) {
		return
	}
	// A new search, at once, as the service does when a decision's candidates are used up.
	r.schedule(t, r.now)
}

// schedule makes t due at at: a new search then, unless it was rescheduled or left PENDING meanwhile.
func (r *Run) schedule(t *simTask, at time.Time) {
	t.due++
	due := t.due
	r.at(at, func() error {
		if t.due != due || t.state != dispatch.StatePending {
			return nil
		}
		return r.decide(t, dispatch.TriggerRetry)
	})
}

func (r *Run) accept(t *simTask, c *simCourier) {
	t.offerTo, c.offer = nil, nil
	t.state, t.task.State, t.courier = dispatch.StateAssigned, dispatch.StateAssigned, c
	c.held = append(c.held, t)
	c.lastAssigned = r.now
	r.logf("accept %s by %s (holds %d)", t.spec.id, c.spec.id, len(c.held))
	if !c.busy {
		r.move(c)
	}
}

// move sends c to its nearest next stop, or lets it rest when it holds nothing.
func (r *Run) move(c *simCourier) {
	here := c.location(r.now)
	c.pos, c.leg, c.busy = here, nil, false
	var best *leg
	var bestDur time.Duration
	for _, t := range c.held {
		to, pickup := t.spec.dropoff, false
		if !t.pickedUp {
			to, pickup = t.spec.pickup, true
		}
		dur, _ := geo.EstimateTravel(here, to, c.spec.mode)
		if best == nil || dur < bestDur {
			best, bestDur = &leg{from: here, to: to, depart: r.now, arrive: r.now.Add(dur), task: t, pickup: pickup}, dur
		}
	}
	if best == nil {
		return
	}
	_, dist := geo.EstimateTravel(here, best.to, c.spec.mode)
	r.km += dist
	c.leg, c.busy = best, true
	r.at(best.arrive, func() error {
		l := c.leg
		start := r.now
		stay := l.task.spec.atDropoff
		if l.pickup {
			start = maxTime(start, l.task.spec.ready)
			stay = l.task.spec.atPickup
		}
		r.at(start.Add(stay), func() error {
			r.serve(c, l)
			r.move(c)
			return nil
		})
		return nil
	})
}

// serve completes the stop of l: a pickup or a delivery.
func (r *Run) serve(c *simCourier, l *leg) {
	t := l.task
	if l.pickup {
		t.pickedUp = true
		t.state, t.task.State = dispatch.StatePickedUp, dispatch.StatePickedUp
		r.logf("pickup %s by %s", t.spec.id, c.spec.id)
		return
	}
	t.state, t.task.State, t.delivered = dispatch.StateDelivered, dispatch.StateDelivered, r.now
	for i, h := range c.held {
		if h == t {
			c.held = append(c.held[:i], c.held[i+1:]...)
			break
		}
	}
	r.logf("deliver %s by %s late=%t", t.spec.id, c.spec.id, r.now.After(t.spec.onTimeEdge))
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// event is one scheduled step; equal times run in the order they were scheduled.
type event struct {
	at  time.Time
	seq int
	fn  func() error
}

type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	return cmp.Or(q[i].at.Compare(q[j].at), cmp.Compare(q[i].seq, q[j].seq)) < 0
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}
