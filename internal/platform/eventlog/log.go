package eventlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"lastmile/internal/platform/apperr"
)

// Bounds of Options.
const (
	// MaxBatch bounds Options.Batch.
	MaxBatch = 10_000
	// MaxBuffer bounds Options.Buffer.
	MaxBuffer = 1 << 20
)

// FromHead, passed to Log.Subscribe, starts a subscription at the newest event this replica has
// read: the subscriber receives only what commits from then on.
const FromHead int64 = -1

// Options tunes a Log. The zero value is valid.
type Options struct {
	// Poll is how often the tailer reads when nothing woke it (commits by other processes on
	// SQLite, or lost notifications). Default 500 ms.
	Poll time.Duration
	// MaxBackoff caps the wait between reads while the database fails, which doubles from Poll.
	// Default 30 s (and never below Poll).
	MaxBackoff time.Duration
	// Batch is how many events one read returns at most. Default 500, at most MaxBatch.
	Batch int
	// Buffer is how many events a subscriber may have waiting before it is dropped with
	// ErrTooSlow. Default 1024, at most MaxBuffer.
	Buffer int
	// Retention deletes old events; the zero value keeps them all.
	Retention Retention
	// Wake, when set, runs beside the tailer until its context ends and calls nudge whenever the
	// source may hold new events, retrying its own failures after b's delays: sqllog.Listener on
	// PostgreSQL, so appends on any replica wake every tailer at once. Nil polls only.
	Wake func(ctx context.Context, b Backoff, nudge func())
	// Logger receives the state changes of the tailer (database unreachable, reachable again).
	// Default: discard.
	Logger *slog.Logger
}

// Retention says which events Log.Prune deletes: those older than MaxAge and those beyond the newest
// MaxCount, whichever removes more. Zero fields do not limit.
type Retention struct {
	// MaxAge deletes events whose At is older than this.
	MaxAge time.Duration
	// MaxCount keeps at most this many of the newest events.
	MaxCount int
	// Interval is how often Log.Run prunes. Default 1 min.
	Interval time.Duration
}

func (r Retention) enabled() bool { return r.MaxAge > 0 || r.MaxCount > 0 }

// Log tails one service's event log on one replica and fans the events out to in-process
// subscribers. Create it with New, run it with Run, and subscribe with Subscribe.
type Log struct {
	src     Source
	opts    Options
	backoff Backoff
	wake    chan struct{}
	running atomic.Bool
	// timer returns a channel that fires after d, and a function that stops it; tests replace it.
	timer func(d time.Duration) (<-chan time.Time, func())
	// ready is closed once the tailer knows its position, or has stopped.
	ready     chan struct{}
	readyOnce sync.Once

	mu     sync.Mutex
	pos    int64 // the newest seq handed to subscribers
	closed bool
	subs   map[*Subscription]struct{}
}

// New returns a log reading src. Call Run to start tailing. It panics when src is nil (a wiring
// mistake), and returns an error when opts is out of range.
func New(src Source, opts Options) (*Log, error) {
	if src == nil {
		panic("eventlog.New: nil source")
	}
	switch {
	case opts.Poll < 0, opts.MaxBackoff < 0, opts.Retention.MaxAge < 0, opts.Retention.Interval < 0:
		return nil, errors.New("event log options: negative duration")
	case opts.Batch < 0 || opts.Batch > MaxBatch:
		return nil, fmt.Errorf("event log options: batch %d: want 0..%d", opts.Batch, MaxBatch)
	case opts.Buffer < 0 || opts.Buffer > MaxBuffer:
		return nil, fmt.Errorf("event log options: buffer %d: want 0..%d", opts.Buffer, MaxBuffer)
	case opts.Retention.MaxCount < 0:
		return nil, fmt.Errorf("event log options: retention count %d is negative", opts.Retention.MaxCount)
	}
	if opts.Poll == 0 {
		opts.Poll = 500 * time.Millisecond
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.Poll)
	if opts.Batch == 0 {
		opts.Batch = 500
	}
	if opts.Buffer == 0 {
		opts.Buffer = 1024
	}
	if opts.Retention.Interval == 0 {
		opts.Retention.Interval = time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Log{
		src:     src,
		opts:    opts,
		backoff: Backoff{Base: opts.Poll, Max: opts.MaxBackoff},
		wake:    make(chan struct{}, 1),
		timer:   realTimer,
		ready:   make(chan struct{}),
		subs:    map[*Subscription]struct{}{},
	}, nil
}

func realTimer(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// Nudge makes the tailer read now instead of at its next poll. Call it after committing a
// transaction that appended events. It never blocks.
func (l *Log) Nudge() {
	select {
	case l.wake <- struct{}{}:
	default: // a wake-up is pending already, and one read picks up everything
	}
}

// Run tails the log until ctx is done, then ends every subscription with ErrClosed and returns nil.
// It starts at the newest event committed when it first reaches the database. Database failures are
// retried with backoff and never returned; Run returns an error only when called twice.
func (l *Log) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("event log: Run called twice")
	}
	defer l.shutdown()

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if l.opts.Wake != nil {
		wg.Go(func() { l.opts.Wake(ctx, l.backoff, l.Nudge) })
	}

	var (
		started   bool
		nextPrune time.Time
		failures  int
		downSince time.Time
	)
	for {
		err := func() error {
			if !started {
				head, err := l.Head(ctx)
				if err != nil {
					return err
				}
				l.mu.Lock()
				l.pos = head
				l.mu.Unlock()
				l.markReady()
				started = true
			}
			if err := l.tail(ctx); err != nil {
				return err
			}
			if now := time.Now(); l.opts.Retention.enabled() && !now.Before(nextPrune) {
				if _, err := l.Prune(ctx); err != nil {
					return err
				}
				nextPrune = now.Add(l.opts.Retention.Interval)
			}
			return nil
		}()
		delay := l.opts.Poll
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			failures++
			if failures == 1 {
				downSince = time.Now()
				l.opts.Logger.ErrorContext(ctx, "event log unreachable; retrying with backoff", "error", err.Error())
			}
			delay = l.backoff.Delay(failures)
		case failures > 0:
			l.opts.Logger.InfoContext(ctx, "event log reachable again",
				"failures", failures, "down_for", time.Since(downSince).Round(time.Millisecond).String())
			failures = 0
		}
		fire, stop := l.timer(delay)
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-fire:
		case <-l.wake:
			stop()
		}
	}
}

