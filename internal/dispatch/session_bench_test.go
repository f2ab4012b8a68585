package dispatch_test

import (
	"testing"

	"lastmile/internal/dispatch"
)

// BenchmarkSessionOfferNextAck measures a courier session's delivery path on SQLite: per iteration a task
// is offered to the courier (a store write, outside the timer), and the session's Next returns the offer
// (woken by the hub) and Ack acknowledges it.
func BenchmarkSessionOfferNextAck(b *testing.B) {
	f := newSessionFixture(b, dispatch.Options{})
	s := sessOpen(b, f.svc, 1, dispatch.Hello{})
	ctx := sessCtx(b)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		b.StopTimer()
		n++
		f.newTask(b, n, 1)
		f.offer(b, sessTaskID(n), n, 1)
		b.StartTimer()
		out, err := s.Next(ctx)
		if err != nil || out.Offer == nil {
			b.Fatalf("Next() = %+v, %v; want the offer", out, err)
		}
		if err := s.Ack(ctx, out.Cursor); err != nil {
			b.Fatalf("Ack(%d): %v", out.Cursor, err)
		}
	}
}
