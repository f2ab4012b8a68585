package simulator

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// maxSamples bounds the latency samples a run keeps per measure; later samples replace random earlier
// ones (reservoir sampling), so that percentiles stay representative within a fixed memory.
const maxSamples = 200_000

// samples is a bounded reservoir of durations.
type samples struct {
	mu    sync.Mutex
	seen  int64
	items []time.Duration
	rng   uint64
}

func (s *samples) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen++
	if len(s.items) < maxSamples {
		s.items = append(s.items, d)
		return
	}
	// xorshift: a cheap source that needs no lock of its own.
	s.rng ^= s.rng << 13
	s.rng ^= s.rng >> 7
	s.rng ^= s.rng << 17
	if i := s.rng % uint64(s.seen); i < maxSamples {
		s.items[i] = d
	}
}

// percentiles returns the p-th percentiles (0..100) of the samples, zero when there are none.
func (s *samples) percentiles(ps ...float64) []time.Duration {
	s.mu.Lock()
	sorted := slices.Clone(s.items)
	s.mu.Unlock()
	slices.Sort(sorted)
	out := make([]time.Duration, len(ps))
	if len(sorted) == 0 {
		return out
	}
	for i, p := range ps {
		k := int(p / 100 * float64(len(sorted)-1))
		out[i] = sorted[k]
	}
	return out
}

// Stats counts what a run did. Every field is safe for concurrent use.
type Stats struct {
	// CouriersReady counts courier bots that logged in and went AVAILABLE.
	CouriersReady atomic.Int64
	// TasksCreated counts tasks the customer bots created; CreateSkipped counts creations left out because
	// too many tasks were open or too many creations in flight (the rate was more than the system took).
	TasksCreated, CreateSkipped atomic.Int64
	// Offers counts offers couriers received; Accepted and Declined their answers; AcceptLost accepts that
	// came too late (the offer had expired or was withdrawn).
	Offers, Accepted, Declined, AcceptLost atomic.Int64
	// PickedUp, Delivered and ProofsUploaded count the couriers' steps on the run's own tasks; OtherTasks
	// counts the tasks the couriers accepted that the run did not create (an earlier run's, still waiting
	// in the deployment), whose steps are not counted.
	PickedUp, Delivered, ProofsUploaded, OtherTasks atomic.Int64
	// Cancelled, Unassignable and Failed count the run's tasks that ended so, as WatchTasks showed them.
	Cancelled, Unassignable, Failed atomic.Int64
	// DoubleHolds counts tasks seen held (ASSIGNED or PICKED_UP) by a second courier while the first
	// still held them: it must stay zero.
	DoubleHolds atomic.Int64
	// FixesSent counts location fixes sent; Reconnects the sessions and streams opened again after a drop.
	FixesSent, FixesRejected, Reconnects atomic.Int64
	// Errors counts failed calls (each is retried with a back-off).
	Errors atomic.Int64

	// Ordering is how long the customers ordered (set when they stop), for the rate in the summary.
	Ordering atomic.Int64
	// TimeToOffer is from a task's creation to its first offer reaching a courier, TimeToAssign from its
	// creation to its acceptance, both on the server's clock.
	TimeToOffer, TimeToAssign samples
}

// open returns how many created tasks have not ended yet, as far as the run knows.
func (s *Stats) open() int64 {
	return s.TasksCreated.Load() - s.Delivered.Load() - s.Cancelled.Load() - s.Unassignable.Load() - s.Failed.Load()
}

// Line returns the one-line progress of a run that has run for elapsed.
func (s *Stats) Line(elapsed time.Duration) string {
	off := s.TimeToOffer.percentiles(50, 99)
	asg := s.TimeToAssign.percentiles(50, 99)
	return fmt.Sprintf("%s couriers=%d created=%d offered=%d assigned=%d delivered=%d open=%d unassignable=%d "+
		"offer p50/p99=%s/%s assign p50/p99=%s/%s errors=%d",
		elapsed.Truncate(time.Second), s.CouriersReady.Load(), s.TasksCreated.Load(), s.Offers.Load(), s.Accepted.Load(),
		s.Delivered.Load(), max(0, s.open()), s.Unassignable.Load(), ms(off[0]), ms(off[1]), ms(asg[0]), ms(asg[1]), s.Errors.Load())
}

// Summary writes the end-of-run report.
func (s *Stats) Summary(w io.Writer, elapsed time.Duration) {
	off := s.TimeToOffer.percentiles(50, 90, 99, 100)
	asg := s.TimeToAssign.percentiles(50, 90, 99, 100)
	var b strings.Builder
	fmt.Fprintf(&b, "simulation summary after %s\n", elapsed.Truncate(time.Millisecond))
	fmt.Fprintf(&b, "  couriers ready      %d\n", s.CouriersReady.Load())
	ordering := time.Duration(s.Ordering.Load())
	fmt.Fprintf(&b, "  tasks created       %d (%.2f/s over %s of ordering; %d creations skipped)\n", s.TasksCreated.Load(),
		perSecond(s.TasksCreated.Load(), ordering), ordering.Round(time.Second), s.CreateSkipped.Load())
	fmt.Fprintf(&b, "  offers              %d (accepted %d, declined %d, too late %d)\n", s.Offers.Load(), s.Accepted.Load(), s.Declined.Load(), s.AcceptLost.Load())
	fmt.Fprintf(&b, "  delivered           %d (picked up %d, proofs uploaded %d)\n", s.Delivered.Load(), s.PickedUp.Load(), s.ProofsUploaded.Load())
	if n := s.OtherTasks.Load(); n > 0 {
		fmt.Fprintf(&b, "  other tasks         %d accepted that this run did not create (not counted in delivered, open, times)\n", n)
	}
	fmt.Fprintf(&b, "  cancelled           %d, unassignable %d, failed %d, still open %d\n", s.Cancelled.Load(), s.Unassignable.Load(), s.Failed.Load(), max(0, s.open()))
	fmt.Fprintf(&b, "  time to offer       p50 %s  p90 %s  p99 %s  max %s\n", ms(off[0]), ms(off[1]), ms(off[2]), ms(off[3]))
	fmt.Fprintf(&b, "  time to assign      p50 %s  p90 %s  p99 %s  max %s\n", ms(asg[0]), ms(asg[1]), ms(asg[2]), ms(asg[3]))
	fmt.Fprintf(&b, "  location fixes      %d, reconnects %d, errors %d, double holds %d\n", s.FixesSent.Load(), s.Reconnects.Load(), s.Errors.Load(), s.DoubleHolds.Load())
	io.WriteString(w, b.String())
}

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// ms formats d in milliseconds, or seconds above ten seconds.
func ms(d time.Duration) string {
	if d >= 10*time.Second {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}
