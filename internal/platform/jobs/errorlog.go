package jobs

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// River logs an ERROR line at every failed attempt of each of its loops (fetching jobs, completing them,
// electing a leader, listening for notifications, maintenance), so while its database is away a process
// logs about two a second, for as long as the outage lasts, all saying the same few things. foldedLog
// keeps River's errors a signal rather than a flood:
//
//   - every ERROR line is counted (Options.Errors);
//   - an outage (ERROR lines with less than errorQuiet between them) logs each of River's messages once,
//     the first time it comes (at most maxFoldedKinds of them), as River wrote it;
//   - while it lasts, one ERROR line "jobs: River still failing" every errorReminder says how many errors
//     came since it began;
//   - once errorQuiet passed without one, an INFO line "jobs: River's errors stopped" says how many there
//     were and for how long. The next ERROR line begins a new outage.
//
// Lines below ERROR pass unchanged.
const (
	errorQuiet     = 30 * time.Second
	errorReminder  = 5 * time.Minute
	maxFoldedKinds = 64
)

// foldedLog is the slog.Handler River logs through (see above). Handlers made by WithAttrs and WithGroup
// share their outage with the one they came from.
type foldedLog struct {
	next slog.Handler
	o    *outage
}

// outage is the state of River's errors, shared by a foldedLog and the handlers derived from it.
type outage struct {
	out    slog.Handler // the handler the summaries go to: the one River was given, without attributes added since
	errors prometheus.Counter
	now    func() time.Time
	// after runs f once d has passed, unless the returned function stops it first.
	after func(d time.Duration, f func()) (stop func() bool)

	mu       sync.Mutex
	failing  bool
	first    time.Time // the outage's first error
	last     time.Time // its latest
	reminded time.Time // its latest reminder (or its start)
	count    int
	kinds    map[string]bool
	stop     func() bool // the pending quiet check
}

// newFoldedLog returns the handler of River's log lines over next, counting River's ERROR lines in
// errors (nil: not counted).
func newFoldedLog(next slog.Handler, errors prometheus.Counter) *foldedLog {
	return &foldedLog{next: next, o: &outage{out: next, errors: errors, now: time.Now,
		after: func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }}}
}

// Enabled implements slog.Handler: ERROR lines are always taken, to be counted.
func (h *foldedLog) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.next.Enabled(ctx, l)
}

// WithAttrs implements slog.Handler.
func (h *foldedLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &foldedLog{next: h.next.WithAttrs(attrs), o: h.o}
}

// WithGroup implements slog.Handler.
func (h *foldedLog) WithGroup(name string) slog.Handler {
	return &foldedLog{next: h.next.WithGroup(name), o: h.o}
}

// Handle implements slog.Handler.
func (h *foldedLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelError {
		return h.next.Handle(ctx, r)
	}
	pass, remind := h.o.seen(r.Message)
	if remind != nil {
		h.o.write(ctx, *remind)
	}
	if !pass || !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// seen counts an ERROR line with message msg: pass says whether to log it, remind is a reminder to log
// first, if one is due.
func (o *outage) seen(msg string) (pass bool, remind *slog.Record) {
	if o.errors != nil {
		o.errors.Inc()
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	if !o.failing {
		o.failing, o.first, o.reminded, o.count, o.kinds = true, now, now, 0, map[string]bool{}
		o.stop = o.after(errorQuiet, o.quiet)
	}
	o.count++
	o.last = now
	if now.Sub(o.reminded) >= errorReminder {
		o.reminded = now
		r := slog.NewRecord(now, slog.LevelError, "jobs: River still failing", 0)
		r.AddAttrs(slog.Int("errors", o.count), slog.Time("since", o.first), slog.String("last", msg))
		remind = &r
	}
	if o.kinds[msg] || len(o.kinds) >= maxFoldedKinds {
		return false, remind
	}
	o.kinds[msg] = true
	return true, remind
}

// quiet runs errorQuiet after the outage began, and again as long as errors kept coming: once errorQuiet
// passed since the last one, the outage is over.
func (o *outage) quiet() {
	o.mu.Lock()
	now := o.now()
	if wait := o.last.Add(errorQuiet).Sub(now); wait > 0 {
		o.stop = o.after(wait, o.quiet)
		o.mu.Unlock()
		return
	}
	r := slog.NewRecord(now, slog.LevelInfo, "jobs: River's errors stopped", 0)
	r.AddAttrs(slog.Int("errors", o.count), slog.Int("kinds", len(o.kinds)),
		slog.String("for", o.last.Sub(o.first).Round(time.Millisecond).String()))
	o.failing, o.kinds, o.stop = false, nil, nil
	o.mu.Unlock()
	o.write(context.Background(), r)
}

// close stops the pending quiet check, if any.
func (o *outage) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stop != nil {
		o.stop()
		o.stop = nil
	}
}

// write logs a summary line, when the handler takes its level.
func (o *outage) write(ctx context.Context, r slog.Record) {
	if o.out.Enabled(ctx, r.Level) {
		_ = o.out.Handle(ctx, r)
	}
}
