package jwt

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"lastmile/internal/platform/apperr"
)

// Defaults applied by NewKeyCache to zero KeyCacheConfig fields.
const (
	DefaultRefreshInterval    = 5 * time.Minute
	DefaultMinRefreshInterval = 10 * time.Second
	DefaultFetchTimeout       = 5 * time.Second
)

// PublicKey is one token verification key.
type PublicKey struct {
	// KID is the key id that tokens signed by the key carry in their "kid" header.
	KID string
	// Key is the Ed25519 public key.
	Key ed25519.PublicKey
}

// KeySetFetcher fetches the current verification keys from the identity service: over gRPC (GetJwks) in
// the services, over HTTP (JWKSEndpoint) from a JWKS document, or from the key store inside identity.
type KeySetFetcher interface {
	// FetchKeySet returns every key that may verify a token now: the current signing key and the keys
	// still in their overlap period.
	FetchKeySet(ctx context.Context) ([]PublicKey, error)
}

// FetcherFunc adapts a function to KeySetFetcher.
type FetcherFunc func(ctx context.Context) ([]PublicKey, error)

// FetchKeySet implements KeySetFetcher.
func (f FetcherFunc) FetchKeySet(ctx context.Context) ([]PublicKey, error) { return f(ctx) }

// KeyCacheConfig configures a KeyCache.
type KeyCacheConfig struct {
	// RefreshInterval is the age after which the keys are refreshed; the lookup that notices serves the
	// keys it has and refreshes in the background. Default DefaultRefreshInterval.
	RefreshInterval time.Duration
	// MinRefreshInterval is the least time between two fetches triggered by lookups, whether for age, an
	// unknown kid or a retry after a failure. Anyone can send a token naming a random kid; this bounds
	// what that costs the identity service. Default DefaultMinRefreshInterval.
	MinRefreshInterval time.Duration
	// FetchTimeout bounds one fetch. Default DefaultFetchTimeout.
	FetchTimeout time.Duration
	// Logger receives refresh failures. Nil means slog.Default().
	Logger *slog.Logger
}

// KeyCache holds the verification keys of a KeySetFetcher and keeps them fresh (see the package
// documentation). It implements Keys and is safe for concurrent use. Lookups of known keys take no lock.
type KeyCache struct {
	fetcher      KeySetFetcher
	interval     time.Duration
	fetchTimeout time.Duration
	logger       *slog.Logger

	keys atomic.Pointer[keySnapshot] // nil until the first successful fetch

	mu      sync.Mutex
	limiter *rate.Limiter
	flight  *flight // the fetch in progress, or nil
}

// keySnapshot is an immutable key set as fetched at one moment.
type keySnapshot struct {
	keys      map[string]ed25519.PublicKey
	fetchedAt time.Time
}

// flight is one fetch that every concurrent refresh waits for. err is written before done is closed.
type flight struct {
	done chan struct{}
	err  error
}

var _ Keys = (*KeyCache)(nil)

// NewKeyCache returns an empty cache over f. It fetches on the first lookup; call Refresh at start-up to
// fetch before the first request.
func NewKeyCache(f KeySetFetcher, cfg KeyCacheConfig) (*KeyCache, error) {
	switch {
	case f == nil:
		return nil, errors.New("key cache: no fetcher")
	case cfg.RefreshInterval < 0 || cfg.MinRefreshInterval < 0 || cfg.FetchTimeout < 0:
		return nil, errors.New("key cache: negative interval")
	}
	if cfg.RefreshInterval == 0 {
		cfg.RefreshInterval = DefaultRefreshInterval
	}
	if cfg.MinRefreshInterval == 0 {
		cfg.MinRefreshInterval = DefaultMinRefreshInterval
	}
	if cfg.FetchTimeout == 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &KeyCache{
		fetcher:      f,
		interval:     cfg.RefreshInterval,
		fetchTimeout: cfg.FetchTimeout,
		logger:       cfg.Logger,
		limiter:      rate.NewLimiter(rate.Every(cfg.MinRefreshInterval), 1),
	}, nil
}

