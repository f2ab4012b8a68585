package courier

import (
	"time"

	"lastmile/internal/platform/apperr"
)

// The rules that depend on stored state (versions, capacity, claims). The Service runs them inside the
// Store's transaction, on the courier as read under its lock (see Store), so that the answer cannot go
// stale before the write. They are methods of the stored courier, or take what the Store read.

// CheckProfileUpdate returns why the stored courier c may not take the profile of next: Aborted when c's
// version is not next.Version-1, FailedPrecondition when next.Capacity is below c's claimed tasks; nil
// otherwise.
func (c Courier) CheckProfileUpdate(next Courier) error {
	if c.Version != next.Version-1 {
		return apperr.Errorf(apperr.Aborted, "courier %s changed since it was read (version %d, expected %d)", next.ID, c.Version, next.Version-1)
	}
	if next.Capacity < c.ActiveTasks {
		return apperr.Errorf(apperr.FailedPrecondition, "capacity %d is below the %d tasks claimed on courier %s", next.Capacity, c.ActiveTasks, next.ID)
	}
	return nil
}

// CheckClaim decides a claim of task taskID on the stored courier c while holder ("" for none) is the
// courier that holds the task: already = true when that is c (claims are idempotent by task id: the
// first claim stands, whatever changed since); FailedPrecondition when it is another courier, or when
// CheckClaimable refuses; nil when the claim may be stored.
func (c Courier) CheckClaim(holder, taskID string) (already bool, err error) {
	switch holder {
	case c.ID:
		return true, nil
	case "":
		return false, c.CheckClaimable()
	}
	return false, errTaskHeld(taskID)
}

// CheckClaimGeneration decides a claim of task taskID with generation gen (0: none) on the stored
// courier c, given h as read under c's lock. superseded = true (nothing to store) when gen > 0 and a
// release of gen or higher of the task on c was kept: the claim is older than a release that landed
// first. Otherwise as CheckClaim; raise = true when c already holds the task with a lower generation
// than gen, whose claim then takes gen (a later release must reach it).
func (c Courier) CheckClaimGeneration(h Holding, taskID string, gen int64) (already, raise, superseded bool, err error) {
	if gen > 0 && h.Released >= gen {
		return false, false, true, nil
	}
	already, err = c.CheckClaim(h.Holder, taskID)
	return already, already && gen > h.Generation, false, err
}

// errTaskHeld is the refusal of a claim of a task that another courier holds.
func errTaskHeld(taskID string) error {
	return apperr.Errorf(apperr.FailedPrecondition, "task %s is claimed on another courier", taskID)
}

// CheckClaimable returns FailedPrecondition unless the stored courier c may take one more claim: its
// stored status is available and its claims leave free capacity.
func (c Courier) CheckClaimable() error {
	if c.Status != StatusAvailable {
		return apperr.Errorf(apperr.FailedPrecondition, "courier %s is %s, not available", c.ID, c.Status)
	}
	if c.ActiveTasks >= c.Capacity {
		return apperr.Errorf(apperr.FailedPrecondition, "courier %s has no free capacity (%d of %d tasks claimed)", c.ID, c.ActiveTasks, c.Capacity)
	}
	return nil
}

// CheckStatusChange returns FailedPrecondition when the stored courier c may not take status st: going
// offline while holding claims.
func (c Courier) CheckStatusChange(st Status) error {
	if st == StatusOffline && c.ActiveTasks > 0 {
		return apperr.Errorf(apperr.FailedPrecondition, "courier %s holds %d claimed tasks and cannot go offline", c.ID, c.ActiveTasks)
	}
	return nil
}

// CheckUnclaimedHours returns FailedPrecondition when one of claims, the stored claims of courier id,
// covers one of hours (each normalised to the start of its hour in UTC), which then cannot be made
// unavailable; nil otherwise. The error names the first such hour of hours.
func CheckUnclaimedHours(id string, hours []time.Time, claims []Claim) error {
	for _, h := range hours {
		h = h.UTC().Truncate(time.Hour)
		for _, c := range claims {
			if c.Covers(h) {
				return apperr.Errorf(apperr.FailedPrecondition, "hour %s carries task %s claimed on courier %s and cannot be made unavailable", h.Format(time.RFC3339), c.TaskID, id)
			}
		}
	}
	return nil
}
