package sqlstore

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"lastmile/internal/courier"
	"lastmile/internal/platform/apperr"
)

// The checks below refuse, before anything reaches the database, what the store cannot hold; the
// schema's constraints back them up. They are no business rules: those are the domain's (see
// courier.Store).

// timePrecision is what both engines keep of a time.
const timePrecision = time.Microsecond

// checkCourier returns an Invalid error listing why c cannot be stored (no id or user, an undefined
// mode, a capacity outside 1 to courier.MaxCapacity, a status that is not stored), or nil.
func checkCourier(c courier.Courier) error {
	var v []apperr.FieldViolation
	if c.ID == "" {
		v = append(v, apperr.FieldViolation{Field: "id", Description: "must not be empty"})
	}
	if !c.Mode.Valid() {
		v = append(v, apperr.FieldViolation{Field: "mode", Description: fmt.Sprintf("unknown transport mode %q", c.Mode)})
	}
	if c.Capacity < 1 || c.Capacity > courier.MaxCapacity {
		v = append(v, apperr.FieldViolation{Field: "capacity", Description: fmt.Sprintf("must be 1 to %d", courier.MaxCapacity)})
	}
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

// checkClaim returns an Invalid error listing why c cannot be stored as the claim of task taskID on
// courier id (another courier or task, or an ExpectedRelease that is not after ClaimedAt at the
// precision stored), or nil.
func checkClaim(c courier.Claim, id, taskID string) error {
	var v []apperr.FieldViolation
	if c.CourierID != id {
		v = append(v, apperr.FieldViolation{Field: "courier_id", Description: fmt.Sprintf("must be %q, the courier claimed", id)})
	}
	if c.TaskID != taskID || taskID == "" {
		v = append(v, apperr.FieldViolation{Field: "task_id", Description: fmt.Sprintf("must be %q, the task claimed, and not empty", taskID)})
	}
	if !c.ExpectedRelease.Truncate(timePrecision).After(c.ClaimedAt.Truncate(timePrecision)) {
		v = append(v, apperr.FieldViolation{Field: "expected_release", Description: "must be after claimed_at"})
	}
	if len(v) > 0 {
		return apperr.InvalidFields("invalid claim", v...)
	}
	return nil
}

// checkFixes returns an Invalid error for the first fix that has no courier or a number that is not
// finite, or nil. SQLite would turn NaN into NULL; refusing it up front keeps both engines accepting the
// same batches.
func checkFixes(fixes []courier.LocationFix) error {
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

// newestFixes returns, of each courier in fixes, the fix with the latest RecordedAt at the precision
// stored (the first of equals), ordered by CourierID. The store writes this instead of the batch: an
// upsert may not touch one row twice, and a fixed order keeps concurrent batches from deadlocking on
// each other's rows.
func newestFixes(fixes []courier.LocationFix) []courier.LocationFix {
	newest := make(map[string]courier.LocationFix, len(fixes))
	for _, f := range fixes {
		if cur, ok := newest[f.CourierID]; !ok || f.RecordedAt.Truncate(timePrecision).After(cur.RecordedAt.Truncate(timePrecision)) {
			newest[f.CourierID] = f
		}
	}
	out := make([]courier.LocationFix, 0, len(newest))
	for _, f := range newest {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b courier.LocationFix) int { return strings.Compare(a.CourierID, b.CourierID) })
	return out
}
