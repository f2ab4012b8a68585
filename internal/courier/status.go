package courier

import (
	"context"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"lastmile/internal/platform/apperr"
)

// refreshTimeout bounds the store reads that follow a successful change.
const refreshTimeout = 5 * time.Second

// refresh reads courier id's durable state (profile, claims, the current hour's availability), records it
// in the live state and returns its snapshot.
func (s *Service) refresh(ctx context.Context, id string) (Snapshot, error) {
	mu := s.refreshLock(id)
	mu.Lock()
	defer mu.Unlock()
	hour := s.now().UTC().Truncate(time.Hour)
	c, claims, availNow, err := s.store.LiveState(ctx, id, hour)
	if err != nil {
		return Snapshot{}, notFoundOr(err, "get live state of courier "+id)
	}
	return s.live.set(c, taskIDs(claims), availNow, hour, s.now()), nil
}

// refreshLock is the lock that serialises the recording of courier id's live state after its changes.
func (s *Service) refreshLock(id string) *sync.Mutex {
	return &s.refreshMu[maphash.String(s.seed, id)%uint64(len(s.refreshMu))]
}

// publishRefreshed refreshes courier id after a change that the store has committed and tells watchers.
// The change already succeeded, so its caller's cancellation must not stop the refresh; a failure only
// leaves the live state stale until the next change, and is logged.
func (s *Service) publishRefreshed(ctx context.Context, id string, change Change) (Snapshot, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
	defer cancel()
	snap, err := s.refresh(ctx, id)
	if err != nil {
		s.logger.Warn("refresh courier live state after a change", "courier_id", id, "error", err.Error())
		return Snapshot{}, err
	}
	s.watch.publish([]Event{{Snapshot: snap, Changes: []Change{change}, At: s.now()}})
	return snap, nil
}

func taskIDs(claims []Claim) []string {
	if len(claims) == 0 {
		return nil
	}
	out := make([]string, len(claims))
	for i, c := range claims {
		out[i] = c.TaskID
	}
	return out
}

// SetStatus stores the courier's status: offline, available or on_break. Busy cannot be set; it is
// derived while claims fill the capacity, and the returned snapshot shows the effective status. Setting
// the current status again changes nothing. The courier themself, dispatchers, admins and services.
//
// Errors: Invalid for a malformed id or a status other than offline, available and on_break;
// PermissionDenied when the caller may not change the courier; NotFound when the courier does not exist;
// FailedPrecondition when going offline while holding claimed tasks.
func (s *Service) SetStatus(ctx context.Context, id string, st Status) (Snapshot, error) {
	var v violations
	id = v.id("courier_id", id)
	if !st.Settable() {
		v.add("status", "must be offline, available or on_break")
	}
	if err := v.err(); err != nil {
		return Snapshot{}, err
	}
	if err := s.authorizeWrite(ctx, id); err != nil {
		return Snapshot{}, err
	}
	before, known := s.storedStatus(id)
	_, err := s.store.UpdateCourier(ctx, id, func(c Courier) (Courier, error) {
		if c.Status == st {
			return c, nil
		}
		if err := c.CheckStatusChange(st); err != nil {
			return Courier{}, err
		}
		c.Status = st
		return c, nil
	})
	switch apperr.CodeOf(err) {
	case "":
	case apperr.NotFound:
		return Snapshot{}, errNotFound
	case apperr.FailedPrecondition:
		return Snapshot{}, apperr.Wrap(apperr.FailedPrecondition, err, "courier cannot go offline while holding claimed tasks")
	default:
		return Snapshot{}, fmt.Errorf("set status of courier %s: %w", id, err)
	}
	if known && before == st {
		return s.refreshQuietly(ctx, id)
	}
	return s.publishRefreshed(ctx, id, ChangeStatus)
}

// refreshQuietly is refresh after a no-op change: nothing to tell watchers.
func (s *Service) refreshQuietly(ctx context.Context, id string) (Snapshot, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
	defer cancel()
	return s.refresh(ctx, id)
}

