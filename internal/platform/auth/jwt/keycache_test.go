package jwt_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth/jwt"
	"lastmile/internal/platform/telemetry/logtest"
)

// These tests run in a synctest bubble: time.Sleep moves the fake clock that the cache, its rate limiter
// and the token validator all read, and synctest.Wait returns once background refreshes are done.

func verifyCode(v *jwt.Verifier, token string) apperr.Code {
	_, err := v.Verify(context.Background(), token)
	return apperr.CodeOf(err)
}

func TestKeyRotationWithOverlap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k1, k2 := newSigner(t, "k1"), newSigner(t, "k2")
		f := newFetcher(k1.public())
		v := newVerifier(t, newCache(t, f, nil), time.Time{})
		old := k1.issue(t, time.Now(), 15*time.Minute, "u-1")
		if got := verifyCode(v, old); got != "" {
			t.Fatalf("Verify(token of k1) code = %q, want success", got)
		}

		// Identity rotates: k2 signs from now on, k1 stays published for the overlap.
		time.Sleep(time.Minute)
		f.set(nil, k2.public(), k1.public())
		fresh := k2.issue(t, time.Now(), 15*time.Minute, "u-1")
		if got := verifyCode(v, fresh); got != "" {
			t.Fatalf("Verify(token of new key k2) code = %q, want success after an immediate refresh", got)
		}
		if got := verifyCode(v, old); got != "" {
			t.Fatalf("Verify(token of previous key k1) during the overlap code = %q, want success", got)
		}
		if got := f.count(); got != 2 {
			t.Fatalf("fetches = %d, want 2 (first lookup, then the unknown kid k2)", got)
		}

		// The overlap ends: identity drops k1. Until the cache's refresh interval has passed it still knows
		// k1; the lookup that finds the keys old answers from them and refreshes in the background.
		f.set(nil, k2.public())
		time.Sleep(jwt.DefaultRefreshInterval)
		if got := verifyCode(v, old); got != "" {
			t.Fatalf("Verify(token of k1) before the refresh code = %q, want success", got)
		}
		synctest.Wait()
		if got := f.count(); got != 3 {
			t.Fatalf("fetches = %d, want 3 (the background refresh)", got)
		}
		if got := verifyCode(v, old); got != apperr.Unauthenticated {
			t.Errorf("Verify(token of rotated-out k1) code = %q, want %q", got, apperr.Unauthenticated)
		}
		if got := verifyCode(v, fresh); got != "" {
			t.Errorf("Verify(token of k2) code = %q, want success", got)
		}
		// Still refused once the rate limit allows another look: the refreshed set has no k1.
		time.Sleep(jwt.DefaultMinRefreshInterval)
		if got := verifyCode(v, old); got != apperr.Unauthenticated {
			t.Errorf("Verify(token of rotated-out k1) after a second refresh code = %q, want %q", got, apperr.Unauthenticated)
		}
		if got := f.count(); got != 4 {
			t.Errorf("fetches = %d, want 4", got)
		}
	})
}

func TestUnknownKidRefreshIsRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k1 := newSigner(t, "k1")
		f := newFetcher(k1.public())
		c := newCache(t, f, nil)
		v := newVerifier(t, c, time.Time{})
		if err := c.Refresh(context.Background()); err != nil {
			t.Fatalf("Refresh() error = %v", err)
		}
		valid := k1.issue(t, time.Now(), jwt.DefaultTTL, "u-1")
		forged := make([]string, 60)
		for i := range forged {
			forged[i] = newSigner(t, fmt.Sprintf("random-%d", i)).issue(t, time.Now(), jwt.DefaultTTL, "u-1")
		}

		// The first unknown kid refreshes; the flood after it does not.
		for i, token := range forged[:50] {
			if got := verifyCode(v, token); got != apperr.Unauthenticated {
				t.Fatalf("Verify(forged %d) code = %q, want %q", i, got, apperr.Unauthenticated)
			}
		}
		if got := f.count(); got != 2 {
			t.Fatalf("fetches after 50 unknown kids = %d, want 2 (Refresh, then one for the first kid)", got)
		}
		time.Sleep(jwt.DefaultMinRefreshInterval - time.Second)
		verifyCode(v, forged[50])
		if got := f.count(); got != 2 {
			t.Fatalf("fetches before MinRefreshInterval passed = %d, want 2", got)
		}

		// Once the interval has passed, a concurrent flood still costs one fetch.
		time.Sleep(time.Second)
		var wg sync.WaitGroup
		for _, token := range forged[51:] {
			wg.Go(func() {
				if got := verifyCode(v, token); got != apperr.Unauthenticated {
					t.Errorf("Verify(forged) code = %q, want %q", got, apperr.Unauthenticated)
				}
			})
		}
		wg.Wait()
		if got := f.count(); got != 3 {
			t.Errorf("fetches after a concurrent flood = %d, want 3", got)
		}
		if got := verifyCode(v, valid); got != "" {
			t.Errorf("Verify(valid) during the flood code = %q, want success", got)
		}
	})
}

func TestStaleKeysServedWhenFetchFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs logtest.Buffer
		k1 := newSigner(t, "k1")
		f := newFetcher(k1.public())
		c := newCache(t, f, slog.New(slog.NewJSONHandler(&logs, nil)))
		v := newVerifier(t, c, time.Time{})
		if err := c.Refresh(context.Background()); err != nil {
			t.Fatalf("Refresh() error = %v", err)
		}
		token := k1.issue(t, time.Now(), jwt.DefaultTTL, "u-1")
		unknown := newSigner(t, "k2").issue(t, time.Now(), jwt.DefaultTTL, "u-1")

		f.set(errIdentityDown)
		time.Sleep(jwt.DefaultRefreshInterval)
		if got := verifyCode(v, token); got != "" {
			t.Fatalf("Verify() with old keys, identity down: code = %q, want success", got)
		}
		synctest.Wait()
		if got := f.count(); got != 2 {
			t.Fatalf("fetches = %d, want 2 (Refresh, then the failed background refresh)", got)
		}
		if got := verifyCode(v, token); got != "" {
			t.Errorf("Verify() after the failed refresh: code = %q, want success", got)
		}
		// An unknown kid cannot be decided without the keys: refused (rate limit) or unavailable (failed fetch).
		if got := verifyCode(v, unknown); got != apperr.Unauthenticated {
			t.Errorf("Verify(unknown kid) within MinRefreshInterval code = %q, want %q", got, apperr.Unauthenticated)
		}
		time.Sleep(jwt.DefaultMinRefreshInterval)
		if got := verifyCode(v, unknown); got != apperr.Unavailable {
			t.Errorf("Verify(unknown kid) with the fetch failing code = %q, want %q", got, apperr.Unavailable)
		}
		if got := f.count(); got != 3 {
			t.Errorf("fetches = %d, want 3", got)
		}

		// Identity is back: the next refresh takes.
		f.set(nil, k1.public())
		time.Sleep(jwt.DefaultMinRefreshInterval)
		if got := verifyCode(v, token); got != "" {
			t.Errorf("Verify() code = %q, want success", got)
		}
		synctest.Wait()
		if got := f.count(); got != 4 {
			t.Errorf("fetches = %d, want 4", got)
		}

		out := logs.String()
		if !strings.Contains(out, "refreshing token verification keys failed") || !strings.Contains(out, errIdentityDown.Error()) {
			t.Errorf("log = %q, want the failed refreshes with their cause", out)
		}
		for _, secret := range []string{token, strings.Split(token, ".")[2], unknown, strings.Split(unknown, ".")[2]} {
			if strings.Contains(out, secret) {
				t.Errorf("log %q contains a token", out)
			}
		}
	})
}

func TestNoKeysUnavailable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k1 := newSigner(t, "k1")
		f := newFetcher()
		f.set(errIdentityDown)
		v := newVerifier(t, newCache(t, f, nil), time.Time{})
		token := k1.issue(t, time.Now(), jwt.DefaultTTL, "u-1")
		for i := range 3 {
			if got := verifyCode(v, token); got != apperr.Unavailable {
				t.Errorf("Verify() #%d without keys code = %q, want %q", i, got, apperr.Unavailable)
			}
		}
		if got := f.count(); got != 1 {
			t.Errorf("fetches = %d, want 1 (then rate-limited)", got)
		}
		f.set(nil, k1.public())
		time.Sleep(jwt.DefaultMinRefreshInterval)
		if got := verifyCode(v, token); got != "" {
			t.Errorf("Verify() once identity is back code = %q, want success", got)
		}
	})
}

func TestKeyCacheSingleFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		k1 := newSigner(t, "k1")
		f := newFetcher(k1.public())
		f.gate = make(chan struct{})
		c := newCache(t, f, nil)

		var wg sync.WaitGroup
		keys := make([]ed25519.PublicKey, 20)
		errs := make([]error, 20+3)
		for i := range keys {
			wg.Go(func() { keys[i], errs[i] = c.Key(context.Background(), "k1") })
		}
		for i := range 3 {
			wg.Go(func() { errs[20+i] = c.Refresh(context.Background()) })
		}
		synctest.Wait() // everyone waits on the one fetch
		if got := f.count(); got != 1 {
			t.Fatalf("fetches while 23 callers wait = %d, want 1", got)
		}
		close(f.gate)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("caller %d error = %v", i, err)
			}
		}
		for i, k := range keys {
			if !k.Equal(k1.pub) {
				t.Errorf("Key() #%d = %x, want %x", i, k, k1.pub)
			}
		}
		if got := f.count(); got != 1 {
			t.Errorf("fetches = %d, want 1", got)
		}
	})
}

func TestKeyCacheWaitRespectsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFetcher(newSigner(t, "k1").public())
		f.gate = make(chan struct{}) // never opened: the fetch ends at FetchTimeout
		c := newCache(t, f, nil)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := c.Key(ctx, "k1"); apperr.CodeOf(err) != apperr.Unavailable {
			t.Errorf("Key() with the caller's deadline passing error = %v, want code %q", err, apperr.Unavailable)
		}
		if err := c.Refresh(context.Background()); err == nil {
			t.Errorf("Refresh() of a fetch that times out error = nil, want an error")
		}
		if elapsed := time.Since(start); elapsed != jwt.DefaultFetchTimeout {
			t.Errorf("the fetch ended after %v, want DefaultFetchTimeout (%v)", elapsed, jwt.DefaultFetchTimeout)
		}
	})
}

func TestKeyCacheRefreshRejectsUnusableSets(t *testing.T) {
	k1, k2 := newSigner(t, "k1"), newSigner(t, "k2")
	tests := []struct {
		name string
		keys []jwt.PublicKey
	}{
		{"empty", nil},
		{"no kid", []jwt.PublicKey{{Key: k2.pub}}},
		{"short key", []jwt.PublicKey{{KID: "k2", Key: k2.pub[:31]}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFetcher(k1.public())
			c := newCache(t, f, nil)
			if err := c.Refresh(context.Background()); err != nil {
				t.Fatalf("Refresh() error = %v", err)
			}
			f.set(nil, tt.keys...)
			if err := c.Refresh(context.Background()); err == nil {
				t.Errorf("Refresh() of %v error = nil, want an error", tt.keys)
			}
			// The keys fetched before stay in use.
			got, err := c.Key(context.Background(), "k1")
			if err != nil || !got.Equal(k1.pub) {
				t.Errorf("Key(k1) after a rejected refresh = %x, %v; want %x", got, err, k1.pub)
			}
		})
	}
}

func TestKeyCacheSkipsBadKeysAndKeepsFirstDuplicate(t *testing.T) {
	k1, k2, k3 := newSigner(t, "k1"), newSigner(t, "k2"), newSigner(t, "k3")
	f := newFetcher(
		jwt.PublicKey{KID: "", Key: k3.pub},
		jwt.PublicKey{KID: "k3", Key: k3.pub[:16]},
		k1.public(),
		jwt.PublicKey{KID: "k1", Key: k2.pub},
		k2.public(),
	)
	c := newCache(t, f, nil)
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatalf("Refresh() error = %v", err)
	}
	got := map[string]string{}
	for _, kid := range []string{"k1", "k2", "k3", ""} {
		k, err := c.Key(context.Background(), kid)
		got[kid] = fmt.Sprintf("%x %s", k, apperr.CodeOf(err))
	}
	want := map[string]string{
		"k1": fmt.Sprintf("%x ", k1.pub),
		"k2": fmt.Sprintf("%x ", k2.pub),
		"k3": " unauthenticated",
		"":   " unauthenticated",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Key() results mismatch (-want +got):\n%s", diff)
	}
}

func TestNewKeyCacheRejects(t *testing.T) {
	tests := []struct {
		name string
		f    jwt.KeySetFetcher
		cfg  jwt.KeyCacheConfig
	}{
		{"no fetcher", nil, jwt.KeyCacheConfig{}},
		{"negative refresh interval", newFetcher(), jwt.KeyCacheConfig{RefreshInterval: -time.Second}},
		{"negative min refresh interval", newFetcher(), jwt.KeyCacheConfig{MinRefreshInterval: -time.Second}},
		{"negative fetch timeout", newFetcher(), jwt.KeyCacheConfig{FetchTimeout: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := jwt.NewKeyCache(tt.f, tt.cfg); err == nil {
				t.Errorf("NewKeyCache(%+v) error = nil, want an error", tt.cfg)
			}
		})
	}
}
