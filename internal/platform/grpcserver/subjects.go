package grpcserver

import (
	"context"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// CallTracker registers the open calls of a user and cancels them when the user's token is revoked.
// *auth.Subjects implements it.
type CallTracker interface {
	// Track returns a context cancelled, with a cause for which auth.RevokedCause is not nil, when p's
	// token is revoked; stop unregisters the call.
	Track(ctx context.Context, p auth.Principal) (tracked context.Context, stop func())
}

// authenticateStream is authenticate for streams: a user's stream is also tracked (Config.Subjects),
// so that revoking the user's token ends it with Unauthenticated. A handler that answers the revocation
// with PermissionDenied keeps its answer: it says the caller may no longer do this at all (dispatch's
// courier session, when the account was suspended or deleted: auth.ErrInactive).
func (c *chain) authenticateStream(ctx context.Context, method string, next func(context.Context) error) error {
	if c.tracker == nil {
		return c.authenticate(ctx, method, next)
	}
	return c.authenticate(ctx, method, func(ctx context.Context) error {
		tracked, stop := c.tracker.Track(ctx, auth.FromContext(ctx))
		defer stop()
		err := next(tracked)
		if revoked := auth.RevokedCause(tracked); revoked != nil && apperr.CodeOf(err) != apperr.PermissionDenied {
			return revoked // whatever else the handler made of its cancelled context
		}
		return err
	})
}
