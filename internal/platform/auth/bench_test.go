package auth_test

import (
	"context"
	"testing"
	"time"

	"lastmile/internal/platform/auth"
)

// BenchmarkSubjectsCheck measures the revocation check every authenticated call pays after its token
// is verified (jwt's BenchmarkVerify): a cache hit.
func BenchmarkSubjectsCheck(b *testing.B) {
	s := auth.NewSubjects(func(context.Context, string) (auth.SubjectState, error) {
		return auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}, RevokedBefore: issued.Add(-time.Hour)}, nil
	}, auth.SubjectsOptions{})
	p := auth.Principal{Kind: auth.User, Subject: "0199a1d2-7c4e-7b1a-9f3e-2d4c5b6a7e8f", Roles: []string{auth.RoleCourier}, IssuedAt: issued}
	ctx := context.Background()
	if err := s.Check(ctx, p); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Check(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSubjectsCheckParallel is BenchmarkSubjectsCheck from every core at once: the cache's read
// lock under contention.
func BenchmarkSubjectsCheckParallel(b *testing.B) {
	s := auth.NewSubjects(func(context.Context, string) (auth.SubjectState, error) {
		return auth.SubjectState{Active: true, Roles: []string{auth.RoleCourier}}, nil
	}, auth.SubjectsOptions{})
	p := auth.Principal{Kind: auth.User, Subject: "0199a1d2-7c4e-7b1a-9f3e-2d4c5b6a7e8f", Roles: []string{auth.RoleCourier}, IssuedAt: issued}
	ctx := context.Background()
	if err := s.Check(ctx, p); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.Check(ctx, p); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkSubjectsTrack measures registering and unregistering a stream (once per stream, not per
// message).
func BenchmarkSubjectsTrack(b *testing.B) {
	s := auth.NewSubjects(func(context.Context, string) (auth.SubjectState, error) {
		return auth.SubjectState{Active: true}, nil
	}, auth.SubjectsOptions{})
	p := auth.Principal{Kind: auth.User, Subject: "u1", IssuedAt: issued}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, stop := s.Track(ctx, p)
		stop()
	}
}
