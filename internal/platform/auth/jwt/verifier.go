package jwt

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
)

// MaxLeeway bounds the clock skew a Verifier tolerates on exp, nbf and iat; it is also the default.
const MaxLeeway = 30 * time.Second

// maxSubjectBytes bounds the "sub" claim. User ids are UUIDs; the bound keeps a (validly signed but
// buggy) token from putting an arbitrarily long string into every log line of the call.
const maxSubjectBytes = 256

// Keys finds the public key a token's "kid" names. *KeyCache implements it.
type Keys interface {
	// Key returns the public key with id kid. It returns an apperr.Unauthenticated error when no such key
	// is known, and an apperr.Unavailable error when the keys cannot be fetched.
	Key(ctx context.Context, kid string) (ed25519.PublicKey, error)
}

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Issuer is the required "iss" claim. Required.
	Issuer string
	// Audience must appear in the "aud" claim. Required.
	Audience string
	// Leeway is the clock skew tolerated on exp, nbf and iat, at most MaxLeeway. Zero means MaxLeeway.
	Leeway time.Duration
	// MaxLifetime is the longest an accepted token may live: its exp may lie at most MaxLifetime + Leeway
	// after its iat, and after now. Set it to the issuer's TTL (IssuerConfig.TTL), so that a token
	// signed for ten years — by a misconfigured issuer, or with a stolen key — is refused rather than
	// honoured for ten years. Zero means DefaultTTL.
	MaxLifetime time.Duration
	// Keys finds verification keys, normally a *KeyCache. Required.
	Keys Keys
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Verifier checks access tokens and returns the user they were issued to. It implements
// auth.TokenVerifier and is safe for concurrent use. See the package documentation for what it checks.
type Verifier struct {
	keys   Keys
	parser *gojwt.Parser
	// maxExp is the longest exp may lie after iat and after now: MaxLifetime + Leeway.
	maxExp time.Duration
	now    func() time.Time
}

var _ auth.TokenVerifier = (*Verifier)(nil)

// NewVerifier returns a Verifier for cfg.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("token verifier: empty issuer")
	case cfg.Audience == "":
		return nil, errors.New("token verifier: empty audience")
	case cfg.Keys == nil:
		return nil, errors.New("token verifier: no keys")
	case cfg.Leeway < 0 || cfg.Leeway > MaxLeeway:
		return nil, fmt.Errorf("token verifier: leeway %v outside 0..%v", cfg.Leeway, MaxLeeway)
	case cfg.MaxLifetime < 0:
		return nil, fmt.Errorf("token verifier: negative max lifetime %v", cfg.MaxLifetime)
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = MaxLeeway
	}
	if cfg.MaxLifetime == 0 {
		cfg.MaxLifetime = DefaultTTL
	}
	opts := []gojwt.ParserOption{
		gojwt.WithValidMethods([]string{Algorithm}),
		gojwt.WithIssuer(cfg.Issuer),
		gojwt.WithAudience(cfg.Audience),
		gojwt.WithExpirationRequired(),
		gojwt.WithIssuedAt(),
		gojwt.WithLeeway(cfg.Leeway),
		gojwt.WithStrictDecoding(),
	}
	if cfg.Now != nil {
		opts = append(opts, gojwt.WithTimeFunc(cfg.Now))
	} else {
		cfg.Now = time.Now
	}
	return &Verifier{keys: cfg.Keys, parser: gojwt.NewParser(opts...), maxExp: cfg.MaxLifetime + cfg.Leeway, now: cfg.Now}, nil
}

// accessClaims is the claim set of an access token as read back.
type accessClaims struct {
	gojwt.RegisteredClaims
	Roles []string `json:"roles"`
}

// Verify implements auth.TokenVerifier. It returns an auth.User principal for a valid token; an
// apperr.Unauthenticated error, with the message "access token expired" for an expired token and
// "invalid access token" for anything else, when the token is not acceptable; and an apperr.Unavailable
// error when the verification keys cannot be fetched. Errors never contain the token; their causes (for
// logs) say what was wrong with it.
func (v *Verifier) Verify(ctx context.Context, token string) (auth.Principal, error) {
	if len(token) > auth.MaxTokenBytes {
		return auth.Principal{}, invalid(errors.New("token exceeds auth.MaxTokenBytes"))
	}
	var claims accessClaims
	_, err := v.parser.ParseWithClaims(token, &claims, func(t *gojwt.Token) (any, error) {
		// The type is checked before the key is looked up: a token that could never be accepted must not
		// make the cache refresh.
		if typ, _ := t.Header["typ"].(string); !isAccessTokenType(typ) {
			return nil, fmt.Errorf("typ %q is not %q", typ, TokenType)
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			return nil, errors.New("no kid header")
		}
		return v.keys.Key(ctx, kid)
	})
	switch {
	case err == nil:
	case apperr.CodeOf(err) == apperr.Unavailable:
		return auth.Principal{}, apperr.Wrap(apperr.Unavailable, err, "access token verification keys unavailable")
	case errors.Is(err, gojwt.ErrTokenExpired):
		return auth.Principal{}, apperr.Wrap(apperr.Unauthenticated, err, "access token expired")
	default:
		return auth.Principal{}, invalid(err)
	}
	if claims.Subject == "" || len(claims.Subject) > maxSubjectBytes {
		return auth.Principal{}, invalid(fmt.Errorf("subject of %d bytes", len(claims.Subject)))
	}
	if err := v.checkLifetime(claims.RegisteredClaims); err != nil {
		return auth.Principal{}, invalid(err)
	}
	p := auth.Principal{Kind: auth.User, Subject: claims.Subject}
	if claims.IssuedAt != nil {
		p.IssuedAt = claims.IssuedAt.UTC()
	}
	if claims.ExpiresAt != nil {
		p.ExpiresAt = claims.ExpiresAt.UTC()
	}
	if len(claims.Roles) > 0 {
		p.Roles = claims.Roles
	}
	return p, nil
}

// checkLifetime refuses a token without iat (RFC 9068, section 2.2, requires it) or whose exp lies
// further than maxExp after its iat or after now. The parser has checked that exp is present.
func (v *Verifier) checkLifetime(c gojwt.RegisteredClaims) error {
	if c.IssuedAt == nil {
		return errors.New("no iat claim")
	}
	exp := c.ExpiresAt.Time
	if life := exp.Sub(c.IssuedAt.Time); life > v.maxExp {
		return fmt.Errorf("lifetime exp - iat of %v exceeds the %v allowed", life, v.maxExp)
	}
	if left := exp.Sub(v.now()); left > v.maxExp {
		return fmt.Errorf("expires in %v, beyond the %v allowed", left, v.maxExp)
	}
	return nil
}

// isAccessTokenType reports whether typ names an access token. RFC 9068 (section 4) has resource servers
// accept "at+jwt" and its full media type, and media types compare case-insensitively (RFC 7515, section
// 4.1.9).
func isAccessTokenType(typ string) bool {
	return strings.EqualFold(typ, TokenType) || strings.EqualFold(typ, "application/"+TokenType)
}

func invalid(cause error) error {
	return apperr.Wrap(apperr.Unauthenticated, cause, "invalid access token")
}
