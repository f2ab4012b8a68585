package simulator

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	identityv1 "lastmile/gen/go/lastmile/identity/v1"
)

// fakeAuth answers RefreshToken with a new pair, counting the calls; other methods are not called.
type fakeAuth struct {
	identityv1.AuthServiceClient
	refreshes atomic.Int64
}

func (f *fakeAuth) RefreshToken(_ context.Context, in *identityv1.RefreshTokenRequest, _ ...grpc.CallOption) (*identityv1.RefreshTokenResponse, error) {
	f.refreshes.Add(1)
	return &identityv1.RefreshTokenResponse{AccessToken: "new access", RefreshToken: "new refresh",
		ExpiresAt: timestamppb.New(time.Now().Add(15 * time.Minute))}, nil
}

func TestTokenRefreshesOnceWhenConcurrent(t *testing.T) {
	fake := &fakeAuth{}
	a := &account{auth: fake, access: "old access", refresh: "old refresh", expires: time.Now().Add(time.Minute)}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if tok, err := a.token(context.Background()); err != nil || tok != "new access" {
				t.Errorf("token() = %q, %v; want the refreshed access token", tok, err)
			}
		})
	}
	wg.Wait()
	if got := fake.refreshes.Load(); got != 1 {
		t.Errorf("RefreshToken called %d times, want once (a refresh token presented twice revokes the session)", got)
	}
	if tok, _ := a.token(context.Background()); tok != "new access" || fake.refreshes.Load() != 1 {
		t.Errorf("token() of a fresh token = %q after %d refreshes, want no new refresh", tok, fake.refreshes.Load())
	}
}
