package auth

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	"lastmile/internal/platform/apperr"
)

// SubjectState is a user's current standing, which every authenticated call of the user is checked
// against (Subjects): a valid signature alone does not keep a suspended, demoted or logged-out user in.
type SubjectState struct {
	// Active is false for a suspended, deleted or unknown user: every token of theirs is refused.
	Active bool
	// Roles are the user's roles now. A token carrying other roles is refused: it was issued before a
	// role change.
	Roles []string
	// RevokedBefore refuses every token issued at or before it, compared to the second (a token's "iat"
	// has a resolution of one second, and the identity service issues no token for the user in the
	// second of a revocation after it). Zero: nothing revoked.
	RevokedBefore time.Time
}

// ErrInactive is the cause of Check's error when the user is suspended, deleted or unknown (rather than
// holding a token issued before a role change or a revocation), and so of a tracked call's revocation
// for that reason: errors.Is(auth.RevokedCause(ctx), ErrInactive) tells a stream that its caller may no
// longer work at all, not merely that they must sign in again.
var ErrInactive = errors.New("the account is not active")

// Check returns an Unauthenticated error when st refuses a call by p (a User principal), nil when it
// accepts it. The error wraps ErrInactive when the user is not active.
func (st SubjectState) Check(p Principal) error {
	switch {
	case !st.Active:
		return apperr.Wrap(apperr.Unauthenticated, ErrInactive, "the account is not active")
	case !sameRoles(p.Roles, st.Roles):
		return apperr.Errorf(apperr.Unauthenticated, "the account's roles changed; sign in again")
	case !st.RevokedBefore.IsZero() && !p.IssuedAt.Truncate(time.Second).After(st.RevokedBefore.Truncate(time.Second)):
		return apperr.Errorf(apperr.Unauthenticated, "access token revoked; sign in again")
	}
	return nil
}

// sameRoles reports whether a and b hold the same roles, in any order.
func sameRoles(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, r := range a {
		if !slices.Contains(b, r) {
			return false
		}
	}
	for _, r := range b {
		if !slices.Contains(a, r) {
			return false
		}
	}
	return true
}

// SubjectLoader reads a user's current state from the source of truth (the identity service's store).
// An unknown user is an inactive state, not an error; an error means the state could not be read.
type SubjectLoader func(ctx context.Context, userID string) (SubjectState, error)

// Defaults of SubjectsOptions.
const (
	// DefaultSubjectsMaxEntries is the default SubjectsOptions.MaxEntries.
	DefaultSubjectsMaxEntries = 100_000
	// DefaultSubjectsTTL is the default SubjectsOptions.TTL.
	DefaultSubjectsTTL = time.Minute
	// DefaultSubjectsMaxStale is the default SubjectsOptions.MaxStale.
	DefaultSubjectsMaxStale = 5 * time.Minute
)

