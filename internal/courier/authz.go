package courier

import (
	"context"
	"fmt"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// Authorization.
//
// Role-level rules (who may call an RPC at all) are the transport's policy. The domain adds object-level
// rules: dispatchers, admins and services act on any courier; a user with the courier role acts only on
// the courier linked to their user id; nobody else acts on any. A courier caller's own courier is found
// from their user id and compared with the target id, without looking the target up, so a refusal says
// nothing about whether the target exists: reads answer NotFound (as if it did not exist, so ids cannot be
// probed) and changes answer PermissionDenied (as the contract promises).

// privileged reports whether p may act on every courier.
func privileged(p auth.Principal) bool {
	return p.Kind == auth.Service || p.HasRole(auth.RoleDispatcher) || p.HasRole(auth.RoleAdmin)
}

var (
	errNotFound = apperr.Errorf(apperr.NotFound, "courier not found")
	errDenied   = apperr.Errorf(apperr.PermissionDenied, "permission denied")
)

// authorizeRead returns nil when the caller may read courier id, NotFound otherwise.
func (s *Service) authorizeRead(ctx context.Context, id string) error {
	ok, err := s.mayActOn(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		return errNotFound
	}
	return nil
}

// authorizeWrite returns nil when the caller may change courier id, PermissionDenied otherwise.
func (s *Service) authorizeWrite(ctx context.Context, id string) error {
	ok, err := s.mayActOn(ctx, id)
	if err != nil {
		return err
	}
	if !ok {
		return errDenied
	}
	return nil
}

func (s *Service) mayActOn(ctx context.Context, id string) (bool, error) {
	p := auth.FromContext(ctx)
	if privileged(p) {
		return true, nil
	}
	if !p.HasRole(auth.RoleCourier) {
		return false, nil
	}
	own, err := s.ownCourierID(ctx, p.Subject)
	if err != nil {
		return false, err
	}
	return own != "" && own == id, nil
}

// ownCourierID returns the id of the courier linked to userID, "" when there is none.
func (s *Service) ownCourierID(ctx context.Context, userID string) (string, error) {
	if id := s.live.courierOfUser(userID); id != "" {
		return id, nil
	}
	uid, ok := normalizeID(userID)
	if !ok {
		return "", nil
	}
	c, err := s.store.GetCourierByUser(ctx, uid)
	if apperr.CodeOf(err) == apperr.NotFound {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("find courier of user %s: %w", uid, err)
	}
	return c.ID, nil
}

// requirePrivileged returns PermissionDenied unless the caller is a dispatcher, an admin or a service.
func requirePrivileged(ctx context.Context) error {
	if !privileged(auth.FromContext(ctx)) {
		return errDenied
	}
	return nil
}

// requireService returns PermissionDenied unless the caller is a service.
func requireService(ctx context.Context) error {
	if auth.FromContext(ctx).Kind != auth.Service {
		return errDenied
	}
	return nil
}
