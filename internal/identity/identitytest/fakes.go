// Package identitytest helps the tests of the identity service and its adapters: a cheap PasswordHasher
// and a TokenIssuer standing in for the platform's, and SQLiteStore, the real store on a temporary
// SQLite file (tests use the store they run on in production, never a copy of it).
package identitytest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"lastmile/internal/identity"
)

// Hasher is a fast identity.PasswordHasher for tests: an unsalted SHA-256, worthless as protection and
// free of Argon2id's cost. Hashes made while Version was lower than the current one need a rehash, to
// exercise hash upgrades. The zero value is ready to use.
type Hasher struct {
	mu      sync.Mutex
	version int
	hashes  int
	dummies int
}

var _ identity.PasswordHasher = (*Hasher)(nil)

// Hash implements identity.PasswordHasher. It counts its calls.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.hashes++
	return h.hash(h.version, password), nil
}

// Hashes returns how many times Hash was called with a live context.
func (h *Hasher) Hashes() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hashes
}

func (h *Hasher) hash(version int, password string) string {
	sum := sha256.Sum256([]byte(password))
	return fmt.Sprintf("fake$v%d$%s", version, hex.EncodeToString(sum[:]))
}

// Verify implements identity.PasswordHasher.
func (h *Hasher) Verify(ctx context.Context, password, encoded string) (ok, needsRehash bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, false, err
	}
	var version int
	var digest string
	if _, err := fmt.Sscanf(strings.ReplaceAll(encoded, "$", " "), "fake v%d %s", &version, &digest); err != nil {
		return false, false, errors.New("malformed fake password hash")
	}
	h.mu.Lock()
	current := h.version
	h.mu.Unlock()
	ok = subtle.ConstantTimeCompare([]byte(h.hash(version, password)), []byte(encoded)) == 1
	return ok, ok && version < current, nil
}

// DummyVerify implements identity.PasswordHasher. It counts its calls.
func (h *Hasher) DummyVerify(ctx context.Context, _ string) error {
	h.mu.Lock()
	h.dummies++
	h.mu.Unlock()
	return ctx.Err()
}

// DummyVerifies returns how many times DummyVerify was called.
func (h *Hasher) DummyVerifies() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dummies
}

// Upgrade makes hashes made before it outdated: Verify reports needsRehash for them.
func (h *Hasher) Upgrade() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.version++
}

// Issuer is an identity.TokenIssuer for tests. Its tokens are "access.<userID>.<roles>.<n>", unsigned,
// expiring TTL (default 15 minutes) after Now (default time.Now).
type Issuer struct {
	TTL time.Duration
	Now func() time.Time

	mu sync.Mutex
	n  int
}

var _ identity.TokenIssuer = (*Issuer)(nil)

// Issue implements identity.TokenIssuer.
func (i *Issuer) Issue(ctx context.Context, userID string, roles []string) (string, time.Time, error) {
	if err := ctx.Err(); err != nil {
		return "", time.Time{}, err
	}
	i.mu.Lock()
	i.n++
	n := i.n
	i.mu.Unlock()
	now, ttl := time.Now, i.TTL
	if i.Now != nil {
		now = i.Now
	}
	if ttl <= 0 {
		ttl = 15 * time.Minute
	}
	return fmt.Sprintf("access.%s.%s.%d", userID, strings.Join(roles, ","), n), now().Add(ttl), nil
}
