package identity

import (
	"context"
	"sync"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// SubjectChange is one change that WatchSubjects delivers: a user's new standing, or a reset.
type SubjectChange struct {
	// Reset says changes may have been missed: the watcher drops every standing it cached (and, after
	// the first change of a watch, ends its users' open calls). UserID and State are unset then.
	Reset bool
	// UserID is the user whose standing changed.
	UserID string
	// State is the user's standing now; the zero value (inactive) for a deleted or unknown user.
	State auth.SubjectState
}

// DefaultSubjectWatchBuffer is the default Options.SubjectWatchBuffer.
const DefaultSubjectWatchBuffer = 1024

// subjectWatchers fans the changes of users' standing out to WatchSubjects calls. It is safe for
// concurrent use.
type subjectWatchers struct {
	buffer int

	mu   sync.Mutex
	subs map[*subjectSub]struct{}
	// stopped is set when Run returned: new watches are refused until it runs again.
	stopped bool
}

// subjectSub is one WatchSubjects call: changes wait in ch; ended is closed, with err set, when the
// call must end (its buffer overflowed, or the service stops).
type subjectSub struct {
	ch    chan SubjectChange
	ended chan struct{}
	err   error
}

// errSubjectWatchStopped ends the watches when the service stops, so that they do not hold up the gRPC
// server's graceful stop: the watchers reconnect, to another replica.
var errSubjectWatchStopped = apperr.Errorf(apperr.Unavailable, "the identity service is stopping; reconnect")

// end ends sub with err and drops it; the caller holds w.mu.
func (w *subjectWatchers) end(sub *subjectSub, err error) {
	sub.err = err
	close(sub.ended)
	delete(w.subs, sub)
}

// publish delivers c to every watcher; a watcher whose buffer is full is ended (its WatchSubjects
// returns ResourceExhausted), never waited for.
func (w *subjectWatchers) publish(c SubjectChange) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for sub := range w.subs {
		select {
		case sub.ch <- c:
		default:
			w.end(sub, apperr.Errorf(apperr.ResourceExhausted, "subject changes were dropped while the watcher did not keep up; reconnect"))
		}
	}
}

// setStopped ends every watch with Unavailable and refuses new ones when stopped, and admits them again
// when not.
func (w *subjectWatchers) setStopped(stopped bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = stopped
	if stopped {
		for sub := range w.subs {
			w.end(sub, errSubjectWatchStopped)
		}
	}
}

// active reports whether anyone watches.
func (w *subjectWatchers) active() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.subs) > 0
}

// WatchSubjects delivers changes to users' standing to send until ctx ends or send fails, for a process
// that checks access tokens without hosting the identity service: each suspension, reactivation, role or
// password change, deletion and logout this replica commits or reads from the event log (Run). The
// first batch is a single reset (the watcher drops what it knew); later batches hold the changes
// gathered since the previous send, in order, and a reset whenever this replica lost events or could
// not read a changed user. send is called from one goroutine at a time.
//
// Errors: ResourceExhausted when more than Options.SubjectWatchBuffer changes waited for send (the
// watcher reconnects and starts with a reset); Unavailable when Run has returned (the service is
// stopping); send's error, and ctx's, as they are.
func (s *Service) WatchSubjects(ctx context.Context, send func([]SubjectChange) error) error {
	// The event feed's first subscription resets every watcher (Service.forgetSubjects); a watch that
	// starts after it needs only its own opening reset.
	if s.hub.feed != nil {
		if err := s.hub.waitReady(ctx); err != nil {
			return err
		}
	}
	sub := &subjectSub{ch: make(chan SubjectChange, s.watchers.buffer), ended: make(chan struct{})}
	s.watchers.mu.Lock()
	if s.watchers.stopped {
		s.watchers.mu.Unlock()
		return errSubjectWatchStopped
	}
	if s.watchers.subs == nil {
		s.watchers.subs = map[*subjectSub]struct{}{}
	}
	s.watchers.subs[sub] = struct{}{}
	s.watchers.mu.Unlock()
	defer func() {
		s.watchers.mu.Lock()
		delete(s.watchers.subs, sub)
		s.watchers.mu.Unlock()
	}()

	if err := send([]SubjectChange{{Reset: true}}); err != nil {
		return err
	}
	for {
		var batch []SubjectChange
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sub.ended:
			return sub.err
		case c := <-sub.ch:
			batch = append(batch, c)
		}
	drain:
		for len(batch) < s.watchers.buffer {
			select {
			case c := <-sub.ch:
				batch = append(batch, c)
			default:
				break drain
			}
		}
		if err := send(batch); err != nil {
			return err
		}
	}
}
