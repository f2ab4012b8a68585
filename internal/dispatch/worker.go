package dispatch

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"lastmile/internal/platform/apperr"
)

// pollInterval is how often the work loop looks for due tasks when nothing woke it.
const pollInterval = 500 * time.Millisecond

// purgeInterval is how often old deliveries and command outcomes are deleted.
const purgeInterval = 10 * time.Minute

// Run works the task queue, fans the event feed out to this replica's sessions and watchers, sweeps
// uploads and purges old records, until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for _, f := range []func(context.Context) error{s.work, s.runHub, s.housekeeping, s.followCouriers, s.followAccounts, s.sweepAccounts} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

func collect(ch <-chan error) []error {
	var out []error
	for err := range ch {
		out = append(out, err)
	}
	return out
}

// housekeeping purges old deliveries and command outcomes and sweeps abandoned uploads.
func (s *Service) housekeeping(ctx context.Context) error {
	t := time.NewTicker(purgeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if n, err := s.store.Purge(ctx, s.now().Add(-s.opts.Idempotency)); err != nil {
			s.logger.Warn("dispatch: purge failed", "error", err)
		} else if n > 0 {
			s.logger.Info("dispatch: purged old records", "count", n)
		}
		if err := s.sweepUploads(ctx); err != nil {
			s.logger.Warn("dispatch: upload sweep failed", "error", err)
		}
	}
}

// work leases due tasks in batches of up to Options.Batch and works each batch (processBatch): PENDING
// tasks get a decision and an offer, OFFERED tasks whose offer passed its deadline get the offer expired
// and the next candidate. Up to Options.Workers batches are worked at once. A lease outlives a crash by
// at most Options.Lease: another replica then takes the task over. On a store this process works alone
// (SQLite) the leases a crashed process left are ended first (endDeadLeases).
func (s *Service) work(ctx context.Context) error {
	s.endDeadLeases(ctx)
	sem := make(chan struct{}, s.opts.Workers)
	var wg sync.WaitGroup
	defer wg.Wait()
	failures := 0
	for {
		select {
		case sem <- struct{}{}: // a free worker
		case <-ctx.Done():
			return nil
		}
		s.wakeFreed(ctx)
		// The tasks created on this replica since the last lease are most likely among those this
		// lease takes: their searches, reads and matrices start now, beside the lease.
		early := s.startEarly(ctx, s.fresh.take())
		tasks, err := s.store.LeaseDue(ctx, s.opts.Replica, s.now(), s.opts.Lease, s.opts.Batch)
		if err != nil {
			failures++
			if failures == 1 {
				s.logger.Warn("dispatch: cannot lease due tasks", "error", err)
			}
		} else {
			if failures > 0 {
				s.logger.Info("dispatch: leasing due tasks again")
			}
			failures = 0
		}
		s.fresh.forget(tasks)
		switch {
		case len(tasks) > 0:
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				s.processBatch(ctx, tasks, early)
			}()
		case early != nil:
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				early.drop(ctx)
			}()
		default:
			<-sem
		}
		if len(tasks) == s.opts.Batch {
			continue // more may be due
		}
		wait := pollInterval
		if failures > 0 {
			wait = min(time.Duration(failures)*pollInterval, 10*time.Second)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-s.kickCh:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// endDeadLeases ends, on a store this process works alone (Store.OneProcess: SQLite, whose data
// directory's lock keeps every other process away), the task leases it finds before its first lease,
// and the uploads' writer leases taken before the Service was made: they were taken by an earlier
// process that ended without releasing them (killed, or its machine lost), and the tasks are worked at
// once instead of after the rest of their lease (up to Options.Lease), the uploads resumed at once
// instead of refused (Aborted, "being written by another stream") for up to UploadWriterLease. A writer
// lease a stream of this process took since runs out at started+UploadWriterLease or later, so it stays.
// Replicas sharing a store (PostgreSQL) keep each other's leases, since the replica that holds one may
// be alive: a dead replica's run out on their own. A failure is logged and changes nothing else: the
// leases then run out as on PostgreSQL.
func (s *Service) endDeadLeases(ctx context.Context) {
	if !s.store.OneProcess() {
		return
	}
	n, err := s.store.UnleaseOthers(ctx, s.opts.Replica)
	switch {
	case err != nil:
		s.logger.Warn("dispatch: cannot end the task leases of an earlier process; they run out on their own", "error", err)
	case n > 0:
		s.logger.Info("dispatch: ended the task leases of an earlier process", "tasks", n)
	}
	if s.uploads == nil {
		return
	}
	n, err = s.uploads.EndWriters(ctx, s.started.Add(UploadWriterLease))
	switch {
	case err != nil:
		s.logger.Warn("dispatch: cannot end the upload writers of an earlier process; they run out on their own", "error", err)
	case n > 0:
		s.logger.Info("dispatch: ended the upload writers of an earlier process", "uploads", n)
	}
}

// processBatch works leased tasks and releases their leases: OFFERED tasks whose offer passed its
// deadline get it expired, and join the PENDING ones, which are assigned together (assignBatch); a task
// in another state has a stale due time cleared. early, when not nil, is what was prefetched for some of
// them while they were leased.
func (s *Service) processBatch(ctx context.Context, ts []Task, early *earlyBatch) {
	var contended contention
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		ids := make([]string, len(ts))
		for i, t := range ts {
			ids[i] = t.ID
		}
		if err := s.store.UnleaseTasks(uctx, ids, s.opts.Replica); err != nil {
			s.logger.Warn("dispatch: unlease failed", "tasks", len(ids), "error", err)
		}
		// After the unlease: a kick before it would find the contended tasks still leased.
		s.wake(ctx, contended)
	}()
	pending := make([]Task, 0, len(ts))
	for _, t := range ts {
		switch t.State {
		case StateOffered:
			next, err := s.expireOffer(ctx, t)
			if err != nil {
				s.workFailed(ctx, t, err)
				continue
			}
			pending = append(pending, next)
		case StatePending:
			pending = append(pending, t)
		default:
			// Nothing to do: clear a stale due time.
			_, err := s.store.UpdateTask(ctx, t.ID, func(cur Task) (Change, error) {
				if cur.Version != t.Version || cur.DueTime.IsZero() {
					return Change{}, errNoChange
				}
				cur.DueTime = time.Time{}
				return Change{Task: cur}, nil
			})
			s.workFailed(ctx, t, err)
		}
	}
	contended = s.assignBatch(ctx, pending, early)
}

