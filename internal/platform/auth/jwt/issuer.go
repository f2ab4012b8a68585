package jwt

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// TokenType is the "typ" header of access tokens (RFC 9068, section 2.1).
const TokenType = "at+jwt"

// Algorithm is the only signature algorithm issued and accepted: EdDSA with Ed25519 (RFC 8037).
const Algorithm = "EdDSA"

// DefaultTTL is the lifetime of an access token when IssuerConfig.TTL is zero. Access tokens cannot be
// revoked, so they live only as long as a refresh every few minutes is cheap to tolerate.
const DefaultTTL = 15 * time.Minute

// KeySource supplies the key that signs new tokens. The identity service implements it over its key store
// and rotates the key behind it; StaticKey serves one fixed key.
type KeySource interface {
	// SigningKey returns the current signing key and its key id. Errors are returned to Issue's caller as
	// they are.
	SigningKey(ctx context.Context) (kid string, key ed25519.PrivateKey, err error)
}

// StaticKey is a KeySource that always returns the same key, for tests and tools.
type StaticKey struct {
	// KID is the key id written to the "kid" header.
	KID string
	// Key signs the tokens.
	Key ed25519.PrivateKey
}

// SigningKey implements KeySource.
func (k StaticKey) SigningKey(context.Context) (string, ed25519.PrivateKey, error) {
	return k.KID, k.Key, nil
}

// IssuerConfig configures an Issuer.
type IssuerConfig struct {
	// Issuer is the "iss" claim, such as "lastmile-identity". Required.
	Issuer string
	// Audience is the "aud" claim, such as "lastmile". Required.
	Audience string
	// TTL is how long tokens are valid. Default DefaultTTL.
	TTL time.Duration
	// Keys supplies the signing key. Required.
	Keys KeySource
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Issuer signs access tokens. It is safe for concurrent use.
type Issuer struct {
	issuer, audience string
	ttl              time.Duration
	keys             KeySource
	now              func() time.Time
}

// NewIssuer returns an Issuer for cfg.
func NewIssuer(cfg IssuerConfig) (*Issuer, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("token issuer: empty issuer")
	case cfg.Audience == "":
		return nil, errors.New("token issuer: empty audience")
	case cfg.Keys == nil:
		return nil, errors.New("token issuer: no key source")
	case cfg.TTL < 0:
		return nil, errors.New("token issuer: negative TTL")
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Issuer{issuer: cfg.Issuer, audience: cfg.Audience, ttl: cfg.TTL, keys: cfg.Keys, now: cfg.Now}, nil
}

// issuedClaims is the claim set of a new token. Its Audience is a single string, as RFC 9068 examples
// write it: the field hides the embedded one of the same JSON name, which would encode as an array.
type issuedClaims struct {
	accessClaims
	Audience string `json:"aud"`
}

// Issue signs an access token for the user subject holding roles. It returns the token and the moment it
// expires (whole seconds, as in the "exp" claim).
func (i *Issuer) Issue(ctx context.Context, subject string, roles []string) (token string, expiresAt time.Time, err error) {
	if subject == "" {
		return "", time.Time{}, errors.New("issue access token: empty subject")
	}
	kid, key, err := i.keys.SigningKey(ctx)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue access token: %w", err)
	}
	if kid == "" || len(key) != ed25519.PrivateKeySize {
		return "", time.Time{}, fmt.Errorf("issue access token: signing key %q is not an Ed25519 private key with a key id", kid)
	}
	// NumericDate has a resolution of one second; truncating here makes the returned expiry the
	// token's own.
	now := time.Unix(i.now().Unix(), 0)
	expiresAt = now.Add(i.ttl)
	claims := issuedClaims{
		accessClaims: accessClaims{
			RegisteredClaims: gojwt.RegisteredClaims{
				Issuer:    i.issuer,
				Subject:   subject,
				ExpiresAt: gojwt.NewNumericDate(expiresAt),
				NotBefore: gojwt.NewNumericDate(now),
				IssuedAt:  gojwt.NewNumericDate(now),
				ID:        uuid.NewString(),
			},
			Roles: roles,
		},
		Audience: i.audience,
	}
	if claims.Roles == nil {
		claims.Roles = []string{}
	}
	t := gojwt.NewWithClaims(gojwt.SigningMethodEdDSA, claims)
	t.Header["typ"] = TokenType
	t.Header["kid"] = kid
	token, err = t.SignedString(key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue access token with key %q: %w", kid, err)
	}
	return token, expiresAt, nil
}
