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
}

// subjectSub is one WatchSubjects call: changes wait in ch; overflow is closed when ch was full.
type subjectSub struct {
	ch       chan SubjectChange
	overflow chan struct{}
}

// publish delivers c to every watcher; a watcher whose buffer is full is marked overflowed and dropped
// (its WatchSubjects returns ResourceExhausted), never waited for.
func (w *subjectWatchers) publish(c SubjectChange) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for sub := range w.subs {
		select {
		case sub.ch <- c:
		default:
			close(sub.overflow)
			delete(w.subs, sub)
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
// watcher reconnects and starts with a reset); send's error, and ctx's, as they are.
func (s *Service) WatchSubjects(ctx context.Context, send func([]SubjectChange) error) error {
	sub := &subjectSub{ch: make(chan SubjectChange, s.watchers.buffer), overflow: make(chan struct{})}
	s.watchers.mu.Lock()
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
		case <-sub.overflow:
			return apperr.Errorf(apperr.ResourceExhausted, "subject changes were dropped while the watcher did not keep up; reconnect")
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