// SubjectsOptions tunes Subjects. The zero value is valid.
type SubjectsOptions struct {
	// MaxEntries bounds the users whose state is cached; beyond it an arbitrary entry is dropped and
	// read again when next needed. Default DefaultSubjectsMaxEntries.
	MaxEntries int
	// TTL is how long a cached state is trusted without an Update: a safety net that bounds the
	// staleness should a change notice be lost. Default DefaultSubjectsTTL.
	TTL time.Duration
	// MaxStale is how long past its TTL a cached state is still used while it cannot be read again (the
	// identity store unreachable). Beyond it the call is refused with Unavailable: a replica cut off from
	// the store cannot hear of a suspension made elsewhere, so it trusts what it knew only for a bounded
	// time. Default DefaultSubjectsMaxStale.
	MaxStale time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Subjects is a process's cache of users' current state (SubjectState), which the authenticator checks
// every call against after verifying the token (Check), and the registry of the users' open streams,
// which it ends when a change revokes their token (Track). It is safe for concurrent use.
//
// The cache is filled on a miss by the loader and kept current by whoever learns of changes: the
// identity service calls Update after each commit that changes a user's standing and, on every replica,
// for each such change it reads from identity's event feed; a process without the identity service reads
// states from it (AuthService.GetSubject) and applies the changes it streams (AuthService.WatchSubjects).
type Subjects struct {
	load     SubjectLoader
	max      int
	ttl      time.Duration
	maxStale time.Duration
	now      func() time.Time

	mu      sync.RWMutex
	entries map[string]subjectEntry
	// gen counts Updates and Forgets; a load that saw another gen at its start does not cache its result,
	// which could predate the change.
	gen     uint64
	streams map[string]map[*trackedCall]struct{}
	// observers are the OnUpdate callbacks.
	observers map[*subjectObserver]struct{}
}

// subjectObserver is one OnUpdate registration (a pointer, so that equal functions stay apart).
type subjectObserver struct {
	fn func(userID string, st SubjectState)
}

type subjectEntry struct {
	st SubjectState
	at time.Time
}

// trackedCall is one open call of a user (Track).
type trackedCall struct {
	p      Principal
	cancel context.CancelCauseFunc
}

// NewSubjects returns an empty cache that reads missing states with load. It panics when load is nil
// (a wiring mistake).
func NewSubjects(load SubjectLoader, opts SubjectsOptions) *Subjects {
	if load == nil {
		panic("auth.NewSubjects: nil loader")
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultSubjectsMaxEntries
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultSubjectsTTL
	}
	if opts.MaxStale <= 0 {
		opts.MaxStale = DefaultSubjectsMaxStale
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Subjects{
		load: load, max: opts.MaxEntries, ttl: opts.TTL, maxStale: opts.MaxStale, now: opts.Now,
		entries:   map[string]subjectEntry{},
		streams:   map[string]map[*trackedCall]struct{}{},
		observers: map[*subjectObserver]struct{}{},
	}
}

// Check returns nil when p may call: p is not a user, or the user's current state accepts p's token
// (SubjectState.Check). It returns that Unauthenticated error otherwise, and an Unavailable error when
// the state was never cached and cannot be read: the call is refused rather than let through
// unchecked. A state past its TTL that cannot be read again is used as it is (see State).
func (s *Subjects) Check(ctx context.Context, p Principal) error {
	if p.Kind != User {
		return nil
	}
	st, err := s.State(ctx, p.Subject)
	if err != nil {
		return err
	}
	return st.Check(p)
}

// State returns the current state of user id, from the cache or else from the loader. When the loader
// fails, a cached state past its TTL is still returned for up to MaxStale more, so that calls that need
// no database keep working through a short outage of the identity store; after that, and for a user never
// cached, the answer is Unavailable. (A replica cut off from the store does not hear of changes made
// elsewhere, so its knowledge is trusted only for that bounded time.)
func (s *Subjects) State(ctx context.Context, id string) (SubjectState, error) {
	now := s.now()
	s.mu.RLock()
	e, ok := s.entries[id]
	gen := s.gen
	s.mu.RUnlock()
	if ok && now.Sub(e.at) < s.ttl {
		return e.st, nil
	}
	st, err := s.load(ctx, id)
	if err != nil {
		if ok && now.Sub(e.at) < s.ttl+s.maxStale {
			// Stale if error, for a bounded time: the last known state stays the best answer, and calls
			// that need no database keep working.
			return e.st, nil
		}
		if apperr.CodeOf(err) == apperr.Unavailable {
			return SubjectState{}, err
		}
		return SubjectState{}, apperr.Wrap(apperr.Unavailable, err, "cannot check the caller's account; try again")
	}
	s.mu.Lock()
	if s.gen == gen {
		s.put(id, st, now)
	}
	s.mu.Unlock()
	return st, nil
}

// put caches st for id; the caller holds s.mu.
func (s *Subjects) put(id string, st SubjectState, now time.Time) {
	if _, ok := s.entries[id]; !ok && len(s.entries) >= s.max {
		for victim := range s.entries { // map order: an arbitrary entry
			delete(s.entries, victim)
			break
		}
	}
	s.entries[id] = subjectEntry{st: st, at: now}
}

// Update records the current state of user id, ends the user's tracked calls that st no longer
// accepts with its Unauthenticated error, and then tells the observers (OnUpdate).
func (s *Subjects) Update(id string, st SubjectState) {
	s.mu.Lock()
	s.gen++
	s.put(id, st, s.now())
	var ended []*trackedCall
	var errs []error
	for c := range s.streams[id] {
		if err := st.Check(c.p); err != nil {
			ended, errs = append(ended, c), append(errs, err)
		}
	}
	observers := slices.Collect(maps.Keys(s.observers))
	s.mu.Unlock()
	for i, c := range ended {
		c.cancel(errs[i])
	}
	for _, o := range observers {
		o.fn(id, st)
	}
}

// OnUpdate calls fn with every state Update records from now on (a user's standing changed: on every
// replica, whoever made the change), until stop is called. It is how a service reacts to a suspension,
// a deletion or a role change of a user who holds no open call. fn runs on the updater's goroutine (the
// identity service's commit path, or its watch of changes), after the user's refused calls were ended:
// it must return at once, handing any slow work to a goroutine of its own. The states Recheck reads
// are updates (they may be changes the cache missed); a state the cache forgets (Forget, DropAll,
// ForgetAll) or reads on a miss calls nothing.
func (s *Subjects) OnUpdate(fn func(userID string, st SubjectState)) (stop func()) {
	o := &subjectObserver{fn: fn}
	s.mu.Lock()
	s.observers[o] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.observers, o)
		s.mu.Unlock()
	}
}