// Key implements Keys. A known key is returned at once, refreshing the set in the background when it is
// older than the refresh interval. An unknown kid waits for a refresh, unless one ran less than
// MinRefreshInterval ago: then it is refused as unknown. Key returns an apperr.Unauthenticated error for
// a kid the fetched set does not hold, and an apperr.Unavailable error when no key set could be fetched
// or the refresh that might have found the kid failed. After a failed refresh the keys fetched before stay
// in use.
func (c *KeyCache) Key(ctx context.Context, kid string) (ed25519.PublicKey, error) {
	snap := c.keys.Load()
	if snap != nil {
		if key, ok := snap.keys[kid]; ok {
			if time.Since(snap.fetchedAt) >= c.interval {
				c.startFetch(false) // in the background: this lookup has its answer
			}
			return key, nil
		}
	}
	f := c.startFetch(false)
	if f == nil {
		if snap == nil {
			return nil, apperr.Wrap(apperr.Unavailable, errors.New("no key set fetched yet, refresh rate-limited"),
				"access token verification keys unavailable")
		}
		return nil, unknownKey(kid)
	}
	if err := c.wait(ctx, f); err != nil {
		return nil, apperr.Wrap(apperr.Unavailable, fmt.Errorf("look up key %q: %w", kid, err),
			"access token verification keys unavailable")
	}
	if key, ok := c.keys.Load().keys[kid]; ok {
		return key, nil
	}
	return nil, unknownKey(kid)
}

// Refresh fetches the key set now, or waits for the fetch already in progress, regardless of
// MinRefreshInterval. The identity service calls it after rotating its key; a service may call it at
// start-up. It returns an error when the fetch fails (the previous keys stay in use) or ctx ends first.
func (c *KeyCache) Refresh(ctx context.Context) error {
	return c.wait(ctx, c.startFetch(true))
}

// wait waits for f and returns its error, or ctx's if ctx ends first; the fetch carries on regardless.
func (c *KeyCache) wait(ctx context.Context, f *flight) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return fmt.Errorf("wait for key set: %w", context.Cause(ctx))
	}
}

// startFetch returns the fetch in progress or starts one. Unless force is set, it starts one only when
// the rate limiter allows and returns nil otherwise.
func (c *KeyCache) startFetch(force bool) *flight {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.flight != nil {
		return c.flight
	}
	if !force && !c.limiter.Allow() {
		return nil
	}
	f := &flight{done: make(chan struct{})}
	c.flight = f
	// The fetch runs on its own goroutine and context: it serves every waiter, so no single caller's
	// cancellation (or context values) may decide it. FetchTimeout bounds its life.
	go c.fetch(f)
	return f
}

func (c *KeyCache) fetch(f *flight) {
	ctx, cancel := context.WithTimeout(context.Background(), c.fetchTimeout)
	keys, err := c.fetcher.FetchKeySet(ctx)
	cancel()
	var snap *keySnapshot
	if err == nil {
		snap, err = newKeySnapshot(keys, time.Now())
	}
	if err == nil {
		c.keys.Store(snap)
	} else {
		err = fmt.Errorf("fetch key set: %w", err)
		attrs := []slog.Attr{slog.String("error", err.Error())}
		if old := c.keys.Load(); old != nil {
			attrs = append(attrs, slog.Int("cached_keys", len(old.keys)), slog.Duration("cached_age", time.Since(old.fetchedAt)))
		}
		c.logger.LogAttrs(ctx, slog.LevelWarn, "refreshing token verification keys failed; keeping the cached keys", attrs...)
	}
	c.mu.Lock()
	c.flight = nil
	c.mu.Unlock()
	f.err = err
	close(f.done)
}

// newKeySnapshot indexes keys by kid. Keys without a kid or of the wrong size are skipped, and the first
// of several keys with one kid wins (JWKS lists the current key first). An empty result is an error, not
// an empty set: it would refuse every token, and a fetch that returns nothing is more likely broken than
// right.
func newKeySnapshot(keys []PublicKey, now time.Time) (*keySnapshot, error) {
	m := make(map[string]ed25519.PublicKey, len(keys))
	for _, k := range keys {
		if k.KID == "" || len(k.Key) != ed25519.PublicKeySize {
			continue
		}
		if _, dup := m[k.KID]; !dup {
			m[k.KID] = slices.Clone(k.Key)
		}
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("no usable Ed25519 key among %d", len(keys))
	}
	return &keySnapshot{keys: m, fetchedAt: now}, nil
}

func unknownKey(kid string) error {
	// The kid is attacker-chosen: quote it, and only into the cause, which is logged, never returned.
	return apperr.Wrap(apperr.Unauthenticated, fmt.Errorf("unknown key id %.64q", kid), "invalid access token")
}
