package password

import (
	"context"
	"fmt"
	"sync/atomic"

	"lastmile/internal/platform/apperr"
)

// lane is one kind of hashing work (new hashes, or verifications) waiting for the Hasher's slots. Each
// kind has its own bounded line, so that a flood of one kind is refused at once instead of filling a
// line the other kind needs; new hashes may also be held to a share of the slots (share), so that
// sign-ups and password changes cannot take every slot from logins.
type lane struct {
	// what names the work in errors ("password hashes"); msg is what a refused caller reads.
	what, msg string
	// share, when not nil, bounds how many of the Hasher's slots this lane holds at once.
	share chan struct{}
	// waiting counts callers of this lane waiting for a slot; at most maxWaiting may.
	waiting    atomic.Int64
	maxWaiting int64
}

func newLane(what, msg string, share, maxWaiting int) *lane {
	l := &lane{what: what, msg: msg, maxWaiting: int64(maxWaiting)}
	if share > 0 {
		l.share = make(chan struct{}, share)
	}
	return l
}

// run derives a key once l may take one of slots.
func (h *Hasher) run(ctx context.Context, l *lane, password, salt []byte, p Params) ([]byte, error) {
	// A caller whose context has already ended gets no slot, even if one is free: select would pick at
	// random.
	if ctx.Err() != nil {
		return nil, tooBusy(l, fmt.Errorf("wait for a slot: %w", context.Cause(ctx)))
	}
	if !l.tryAcquire(h.slots) {
		// The line is bounded: beyond it, waiting would only add latency to a refusal that is coming
		// anyway, and hold the caller's goroutine and request meanwhile.
		if l.waiting.Add(1) > l.maxWaiting {
			l.waiting.Add(-1)
			return nil, tooBusy(l, fmt.Errorf("%d callers already wait for a slot", l.maxWaiting))
		}
		err := l.acquire(ctx, h.slots)
		l.waiting.Add(-1)
		if err != nil {
			return nil, tooBusy(l, fmt.Errorf("wait for a slot: %w", err))
		}
	}
	defer l.release(h.slots)
	return h.derive(password, salt, p), nil
}

// tryAcquire takes l's share and a slot if both are free now.
func (l *lane) tryAcquire(slots chan struct{}) bool {
	if l.share != nil {
		select {
		case l.share <- struct{}{}:
		default:
			return false
		}
	}
	select {
	case slots <- struct{}{}:
		return true
	default:
		if l.share != nil {
			<-l.share
		}
		return false
	}
}

// acquire waits for l's share and then a slot, until ctx ends.
func (l *lane) acquire(ctx context.Context, slots chan struct{}) error {
	if l.share != nil {
		select {
		case l.share <- struct{}{}:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
	select {
	case slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		if l.share != nil {
			<-l.share
		}
		return context.Cause(ctx)
	}
}

func (l *lane) release(slots chan struct{}) {
	<-slots
	if l.share != nil {
		<-l.share
	}
}

func tooBusy(l *lane, err error) error {
	return &apperr.Error{Code: apperr.ResourceExhausted, Message: l.msg,
		RetryAfter: retryAfter, Err: fmt.Errorf("%s: %w", l.what, err)}
}