// workFailed logs a failure to work t, unless there was none, nothing to change, or the loop is ending.
func (s *Service) workFailed(ctx context.Context, t Task, err error) {
	if err != nil && !errors.Is(err, errNoChange) && ctx.Err() == nil {
		s.logger.Warn("dispatch: working task failed", "task", t.ID, "state", t.State, "error", err)
	}
}

// expireOffer expires t's open offer once its deadline (and grace) passed: the courier is told and never
// offered the task again, and the task goes back to PENDING (returned), to be offered to the next
// candidate at once.
func (s *Service) expireOffer(ctx context.Context, t Task) (Task, error) {
	next, err := s.store.UpdateTask(ctx, t.ID, func(cur Task) (Change, error) {
		o := cur.CurrentOffer()
		now := s.now()
		if o == nil || now.Before(o.ExpireTime.Add(s.opts.OfferGrace)) {
			return Change{}, errNoChange
		}
		cur.closeOffer(OfferExpired, now)
		cur.Exclude(o.CourierID, ExcludedOfferExpired)
		if err := cur.transition(StateChange{State: StatePending, At: now, Actor: ActorSystem, CourierID: o.CourierID, OfferID: o.ID, Comment: "offer expired"}); err != nil {
			return Change{}, err
		}
		return Change{Task: cur, Deliveries: []Delivery{{CourierID: o.CourierID, Kind: DeliveryOfferClosed, TaskID: cur.ID, OfferID: o.ID}}}, nil
	})
	if err != nil {
		return Task{}, err
	}
	s.metrics.OfferAnswered(OfferExpired)
	s.courierFreed()
	return next, nil
}

// connectedSince is the oldest heartbeat of a live session: within three heartbeat periods.
func (s *Service) connectedSince() time.Time { return s.now().Add(-3 * HeartbeatInterval) }

// HeartbeatInterval is how often a session says it is still open.
const HeartbeatInterval = 10 * time.Second

