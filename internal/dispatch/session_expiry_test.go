package dispatch_test

import (
	"fmt"
	"testing"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/apperr/apperrtest"
	"lastmile/internal/platform/auth"
)

// TestSessionEndsWhenItsAccessTokenExpires: a session lives no longer than the access token that opened
// it. dispatch.CredentialsNotice before the expiry it sends one drain with DrainCredentialsExpiring whose
// grace runs to the expiry, deliveries keep coming during the grace, and from the expiry on Next answers
// Unauthenticated, as the contract says (StreamAssignments: "UNAUTHENTICATED when the access token
// expired during the session"). Found by a courier app built from the protos alone: its session, opened
// with a one-minute token, still executed commands minutes after the token had expired.
func TestSessionEndsWhenItsAccessTokenExpires(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	f.newTask(t, 1, 1)
	f.newTask(t, 2, 1)
	expires := f.clock.Now().Add(15 * time.Minute)
	ctx := auth.WithPrincipal(sessCtx(t), auth.Principal{Kind: auth.User, Subject: sessUser(1), Roles: []string{auth.RoleCourier},
		IssuedAt: f.clock.Now(), ExpiresAt: expires})
	s, err := f.svc.OpenSession(ctx, dispatch.Hello{})
	if err != nil {
		t.Fatalf("OpenSession: %v", err)
	}
	t.Cleanup(s.Close)

	c1 := f.offer(t, sessTaskID(1), 1, 1)
	if got, want := sessDescribe(sessNext(t, s)), fmt.Sprintf("%d offer %s open task %s offered", c1, sessOfferID(1), sessTaskID(1)); got != want {
		t.Fatalf("Next() long before the expiry = %s, want %s", got, want)
	}

	f.clock.Advance(expires.Add(-dispatch.CredentialsNotice).Sub(f.clock.Now()))
	out := sessNext(t, s)
	if out.Drain == nil || out.Drain.Code != dispatch.DrainCredentialsExpiring || out.Drain.Grace != dispatch.CredentialsNotice || out.Cursor != 0 {
		t.Fatalf("Next() %v before the expiry = %s %+v, want a CREDENTIALS_EXPIRING drain with %v of grace",
			dispatch.CredentialsNotice, sessDescribe(out), out.Drain, dispatch.CredentialsNotice)
	}

	c2 := f.offer(t, sessTaskID(2), 2, 1)
	if got, want := sessDescribe(sessNext(t, s)), fmt.Sprintf("%d offer %s open task %s offered", c2, sessOfferID(2), sessTaskID(2)); got != want {
		t.Fatalf("Next() during the grace = %s, want %s", got, want)
	}

	f.clock.Advance(expires.Sub(f.clock.Now()))
	_, err = s.Next(sessCtx(t))
	apperrtest.WantCode(t, "Next() at the expiry", err, apperr.Unauthenticated)
	_, err = s.Next(sessCtx(t))
	apperrtest.WantCode(t, "Next() after the expiry", err, apperr.Unauthenticated)
}

// TestSessionOpenedCloseToTheExpiryIsToldAtOnce: a token with less than dispatch.CredentialsNotice left
// opens a session whose first message after started is the CREDENTIALS_EXPIRING drain, with the time
// left as its grace.
func TestSessionOpenedCloseToTheExpiryIsToldAtOnce(t *testing.T) {
	f := newSessionFixture(t, dispatch.Options{})
	expires := f.clock.Now().Add(20 * time.Second)
	ctx := auth.WithPrincipal(sessCtx(t), auth.Principal{Kind: auth.User, Subject: sessUser(1), Roles: []string{auth.RoleCourier}, ExpiresAt: expires})
	s, err := f.svc.OpenSession(ctx, dispatch.Hello{})
	if err != nil {
		t.Fatalf("OpenSession: %v", err)
	}
	t.Cleanup(s.Close)
	out := sessNext(t, s)
	if out.Drain == nil || out.Drain.Code != dispatch.DrainCredentialsExpiring || out.Drain.Grace != 20*time.Second {
		t.Fatalf("Next() = %s %+v, want a CREDENTIALS_EXPIRING drain with 20s of grace", sessDescribe(out), out.Drain)
	}
}