func (s *Service) storedStatus(id string) (Status, bool) {
	s.live.mu.RLock()
	defer s.live.mu.RUnlock()
	if e := s.live.byID[id]; e != nil {
		return e.c.Status, true
	}
	return "", false
}

// GetCourierStatus returns the live view of one courier, read from the store (profile, claims,
// availability now) and the live index (last location). The courier themself, dispatchers, admins and
// services.
//
// Errors: Invalid for a malformed id; NotFound when the courier does not exist or the caller may not see
// it.
func (s *Service) GetCourierStatus(ctx context.Context, id string) (Snapshot, error) {
	var v violations
	id = v.id("courier_id", id)
	if err := v.err(); err != nil {
		return Snapshot{}, err
	}
	if err := s.authorizeRead(ctx, id); err != nil {
		return Snapshot{}, err
	}
	return s.refresh(ctx, id)
}

// ClaimRequest reserves one unit of a courier's capacity for a task.
type ClaimRequest struct {
	CourierID string
	TaskID    string
	// ExpectedRelease is when dispatch expects to release the claim. The hour slots from the claim up to
	// it carry the task and cannot be made unavailable. Zero (or not in the future) means the end of the
	// current hour; it is capped at AvailabilityHorizon from now, beyond which slots cannot change anyway.
	ExpectedRelease time.Time
	// Generation orders the claim against the releases of the task on the courier (0: none). A claim
	// whose generation is not above the highest one released (ReleaseCourierGeneration) and kept
	// (ReleaseKeep) changes nothing and is superseded: it is older than a release that landed first.
	// Claiming a task the courier already holds with a higher generation raises the claim's.
	Generation int64
}

// ClaimOutcome is the answer of Claim.
type ClaimOutcome struct {
	// Snapshot is the courier's live state after the claim.
	Snapshot Snapshot
	// Already is true when the courier already held the task's claim: nothing changed (but the
	// claim's generation, raised to the request's).
	Already bool
	// Superseded is true when the request's generation is not above the highest one released for the
	// task on the courier: nothing changed.
	Superseded bool
}

// ClaimCourier is Claim without its Superseded answer (false without a generation).
func (s *Service) ClaimCourier(ctx context.Context, req ClaimRequest) (snap Snapshot, already bool, err error) {
	out, err := s.Claim(ctx, req)
	return out.Snapshot, out.Already, err
}

// Claim reserves one unit of the courier's capacity for a task. It is idempotent by task id: claiming
// a task the courier already holds changes nothing and reports Already. With a generation, a claim
// older than a release of the task on the courier that landed first is Superseded (see
// ClaimRequest.Generation). Services only.
//
// Errors: Invalid for a malformed id or a negative generation; PermissionDenied for callers other than
// services; NotFound when the courier does not exist; FailedPrecondition when the courier is not
// available, has no free capacity, or the task is claimed on another courier.
func (s *Service) Claim(ctx context.Context, req ClaimRequest) (out ClaimOutcome, err error) {
	if err := requireService(ctx); err != nil {
		return ClaimOutcome{}, err
	}
	var v violations
	id := v.id("courier_id", req.CourierID)
	task := v.id("task_id", req.TaskID)
	gen := v.generation("generation", req.Generation)
	if err := v.err(); err != nil {
		return ClaimOutcome{}, err
	}
	now := storedTime(s.now())
	release := storedTime(req.ExpectedRelease)
	if !release.After(now) {
		release = now.Truncate(time.Hour).Add(time.Hour)
	}
	if limit := now.Add(AvailabilityHorizon); release.After(limit) {
		release = limit
	}
	claim := Claim{CourierID: id, TaskID: task, ClaimedAt: now, ExpectedRelease: release, Generation: gen}
	decide := func(c Courier, h Holding) (*Claim, error) {
		already, raise, superseded, err := c.CheckClaimGeneration(h, task, gen)
		out.Already, out.Superseded = already, superseded
		if err != nil || superseded || (already && !raise) {
			return nil, err
		}
		return &claim, nil
	}
	out.Snapshot, err = s.claimLive(ctx, id, task, decide)
	switch apperr.CodeOf(err) {
	case "":
	case apperr.NotFound:
		return ClaimOutcome{}, errNotFound
	case apperr.FailedPrecondition:
		return ClaimOutcome{}, err
	case apperr.Conflict:
		// Another courier's claim of the task committed while this one was decided.
		return ClaimOutcome{}, apperr.Wrap(apperr.FailedPrecondition, err, apperr.MessageOf(errTaskHeld(task)))
	default:
		return ClaimOutcome{}, fmt.Errorf("claim courier %s for task %s: %w", id, task, err)
	}
	if !out.Already && !out.Superseded {
		s.watch.publish([]Event{{Snapshot: out.Snapshot, Changes: []Change{ChangeStatus}, At: s.now()}})
	}
	return out, nil
}

