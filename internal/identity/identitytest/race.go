package identitytest

import (
	"context"
	"sync"
	"testing"

	"lastmile/internal/identity"
	"lastmile/internal/platform/apperr"
)

// Race runs fn(0), ..., fn(n-1) on n goroutines released at the same moment, and returns when all have
// returned.
func Race(n int, fn func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

// CheckRefreshRace presents refreshToken to svc.RefreshToken in n calls at once and checks the outcome
// that rotation promises: exactly one call wins, the others are refused as reuse (Unauthenticated), and
// the reuse revokes the family, so that the winner's new refresh token is refused as well.
func CheckRefreshRace(ctx context.Context, t testing.TB, svc *identity.Service, refreshToken string, n int) {
	t.Helper()
	sessions := make([]identity.Session, n)
	errs := make([]error, n)
	Race(n, func(i int) { sessions[i], errs[i] = svc.RefreshToken(ctx, refreshToken) })
	var winners []identity.Session
	for i, err := range errs {
		switch apperr.CodeOf(err) {
		case "":
			winners = append(winners, sessions[i])
		case apperr.Unauthenticated:
		default:
			t.Errorf("RefreshToken() #%d = %v, want nil or Unauthenticated", i, err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d of %d concurrent refreshes with one token succeeded, want exactly 1", len(winners), n)
	}
	if _, err := svc.RefreshToken(ctx, winners[0].RefreshToken); apperr.CodeOf(err) != apperr.Unauthenticated {
		t.Errorf("RefreshToken(the winner's token after the reuse) = %v, want Unauthenticated", err)
	}
}
