package jwt_test

import (
	"context"
	"testing"
	"time"

	"lastmile/internal/platform/auth/jwt"
)

// BenchmarkVerify measures the verification of a valid token with its key cached: the cost every
// authenticated call pays.
func BenchmarkVerify(b *testing.B) {
	k1 := newSigner(b, "k1")
	c := newCache(b, newFetcher(k1.public()), nil)
	if err := c.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	v := newVerifier(b, c, time.Time{})
	token := k1.issue(b, time.Now(), jwt.DefaultTTL, "0199a1d2-7c4e-7b1a-9f3e-2d4c5b6a7e8f", "courier")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ctx, token); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssue measures signing an access token, the cost a login or refresh adds to the password
// hash.
func BenchmarkIssue(b *testing.B) {
	k1 := newSigner(b, "k1")
	iss := k1.issuer(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := iss.Issue(ctx, "0199a1d2-7c4e-7b1a-9f3e-2d4c5b6a7e8f", []string{"courier"}); err != nil {
			b.Fatal(err)
		}
	}
}