// claimLive runs a claim (Store.ClaimCourierLive), whose transaction also reads the live state it
// leaves, and records that state, so that no read follows the commit. The courier's refresh lock is held from before the
// transaction until the state is recorded: a refresh of a later change, which reads after its own
// commit under that lock, therefore records after this one, and an older state never overwrites a
// newer one.
func (s *Service) claimLive(ctx context.Context, id, task string, decide func(Courier, Holding) (*Claim, error)) (Snapshot, error) {
	mu := s.refreshLock(id)
	mu.Lock()
	defer mu.Unlock()
	hour := s.now().UTC().Truncate(time.Hour)
	rec, err := s.store.ClaimCourierHolding(ctx, id, task, hour, decide)
	if err != nil {
		return Snapshot{}, err
	}
	return s.live.set(rec.Courier, taskIDs(rec.Claims), rec.AvailableNow, hour, s.now()), nil
}

// ReleaseCourier is ReleaseCourierGeneration without a generation.
func (s *Service) ReleaseCourier(ctx context.Context, courierID, taskID string) (snap Snapshot, released bool, err error) {
	return s.ReleaseCourierGeneration(ctx, courierID, taskID, 0)
}

// ReleaseCourierGeneration frees the capacity that a task holds on a courier. It is idempotent:
// releasing a claim that does not exist changes nothing and reports released = false. With a
// generation (above 0), a claim of a higher generation stays (released = false), and the generation is
// kept as released for the task on the courier for ReleaseKeep: a claim landing later with a generation
// not above it is superseded (see ClaimRequest.Generation). Services only.
//
// Errors: Invalid for a malformed id or a negative generation; PermissionDenied for callers other than
// services; NotFound when the courier does not exist.
func (s *Service) ReleaseCourierGeneration(ctx context.Context, courierID, taskID string, generation int64) (snap Snapshot, released bool, err error) {
	if err := requireService(ctx); err != nil {
		return Snapshot{}, false, err
	}
	var v violations
	id := v.id("courier_id", courierID)
	task := v.id("task_id", taskID)
	gen := v.generation("generation", generation)
	if err := v.err(); err != nil {
		return Snapshot{}, false, err
	}
	mu := s.refreshLock(id)
	mu.Lock()
	hour := s.now().UTC().Truncate(time.Hour)
	var rec LiveRecord
	if gen > 0 {
		now := s.now()
		released, rec, err = s.store.ReleaseCourierGeneration(ctx, id, task, hour, gen, now, now.Add(ReleaseKeep))
	} else {
		released, rec, err = s.store.ReleaseCourierLive(ctx, id, task, hour)
	}
	if err == nil {
		// Under the refresh lock, as claimLive records a claim's state.
		snap = s.live.set(rec.Courier, taskIDs(rec.Claims), rec.AvailableNow, hour, s.now())
	}
	mu.Unlock()
	switch apperr.CodeOf(err) {
	case "":
	case apperr.NotFound:
		return Snapshot{}, false, errNotFound
	default:
		return Snapshot{}, false, fmt.Errorf("release courier %s from task %s: %w", id, task, err)
	}
	if released {
		s.watch.publish([]Event{{Snapshot: snap, Changes: []Change{ChangeStatus}, At: s.now()}})
	}
	return snap, released, nil
}
