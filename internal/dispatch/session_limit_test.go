package dispatch_test

import (
	"errors"
	"testing"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/apperr"
)

// TestAdmitSpendsTheCouriersBudget: Options.SessionBurst messages at once, then Options.SessionRate a
// second, per courier across its sessions; over it, ResourceExhausted saying when the next is due.
func TestAdmitSpendsTheCouriersBudget(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{SessionRate: 2, SessionBurst: 3})
	s := sessOpen(t, f.svc, 1, dispatch.Hello{})
	wantOver := func(call string, err error, retry time.Duration) {
		t.Helper()
		var ae *apperr.Error
		if !errors.As(err, &ae) || ae.Code != apperr.ResourceExhausted || ae.RetryAfter != retry {
			t.Errorf("%s = %#v, want ResourceExhausted with RetryAfter %v", call, err, retry)
		}
	}
	for i := range 3 {
		if err := s.Admit(); err != nil {
			t.Fatalf("Admit() %d of the burst of 3 = %v", i+1, err)
		}
	}
	wantOver("Admit() after the burst", s.Admit(), 500*time.Millisecond)
	f.clock.Advance(250 * time.Millisecond)
	wantOver("Admit() a quarter second later", s.Admit(), 250*time.Millisecond)
	f.clock.Advance(250 * time.Millisecond)
	if err := s.Admit(); err != nil {
		t.Fatalf("Admit() half a second later = %v", err)
	}
	s.Close()
	next := sessOpen(t, f.svc, 1, dispatch.Hello{})
	wantOver("Admit() on the courier's next session", next.Admit(), 500*time.Millisecond)
	if err := sessOpen(t, f.svc, 2, dispatch.Hello{}).Admit(); err != nil {
		t.Errorf("Admit() of another courier = %v, want nil", err)
	}
}
