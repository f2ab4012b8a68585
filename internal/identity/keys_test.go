package identity_test

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/identity"
	"lastmile/internal/identity/identitytest"
)

func kids(keys []identity.SigningKey) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.KID
	}
	return out
}

func TestKeyRotationOverlap(t *testing.T) {
	ctx := context.Background()
	clock := newClock()
	store := identitytest.SQLiteStore(t)
	km := identity.NewKeyManager(store, identity.KeyOptions{Now: clock.Now, AccessTokenTTL: 10 * time.Minute, Leeway: time.Minute})

	k1, err := km.Current(ctx)
	if err != nil {
		t.Fatalf("Current() = %v", err)
	}
	again, err := km.Current(ctx)
	if err != nil || again.KID != k1.KID {
		t.Fatalf("Current(again) = %s, %v; want the same key %s", again.KID, err, k1.KID)
	}
	pub, err := k1.Verifier()
	if err != nil || k1.KID != identity.Thumbprint(pub) {
		t.Errorf("key id %q, want the thumbprint of its public key", k1.KID)
	}

	clock.Advance(time.Hour)
	k2, err := km.Rotate(ctx)
	if err != nil {
		t.Fatalf("Rotate() = %v", err)
	}
	if cur, err := km.Current(ctx); err != nil || cur.KID != k2.KID {
		t.Errorf("Current() after Rotate = %s, %v; want %s", cur.KID, err, k2.KID)
	}
	kid, priv, err := km.SigningKey(ctx)
	if err != nil || kid != k2.KID || !priv.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(k2.PublicKey)) {
		t.Errorf("SigningKey() = %s, %v; want the private key of %s", kid, err, k2.KID)
	}

	check := func(when string, want ...string) {
		t.Helper()
		keys, err := km.PublicKeys(ctx)
		if err != nil {
			t.Fatalf("PublicKeys(%s) = %v", when, err)
		}
		if diff := cmp.Diff(want, kids(keys)); diff != "" {
			t.Errorf("PublicKeys(%s) mismatch (-want +got):\n%s", when, diff)
		}
		for _, k := range keys {
			if k.PrivateKey != nil {
				t.Errorf("PublicKeys(%s) returned the private key of %s", when, k.KID)
			}
		}
	}
	check("right after rotation", k2.KID, k1.KID)
	// The old key verifies until every token it signed has expired: TTL + leeway.
	clock.Advance(11*time.Minute - time.Second)
	check("just before the old key retires", k2.KID, k1.KID)
	clock.Advance(2 * time.Second)
	check("after the old key retired", k2.KID)

	// Another manager over the same store (another replica) agrees.
	other := identity.NewKeyManager(store, identity.KeyOptions{Now: clock.Now})
	if cur, err := other.Current(ctx); err != nil || cur.KID != k2.KID {
		t.Errorf("Current() of another replica = %s, %v; want %s", cur.KID, err, k2.KID)
	}
}

func TestKeyManagerRunRotates(t *testing.T) {
	km := identity.NewKeyManager(identitytest.SQLiteStore(t), identity.KeyOptions{RotationInterval: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- km.Run(ctx) }()
	first, err := km.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(testTimeout)
	for {
		cur, err := km.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if cur.KID != first.KID {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("the key was not rotated within %v", testTimeout)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return after cancel")
	}
}

func TestKeyManagerRunManual(t *testing.T) {
	store := identitytest.SQLiteStore(t)
	km := identity.NewKeyManager(store, identity.KeyOptions{})
	if err := km.Run(context.Background()); err != nil {
		t.Fatalf("Run(manual) = %v, want nil", err)
	}
	keys, err := store.SigningKeys(context.Background(), time.Now())
	if err != nil || len(keys) != 1 {
		t.Errorf("keys after Run(manual) = %d, %v; want the first key", len(keys), err)
	}
}
