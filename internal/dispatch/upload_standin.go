package dispatch

import (
	"context"
	"slices"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// This file stands in for the coordinator's callerCourier and canSee (tasks.go) until they are on
// main; it is deleted then.

// callerCourier returns the courier id of a courier caller, "" for any other caller. FailedPrecondition
// when a courier has no courier profile.
func (s *Service) callerCourier(ctx context.Context) (string, error) {
	p := auth.FromContext(ctx)
	if !p.HasRole(auth.RoleCourier) {
		return "", nil
	}
	id, err := s.couriers.CourierOfUser(ctx, p.Subject)
	if apperr.CodeOf(err) == apperr.NotFound {
		return "", apperr.Errorf(apperr.FailedPrecondition, "the caller has no courier profile")
	}
	return id, err
}

// canSee reports whether p (whose courier id is courierID, "" when not a courier) may see t.
func canSee(p auth.Principal, t Task, courierID string) bool {
	switch {
	case p.HasRole(auth.RoleDispatcher), p.HasRole(auth.RoleAdmin):
		return true
	case p.Kind == auth.User && p.Subject == t.CustomerID:
		return true
	case courierID == "":
		return false
	case t.CourierID == courierID:
		return true
	}
	if o := t.CurrentOffer(); o != nil && o.CourierID == courierID {
		return true
	}
	return slices.ContainsFunc(t.History, func(c StateChange) bool { return c.CourierID == courierID && c.State == StateAssigned })
}
