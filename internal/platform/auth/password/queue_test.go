package password_test

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/auth/password"
)

// TestFullLineIsRefusedAtOnce: with every slot taken and MaxWaiting callers in line, the next caller is
// refused with ResourceExhausted and a RetryAfter without waiting, although its context has no deadline.
func TestFullLineIsRefusedAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const slots, waiting = 1, 2
		h := newHasher(t, password.Config{Params: tiny, MaxConcurrent: slots, MaxWaiting: waiting})
		g := newGate()
		password.SetDerive(h, g.derive)

		var wg sync.WaitGroup
		for range slots + waiting {
			wg.Go(func() {
				if err := h.DummyVerify(context.Background(), "s3cret"); err != nil {
					t.Errorf("DummyVerify() of a caller in line error = %v, want nil", err)
				}
			})
		}
		synctest.Wait() // one derives, two wait

		// No deadline: a caller that waited would block this bubble forever, which synctest reports.
		err := h.DummyVerify(context.Background(), "s3cret")
		e := apperr.As(err)
		if e == nil || e.Code != apperr.ResourceExhausted || e.RetryAfter <= 0 {
			t.Fatalf("DummyVerify() with a full line = %v, want code %q with RetryAfter", err, apperr.ResourceExhausted)
		}
		if running, _ := g.state(); running != slots {
			t.Errorf("%d derive at once after the refusal, want %d", running, slots)
		}
		for range slots + waiting {
			g.release <- struct{}{}
		}
		wg.Wait()
		// Once the line has drained, callers are served again.
		go func() { g.release <- struct{}{} }()
		if err := h.DummyVerify(context.Background(), "s3cret"); err != nil {
			t.Errorf("DummyVerify() after the line drained error = %v, want nil", err)
		}
	})
}

// TestHashesLeaveSlotsToVerifies: Hash holds at most HashSlots slots, and a full line of hashes neither
// delays nor refuses a verification.
func TestHashesLeaveSlotsToVerifies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const slots, hashSlots, waiting = 2, 1, 3
		h := newHasher(t, password.Config{Params: tiny, MaxConcurrent: slots, HashSlots: hashSlots, MaxWaiting: waiting})
		g := newGate()
		password.SetDerive(h, g.derive)

		var wg sync.WaitGroup
		for range hashSlots + waiting {
			wg.Go(func() {
				if _, err := h.Hash(context.Background(), "s3cret"); err != nil {
					t.Errorf("Hash() of a caller in line error = %v, want nil", err)
				}
			})
		}
		synctest.Wait()
		if running, _ := g.state(); running != hashSlots {
			t.Fatalf("%d hashes derive at once, want HashSlots = %d", running, hashSlots)
		}
		if _, err := h.Hash(context.Background(), "s3cret"); apperr.CodeOf(err) != apperr.ResourceExhausted {
			t.Fatalf("Hash() with a full line of hashes error = %v, want code %q", err, apperr.ResourceExhausted)
		}

		verified := make(chan error, 1)
		go func() { verified <- h.DummyVerify(context.Background(), "s3cret") }()
		synctest.Wait()
		if running, _ := g.state(); running != hashSlots+1 {
			t.Fatalf("%d derive at once with a verification, want %d: the verification waited behind hashes", running, hashSlots+1)
		}
		for range hashSlots + waiting + 1 {
			g.release <- struct{}{}
		}
		if err := <-verified; err != nil {
			t.Errorf("DummyVerify() beside a full line of hashes error = %v, want nil", err)
		}
		wg.Wait()
		if _, peak := g.state(); peak != hashSlots+1 {
			t.Errorf("peak concurrency = %d, want %d", peak, hashSlots+1)
		}
	})
}

func TestNewRejectsQueueConfig(t *testing.T) {
	for _, cfg := range []password.Config{
		{Params: tiny, MaxConcurrent: 2, HashSlots: 3},
		{Params: tiny, MaxConcurrent: 2, HashSlots: -1},
		{Params: tiny, MaxWaiting: -1},
	} {
		if _, err := password.New(cfg); err == nil {
			t.Errorf("New(%+v) error = nil, want an error", cfg)
		}
	}
}
