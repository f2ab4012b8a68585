package jwt_test

import (
	"context"
	"testing"
	"time"

	"lastmile/internal/platform/auth"
)

// BenchmarkVerifyThenCheck measures, side by side in one run, what an authenticated call pays for its
// token: verification alone, and verification followed by the revocation check against the subject
// cache (auth.Subjects, a cache hit), as grpcauth.ServiceAuthenticator does with Subjects set.
func BenchmarkVerifyThenCheck(b *testing.B) {
	k1 := newSigner(b, "k1")
	c := newCache(b, newFetcher(k1.public()), nil)
	if err := c.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	v := newVerifier(b, c, time.Time{})
	const subject = "0199a1d2-7c4e-7b1a-9f3e-2d4c5b6a7e8f"
	token := k1.issue(b, time.Now(), time.Hour, subject, "courier")
	subjects := auth.NewSubjects(func(context.Context, string) (auth.SubjectState, error) {
		return auth.SubjectState{Active: true, Roles: []string{"courier"}, RevokedBefore: time.Now().Add(-time.Hour)}, nil
	}, auth.SubjectsOptions{})
	ctx := context.Background()
	for _, check := range []bool{false, true} {
		name := "verify"
		if check {
			name = "verify+check"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p, err := v.Verify(ctx, token)
				if err != nil {
					b.Fatal(err)
				}
				if check {
					if err := subjects.Check(ctx, p); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
