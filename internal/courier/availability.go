package courier

import (
	"context"
	"fmt"
	"slices"
	"time"

	"lastmile/internal/platform/apperr"
)

// Availability hours follow Wild Workouts' trainer hours: a courier's plan is a list of hour slots in
// UTC, each available or not (an hour never marked is unavailable). Times are truncated to the start of
// their hour. Only the current hour and the next AvailabilityHorizon may change: the past is history, and
// a bounded horizon bounds what one courier can store. A slot that a claim covers (Claim.Covers) cannot
// be made unavailable, because dispatch counts on the courier for that task.

// SetAvailability marks hours (truncated to their hour in UTC; duplicates count once) available or
// unavailable and returns the slots of the distinct hours in time order. Setting a slot to the state it
// has changes nothing. The courier themself, dispatchers, admins and services.
//
// Errors: Invalid for a malformed id, no hours, more than 744, an hour that has already ended or one more
// than AvailabilityHorizon ahead; PermissionDenied when the caller may not change the courier; NotFound
// when the courier does not exist; FailedPrecondition when a slot that carries a claimed task would become
// unavailable (then no slot changes).
func (s *Service) SetAvailability(ctx context.Context, id string, hours []time.Time, available bool) ([]Slot, error) {
	var v violations
	id = v.id("courier_id", id)
	maxHours := int(MaxAvailabilityRange / time.Hour)
	if len(hours) == 0 || len(hours) > maxHours {
		v.add("hours", fmt.Sprintf("must list 1 to %d hours", maxHours))
	}
	now := s.now().UTC()
	current := now.Truncate(time.Hour)
	horizon := now.Add(AvailabilityHorizon)
	norm := make([]time.Time, 0, len(hours))
	for i, h := range hours {
		h = h.UTC().Truncate(time.Hour)
		switch {
		case h.Before(current):
			v.add(fmt.Sprintf("hours[%d]", i), "has already ended")
		case h.After(horizon):
			v.add(fmt.Sprintf("hours[%d]", i), "is more than 90 days ahead")
		}
		norm = append(norm, h)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	slices.SortFunc(norm, time.Time.Compare)
	norm = slices.CompactFunc(norm, time.Time.Equal)

	if err := s.authorizeWrite(ctx, id); err != nil {
		return nil, err
	}
	err := s.store.SetAvailability(ctx, id, norm, available, func(claims []Claim) error {
		if available {
			return nil // making slots available never breaks a claim
		}
		return CheckUnclaimedHours(id, norm, claims)
	})
	switch apperr.CodeOf(err) {
	case "":
	case apperr.NotFound:
		return nil, errNotFound
	case apperr.FailedPrecondition:
		return nil, apperr.Wrap(apperr.FailedPrecondition, err,
			"an hour slot carries a claimed task and cannot be made unavailable")
	default:
		return nil, fmt.Errorf("set availability of courier %s: %w", id, err)
	}
	if norm[0].Equal(current) {
		if prev, known := s.availableNow(id); !known || prev != available {
			s.publishRefreshed(ctx, id, ChangeStatus)
		}
	}

	avail, claims, err := s.plan(ctx, id, norm[0], norm[len(norm)-1].Add(time.Hour))
	if err != nil {
		return nil, err
	}
	out := make([]Slot, len(norm))
	for i, h := range norm {
		out[i] = slot(h, avail, claims)
	}
	return out, nil
}

func (s *Service) availableNow(id string) (avail, known bool) {
	s.live.mu.RLock()
	defer s.live.mu.RUnlock()
	if e := s.live.byID[id]; e != nil {
		return e.availNow, true
	}
	return false, false
}

// GetAvailability returns every hour slot from the start of from's hour up to to (exclusive), available or
// not, in time order. The courier themself, dispatchers, admins and services.
//
// Errors: Invalid for a malformed id, a missing bound, to not after from, or a range longer than 744
// hours; NotFound when the courier does not exist or the caller may not see it.
func (s *Service) GetAvailability(ctx context.Context, id string, from, to time.Time) ([]Slot, error) {
	var v violations
	id = v.id("courier_id", id)
	switch {
	case from.IsZero():
		v.add("start_time", "is required")
	case to.IsZero():
		v.add("end_time", "is required")
	case !to.After(from):
		v.add("end_time", "must be after start_time")
	case to.Sub(from) > MaxAvailabilityRange:
		v.add("end_time", "must be at most 31 days (744h) after start_time")
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	if err := s.authorizeRead(ctx, id); err != nil {
		return nil, err
	}
	start := from.UTC().Truncate(time.Hour)
	avail, claims, err := s.plan(ctx, id, start, to.UTC())
	if err != nil {
		return nil, err
	}
	var out []Slot
	for h := start; h.Before(to); h = h.Add(time.Hour) {
		out = append(out, slot(h, avail, claims))
	}
	return out, nil
}

// IsAvailable returns the hour slot containing at (now when zero). The courier themself, dispatchers,
// admins and services.
//
// Errors: Invalid for a malformed id; NotFound when the courier does not exist or the caller may not see
// it.
func (s *Service) IsAvailable(ctx context.Context, id string, at time.Time) (Slot, error) {
	var v violations
	id = v.id("courier_id", id)
	if err := v.err(); err != nil {
		return Slot{}, err
	}
	if err := s.authorizeRead(ctx, id); err != nil {
		return Slot{}, err
	}
	if at.IsZero() {
		at = s.now()
	}
	h := at.UTC().Truncate(time.Hour)
	avail, claims, err := s.plan(ctx, id, h, h.Add(time.Hour))
	if err != nil {
		return Slot{}, err
	}
	return slot(h, avail, claims), nil
}

// plan reads the available hours of [from, to) and the claims of courier id.
func (s *Service) plan(ctx context.Context, id string, from, to time.Time) (map[int64]bool, []Claim, error) {
	hours, err := s.store.AvailableHours(ctx, id, from, to)
	if err != nil {
		return nil, nil, notFoundOr(err, "get availability of courier "+id)
	}
	claims, err := s.store.Claims(ctx, id)
	if err != nil {
		return nil, nil, notFoundOr(err, "get claims of courier "+id)
	}
	avail := make(map[int64]bool, len(hours))
	for _, h := range hours {
		avail[h.Unix()] = true
	}
	return avail, claims, nil
}

func slot(h time.Time, avail map[int64]bool, claims []Claim) Slot {
	n := 0
	for _, c := range claims {
		if c.Covers(h) {
			n++
		}
	}
	return Slot{Start: h, Available: avail[h.Unix()], AssignedTasks: n}
}
