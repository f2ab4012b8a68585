package jobs

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// recorded keeps the records a handler was given, as level, message and attributes.
type recorded struct {
	mu    sync.Mutex
	lines []string
}

func (r *recorded) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorded) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordedWith{r: r, attrs: as}
}
func (r *recorded) WithGroup(string) slog.Handler { return r }
func (r *recorded) Handle(_ context.Context, rec slog.Record) error {
	return (&recordedWith{r: r}).Handle(context.Background(), rec)
}

type recordedWith struct {
	r     *recorded
	attrs []slog.Attr
}

func (w *recordedWith) Enabled(context.Context, slog.Level) bool { return true }
func (w *recordedWith) WithAttrs(as []slog.Attr) slog.Handler {
	return &recordedWith{r: w.r, attrs: append(append([]slog.Attr(nil), w.attrs...), as...)}
}
func (w *recordedWith) WithGroup(string) slog.Handler { return w }
func (w *recordedWith) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Level.String() + " " + rec.Message
	for _, a := range w.attrs {
		line += " " + a.String()
	}
	rec.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	w.r.lines = append(w.r.lines, line)
	return nil
}

func (r *recorded) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.lines
	r.lines = nil
	return out
}

// TestRiverErrorsAreFolded drives the handler River logs through with a clock and timers of the test's:
// an outage's ERROR lines are all counted, each message logged once, a reminder every 5 minutes, and
// one INFO line once 30 s passed without an error; the next error begins a new outage. Other lines
// pass, and derived handlers share the outage.
func TestRiverErrorsAreFolded(t *testing.T) {
	out := &recorded{}
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "errors_total"})
	h := newFoldedLog(out, errs)
	t0 := time.Date(2026, 12, 2, 4, 48, 48, 0, time.UTC)
	now := t0
	var armed []time.Duration
	var fire func()
	h.o.now = func() time.Time { return now }
	h.o.after = func(d time.Duration, f func()) func() bool {
		armed, fire = append(armed, d), f
		return func() bool { return true }
	}
	log := slog.New(h)
	producer := slog.New(h.WithAttrs([]slog.Attr{slog.String("queue", "default")}))
	check := func(what string, want ...string) {
		t.Helper()
		if diff := cmp.Diff(want, out.take()); diff != "" {
			t.Errorf("%s: lines (-want +got):\n%s", what, diff)
		}
	}

	log.Info("River client started")
	producer.Error("producer: Error fetching jobs", "err", "sql: database is closed")
	now = now.Add(time.Second)
	producer.Error("producer: Error fetching jobs", "err", "sql: database is closed")
	log.Error("elector: Error attempting to elect", "err", "sql: database is closed")
	check("the outage's first lines",
		"INFO River client started",
		"ERROR producer: Error fetching jobs queue=default err=sql: database is closed",
		"ERROR elector: Error attempting to elect err=sql: database is closed")

	now = t0.Add(5*time.Minute + time.Second)
	producer.Error("producer: Error fetching jobs", "err", "sql: database is closed")
	check("five minutes into it",
		"ERROR jobs: River still failing errors=4 since=2026-12-02 04:48:48 +0000 UTC last=producer: Error fetching jobs")

	now = t0.Add(5*time.Minute + 10*time.Second)
	fire() // armed at the start, 30 s: errors came since, so it looks again when 30 s passed since the last
	check("while errors still come")
	now = t0.Add(5*time.Minute + 31*time.Second)
	fire()
	check("30 s without an error", "INFO jobs: River's errors stopped errors=4 kinds=2 for=5m1s")
	if diff := cmp.Diff([]time.Duration{30 * time.Second, 21 * time.Second}, armed); diff != "" {
		t.Errorf("quiet checks armed (-want +got):\n%s", diff)
	}

	now = now.Add(time.Hour)
	producer.Error("producer: Error fetching jobs", "err", "sql: database is closed")
	check("the next outage", "ERROR producer: Error fetching jobs queue=default err=sql: database is closed")
	if got := testutil.ToFloat64(errs); got != 5 {
		t.Errorf("errors counted = %v, want 5", got)
	}
}