// hopeless returns why t can no longer be assigned, "" while it can: its pickup window has ended, or it
// has no window and waited longer than MaxWait.
func (s *Service) hopeless(t Task, now time.Time) string {
	if w := t.Pickup.Window; w != nil {
		if !now.Before(w.End) {
			return "the pickup window ended before a courier was found"
		}
		return ""
	}
	if now.Sub(t.SearchStart) >= s.opts.MaxWait {
		return fmt.Sprintf("no courier found within the maximum wait of %s", s.opts.MaxWait)
	}
	return ""
}

// nextCandidate returns the next eligible candidate of t's latest decision that was not offered the task
// yet, is not excluded, is connected and has no other open offer.
func (s *Service) nextCandidate(ctx context.Context, t Task, env DecideEnv) (*Decision, Candidate, bool) {
	if len(t.Offers) == 0 {
		return nil, Candidate{}, false
	}
	ds, err := s.store.Decisions(ctx, t.ID, 1)
	if err != nil || len(ds) == 0 || ds[0].Trigger == TriggerOverride {
		return nil, Candidate{}, false
	}
	d := ds[0]
	var ids []string
	for _, c := range d.Eligible() {
		if c.OfferID == "" && !t.IsExcluded(c.CourierID) {
			ids = append(ids, c.CourierID)
		}
	}
	if len(ids) == 0 {
		return nil, Candidate{}, false
	}
	busy, err := env.OfferOpen(ctx, ids)
	if err != nil {
		return nil, Candidate{}, false
	}
	live, err := env.Connected(ctx, ids)
	if err != nil {
		return nil, Candidate{}, false
	}
	for _, c := range d.Eligible() {
		if c.OfferID == "" && !t.IsExcluded(c.CourierID) && !busy[c.CourierID] && live[c.CourierID] {
			return &d, c, true
		}
	}
	return nil, Candidate{}, false
}

// offerWrite offers t to candidate c of decision d, recording the offer in the decision.
func (s *Service) offerWrite(t Task, d *Decision, c Candidate, newDecision bool) pendingWrite {
	return pendingWrite{task: t, fn: func(cur Task) (Change, error) {
		if cur.Version != t.Version || cur.State != StatePending {
			return Change{}, errNoChange
		}
		now := storedTime(s.now())
		o := Offer{
			ID: newID(), TaskID: cur.ID, CourierID: c.CourierID, State: OfferOpen, CreateTime: now,
			ExpireTime: now.Add(s.opts.OfferTimeout), ResponseTimeout: s.opts.OfferTimeout, DecisionID: d.ID,
		}
		if c.Score != nil {
			o.PickupETA, o.PickupDistance = c.Score.PickupETA, c.Score.PickupDistance
		}
		if err := cur.transition(StateChange{State: StateOffered, At: now, Actor: ActorSystem, CourierID: c.CourierID, OfferID: o.ID}); err != nil {
			return Change{}, err
		}
		cur.Offers = append(cur.Offers, o)
		cur.DueTime = o.ExpireTime.Add(s.opts.OfferGrace)
		if newDecision {
			cur.Searches++
		}
		dd := *d
		dd.Candidates = append([]Candidate(nil), d.Candidates...)
		for i := range dd.Candidates {
			if dd.Candidates[i].CourierID == c.CourierID {
				dd.Candidates[i].OfferID = o.ID
			}
		}
		return Change{Task: cur, Decision: &dd, Deliveries: []Delivery{{CourierID: c.CourierID, Kind: DeliveryOffer, TaskID: cur.ID, OfferID: o.ID}}}, nil
	}, done: func() { s.metrics.OfferSent() }}
}

// deferWrite keeps t PENDING and makes it due again after a back-off (retryBackoff), recording the
// decision when there is one (and, once t searched more than MaxDecisions times, keeping only its newest
// MaxDecisions). The write is quiet (Change.Quiet): a search that found nobody changes nothing a reader
// of the task sees, so the task keeps its etag and update time and no watcher is told. Its retry makes t
// due at once instead (a contended deferral: see batch.go).
func (s *Service) deferWrite(t Task, d *Decision, why string) pendingWrite {
	w := s.deferral(t, d, why, false)
	w.retry = func() pendingWrite { return s.deferral(t, d, why, true) }
	return w
}