// errForgotten ends the tracked calls of a user whose state was forgotten: the call cannot be shown to
// be still allowed, so it ends (failing closed), and the client's reconnect is checked afresh.
var errForgotten = apperr.Errorf(apperr.Unavailable, "the caller's account must be checked again; reconnect")

// Forget drops the cached state of user id, so that its next call reads it again, and ends the user's
// tracked calls with Unavailable: a change to the user may have been missed, and an open stream is not
// checked again by itself.
func (s *Subjects) Forget(id string) {
	s.mu.Lock()
	s.gen++
	delete(s.entries, id)
	ended := slices.Collect(maps.Keys(s.streams[id]))
	s.mu.Unlock()
	for _, c := range ended {
		c.cancel(errForgotten)
	}
}

// DropAll drops every cached state, so that each user's next call reads it again, and leaves tracked calls
// alone: for a cache whose states may predate changes made elsewhere, while the calls tracked so far were
// checked against states read moments before (the identity service's first subscription to its event
// log).
func (s *Subjects) DropAll() {
	s.mu.Lock()
	s.gen++
	clear(s.entries)
	s.mu.Unlock()
}

// ForgetAll drops every cached state, so that each user's next call reads it again, and ends every
// tracked call with Unavailable: for a cache whose updates may have been missed (the identity service
// starting to follow its event log, or having lost events to retention).
func (s *Subjects) ForgetAll() {
	s.mu.Lock()
	s.gen++
	clear(s.entries)
	var ended []*trackedCall
	for _, calls := range s.streams {
		for c := range calls {
			ended = append(ended, c)
		}
	}
	s.mu.Unlock()
	for _, c := range ended {
		c.cancel(errForgotten)
	}
}

// Recheck reads again, with the loader, the state of every user who has tracked calls, and ends the
// calls that state refuses (as Update does); a user whose state cannot be read is forgotten (Forget),
// which ends their calls. It is for a cache that learns of changes from a feed it lost for a while (a
// process that watches the identity service's changes and reconnects): DropAll covers the calls to come,
// Recheck the calls that stayed open meanwhile. It stops early when ctx ends.
func (s *Subjects) Recheck(ctx context.Context) {
	s.mu.RLock()
	ids := slices.Collect(maps.Keys(s.streams))
	s.mu.RUnlock()
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		st, err := s.load(ctx, id)
		if err != nil {
			s.Forget(id)
			continue
		}
		s.Update(id, st)
	}
}

// ErrRevoked is the cause of a tracked call's context when a change revoked its token; the cause also
// carries the Unauthenticated apperr code (use context.Cause).
var ErrRevoked = errors.New("access revoked during the call")

// Track registers a call of p (a long-lived stream) until stop is called, and returns a context that
// is cancelled, with an Unauthenticated cause wrapping ErrRevoked, as soon as an Update revokes p's
// token. For a principal that is not a user it returns ctx itself. Call stop when the call ends.
func (s *Subjects) Track(ctx context.Context, p Principal) (tracked context.Context, stop func()) {
	if p.Kind != User {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	c := &trackedCall{p: p, cancel: func(cause error) {
		// Unauthenticated for a revoked token; Unavailable for a state that must be read again (Forget).
		code := apperr.Unauthenticated
		if apperr.CodeOf(cause) == apperr.Unavailable {
			code = apperr.Unavailable
		}
		cancel(apperr.Wrap(code, errors.Join(ErrRevoked, cause), apperr.MessageOf(cause)))
	}}
	s.mu.Lock()
	if s.streams[p.Subject] == nil {
		s.streams[p.Subject] = map[*trackedCall]struct{}{}
	}
	s.streams[p.Subject][c] = struct{}{}
	// A change between the call's Check and this registration must not be missed.
	e, cached := s.entries[p.Subject]
	s.mu.Unlock()
	if cached {
		if err := e.st.Check(p); err != nil {
			c.cancel(err)
		}
	}
	return ctx, func() {
		s.mu.Lock()
		if m := s.streams[p.Subject]; m != nil {
			delete(m, c)
			if len(m) == 0 {
				delete(s.streams, p.Subject)
			}
		}
		s.mu.Unlock()
		cancel(context.Canceled)
	}
}

// RevokedCause returns the Unauthenticated error a tracked context (Track) was cancelled with, or nil
// when it was not revoked.
func RevokedCause(ctx context.Context) error {
	if cause := context.Cause(ctx); cause != nil && errors.Is(cause, ErrRevoked) {
		return cause
	}
	return nil
}
