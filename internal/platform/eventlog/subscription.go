package eventlog

import (
	"context"
	"sync"

	"lastmile/internal/platform/apperr"
)

// Subscription is one in-process subscriber of a Log, reading the events after its cursor in
// sequence order: first from the database until it reaches what the tailer had delivered when it
// subscribed, then from a bounded buffer the tailer fills. Next and NextBatch are meant for one
// goroutine; Close may be called from any.
type Subscription struct {
	log *Log
	// catchUpTo is the tailer's position when the subscription started: events up to it are read
	// from the database, later ones arrive in queue.
	catchUpTo int64
	limit     int
	ready     chan struct{}
	done      chan struct{}
	once      sync.Once

	mu     sync.Mutex
	cursor int64 // the newest seq returned to the consumer
	queue  []Event
	err    error
}

// Subscribe starts a subscription receiving the events committed after seq `from` (0 for the whole
// retained log, FromHead for only what commits from now on, or the Cursor of an earlier subscription,
// on this replica or another). It waits until the tailer has first reached the database (Run), within
// ctx. A subscription from an older cursor reads the events up to the tailer's position from the
// database while newer ones wait in its buffer, so it too is dropped if it cannot catch up. The caller
// must Close the subscription.
//
// Errors: Invalid for a cursor below FromHead or beyond the newest committed event;
// FailedPrecondition wrapping ErrCursorExpired when retention has deleted events after from;
// Unavailable wrapping ErrClosed when the log has stopped, or with ctx's error when ctx ends first.
func (l *Log) Subscribe(ctx context.Context, from int64) (*Subscription, error) {
	if from < FromHead {
		return nil, apperr.Errorf(apperr.Invalid, "event log cursor %d: want a sequence number or FromHead", from)
	}
	select {
	case <-l.ready:
	case <-ctx.Done():
		return nil, apperr.Wrap(apperr.Unavailable, ctx.Err(), "the event log has not started")
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errClosed()
	}
	s := &Subscription{
		log:       l,
		catchUpTo: l.pos,
		limit:     l.opts.Buffer,
		ready:     make(chan struct{}, 1),
		done:      make(chan struct{}),
		cursor:    from,
	}
	if from == FromHead {
		s.cursor = l.pos
	}
	l.subs[s] = struct{}{}
	l.mu.Unlock()

	switch {
	case s.cursor < s.catchUpTo:
		// Fail now rather than at the first Next: a handler can refuse the call before streaming.
		_, pruned, err := l.src.Read(ctx, s.cursor, 1)
		if err != nil {
			s.Close()
			return nil, apperr.Wrap(apperr.Unavailable, err, "cannot read the event log")
		}
		if pruned > s.cursor {
			s.Close()
			return nil, errExpired(s.cursor, pruned)
		}
	case s.cursor > s.catchUpTo:
		head, err := l.Head(ctx)
		if err != nil {
			s.Close()
			return nil, apperr.Wrap(apperr.Unavailable, err, "cannot read the event log")
		}
		if s.cursor > head {
			s.Close()
			return nil, apperr.Errorf(apperr.Invalid, "event log cursor %d is beyond the newest event %d", s.cursor, head)
		}
	}
	return s, nil
}

// Next returns the next event, waiting for one until ctx ends. See NextBatch for the errors.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	events, err := s.NextBatch(ctx, 1)
	if err != nil {
		return Event{}, err
	}
	return events[0], nil
}

// NextBatch returns the next 1..limit events in sequence order, waiting for at least one until ctx ends.
//
// Errors: ctx's error when it ends; once the subscription has ended, always the same error:
// ResourceExhausted wrapping ErrTooSlow when the subscriber fell behind, FailedPrecondition wrapping
// ErrCursorExpired when retention overtook it, Unavailable wrapping ErrClosed when the log stopped or
// Close was called; Unavailable when catching up from the database fails (the subscription stays
// usable: call again).
func (s *Subscription) NextBatch(ctx context.Context, limit int) ([]Event, error) {
	if limit <= 0 {
		return nil, apperr.Errorf(apperr.Invalid, "event batch size %d: want at least 1", limit)
	}
	for {
		s.mu.Lock()
		err, cursor := s.err, s.cursor
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if cursor < s.catchUpTo {
			events, err := s.catchUp(ctx, cursor, limit)
			if err != nil || len(events) > 0 {
				return events, err
			}
			continue
		}
		if events := s.pop(limit); len(events) > 0 {
			return events, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.done:
		case <-s.ready:
		}
	}
}

// catchUp reads events after cursor, up to catchUpTo, from the database.
func (s *Subscription) catchUp(ctx context.Context, cursor int64, limit int) ([]Event, error) {
	events, pruned, err := s.log.src.Read(ctx, cursor, min(limit, s.log.opts.Batch))
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, apperr.Wrap(apperr.Unavailable, err, "cannot read the event log")
	}
	if pruned > cursor {
		err := errExpired(cursor, pruned)
		s.end(err)
		return nil, err
	}
	n := 0
	for n < len(events) && events[n].Seq <= s.catchUpTo {
		n++
	}
	events = events[:n]
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	if n > 0 {
		s.cursor = events[n-1].Seq
	} else {
		// Nothing committed between cursor and catchUpTo, and sequence order being commit order,
		// nothing ever will (the numbers belonged to rolled-back transactions).
		s.cursor = s.catchUpTo
	}
	return events, nil
}

// pop takes up to limit queued events after the cursor.
func (s *Subscription) pop(limit int) []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.queue) > 0 && s.queue[0].Seq <= s.cursor {
		s.queue = s.queue[1:] // delivered live before the cursor was reached (a cursor ahead of the tailer)
	}
	n := min(limit, len(s.queue))
	if n == 0 {
		s.queue = nil
		return nil
	}
	out := make([]Event, n)
	copy(out, s.queue)
	clear(s.queue[:n])
	s.queue = s.queue[n:]
	s.cursor = out[n-1].Seq
	return out
}

// push queues events, or reports false when they do not fit. The caller holds log.mu.
func (s *Subscription) push(events []Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return true // ended; the log forgets it shortly
	}
	if len(s.queue)+len(events) > s.limit {
		return false
	}
	s.queue = append(s.queue, events...)
	select {
	case s.ready <- struct{}{}:
	default: // a signal is pending already, and the consumer drains everything after it
	}
	return true
}

// Cursor returns the sequence number of the newest event returned so far (or the starting cursor): the
// value to subscribe again from, here or on another replica, after an error.
func (s *Subscription) Cursor() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursor
}

// Done is closed when the subscription ends; Next then returns the reason.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Close ends the subscription. It is idempotent.
func (s *Subscription) Close() { s.end(errClosed()) }

// end ends the subscription with err, once.
func (s *Subscription) end(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.err = err
		s.queue = nil
		s.mu.Unlock()
		close(s.done)
		s.log.mu.Lock()
		delete(s.log.subs, s)
		s.log.mu.Unlock()
	})
}
