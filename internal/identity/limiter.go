package identity

import (
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"lastmile/internal/platform/apperr"
)

// limiter counts events per key in a token bucket: burst events at once, then one more every
// window/burst. The login limits count failed attempts: an attempt takes a token before the password is
// checked (so that parallel attempts cannot overdraw the bucket) and gives it back when it succeeds. The
// sign-up limit counts every attempt. The keys live in an LRU of bounded size: an attacker spraying more
// keys than it holds makes the limiter forget old keys, which costs memory nothing and only weakens the
// limit for keys nobody touched for a while.
type limiter struct {
	limit rate.Limit
	burst int
	keys  *lru.Cache[string, *rate.Limiter]
	// message is what a refused caller reads.
	message string
}

func newLimiter(events int, window time.Duration, maxKeys int, message string) *limiter {
	// lru.New fails only for a non-positive size, which NewService's defaults exclude.
	keys, _ := lru.New[string, *rate.Limiter](maxKeys)
	return &limiter{
		limit:   rate.Limit(float64(events) / window.Seconds()),
		burst:   events,
		keys:    keys,
		message: message,
	}
}

// take takes one event from key's bucket at now. It returns the reservation, which the caller cancels
// (CancelAt) when the event should not count, or a ResourceExhausted error saying when to try again.
func (l *limiter) take(key string, now time.Time) (*rate.Reservation, error) {
	lim, ok := l.keys.Get(key)
	if !ok {
		lim = rate.NewLimiter(l.limit, l.burst)
		// Two first attempts on one key may race here; PeekOrAdd makes them share one bucket.
		if prev, found, _ := l.keys.PeekOrAdd(key, lim); found {
			lim = prev
		}
	}
	r := lim.ReserveN(now, 1)
	if delay := r.DelayFrom(now); delay > 0 {
		r.CancelAt(now)
		// Whole seconds: that is what a Retry-After header carries, and rounding down would invite a retry
		// that fails again.
		delay = (delay + time.Second - 1).Truncate(time.Second)
		return nil, &apperr.Error{
			Code:       apperr.ResourceExhausted,
			Message:    l.message,
			RetryAfter: delay,
			Err:        fmt.Errorf("limit of %d per %v reached", l.burst, time.Duration(float64(l.burst)/float64(l.limit)*float64(time.Second))),
		}
	}
	return r, nil
}

// forget resets key, after a success.
func (l *limiter) forget(key string) { l.keys.Remove(key) }