// deferral is deferWrite's write; at once makes t due now instead of after the back-off.
func (s *Service) deferral(t Task, d *Decision, why string, atOnce bool) pendingWrite {
	return pendingWrite{task: t, fn: func(cur Task) (Change, error) {
		if cur.Version != t.Version || cur.State != StatePending {
			return Change{}, errNoChange
		}
		now := s.now()
		backoff := s.retryBackoff(cur.ID, cur.Searches)
		if atOnce {
			backoff = 0
		}
		cur.Searches++
		cur.DueTime = storedTime(now.Add(backoff))
		// Give up on time: at the end of the pickup window, or of the maximum wait without one.
		if w := cur.Pickup.Window; w != nil && cur.DueTime.After(w.End) {
			cur.DueTime = w.End
		} else if end := storedTime(cur.SearchStart.Add(s.opts.MaxWait)); w == nil && cur.DueTime.After(end) {
			cur.DueTime = end
		}
		ch := Change{Task: cur, Quiet: true, Waiting: cur.DueTime.After(now)}
		if d != nil {
			dd := *d
			if dd.Outcome == OutcomeOffered {
				dd.Outcome = OutcomeDeferred
			}
			ch.Decision = &dd
			if cur.Searches > MaxDecisions {
				// A task nobody can take is searched again every minute or so until its pickup window
				// ends, which may be years away: keep only the decisions ExplainAssignment shows.
				ch.KeepDecisions = MaxDecisions
			}
		}
		return ch, nil
	}, done: func() {
		s.mayWait()
		if d == nil {
			s.logger.Warn("dispatch: task deferred", "task", t.ID, "reason", why)
		}
	}}
}

