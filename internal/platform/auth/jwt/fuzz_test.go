package jwt_test

import (
	"context"
	"strings"
	"testing"
	"time"

	gojwt "github.com/golang-jwt/jwt/v5"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth/jwt"
)

// FuzzVerify feeds arbitrary strings to a Verifier that knows one key. It must never panic, must refuse
// everything but the one valid token it was seeded with (strict base64 leaves that token a single
// spelling) — a correctly signed ten-year token among the seeds included — and must refuse with
// Unauthenticated: the keys are always available.
func FuzzVerify(f *testing.F) {
	now := time.Now().Truncate(time.Second)
	k1 := newSigner(f, "k1")
	valid := k1.issue(f, now, jwt.DefaultTTL, "u-1", "courier")
	parts := strings.Split(valid, ".")
	for _, seed := range []string{
		valid,
		"",
		"...",
		parts[0] + "." + parts[1] + ".",
		parts[0] + "." + parts[1],
		valid + ".",
		sign(f, gojwt.SigningMethodNone, gojwt.UnsafeAllowNoneSignatureType, "k1", nil, claimsAt(now)),
		sign(f, gojwt.SigningMethodHS256, []byte(k1.pub), "k1", nil, claimsAt(now)),
		sign(f, gojwt.SigningMethodEdDSA, k1.priv, "k1", map[string]any{"typ": "JWT"}, claimsAt(now)),
		sign(f, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(claimsAt(now), "exp", nil)),
		sign(f, gojwt.SigningMethodEdDSA, k1.priv, "k1", nil, with(claimsAt(now), "iat", nil)),
		k1.issue(f, now, 10*365*24*time.Hour, "u-1", "admin"),
		"eyJhbGciOiJFZERTQSJ9.e30.AAAA",
	} {
		f.Add(seed)
	}
	v := newVerifier(f, newCache(f, newFetcher(k1.public()), nil), now)
	f.Fuzz(func(t *testing.T, token string) {
		p, err := v.Verify(context.Background(), token)
		if err == nil {
			if token != valid {
				t.Fatalf("Verify(%q) accepted a token other than the seeded one: %+v", token, p)
			}
			return
		}
		if code := apperr.CodeOf(err); code != apperr.Unauthenticated {
			t.Fatalf("Verify(%q) error = %v, want code %q", token, err, apperr.Unauthenticated)
		}
	})
}
