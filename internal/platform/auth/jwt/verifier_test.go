package jwt_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth"
	"lastmile/internal/platform/auth/jwt"
)

// with returns a copy of c with key set to v, or deleted when v is nil.
func with(c gojwt.MapClaims, key string, v any) gojwt.MapClaims {
	out := maps.Clone(c)
	if v == nil {
		delete(out, key)
	} else {
		out[key] = v
	}
	return out
}

// b64 encodes JSON text as a JWT segment.
func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// flipSignatureByte returns token with the first byte of its signature changed.
func flipSignatureByte(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sig[0] ^= 0x01
	parts[2] = base64.RawURLEncoding.EncodeToString(sig)
	return strings.Join(parts, ".")
}

// nonCanonical returns token with the unused low bits of its signature's last base64 character set, which
// a lenient decoder would ignore.
func nonCanonical(t *testing.T, token string) string {
	t.Helper()
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, token[len(token)-1])
	// A 64-byte signature is 86 characters whose last one carries 2 bits; the low 4 bits are padding.
	return token[:len(token)-1] + string(alphabet[last|0x01])
}

func TestVerifyRejects(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	k1 := newSigner(t, "k1")
	other := newSigner(t, "k9")
	rotatedOut := newSigner(t, "k0")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := claimsAt(now)
	valid := sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, good)
	validParts := strings.Split(valid, ".")
	edited := strings.Join([]string{validParts[0], b64(`{"iss":"lastmile-identity","aud":"lastmile","sub":"u-1","iat":` +
		fmtUnix(now) + `,"exp":` + fmtUnix(now.Add(time.Hour)) + `,"roles":["admin"]}`), validParts[2]}, ".")

	const invalidMsg, expiredMsg = "invalid access token", "access token expired"
	tests := []struct {
		name    string
		token   string
		wantMsg string
	}{
		// The algorithm allow-list.
		{"alg none", sign(t, gojwt.SigningMethodNone, gojwt.UnsafeAllowNoneSignatureType, "k1", nil, good), invalidMsg},
		{"alg none with an EdDSA signature", b64(`{"alg":"none","kid":"k1","typ":"at+jwt"}`) + "." + validParts[1] + "." + validParts[2], invalidMsg},
		{"HS256 with the public key as secret", sign(t, gojwt.SigningMethodHS256, []byte(k1.pub), "k1", nil, good), invalidMsg},
		{"HS256 with the JWK x as secret", sign(t, gojwt.SigningMethodHS256, []byte(base64.RawURLEncoding.EncodeToString(k1.pub)), "k1", nil, good), invalidMsg},
		{"RS256", sign(t, gojwt.SigningMethodRS256, rsaKey, "k1", nil, good), invalidMsg},
		{"ES256", sign(t, gojwt.SigningMethodES256, ecKey, "k1", nil, good), invalidMsg},
		{"alg misspelt", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", map[string]any{"alg": "eddsa"}, good), invalidMsg},
		// Claims.
		{"wrong iss", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "iss", "evil")), invalidMsg},
		{"no iss", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "iss", nil)), invalidMsg},
		{"wrong aud", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "aud", "other-system")), invalidMsg},
		{"aud list without ours", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "aud", []string{"a", "b"})), invalidMsg},
		{"no aud", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "aud", nil)), invalidMsg},
		{"expired", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "exp", now.Add(-time.Minute).Unix())), expiredMsg},
		{"expired just beyond the leeway", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "exp", now.Add(-jwt.MaxLeeway-time.Second).Unix())), expiredMsg},
		{"nbf in the future", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "nbf", now.Add(time.Minute).Unix())), invalidMsg},
		{"iat in the future", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "iat", now.Add(time.Minute).Unix())), invalidMsg},
		{"missing iat", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "iat", nil)), invalidMsg},
		// Lifetime: a correctly signed token valid for longer than the issuer's TTL (plus the leeway).
		{"issued for ten years", k1.issue(t, now, 10*365*24*time.Hour, "u-1", "admin"), invalidMsg},
		{"issued for TTL plus leeway plus a second", k1.issue(t, now, jwt.DefaultTTL+jwt.MaxLeeway+time.Second, "u-1"), invalidMsg},
		{"exp far ahead of a recent iat", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "exp", now.Add(10*365*24*time.Hour).Unix())), invalidMsg},
		{"iat backdated, lifetime over TTL", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil,
			with(with(good, "iat", now.Add(-time.Hour).Unix()), "exp", now.Add(time.Minute).Unix())), invalidMsg},
		// The iat within the leeway ahead, the lifetime just allowed: exp lies further than that from now.
		{"exp too far from now", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil,
			with(with(good, "iat", now.Add(20*time.Second).Unix()), "exp", now.Add(20*time.Second+jwt.DefaultTTL+jwt.MaxLeeway).Unix())), invalidMsg},
		{"missing exp", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "exp", nil)), invalidMsg},
		{"exp not a number", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "exp", "tomorrow")), invalidMsg},
		{"missing sub", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "sub", nil)), invalidMsg},
		{"empty sub", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "sub", "")), invalidMsg},
		{"sub too long", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "sub", strings.Repeat("u", 257))), invalidMsg},
		{"roles not a list", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "roles", "admin")), invalidMsg},
		// Keys and signatures.
		{"unknown kid", sign(t, gojwt.SigningMethodEdDSA, other.priv, "k9", nil, good), invalidMsg},
		{"rotated-out key", sign(t, gojwt.SigningMethodEdDSA, rotatedOut.priv, "k0", nil, good), invalidMsg},
		{"no kid", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", map[string]any{"kid": nil}, good), invalidMsg},
		{"kid not a string", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", map[string]any{"kid": 1}, good), invalidMsg},
		{"known kid, other key", sign(t, gojwt.SigningMethodEdDSA, other.priv, "k1", nil, good), invalidMsg},
		{"bad signature", flipSignatureByte(t, valid), invalidMsg},
		{"roles edited after signing", edited, invalidMsg},
		{"signature base64 not canonical", nonCanonical(t, valid), invalidMsg},
		{"signature removed", validParts[0] + "." + validParts[1] + ".", invalidMsg},
		// Token type.
		{"typ JWT", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", map[string]any{"typ": "JWT"}, good), invalidMsg},
		{"typ refresh token", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", map[string]any{"typ": "rt+jwt"}, good), invalidMsg},
		{"no typ", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", map[string]any{"typ": nil}, good), invalidMsg},
		{"typ not a string", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", map[string]any{"typ": []string{"at+jwt"}}, good), invalidMsg},
		// Shape.
		{"empty", "", invalidMsg},
		{"garbage", "not a token", invalidMsg},
		{"two dots", "..", invalidMsg},
		{"three dots", "...", invalidMsg},
		{"four segments", valid + ".x", invalidMsg},
		{"two segments", validParts[0] + "." + validParts[1], invalidMsg},
		{"scheme included", "Bearer " + valid, invalidMsg},
		{"header not an object", b64(`[]`) + "." + validParts[1] + "." + validParts[2], invalidMsg},
		{"header not JSON", b64(`{"alg":`) + "." + validParts[1] + "." + validParts[2], invalidMsg},
		{"over MaxTokenBytes, validly signed", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil,
			with(good, "pad", strings.Repeat("p", auth.MaxTokenBytes))), invalidMsg},
	}

	f := newFetcher(k1.public())
	cache := newCache(t, f, nil)
	if err := cache.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	v := newVerifier(t, cache, now)
	if _, err := v.Verify(context.Background(), valid); err != nil {
		t.Fatalf("Verify(valid) error = %v; the matrix below needs a working baseline", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tt.token)
			e := apperr.As(err)
			if e == nil || e.Code != apperr.Unauthenticated || e.Message != tt.wantMsg {
				t.Fatalf("Verify() = %+v, %v; want code %q, message %q", p, err, apperr.Unauthenticated, tt.wantMsg)
			}
			if !cmp.Equal(p, auth.Principal{}) {
				t.Errorf("Verify() principal = %+v, want the zero principal", p)
			}
			// Not the token, nor its signature: the part that makes a token a credential. (The claims
			// are no secret; a JSON error may quote a bit of them.)
			if tt.token != "" && strings.Contains(err.Error(), tt.token) {
				t.Errorf("Verify() error %q contains the token", err)
			}
			if parts := strings.Split(tt.token, "."); len(parts) == 3 && len(parts[2]) > 8 && strings.Contains(err.Error(), parts[2]) {
				t.Errorf("Verify() error %q contains the token's signature", err)
			}
		})
	}
	// The unknown kids caused at most the one refresh the rate limit allows, after the initial fetch.
	if got := f.count(); got > 2 {
		t.Errorf("fetches = %d, want at most 2", got)
	}
}

func fmtUnix(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func TestVerifyAccepts(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	k1 := newSigner(t, "k1")
	good := claimsAt(now)
	cache := newCache(t, newFetcher(k1.public()), nil)
	v := newVerifier(t, cache, now)
	courier := auth.Principal{Kind: auth.User, Subject: "u-1", Roles: []string{"courier"}}

	tests := []struct {
		name  string
		token string
		want  auth.Principal
	}{
		{"issued by Issuer", k1.issue(t, now, 15*time.Minute, "u-1", "courier"), courier},
		{"issued for TTL plus leeway", k1.issue(t, now, jwt.DefaultTTL+jwt.MaxLeeway, "u-1", "courier"), courier},
		{"issued for TTL, half a TTL ago", k1.issue(t, now.Add(-jwt.DefaultTTL/2), jwt.DefaultTTL, "u-1", "courier"), courier},
		{"several roles", k1.issue(t, now, 15*time.Minute, "u-2", auth.RoleDispatcher, auth.RoleAdmin),
			auth.Principal{Kind: auth.User, Subject: "u-2", Roles: []string{"dispatcher", "admin"}}},
		{"no roles", k1.issue(t, now, 15*time.Minute, "u-3"), auth.Principal{Kind: auth.User, Subject: "u-3"}},
		{"roles claim absent", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "roles", nil)),
			auth.Principal{Kind: auth.User, Subject: "u-1"}},
		{"expired within the leeway", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "exp", now.Add(-20*time.Second).Unix())), courier},
		{"nbf within the leeway", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "nbf", now.Add(20*time.Second).Unix())), courier},
		{"no nbf", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "nbf", nil)), courier},
		{"aud list with ours", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(good, "aud", []string{"x", testAudience})), courier},
		{"typ as media type", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", map[string]any{"typ": "application/at+jwt"}, good), courier},
		{"typ in upper case", sign(t, gojwt.SigningMethodEdDSA, k1.priv, "k1", map[string]any{"typ": "AT+JWT"}, good), courier},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(context.Background(), tt.token)
			if err != nil {
				t.Fatalf("Verify() error = %v", err)
			}
			// IssuedAt and ExpiresAt are checked by TestVerifyIssuedAt.
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(auth.Principal{}, "IssuedAt", "ExpiresAt")); diff != "" {
				t.Errorf("Verify() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestVerifyIssuedAt: the principal carries the token's "iat", which the revocation check compares with
// the user's revocation (auth.SubjectState), and its "exp", at which long streams end.
func TestVerifyIssuedAt(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	k1 := newSigner(t, "k1")
	cache := newCache(t, newFetcher(k1.public()), nil)
	v := newVerifier(t, cache, now)
	for _, tt := range []struct {
		name          string
		token         string
		issued, until time.Time
	}{
		{"issued now", k1.issue(t, now, 15*time.Minute, "u-1", "courier"), now, now.Add(15 * time.Minute)},
		{"issued a minute ago", k1.issue(t, now.Add(-time.Minute), 15*time.Minute, "u-1", "courier"), now.Add(-time.Minute), now.Add(14 * time.Minute)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, err := v.Verify(context.Background(), tt.token)
			if err != nil {
				t.Fatalf("Verify() error = %v", err)
			}
			if !p.IssuedAt.Equal(tt.issued) || !p.ExpiresAt.Equal(tt.until) {
				t.Errorf("Verify() issued at %v, expires at %v; want %v, %v", p.IssuedAt, p.ExpiresAt, tt.issued, tt.until)
			}
		})
	}
}

func TestVerifyUnavailableKeys(t *testing.T) {
	k1 := newSigner(t, "k1")
	f := newFetcher()
	f.set(errIdentityDown)
	v := newVerifier(t, newCache(t, f, nil), time.Time{})
	_, err := v.Verify(context.Background(), k1.issue(t, time.Now(), time.Minute, "u-1"))
	if got := apperr.CodeOf(err); got != apperr.Unavailable {
		t.Errorf("Verify() with keys unavailable error = %v, want code %q", err, apperr.Unavailable)
	}
}

func TestNewVerifierRejects(t *testing.T) {
	keys := newCache(t, newFetcher(), nil)
	tests := []struct {
		name string
		cfg  jwt.VerifierConfig
	}{
		{"no issuer", jwt.VerifierConfig{Audience: testAudience, Keys: keys}},
		{"no audience", jwt.VerifierConfig{Issuer: testIssuer, Keys: keys}},
		{"no keys", jwt.VerifierConfig{Issuer: testIssuer, Audience: testAudience}},
		{"leeway too large", jwt.VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: keys, Leeway: time.Minute}},
		{"negative leeway", jwt.VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: keys, Leeway: -time.Second}},
		{"negative max lifetime", jwt.VerifierConfig{Issuer: testIssuer, Audience: testAudience, Keys: keys, MaxLifetime: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := jwt.NewVerifier(tt.cfg); err == nil {
				t.Errorf("NewVerifier(%+v) error = nil, want an error", tt.cfg)
			}
		})
	}
}
