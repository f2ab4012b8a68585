package courier

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"lastmile/internal/platform/apperr"
)

// The checks below are the Store contract's own, shared by the SQL stores so that they answer alike.
// The CheckStorable family refuses, before anything reaches a database, what no store can hold; business
// rules on input (name lengths, who may register) are the Service's. The rules that depend on stored
// state (versions, capacity, claims) are checked by the stores inside the transaction that writes, on the
// courier as read in it, so that the answer cannot go stale before the write: the methods that take the
// stored courier as receiver are those rules.

// MaxStoreLimit bounds the couriers one Store.ListCouriers call returns; stores lower larger limits to
// it. It is one more than MaxPageSize because the Service reads one row past a page to learn whether
// another page follows.
const MaxStoreLimit = MaxPageSize + 1

// StoreLimit returns the number of rows a Store read asked for limit returns: limit lowered to
// MaxStoreLimit. Invalid when limit is not positive.
func StoreLimit(limit int) (int, error) {
	if limit <= 0 {
		return 0, apperr.InvalidFields("invalid limit", apperr.FieldViolation{Field: "limit", Description: "must be positive"})
	}
	return min(limit, MaxStoreLimit), nil
}

// CheckStorable returns an Invalid error listing why no store can hold c (see CheckStorableProfile; also
// no user, or a status that cannot be stored), or nil.
func (c Courier) CheckStorable() error {
	v := c.profileViolations()
	if c.UserID == "" {
		v = append(v, apperr.FieldViolation{Field: "user_id", Description: "must not be empty"})
	}
	if !c.Status.Settable() {
		v = append(v, apperr.FieldViolation{Field: "status", Description: fmt.Sprintf("cannot store status %q", c.Status)})
	}
	if len(v) > 0 {
		return apperr.InvalidFields("invalid courier", v...)
	}
	return nil
}

// CheckStorableProfile is CheckStorable for Store.UpdateCourier, which never writes UserID or Status: an
// Invalid error when c has no id, an undefined mode or a capacity outside 1 to MaxCapacity, or nil.
func (c Courier) CheckStorableProfile() error {
	if v := c.profileViolations(); len(v) > 0 {
		return apperr.InvalidFields("invalid courier", v...)
	}
	return nil
}

func (c Courier) profileViolations() []apperr.FieldViolation {
	var v []apperr.FieldViolation
	if c.ID == "" {
		v = append(v, apperr.FieldViolation{Field: "id", Description: "must not be empty"})
	}
	if !c.Mode.Valid() {
		v = append(v, apperr.FieldViolation{Field: "mode", Description: fmt.Sprintf("unknown transport mode %q", c.Mode)})
	}
	if c.Capacity < 1 || c.Capacity > MaxCapacity {
		v = append(v, apperr.FieldViolation{Field: "capacity", Description: fmt.Sprintf("must be 1 to %d", MaxCapacity)})
	}
	return v
}

// CheckStorable returns an Invalid error listing why no store can hold c (no courier or task, or an
// ExpectedRelease that is not after ClaimedAt at the microsecond precision stores keep), or nil.
func (c Claim) CheckStorable() error {
	var v []apperr.FieldViolation
	if c.CourierID == "" {
		v = append(v, apperr.FieldViolation{Field: "courier_id", Description: "must not be empty"})
	}
	if c.TaskID == "" {
		v = append(v, apperr.FieldViolation{Field: "task_id", Description: "must not be empty"})
	}
	if !storedTime(c.ExpectedRelease).After(storedTime(c.ClaimedAt)) {
		v = append(v, apperr.FieldViolation{Field: "expected_release", Description: "must be after claimed_at"})
	}
	if len(v) > 0 {
		return apperr.InvalidFields("invalid claim", v...)
	}
	return nil
}

// CheckStorableFixes returns an Invalid error for the first fix of a Store.SaveLocations batch that has
// no courier or a number that is not finite, or nil. SQLite would turn NaN into NULL; refusing it in
// every store keeps them accepting the same batches.
func CheckStorableFixes(fixes []LocationFix) error {
	for i, f := range fixes {
		if f.CourierID == "" {
			return apperr.InvalidFields("invalid location fix", apperr.FieldViolation{Field: fmt.Sprintf("fixes[%d].courier_id", i), Description: "must not be empty"})
		}
		for _, x := range []float64{f.Lat, f.Lng, f.AccuracyMeters, f.SpeedMPS, f.Heading} {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return apperr.InvalidFields("invalid location fix", apperr.FieldViolation{Field: fmt.Sprintf("fixes[%d]", i), Description: "values must be finite"})
			}
		}
	}
	return nil
}

// NewestFixes returns, of each courier in fixes, the fix with the latest RecordedAt at the microsecond
// precision stores keep (the first of equals), ordered by CourierID. Stores write this instead of the
// batch: an upsert may not touch one row twice, and a fixed order keeps concurrent batches from
// deadlocking on each other's rows.
func NewestFixes(fixes []LocationFix) []LocationFix {
	newest := make(map[string]LocationFix, len(fixes))
	for _, f := range fixes {
		if cur, ok := newest[f.CourierID]; !ok || storedTime(f.RecordedAt).After(storedTime(cur.RecordedAt)) {
			newest[f.CourierID] = f
		}
	}
	out := make([]LocationFix, 0, len(newest))
	for _, f := range newest {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b LocationFix) int { return strings.Compare(a.CourierID, b.CourierID) })
	return out
}

// CheckProfileUpdate returns why the stored courier c may not take the profile of next (see
// Store.UpdateCourier): Aborted when c's version is not next.Version-1, FailedPrecondition when
// next.Capacity is below c's claimed tasks; nil otherwise.
func (c Courier) CheckProfileUpdate(next Courier) error {
	if c.Version != next.Version-1 {
		return apperr.Errorf(apperr.Aborted, "courier %s changed since it was read (version %d, expected %d)", next.ID, c.Version, next.Version-1)
	}
	if next.Capacity < c.ActiveTasks {
		return apperr.Errorf(apperr.FailedPrecondition, "capacity %d is below the %d tasks claimed on courier %s", next.Capacity, c.ActiveTasks, next.ID)
	}
	return nil
}

// CheckClaimable returns FailedPrecondition unless the stored courier c may take one more claim (see
// Store.ClaimCourier): its stored status is available and its claims leave free capacity.
func (c Courier) CheckClaimable() error {
	if c.Status != StatusAvailable {
		return apperr.Errorf(apperr.FailedPrecondition, "courier %s is %s, not available", c.ID, c.Status)
	}
	if c.ActiveTasks >= c.Capacity {
		return apperr.Errorf(apperr.FailedPrecondition, "courier %s has no free capacity (%d of %d tasks claimed)", c.ID, c.ActiveTasks, c.Capacity)
	}
	return nil
}

// CheckStatusChange returns FailedPrecondition when the stored courier c may not take status st (see
// Store.SetStatus): going offline while holding claims.
func (c Courier) CheckStatusChange(st Status) error {
	if st == StatusOffline && c.ActiveTasks > 0 {
		return apperr.Errorf(apperr.FailedPrecondition, "courier %s holds %d claimed tasks and cannot go offline", c.ID, c.ActiveTasks)
	}
	return nil
}

// CheckUnclaimedHours returns FailedPrecondition when one of claims, the stored claims of courier id,
// covers one of hours (each normalised to the start of its hour in UTC), which then cannot be made
// unavailable (see Store.SetAvailability); nil otherwise. The error names the first such hour of hours.
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
