package auth

import (
	"context"
	"fmt"
	"slices"

	"lastmile/internal/platform/apperr"
)

// SelfOrRoles returns nil when the principal of ctx is the user ownerUserID or a user holding any of
// roles. Otherwise it returns an apperr.Unauthenticated error for an anonymous caller and an
// apperr.PermissionDenied error for everyone else, services included: a service acting for nobody owns
// nothing (check IsService first where a service may act). An empty ownerUserID matches no one.
func SelfOrRoles(ctx context.Context, ownerUserID string, roles ...string) error {
	p := FromContext(ctx)
	if ownsOrHolds(p, ownerUserID, roles) {
		return nil
	}
	if p.Kind == Anonymous {
		return authenticationRequired()
	}
	return &apperr.Error{Code: apperr.PermissionDenied, Message: "permission denied",
		Err: fmt.Errorf("%s %q is neither the owner nor holds any of %q", p.Kind, p.Subject, roles)}
}

// OwnerOrRolesNotFound is SelfOrRoles for resources whose existence is hidden from other users: where
// SelfOrRoles returns PermissionDenied it returns an apperr.NotFound error with the message "<what> not
// found", the same message the handler returns for a missing resource. what names the resource, such as
// "user" or "task".
func OwnerOrRolesNotFound(ctx context.Context, ownerUserID, what string, roles ...string) error {
	p := FromContext(ctx)
	if ownsOrHolds(p, ownerUserID, roles) {
		return nil
	}
	if p.Kind == Anonymous {
		return authenticationRequired()
	}
	return &apperr.Error{Code: apperr.NotFound, Message: what + " not found",
		Err: fmt.Errorf("%s %q is neither the owner of the %s nor holds any of %q", p.Kind, p.Subject, what, roles)}
}

// RequireRoles returns nil when the principal of ctx is a user holding any of roles, an
// apperr.Unauthenticated error for an anonymous caller and an apperr.PermissionDenied error otherwise.
// With no roles it admits nobody: an empty list is likelier a bug than a wish to admit every user.
func RequireRoles(ctx context.Context, roles ...string) error {
	p := FromContext(ctx)
	if slices.ContainsFunc(roles, p.HasRole) {
		return nil
	}
	if p.Kind == Anonymous {
		return authenticationRequired()
	}
	return &apperr.Error{Code: apperr.PermissionDenied, Message: "permission denied",
		Err: fmt.Errorf("%s %q holds none of %q", p.Kind, p.Subject, roles)}
}

// IsService reports whether the principal of ctx is a service authenticated by its certificate and, when
// names are given, one of them. A user token forwarded by a service makes the call a User call, so this
// is false for it.
func IsService(ctx context.Context, names ...string) bool {
	p := FromContext(ctx)
	return p.Kind == Service && (len(names) == 0 || slices.Contains(names, p.Subject))
}

func ownsOrHolds(p Principal, owner string, roles []string) bool {
	if p.Kind != User {
		return false
	}
	return (owner != "" && p.Subject == owner) || slices.ContainsFunc(roles, p.HasRole)
}

func authenticationRequired() error {
	return apperr.Errorf(apperr.Unauthenticated, "authentication required")
}
