package identity

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// KeyStore is what a KeyManager needs from the store. Store implements it.
type KeyStore interface {
	// SaveSigningKey inserts k or updates its RetireAt.
	SaveSigningKey(ctx context.Context, k SigningKey) error
	// SigningKeys returns every key not retired before at, newest first.
	SigningKeys(ctx context.Context, at time.Time) ([]SigningKey, error)
}

// Defaults applied by NewKeyManager to zero KeyOptions fields.
const (
	// DefaultAccessTokenTTL is the suggested lifetime of access tokens, and the overlap it implies.
	DefaultAccessTokenTTL = 15 * time.Minute
	// DefaultKeyLeeway covers clock skew between the issuer and verifiers.
	DefaultKeyLeeway = time.Minute
	// DefaultKeyCacheTTL is how long keys read from the store are reused.
	DefaultKeyCacheTTL = 30 * time.Second
	// DefaultKeyRotation is the suggested KeyOptions.RotationInterval for deployments. It is not applied
	// to a zero interval, which means manual rotation.
	DefaultKeyRotation = 24 * time.Hour
)

// KeyOptions configures a KeyManager.
type KeyOptions struct {
	// AccessTokenTTL must be the lifetime of the access tokens the keys sign: a rotated-out key stays
	// published for AccessTokenTTL + Leeway, so every token it signed keeps verifying until it expires.
	// Default DefaultAccessTokenTTL.
	AccessTokenTTL time.Duration
	// Leeway is added to the overlap for clock skew. Default DefaultKeyLeeway.
	Leeway time.Duration
	// RotationInterval, when positive, makes Run rotate the key once it is that old. Zero means manual
	// rotation (Rotate).
	RotationInterval time.Duration
	// CacheTTL is how long keys read from the store are reused before reading them again, which is also
	// how long a replica may keep signing with a key that another replica rotated out. It is capped at
	// Leeway, so that such tokens still expire before their key leaves the JWKS. Default
	// DefaultKeyCacheTTL.
	CacheTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives rotation events and Run's store failures. Nil discards them.
	Logger *slog.Logger
}

// KeyManager keeps the Ed25519 keys that sign access tokens: it creates the first key on first use,
// rotates keys on demand or on a schedule, and answers which key signs (Current) and which keys verify
// (PublicKeys). Several replicas may share one store; each reads the keys through a short cache. It is
// safe for concurrent use.
type KeyManager struct {
	store KeyStore
	opts  KeyOptions

	// writeMu serialises this process's key creation and rotation.
	writeMu sync.Mutex

	mu       sync.Mutex
	cached   []SigningKey // SigningKeys as of loadedAt, current first
	loadedAt time.Time
	loaded   bool
}

// NewKeyManager returns a KeyManager over store.
func NewKeyManager(store KeyStore, opts KeyOptions) *KeyManager {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	setDefault(&opts.AccessTokenTTL, DefaultAccessTokenTTL)
	setDefault(&opts.Leeway, DefaultKeyLeeway)
	setDefault(&opts.CacheTTL, DefaultKeyCacheTTL)
	opts.CacheTTL = min(opts.CacheTTL, opts.Leeway)
	return &KeyManager{store: store, opts: opts}
}

// Current returns the key that signs new tokens, creating the first key when there is none.
func (m *KeyManager) Current(ctx context.Context) (SigningKey, error) {
	keys, err := m.keys(ctx)
	if err != nil {
		return SigningKey{}, err
	}
	if len(keys) > 0 && keys[0].RetireAt.IsZero() {
		return keys[0], nil
	}
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	// Another call may have created it while this one waited.
	m.invalidate()
	if keys, err = m.keys(ctx); err != nil {
		return SigningKey{}, err
	}
	if len(keys) > 0 && keys[0].RetireAt.IsZero() {
		return keys[0], nil
	}
	k, err := m.create(ctx)
	if err != nil {
		return SigningKey{}, err
	}
	m.opts.Logger.InfoContext(ctx, "created the first token signing key", "kid", k.KID)
	return k, nil
}

// SigningKey returns the current key's id and private key. It makes a KeyManager the key source of the
// platform's JWT issuer (jwt.KeySource).
func (m *KeyManager) SigningKey(ctx context.Context) (string, ed25519.PrivateKey, error) {
	k, err := m.Current(ctx)
	if err != nil {
		return "", nil, err
	}
	priv, err := k.Signer()
	if err != nil {
		return "", nil, err
	}
	return k.KID, priv, nil
}

// PublicKeys returns the keys that verify tokens now, current key first: the current key and every
// rotated-out key whose RetireAt has not passed. PrivateKey is cleared.
func (m *KeyManager) PublicKeys(ctx context.Context) ([]SigningKey, error) {
	if _, err := m.Current(ctx); err != nil {
		return nil, err
	}
	keys, err := m.keys(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]SigningKey, len(keys))
	for i, k := range keys {
		k.PrivateKey = nil
		out[i] = k
	}
	return out, nil
}