// tail hands every event committed after pos to the subscribers, batch by batch.
func (l *Log) tail(ctx context.Context) error {
	for {
		l.mu.Lock()
		pos := l.pos
		l.mu.Unlock()
		events, pruned, err := l.src.Read(ctx, pos, l.opts.Batch)
		if err != nil {
			return err
		}
		if pruned > pos {
			// The tailer itself stalled for longer than retention keeps events (the database was
			// away, or another replica pruned meanwhile): its subscribers missed events for good.
			l.expire(pos, pruned)
			continue
		}
		if len(events) == 0 {
			return nil
		}
		l.deliver(events)
		if len(events) < l.opts.Batch {
			return nil
		}
	}
}

// expire ends every subscription with ErrCursorExpired and moves the position past the pruned events.
func (l *Log) expire(pos, pruned int64) {
	l.mu.Lock()
	subs := slices.Collect(maps.Keys(l.subs))
	l.pos = max(l.pos, pruned)
	l.mu.Unlock()
	for _, s := range subs {
		s.end(errExpired(pos, pruned))
	}
}

// deliver queues events for every subscription and advances the position. A subscription whose
// buffer is full is ended with ErrTooSlow rather than allowed to hold up the others.
func (l *Log) deliver(events []Event) {
	var slow []*Subscription
	l.mu.Lock()
	for s := range l.subs {
		if !s.push(events) {
			slow = append(slow, s)
		}
	}
	l.pos = events[len(events)-1].Seq
	l.mu.Unlock()
	for _, s := range slow {
		s.end(apperr.Wrap(apperr.ResourceExhausted, ErrTooSlow,
			fmt.Sprintf("fell more than %d events behind the event log; subscribe again from the last event received", l.opts.Buffer)))
	}
}

func (l *Log) markReady() { l.readyOnce.Do(func() { close(l.ready) }) }

// shutdown ends every subscription and refuses new ones.
func (l *Log) shutdown() {
	l.mu.Lock()
	l.closed = true
	subs := slices.Collect(maps.Keys(l.subs))
	l.mu.Unlock()
	l.markReady() // a Subscribe waiting for a start that never came learns that the log stopped
	for _, s := range subs {
		s.end(errClosed())
	}
}

func errClosed() error {
	return apperr.Wrap(apperr.Unavailable, ErrClosed, "the event log is shutting down; subscribe again")
}

func errExpired(cursor, pruned int64) error {
	return apperr.Wrap(apperr.FailedPrecondition, ErrCursorExpired,
		fmt.Sprintf("events after %d are no longer kept (retention deleted up to %d); start again from a fresh state", cursor, pruned))
}

// Head returns the sequence number of the newest committed event: 0 for a log that never had one.
func (l *Log) Head(ctx context.Context) (int64, error) {
	head, err := l.src.Head(ctx)
	if err != nil {
		return 0, fmt.Errorf("event log head: %w", err)
	}
	return head, nil
}

// Prune deletes the events that Options.Retention no longer keeps and returns how many it deleted.
// Run calls it every Retention.Interval; every replica may, as the deletion is idempotent.
func (l *Log) Prune(ctx context.Context) (int64, error) {
	if !l.opts.Retention.enabled() {
		return 0, nil
	}
	n, err := l.src.Prune(ctx, l.opts.Retention, time.Now())
	if err != nil {
		return 0, fmt.Errorf("event log: %w", err)
	}
	return n, nil
}
