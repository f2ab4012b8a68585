package dispatch_test

import (
	"fmt"
	"testing"
	"time"

	"lastmile/internal/dispatch"
	"lastmile/internal/platform/cputime"
)

// BenchmarkSessionOfferNextAck measures a courier session's delivery path on SQLite: per iteration a task
// is offered to the courier (a store write, outside the timer), and the session's Next returns the offer
// (woken by the hub) and Ack acknowledges it.
func BenchmarkSessionOfferNextAck(b *testing.B) { benchSessionCycle(b, false) }

// BenchmarkSessionAccept measures what a courier session does per assignment on SQLite: Next returns an
// offer (written outside the timer), Execute accepts it under a new command id, and Ack acknowledges it.
// The claim job is not enqueued (the fixture drops jobs).
func BenchmarkSessionAccept(b *testing.B) { benchSessionCycle(b, true) }

// benchSessionCycle offers a task per iteration outside the timer, then times the session's Next, the
// accept when accept is set, and Ack. cpu-ns/op is the process's CPU time while the timer runs (the hub's
// and the event feed's goroutines included), where getrusage exists.
func benchSessionCycle(b *testing.B, accept bool) {
	f := newSessionFixture(b, dispatch.Options{})
	s := sessOpen(b, f.svc, 1, dispatch.Hello{})
	ctx := sessCtx(b)
	b.ReportAllocs()
	var cpu time.Duration
	n := 0
	for b.Loop() {
		b.StopTimer()
		n++
		f.newTask(b, n, 1)
		f.offer(b, sessTaskID(n), n, 1)
		start := cputime.Process()
		b.StartTimer()
		out, err := s.Next(ctx)
		if err != nil || out.Offer == nil {
			b.Fatalf("Next() = %+v, %v; want the offer", out, err)
		}
		if accept {
			res := s.Execute(ctx, fmt.Sprintf("accept-%d", n), dispatch.Command{Accept: &dispatch.AcceptCmd{OfferID: out.Offer.Offer.ID}})
			if res.Err != nil {
				b.Fatalf("Execute(accept) = %+v", *res.Err)
			}
		}
		if err := s.Ack(ctx, out.Cursor); err != nil {
			b.Fatalf("Ack(%d): %v", out.Cursor, err)
		}
		cpu += cputime.Process() - start
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}

// BenchmarkSessionReplayNeverAcked measures what a courier app that never acknowledges costs per
// reconnect on SQLite: the courier's log holds 3,000 offers that expired unanswered (6,000 deliveries,
// an offer and its offer_closed each; written before the loop), and per iteration a new session opens
// and replays them all (3,000 offer_closed: the closed offers' own deliveries are skipped), then closes.
// 3,000 tasks are more than the store's cache of decoded task documents holds, as in a real backlog
// (48 h of offers every 22 s: 7,850).
func BenchmarkSessionReplayNeverAcked(b *testing.B) {
	const offers = 3000
	f := newSessionFixture(b, dispatch.Options{})
	for n := 1; n <= offers; n++ {
		f.newTask(b, n, 1)
		f.offer(b, sessTaskID(n), n, 1)
		f.expire(b, sessTaskID(n))
	}
	ctx := sessCtx(b)
	b.ReportAllocs()
	var cpu time.Duration
	for b.Loop() {
		start := cputime.Process()
		s := sessOpen(b, f.svc, 1, dispatch.Hello{})
		for range offers {
			if out, err := s.Next(ctx); err != nil || out.OfferClosed == nil {
				b.Fatalf("Next() = %+v, %v; want an offer_closed", out, err)
			}
		}
		s.Close()
		cpu += cputime.Process() - start
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
}
