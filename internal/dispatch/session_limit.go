package dispatch

import (
	"fmt"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"lastmile/internal/platform/apperr"
)

// The message budget of courier sessions.
//
// Every command a courier sends is stored with its outcome for Options.Idempotency (48 h), and every
// ack is a write; without a bound, one session could store thousands of command results a second. So
// each courier has a token bucket (Options.SessionBurst tokens, refilled at Options.SessionRate a
// second; by default 100 and 5) from which every command and every ack takes one token (CourierSession.
// Admit), whatever the session: a reconnect does not refill it.
//
// A real app sends a handful of commands a minute and one ack per delivery (a few a minute); the burst
// covers an app coming back online, which sends the commands it queued (a few per task it holds) and
// acknowledges a replay delivery by delivery, and the rate is more than ten times a busy courier's
// live traffic. A hostile session is held to 5 stored outcomes a second, about 860,000 in the 48 hours
// they are kept, instead of the thousands a second it could store unbounded.
//
// Going over the budget ends the stream with ResourceExhausted, saying when the next token is due
// (RetryAfter), without a drain: a command error would be final for the app (the contract stores every
// error but ABORTED and UNAVAILABLE and tells the app to send a fixed command under a new id), an ack has
// no result to carry one, and no drain code fits. Nothing is lost: deliveries not acknowledged are
// replayed on the next session, and a command that got no result is resent under its command_id.

// maxSessionLimits bounds the couriers whose buckets a replica remembers (the least recently used is
// forgotten first): above the sessions a replica holds (grpc's cap on StreamAssignments is 20000).
const maxSessionLimits = 50000

// sessionLimits holds the buckets of the couriers with recent sessions on this replica.
type sessionLimits struct {
	rate    rate.Limit
	burst   int
	buckets *lru.Cache[string, *rate.Limiter]
}

func newSessionLimits(perSecond float64, burst int) *sessionLimits {
	buckets, err := lru.New[string, *rate.Limiter](maxSessionLimits)
	if err != nil {
		panic(err) // only for a size below 1
	}
	return &sessionLimits{rate: rate.Limit(perSecond), burst: burst, buckets: buckets}
}

// of returns courierID's bucket, full when new.
func (l *sessionLimits) of(courierID string) *rate.Limiter {
	if lim, ok := l.buckets.Get(courierID); ok {
		return lim
	}
	lim := rate.NewLimiter(l.rate, l.burst)
	// Two sessions of one courier opening at once share one bucket.
	if prev, found, _ := l.buckets.PeekOrAdd(courierID, lim); found {
		return prev
	}
	return lim
}

// Admit takes one message (a command or an ack) from the courier's budget; the stream's receiver calls
// it for every message after hello, before handling it. Over the budget it returns ResourceExhausted
// with RetryAfter set to when the next token is due, and the stream must end with it (see
// session_limit.go).
func (c *CourierSession) Admit() error {
	now := c.s.now()
	r := c.limit.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if delay <= 0 {
		return nil
	}
	r.CancelAt(now)
	l := c.s.sessionLimits
	c.s.logger.Warn("courier session ended: over its message budget", "courier", c.courierID, "session", c.id,
		"burst", l.burst, "per_second", float64(l.rate))
	return &apperr.Error{Code: apperr.ResourceExhausted, RetryAfter: delay,
		Message: fmt.Sprintf("more than %d commands and acks at once, or %g a second, on this courier's sessions: reconnect after the retry delay", l.burst, float64(l.rate))}
}
