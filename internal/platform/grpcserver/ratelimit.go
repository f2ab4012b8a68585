package grpcserver

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/grpcauth"
)

// rateLimiter keeps one token bucket per principal, for a bounded number of principals.
type rateLimiter struct {
	limit   rate.Limit
	burst   int
	buckets *lru.Cache[string, *rate.Limiter]
}

// newRateLimiter returns the limiter for cfg, or nil when cfg disables rate limiting.
func newRateLimiter(cfg RateLimit) (*rateLimiter, error) {
	switch {
	case math.IsNaN(cfg.RPS) || math.IsInf(cfg.RPS, 0) || cfg.RPS < 0:
		return nil, fmt.Errorf("rate limit: RPS %v is not a finite non-negative number", cfg.RPS)
	case cfg.Burst < 0:
		return nil, errors.New("rate limit: Burst is negative")
	case cfg.MaxKeys < 0:
		return nil, errors.New("rate limit: MaxKeys is negative")
	case cfg.RPS == 0:
		return nil, nil
	}
	burst := cfg.Burst
	if burst == 0 {
		burst = max(1, int(math.Ceil(cfg.RPS)))
	}
	maxKeys := cfg.MaxKeys
	if maxKeys == 0 {
		maxKeys = DefaultRateLimitKeys
	}
	buckets, err := lru.New[string, *rate.Limiter](maxKeys)
	if err != nil {
		return nil, fmt.Errorf("rate limit: %w", err)
	}
	return &rateLimiter{limit: rate.Limit(cfg.RPS), burst: burst, buckets: buckets}, nil
}

// allow takes a token from key's bucket, or returns an apperr.ResourceExhausted error saying when the next
// token is due.
func (l *rateLimiter) allow(key string) error {
	lim, ok := l.buckets.Get(key)
	if !ok {
		lim = rate.NewLimiter(l.limit, l.burst)
		// Two first calls of one principal may race here; PeekOrAdd makes them share one bucket.
		if prev, found, _ := l.buckets.PeekOrAdd(key, lim); found {
			lim = prev
		}
	}
	now := time.Now()
	r := lim.ReserveN(now, 1)
	if delay := r.DelayFrom(now); delay > 0 {
		r.CancelAt(now)
		return &apperr.Error{Code: apperr.ResourceExhausted, Message: "rate limit exceeded", RetryAfter: delay,
			Err: fmt.Errorf("rate limit of %v/s (burst %d) exceeded by %s", float64(l.limit), l.burst, key)}
	}
	return nil
}

// rateKey names the bucket of a call: users by id, services by name, anonymous callers by their network
// (grpcauth.ClientKey): for calls an edge proxy forwards, the client address the proxy saw, so that REST
// callers do not all share the gateway's bucket.
func rateKey(ctx context.Context, p auth.Principal) string {
	switch p.Kind {
	case auth.User:
		return "user:" + p.Subject
	case auth.Service:
		return "service:" + p.Subject
	}
	if key := grpcauth.ClientKey(ctx); key != "" {
		return "anonymous:" + key
	}
	return "anonymous"
}
