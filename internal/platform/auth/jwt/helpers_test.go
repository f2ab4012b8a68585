package jwt_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"lastmile/internal/platform/auth/jwt"
)

const (
	testIssuer   = "lastmile-identity"
	testAudience = "lastmile"
)

// signer is one Ed25519 key pair with its kid.
type signer struct {
	kid  string
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

func newSigner(t testing.TB, kid string) signer {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("generate key: %v", err)
	}
	return signer{kid: kid, priv: priv, pub: pub}
}

func (s signer) public() jwt.PublicKey { return jwt.PublicKey{KID: s.kid, Key: s.pub} }

// issuer returns an Issuer signing with s on the real clock.
func (s signer) issuer(t testing.TB) *jwt.Issuer {
	t.Helper()
	iss, err := jwt.NewIssuer(jwt.IssuerConfig{Issuer: testIssuer, Audience: testAudience, Keys: jwt.StaticKey{KID: s.kid, Key: s.priv}})
	if err != nil {
		t.Fatalf("NewIssuer() error = %v", err)
	}
	return iss
}

// issue signs an access token for subject with s, valid from now on for ttl.
func (s signer) issue(t testing.TB, now time.Time, ttl time.Duration, subject string, roles ...string) string {
	t.Helper()
	iss, err := jwt.NewIssuer(jwt.IssuerConfig{
		Issuer: testIssuer, Audience: testAudience, TTL: ttl,
		Keys: jwt.StaticKey{KID: s.kid, Key: s.priv},
		Now:  func() time.Time { return now },
	})
	if err != nil {
		t.Fatalf("NewIssuer() error = %v", err)
	}
	token, _, err := iss.Issue(context.Background(), subject, roles)
	if err != nil {
		t.Fatalf("Issue() error = %v", err)
	}
	return token
}

// claimsAt returns the claims of a valid token issued at now.
func claimsAt(now time.Time) gojwt.MapClaims {
	return gojwt.MapClaims{
		"iss":   testIssuer,
		"aud":   testAudience,
		"sub":   "u-1",
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(15 * time.Minute).Unix(),
		"jti":   "5d1a1c2e-5c4f-4b57-9b7a-7a1b2c3d4e5f",
		"roles": []string{"courier"},
	}
}

// sign signs claims with method and key under the given header fields, which replace or (with a nil
// value) delete the defaults typ "at+jwt" and kid.
func sign(t testing.TB, method gojwt.SigningMethod, key any, kid string, header map[string]any, claims gojwt.MapClaims) string {
	t.Helper()
	tok := gojwt.NewWithClaims(method, claims)
	tok.Header["typ"] = jwt.TokenType
	tok.Header["kid"] = kid
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
			continue
		}
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s token: %v", method.Alg(), err)
	}
	return s
}

// fetcher is a KeySetFetcher whose keys and failure the test sets, and which counts its calls.
type fetcher struct {
	mu    sync.Mutex
	keys  []jwt.PublicKey
	err   error
	calls int
	// gate, when set, makes each fetch wait for a value before answering.
	gate chan struct{}
}

func newFetcher(keys ...jwt.PublicKey) *fetcher { return &fetcher{keys: keys} }

func (f *fetcher) FetchKeySet(ctx context.Context) ([]jwt.PublicKey, error) {
	f.mu.Lock()
	f.calls++
	gate := f.gate
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return append([]jwt.PublicKey(nil), f.keys...), nil
}

func (f *fetcher) set(err error, keys ...jwt.PublicKey) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keys, f.err = keys, err
}

func (f *fetcher) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

var errIdentityDown = errors.New("identity unavailable")

// newCache returns a cache over f that logs nowhere, or to logger when given.
func newCache(t testing.TB, f jwt.KeySetFetcher, logger *slog.Logger) *jwt.KeyCache {
	t.Helper()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	c, err := jwt.NewKeyCache(f, jwt.KeyCacheConfig{Logger: logger})
	if err != nil {
		t.Fatalf("NewKeyCache() error = %v", err)
	}
	return c
}

// newVerifier returns a verifier over keys whose clock stands at now (the real clock when now is zero).
func newVerifier(t testing.TB, keys jwt.Keys, now time.Time) *jwt.Verifier {
	t.Helper()
	cfg := jwt.VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: keys}
	if !now.IsZero() {
		cfg.Now = func() time.Time { return now }
	}
	v, err := jwt.NewVerifier(cfg)
	if err != nil {
		t.Fatalf("NewVerifier() error = %v", err)
	}
	return v
}
