package identity

import (
	"context"
	"fmt"
	"time"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// SubjectCache is the process's cache of users' current standing that the authenticator checks every
// call against; *auth.Subjects implements it. The Service keeps it current: it updates a user's entry
// after each commit that changes the user's standing (suspension, reactivation, deletion, a role or
// password change, logout), and, on every replica, for each such change it reads from the event log
// (Run), so a change made on another replica takes effect here as soon as the event log delivers it.
type SubjectCache interface {
	// Update records a user's current state and ends the user's calls it no longer accepts.
	Update(userID string, st auth.SubjectState)
	// Forget drops a user's state, to be read again (SubjectState) at the user's next call, and ends the
	// user's open calls.
	Forget(userID string)
	// DropAll drops every user's state and leaves open calls alone: the Service calls it when it first
	// follows the event log, since states read before may predate changes made meanwhile elsewhere, while
	// the calls open so far were checked against states read from the store moments before.
	DropAll()
	// ForgetAll drops every user's state and ends every open call: the Service calls it when it follows
	// the event log from its head again after retention made it lose events, which may have revoked
	// anyone.
	ForgetAll()
}

// revokes reports whether an activity of type t changes what the user's access tokens may do.
func revokes(t ActivityType) bool {
	switch t {
	case ActivityLogout, ActivityPasswordChanged, ActivityRoleChanged, ActivityStatusChanged, ActivityDeleted:
		return true
	}
	return false
}

// subjectState is the standing of u as the authenticator checks it.
func subjectState(u User) auth.SubjectState {
	return auth.SubjectState{
		Active:        u.Status == StatusActive,
		Roles:         []string{string(u.Role)},
		RevokedBefore: u.RevokedBefore,
	}
}

// SubjectState returns the current standing of user id, for the authenticator's cache (the loader of
// auth.NewSubjects): an unknown user is inactive.
//
// Errors: Unavailable when the store cannot be read.
func (s *Service) SubjectState(ctx context.Context, id string) (auth.SubjectState, error) {
	u, err := s.store.GetUser(ctx, Lookup{ID: id})
	switch {
	case apperr.CodeOf(err) == apperr.NotFound:
		return auth.SubjectState{}, nil
	case err != nil:
		return auth.SubjectState{}, apperr.Wrap(apperr.Unavailable, fmt.Errorf("read user %s: %w", id, err), "cannot check the caller's account; try again")
	}
	return subjectState(u), nil
}

// noteSubject records u's committed standing in the subject cache and sends it to the subject
// watchers (WatchSubjects).
func (s *Service) noteSubject(u User) {
	s.setSubject(u.ID, subjectState(u))
}

// setSubject records user id's standing st in the subject cache and sends it to the subject watchers.
func (s *Service) setSubject(id string, st auth.SubjectState) {
	if s.opts.Subjects != nil {
		s.opts.Subjects.Update(id, st)
	}
	s.watchers.publish(SubjectChange{UserID: id, State: st})
}

// refreshSubject reads user id's standing from the store into the subject cache and sends it to the
// subject watchers; when the store cannot be read, the entry is dropped (and the user's open streams end)
// so that the user's next call reads it, and the watchers get a reset, which does the same for them.
// The read outlives ctx, bounded by refreshTimeout: the change is committed, and a caller that hangs up
// right after must not leave the cache behind it.
func (s *Service) refreshSubject(ctx context.Context, id string) {
	if s.opts.Subjects == nil && !s.watchers.active() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
	defer cancel()
	u, err := s.store.GetUser(ctx, Lookup{ID: id})
	switch {
	case apperr.CodeOf(err) == apperr.NotFound:
		s.setSubject(id, auth.SubjectState{})
	case err != nil:
		s.logger.WarnContext(ctx, "read user for the subject cache", "user_id", id, "error", err.Error())
		if s.opts.Subjects != nil {
			s.opts.Subjects.Forget(id)
		}
		s.watchers.publish(SubjectChange{Reset: true})
	default:
		s.noteSubject(u)
	}
}

// refreshTimeout bounds refreshSubject's read of the store.
const refreshTimeout = 5 * time.Second

// forgetSubjects drops the whole subject cache: SubjectCache.DropAll at the first subscription to the
// event log, ForgetAll after events were lost; then the subject watchers get a reset, which ends their
// users' open calls. (At the first subscription there are no watchers yet, or ones whose states were read
// moments before: the reset costs them their open calls, and fails closed.)
func (s *Service) forgetSubjects(first bool) {
	defer s.watchers.publish(SubjectChange{Reset: true})
	switch {
	case s.opts.Subjects == nil:
	case first:
		s.opts.Subjects.DropAll()
	default:
		s.opts.Subjects.ForgetAll()
	}
}

// maxTokenWait bounds awaitTokenSecond, should another replica's clock run ahead.
const maxTokenWait = time.Second

// awaitTokenSecond waits until the wall clock has left the second of revokedBefore. An access token's
// "iat" has a resolution of one second, and the authenticator refuses every token issued in the second
// of a revocation (it cannot tell whether it came before or after): a token issued right after a
// revocation would be refused, so issuing it waits for the next second instead, at most maxTokenWait.
func (s *Service) awaitTokenSecond(ctx context.Context, revokedBefore time.Time) error {
	if revokedBefore.IsZero() {
		return nil
	}
	d := min(revokedBefore.Truncate(time.Second).Add(time.Second).Sub(s.now()), maxTokenWait)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait to issue an access token: %w", ctx.Err())
	}
}