// retryBackoff is how long a task that searches found nobody for waits before the next search, after
// searches of them: Options.RetryBackoff, doubling per search up to Options.MaxRetryBackoff. A back-off
// of a minute or more is shortened by up to a fifth, by an amount drawn from the task's id and search
// count, so that the tasks of one outage do not all come due together, and the same task gets the
// same schedule on every replica. A courier who becomes available or free wakes waiting tasks at once
// (courierArrived, wakeFreed, and wake.go's followCouriers), whatever their back-off.
func (s *Service) retryBackoff(taskID string, searches int) time.Duration {
	backoff := s.opts.MaxRetryBackoff
	if shift := min(searches, 30); s.opts.RetryBackoff <= s.opts.MaxRetryBackoff>>shift {
		backoff = s.opts.RetryBackoff << shift
	}
	if backoff < time.Minute {
		return backoff
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", taskID, searches)
	return backoff - time.Duration(h.Sum64()%1000)*(backoff/5000)
}

// giveUpWrite makes t UNASSIGNABLE with reason, recording the decision.
func (s *Service) giveUpWrite(t Task, d *Decision, reason string) pendingWrite {
	return pendingWrite{task: t, fn: func(cur Task) (Change, error) {
		if cur.Version != t.Version || cur.State != StatePending {
			return Change{}, errNoChange
		}
		now := s.now()
		if err := cur.transition(StateChange{State: StateUnassignable, At: now, Actor: ActorSystem, Comment: reason}); err != nil {
			return Change{}, err
		}
		ch := Change{Task: cur}
		dd := Decision{ID: newID(), TaskID: cur.ID, DecideTime: storedTime(now), Trigger: TriggerRetry, Weights: s.opts.Weights, Rationale: reason}
		if d != nil {
			dd = *d
		}
		dd.Outcome = OutcomeUnassignable
		ch.Decision = &dd
		return ch, nil
	}, done: func() {
		s.logger.Info("dispatch decision", "task", t.ID, "outcome", OutcomeUnassignable, "reason", reason)
	}}
}

// logDecision writes the one log line of a decision.
func (s *Service) logDecision(t Task, d *Decision) {
	s.logger.Info("dispatch decision", "task", t.ID, "decision", d.ID, "trigger", d.Trigger, "outcome", d.Outcome,
		"winner", d.Winner, "candidates", len(d.Candidates), "eligible", len(d.Eligible()), "radius_m", d.SearchRadius,
		"degraded", d.Degraded, "eta_provider", d.ETAProvider, "elapsed", d.Elapsed, "rationale", d.Rationale)
}

// RunJob performs one durable job (the jobs runner calls it until it returns nil): it makes the courier
// service hold the task's claim on the job's courier exactly while the task is theirs (settle): a claim
// job claims it (releasing a reassignment's previous holder first), a release job releases it. A claim
// the courier service refuses (the courier went offline, is full, or no longer exists) puts the task
// back to PENDING without that courier, and the courier is told; any other failure is returned, so the
// job is retried.
//
// Claims and releases are idempotent by task and courier but not ordered: the jobs of a task's
// successive changes run in any order, a failed one is retried after later ones ran, and a call may land
// after the task changed again, even back to the same courier (handed back, then given to them again by
// a dispatcher). So a job does not trust what its change said: it reads the task's holder, makes the
// courier's claim agree with it, reads the holder again once the call landed, and goes on until a read
// after its last call agrees with that call. Any change after that read enqueued a job of its own, which
// reads and calls after the change committed, hence after this job's last call: for every courier, the
// last call to land is one that a read after it agreed with, so the courier service ends up holding the
// claim of each task on its holder, and on no one else, whatever the order. A release of a task in a
// final state (Job.Final) needs no loop: the task is never anyone's again.
//
// A call that times out may still land later, after the job saw it fail and even after the job (or its
// retry) finished: no read follows that landing. So every call carries, as its generation, the version
// of the task read before it (the version of a release of a final task too), and the courier service
// applies a claim or a release of a task on a courier only when it is newer than the last release of
// it (ClaimCourierRequest.generation): a claim landing after a release read at a later version is
// superseded, a release landing after a claim read at a later version leaves it in place. The calls of
// the last change's job carry its version, the highest, and win whenever the others land.
func (s *Service) RunJob(ctx context.Context, j Job) error {
	switch j.Kind {
	case JobRelease:
		if j.Final {
			return s.releaseClaim(ctx, j.CourierID, j.TaskID)
		}
		return s.settle(ctx, j.TaskID, j.CourierID, time.Time{}, true)
	case JobClaim:
		if j.Previous != "" && j.Previous != j.CourierID {
			// First: the courier service refuses to claim a task held elsewhere.
			if err := s.settle(ctx, j.TaskID, j.Previous, time.Time{}, true); err != nil {
				return fmt.Errorf("release task %s from its previous courier %s: %w", j.TaskID, j.Previous, err)
			}
		}
		return s.settle(ctx, j.TaskID, j.CourierID, j.ExpectedRelease, true)
	}
	return fmt.Errorf("unknown job kind %q", j.Kind)
}

// settleRounds bounds settle's calls: a task that keeps changing hands faster than the courier service
// answers is left to the job's retry.
const settleRounds = 4

// settle makes the courier service hold task taskID's claim on courierID exactly when the task is
// theirs (ASSIGNED or PICKED_UP to them): it reads the holder, claims or releases accordingly, and reads
// the holder again once the call landed, until a read agrees with the last call (see RunJob). expected
// is the claim's expected release; zero takes it from the task. A task that no longer exists is
// released. A refused claim puts the task back to PENDING (claimRefused), after releasing the task's
// former holders when formers is set (claimFor).
func (s *Service) settle(ctx context.Context, taskID, courierID string, expected time.Time, formers bool) error {
	held, version, err := s.holds(ctx, taskID, courierID)
	if err != nil {
		return err
	}
	for range settleRounds {
		superseded := false
		if held {
			superseded, err = s.claimFor(ctx, taskID, courierID, expected, version, formers)
			if err != nil {
				if errors.Is(err, errRefused) {
					return nil
				}
				return err
			}
		} else {
			err := s.couriers.Release(ctx, courierID, taskID, version)
			switch {
			case apperr.CodeOf(err) == apperr.NotFound:
				return nil // the courier is gone: nothing to release, nothing to claim
			case err != nil:
				return fmt.Errorf("release task %s from courier %s, whose it is not: %w", taskID, courierID, err)
			}
			s.courierFreed()
		}
		now, v, err := s.holds(ctx, taskID, courierID)
		if err != nil {
			return err
		}
		// A superseded claim did not land: a release read at a later version did, so the task changed
		// since; the task's job of that change calls after it, but this one claims again if the task is
		// the courier's once more.
		if now == held && !superseded {
			return nil
		}
		held, version = now, v // it changed hands while the call was on its way: once more
	}
	return fmt.Errorf("task %s kept changing hands while its claim on courier %s was settled", taskID, courierID)
}

// holds reports whether courierID holds task taskID, and the task's version as read (the generation of
// the claim or release that follows the read); false and 0 (no generation) when the task does not exist.
func (s *Service) holds(ctx context.Context, taskID, courierID string) (held bool, version int64, _ error) {
	state, holder, version, err := s.store.TaskHolder(ctx, taskID)
	switch {
	case apperr.CodeOf(err) == apperr.NotFound:
		return false, 0, nil
	case err != nil:
		return false, 0, fmt.Errorf("read the holder of task %s: %w", taskID, err)
	}
	return state.Held() && holder == courierID, version, nil
}

// errCarried says that a refused claim's task was picked up by its courier (claimRefused).
var errCarried = errors.New("picked up")

// errRefused says that claimFor's claim was refused and the refusal handled.
var errRefused = errors.New("claim refused")

// claimFor claims task taskID on courierID, which holds it at version (the claim's generation),
// expecting its release at expected (zero: from the task); superseded when the courier service answers
// that a release of a later version landed first (nothing changed). A refusal is handled
// (claimRefused) and reported as errRefused. With formers set, a refusal that may be for a former
// holder's claim the courier service still has (the release job of a hand-back that has not run yet:
// the courier service refuses a task claimed on another courier) first releases the task's former
// holders, and claims the task once more.
func (s *Service) claimFor(ctx context.Context, taskID, courierID string, expected time.Time, version int64, formers bool) (superseded bool, _ error) {
	if expected.IsZero() {
		t, err := s.store.GetTask(ctx, taskID)
		if err != nil {
			return false, fmt.Errorf("get task %s: %w", taskID, err)
		}
		expected = expectedRelease(t, s.now())
	}
	superseded, err := s.couriers.Claim(ctx, courierID, taskID, expected, version)
	if formers && apperr.CodeOf(err) == apperr.FailedPrecondition {
		switch released, rerr := s.releaseFormerHolders(ctx, taskID, courierID); {
		case rerr != nil:
			return false, rerr
		case released:
			superseded, err = s.couriers.Claim(ctx, courierID, taskID, expected, version)
		}
	}
	switch apperr.CodeOf(err) {
	case "":
		return superseded, nil
	case apperr.FailedPrecondition, apperr.NotFound:
		if err := s.claimRefused(ctx, Job{Kind: JobClaim, CourierID: courierID, TaskID: taskID}, err); err != nil {
			return false, err
		}
		return false, errRefused
	}
	return false, fmt.Errorf("claim task %s for courier %s: %w", taskID, courierID, err)
}

// releaseFormerHolders settles the claims of task taskID's former holders other than courierID (without
// releasing their own former holders in turn): released reports whether there were any.
func (s *Service) releaseFormerHolders(ctx context.Context, taskID, courierID string) (released bool, _ error) {
	t, err := s.store.GetTask(ctx, taskID)
	if err != nil {
		return false, fmt.Errorf("get task %s: %w", taskID, err)
	}
	seen := map[string]bool{courierID: true}
	for _, h := range t.History {
		if h.State != StateAssigned || h.CourierID == "" || seen[h.CourierID] {
			continue
		}
		seen[h.CourierID] = true
		if err := s.settle(ctx, taskID, h.CourierID, time.Time{}, false); err != nil {
			return false, fmt.Errorf("release task %s from its former holder %s: %w", taskID, h.CourierID, err)
		}
		released = true
	}
	return released, nil
}

// releaseClaim releases task taskID's claim on courierID, whose task is in a final state, with the
// task's version as read as the generation (no claim of an earlier version passes it afterwards); a
// courier that no longer exists has none.
func (s *Service) releaseClaim(ctx context.Context, courierID, taskID string) error {
	_, version, err := s.holds(ctx, taskID, courierID)
	if err != nil {
		return err
	}
	err = s.couriers.Release(ctx, courierID, taskID, version)
	if apperr.CodeOf(err) == apperr.NotFound {
		return nil // the courier is gone: nothing to release
	}
	if err != nil {
		return fmt.Errorf("release task %s from courier %s: %w", taskID, courierID, err)
	}
	s.courierFreed()
	return nil
}

// claimRefused puts a task whose claim the courier service refused back to PENDING without that courier.
// The change enqueues a release of the courier like any other change that takes a task from its holder
// (see RunJob): another job of the same courier and task (the late release of a hand-back, say, while
// the task was the courier's again) may have claimed it after the refusal and checked it against the
// task before this change committed; that claim is released only by a job that reads the task after.
//
// A task the courier picked up before the claim landed cannot go back: the refusal (FAILED_PRECONDITION:
// the courier went on a break, or is full) is returned instead, so that the job is retried until the
// claim lands or the task ends (its release job runs, and the retry finds the task no longer the
// courier's): otherwise the courier service would not count a parcel the courier carries, and offer
// them more than their capacity.
func (s *Service) claimRefused(ctx context.Context, j Job, cause error) error {
	_, err := s.store.UpdateTask(ctx, j.TaskID, func(t Task) (Change, error) {
		if t.State == StatePickedUp && t.CourierID == j.CourierID && apperr.CodeOf(cause) == apperr.FailedPrecondition {
			return Change{}, errCarried
		}
		if t.State != StateAssigned || t.CourierID != j.CourierID {
			return Change{}, errNoChange
		}
		now := s.now()
		if err := t.transition(StateChange{State: StatePending, At: now, Actor: ActorSystem, CourierID: j.CourierID, Comment: "courier cannot take the task: " + apperr.MessageOf(cause)}); err != nil {
			return Change{}, err
		}
		t.Exclude(j.CourierID, ExcludedUnavailable)
		t.SearchStart, t.Searches = storedTime(now), 0
		return Change{Task: t, Deliveries: []Delivery{{CourierID: j.CourierID, Kind: DeliveryTask, TaskID: t.ID, Reason: NoticeReassigned}},
			Jobs: []Job{{Kind: JobRelease, CourierID: j.CourierID, TaskID: t.ID}}}, nil
	})
	switch {
	case errors.Is(err, errNoChange):
		return nil
	case errors.Is(err, errCarried):
		return fmt.Errorf("courier %s picked task %s up before its claim landed, and the courier service refuses the claim (retried): %w", j.CourierID, j.TaskID, cause)
	}
	if err == nil {
		s.logger.Warn("dispatch: claim refused; task back to pending", "task", j.TaskID, "courier", j.CourierID, "error", cause)
		s.kick()
	}
	return err
}

// wakeEvery bounds how often arriving couriers make every waiting task due: a burst of reconnecting apps
// costs one update, not one per app.
const wakeEvery = time.Second

// wakeShare is how many of the waiting tasks a courier who became free makes due: it takes one at
// most, the best it can reach among those searched again, so a few are enough, and the backlog is not
// searched again as a whole for every courier who finishes a delivery (only a courier opening a
// session does that, at most once per wakeEvery).
const wakeShare = 4

// courierFreed notes that a courier became free for another task on this replica: it answered an offer
// or lost one (declined, expired, withdrawn), or the courier service released a task of its. Before its
// next lease, the work loop makes wakeShare waiting tasks per such courier due, those that LeaseDue
// would take first: highest priority, then oldest.
//
// A batch that was searching while a courier was freed may have found that courier busy, and the
// wake missed its tasks (WakeNext wakes the tasks waiting for their back-off, and the batch's were due,
// under its lease): it wakes wakeShare of its deferred tasks per courier freed since its searches began
// once they are unleased (contention.freed), so that a task created while a courier was being freed is
// offered to them at once, not after a back-off.
func (s *Service) courierFreed() {
	s.freedEver.Add(1)
	s.freed.Add(1)
	s.kick()
}

// wakeFreed makes wakeShare waiting tasks due now per courier freed since its last call, at most
// Options.Batch. A failure is logged: those tasks keep their back-off.
func (s *Service) wakeFreed(ctx context.Context) {
	n := s.freed.Swap(0)
	if n == 0 {
		return
	}
	limit := int(min(n*wakeShare, int64(s.opts.Batch)))
	if err := s.store.WakeNext(ctx, s.now(), limit); err != nil && ctx.Err() == nil {
		s.logger.Warn("dispatch: waking waiting tasks for freed couriers failed", "tasks", limit, "error", err)
	}
}

// courierArrived makes the tasks waiting for a courier due now (a courier opened a session, so it may
// take one), at most once per wakeEvery on this replica.
func (s *Service) courierArrived(ctx context.Context) {
	now := s.now()
	last := s.lastWake.Load()
	if last != 0 && now.Sub(time.Unix(0, last)) < wakeEvery {
		return
	}
	if !s.lastWake.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	if err := s.store.WakePending(ctx, now); err != nil {
		s.logger.Warn("dispatch: waking waiting tasks failed", "error", err)
		return
	}
	s.kick()
}
