package grpcapi_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dispatchv1 "lastmile/gen/go/lastmile/dispatch/v1"
	"lastmile/internal/dispatch"
	"lastmile/internal/dispatch/dispatchtest"
	"lastmile/internal/geo"
)

// wantExhausted checks that err is RESOURCE_EXHAUSTED with a RetryInfo of retry.
func wantExhausted(t *testing.T, call string, err error, retry time.Duration) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("%s: stream ended with %v, want RESOURCE_EXHAUSTED", call, err)
	}
	var got []time.Duration
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			got = append(got, ri.GetRetryDelay().AsDuration())
		}
	}
	if len(got) != 1 || got[0] != retry {
		t.Errorf("%s: RetryInfo delays %v, want [%v]", call, got, retry)
	}
}

// TestStreamAssignmentsBoundsCommandsAndAcks: commands and acks take from one budget per courier,
// dispatch.DefaultSessionBurst (100) at once and dispatch.DefaultSessionRate (5) a second after that.
// The message over it ends the stream with RESOURCE_EXHAUSTED and a RetryInfo saying when the next one
// is due (the test's clock stands still: 1/5 s), and is not executed, so nothing more is stored. A new
// session of the courier does not refill the budget; time does.
func TestStreamAssignmentsBoundsCommandsAndAcks(t *testing.T) {
	e := start(t, true)
	c := e.sys.AddCourier(t, dispatchtest.Berlin, geo.Bicycle, false)
	s := e.open(t, courierP(c), &dispatchv1.SessionHello{})
	s.recv() // started
	e.create(t, customer, "r1")
	offer := s.recv()
	if offer.GetOffer() == nil {
		t.Fatalf("got %v, want the offer", offer)
	}
	unknown := func(i int) *dispatchv1.StreamAssignmentsRequest { // a command that fails for good: stored
		return &dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Accept{Accept: &dispatchv1.AcceptOffer{OfferId: taskID(1000 + i)}}}
	}
	s.send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Ack{Ack: &dispatchv1.Acknowledge{Cursor: offer.GetCursor()}}})
	for i := 1; i < dispatch.DefaultSessionBurst; i++ {
		if res := s.command(fmt.Sprintf("c%d", i), unknown(i)); res.GetError().GetCode() != int32(codes.NotFound) {
			t.Fatalf("command %d of the burst = %v, want its NOT_FOUND", i, res)
		}
	}
	over := unknown(dispatch.DefaultSessionBurst)
	over.CommandId = "over"
	s.send(over)
	wantExhausted(t, "the message after the burst", s.end(), 200*time.Millisecond)

	ctx := context.Background()
	for id, want := range map[string]bool{fmt.Sprintf("c%d", dispatch.DefaultSessionBurst-1): true, "over": false} {
		if _, found, err := e.sys.Store.Command(ctx, c.ID, id); err != nil || found != want {
			t.Errorf("stored outcome of command %s: found %v, %v; want found %v", id, found, err, want)
		}
	}

	// A new session does not refill the budget.
	s = e.open(t, courierP(c), &dispatchv1.SessionHello{})
	s.recv()
	again := unknown(dispatch.DefaultSessionBurst)
	again.CommandId = "over"
	s.send(again)
	wantExhausted(t, "the first command of the next session", s.end(), 200*time.Millisecond)

	// A fifth of a second brings one token back.
	e.sys.Clock.Advance(200 * time.Millisecond)
	s = e.open(t, courierP(c), &dispatchv1.SessionHello{})
	s.recv()
	if res := s.command("over", unknown(dispatch.DefaultSessionBurst)); res.GetError().GetCode() != int32(codes.NotFound) || res.GetReplayed() {
		t.Fatalf("command after the wait = %v, want its NOT_FOUND, executed", res)
	}
	s.send(&dispatchv1.StreamAssignmentsRequest{Kind: &dispatchv1.StreamAssignmentsRequest_Ack{Ack: &dispatchv1.Acknowledge{Cursor: offer.GetCursor()}}})
	wantExhausted(t, "an ack after the token was spent", s.end(), 200*time.Millisecond)
}