// Rotate makes a new current key. Keys that were current keep verifying until now + AccessTokenTTL +
// Leeway, after which they leave PublicKeys.
func (m *KeyManager) Rotate(ctx context.Context) (SigningKey, error) {
	m.writeMu.Lock()
	defer m.writeMu.Unlock()
	now := m.now()
	old, err := m.store.SigningKeys(ctx, now)
	if err != nil {
		return SigningKey{}, fmt.Errorf("load signing keys: %w", err)
	}
	// The new key is saved first, so that there is a current key at every moment.
	k, err := m.create(ctx)
	if err != nil {
		return SigningKey{}, err
	}
	retire := now.Add(m.opts.AccessTokenTTL + m.opts.Leeway)
	for _, o := range old {
		if !o.RetireAt.IsZero() || o.KID == k.KID {
			continue
		}
		o.RetireAt = retire
		if err := m.store.SaveSigningKey(ctx, o); err != nil {
			return SigningKey{}, fmt.Errorf("retire signing key %s: %w", o.KID, err)
		}
	}
	m.invalidate()
	m.opts.Logger.InfoContext(ctx, "rotated the token signing key", "kid", k.KID, "previous_retire_at", retire)
	return k, nil
}

// Run creates the first key if needed and, when RotationInterval is positive, rotates the key whenever it
// reaches that age, until ctx is done; then it returns nil. With manual rotation it returns once the
// first key exists. Store failures are logged and retried.
func (m *KeyManager) Run(ctx context.Context) error {
	for {
		wait := m.step(ctx)
		if m.opts.RotationInterval <= 0 && wait == 0 {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// step rotates the key if it is due and returns how long to wait before the next step.
func (m *KeyManager) step(ctx context.Context) time.Duration {
	retry := min(time.Minute, max(m.opts.RotationInterval, time.Second))
	cur, err := m.Current(ctx)
	if err != nil {
		if ctx.Err() == nil {
			m.opts.Logger.ErrorContext(ctx, "load token signing key", "err", err, "retry_in", retry)
		}
		return retry
	}
	if m.opts.RotationInterval <= 0 {
		return 0
	}
	due := cur.CreatedAt.Add(m.opts.RotationInterval)
	if wait := due.Sub(m.now()); wait > 0 {
		return wait
	}
	if _, err := m.Rotate(ctx); err != nil {
		if ctx.Err() == nil {
			m.opts.Logger.ErrorContext(ctx, "rotate token signing key", "err", err, "retry_in", retry)
		}
		return retry
	}
	return m.opts.RotationInterval
}

// keys returns the published keys at now, current first, from the cache or the store.
func (m *KeyManager) keys(ctx context.Context) ([]SigningKey, error) {
	now := m.now()
	m.mu.Lock()
	cached, fresh := m.cached, m.loaded && now.Sub(m.loadedAt) < m.opts.CacheTTL && !now.Before(m.loadedAt)
	m.mu.Unlock()
	if !fresh {
		keys, err := m.store.SigningKeys(ctx, now)
		if err != nil {
			return nil, fmt.Errorf("load signing keys: %w", err)
		}
		// Current (never retired) first, then newest first, whatever order the store used.
		slices.SortStableFunc(keys, func(a, b SigningKey) int {
			if a.RetireAt.IsZero() != b.RetireAt.IsZero() {
				if a.RetireAt.IsZero() {
					return -1
				}
				return 1
			}
			return b.CreatedAt.Compare(a.CreatedAt)
		})
		m.mu.Lock()
		m.cached, m.loadedAt, m.loaded = keys, now, true
		m.mu.Unlock()
		cached = keys
	}
	out := make([]SigningKey, 0, len(cached))
	for _, k := range cached {
		if k.RetireAt.IsZero() || now.Before(k.RetireAt) {
			out = append(out, k)
		}
	}
	return out, nil
}

func (m *KeyManager) invalidate() {
	m.mu.Lock()
	m.loaded = false
	m.mu.Unlock()
}

// create makes and saves a new current key.
func (m *KeyManager) create(ctx context.Context) (SigningKey, error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return SigningKey{}, fmt.Errorf("generate signing key: %w", err)
	}
	k := SigningKey{
		KID:        Thumbprint(pub),
		PrivateKey: priv.Seed(),
		PublicKey:  pub,
		CreatedAt:  m.now(),
	}
	if err := m.store.SaveSigningKey(ctx, k); err != nil {
		return SigningKey{}, fmt.Errorf("save signing key %s: %w", k.KID, err)
	}
	m.invalidate()
	return k, nil
}

func (m *KeyManager) now() time.Time { return m.opts.Now().UTC().Truncate(time.Microsecond) }

// Thumbprint returns the RFC 7638 JWK thumbprint of an Ed25519 public key (RFC 8037), base64url-encoded:
// the key id of the keys a KeyManager creates. Deriving the kid from the key makes it unique without
// coordination between replicas.
func Thumbprint(pub ed25519.PublicKey) string {
	// The members in lexicographic order, without whitespace, as RFC 7638 requires.
	jwk := `{"crv":"Ed25519","kty":"OKP","x":"` + base64.RawURLEncoding.EncodeToString(pub) + `"}`
	sum := sha256.Sum256([]byte(jwk))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// Signer returns k's private key for signing. It fails when k carries no valid seed (PublicKeys clears it).
func (k SigningKey) Signer() (ed25519.PrivateKey, error) {
	if len(k.PrivateKey) != ed25519.SeedSize {
		return nil, errors.New("signing key " + k.KID + " has no private key")
	}
	return ed25519.NewKeyFromSeed(k.PrivateKey), nil
}

// Verifier returns k's public key. It fails when k carries no valid public key.
func (k SigningKey) Verifier() (ed25519.PublicKey, error) {
	if len(k.PublicKey) != ed25519.PublicKeySize {
		return nil, errors.New("signing key " + k.KID + " has no valid public key")
	}
	return ed25519.PublicKey(k.PublicKey), nil
}
