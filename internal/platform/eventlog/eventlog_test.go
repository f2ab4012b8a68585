package eventlog_test

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"lastmile/internal/platform/apperr"
	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/eventlog"
	"lastmile/internal/platform/eventlog/sqllog"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const service = "svc"

// testContext bounds every wait of a test, so a hang fails instead of stalling the run.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// replica is one process's handle on a service database: its *sql.DB and, on PostgreSQL, the pool
// behind it (for LISTEN).
type replica struct {
	db   *sql.DB
	pool *pgxpool.Pool
}

// engine opens n replicas of one fresh database with the event log migrated.
type engine struct {
	dialect database.Dialect
	open    func(t *testing.T, n int) []replica
}

func sqliteEngine() engine {
	return engine{dialect: database.SQLite, open: func(t *testing.T, n int) []replica {
		t.Helper()
		ctx := testContext(t)
		path := filepath.Join(t.TempDir(), service+".db")
		var rs []replica
		for range n {
			db, err := database.OpenSQLite(ctx, path)
			if err != nil {
				t.Fatalf("OpenSQLite: %v", err)
			}
			t.Cleanup(func() { _ = db.Close() })
			rs = append(rs, replica{db: db})
		}
		if err := database.MigrateSQLite(ctx, rs[0].db, sqllog.Migrations(database.SQLite, service)); err != nil {
			t.Fatalf("MigrateSQLite: %v", err)
		}
		return rs
	}}
}

func postgresEngine() engine {
	return engine{dialect: database.Postgres, open: func(t *testing.T, n int) []replica {
		t.Helper()
		ctx := testContext(t)
		u := databasetest.PostgresURL(t)
		var rs []replica
		for range n {
			pool, err := database.OpenPostgres(ctx, u, database.PostgresOptions{Schema: service, MaxConns: 4})
			if err != nil {
				t.Fatalf("OpenPostgres: %v", err)
			}
			t.Cleanup(pool.Close)
			db := database.SQLDB(pool)
			t.Cleanup(func() { _ = db.Close() })
			rs = append(rs, replica{db: db, pool: pool})
		}
		if err := database.MigratePostgres(ctx, rs[0].pool, sqllog.Migrations(database.Postgres, service)); err != nil {
			t.Fatalf("MigratePostgres: %v", err)
		}
		return rs
	}}
}

// forEachEngine runs test on SQLite and on PostgreSQL.
func forEachEngine(t *testing.T, test func(t *testing.T, e engine)) {
	t.Run("sqlite", func(t *testing.T) { test(t, sqliteEngine()) })
	t.Run("postgres", func(t *testing.T) { test(t, postgresEngine()) })
}

// newLog returns a log on r that is not running yet. On PostgreSQL it listens through r's pool.
func newLog(t *testing.T, e engine, r replica, opts eventlog.Options) *eventlog.Log {
	t.Helper()
	if e.dialect == database.Postgres {
		opts.Wake = sqllog.Listener(r.pool)
	}
	return newPollingLog(t, e, r, opts)
}

// newPollingLog returns a log on r that is not running yet and does not listen for notifications:
// only its timers and Nudge wake it.
func newPollingLog(t *testing.T, e engine, r replica, opts eventlog.Options) *eventlog.Log {
	t.Helper()
	l, err := eventlog.New(sqllog.NewSource(r.db, e.dialect), opts)
	if err != nil {
		t.Fatalf("eventlog.New: %v", err)
	}
	return l
}

// run runs l until the test ends, and checks that Run returns nil.
func run(t *testing.T, l *eventlog.Log) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
}

// startLog is newLog then run.
func startLog(t *testing.T, e engine, r replica, opts eventlog.Options) *eventlog.Log {
	t.Helper()
	l := newLog(t, e, r, opts)
	run(t, l)
	return l
}

// appendTx appends events in one committed transaction and returns their sequence numbers, with At
// and Seq set as stored.
func appendTx(t *testing.T, e engine, db *sql.DB, events ...eventlog.Event) []eventlog.Event {
	t.Helper()
	ctx := testContext(t)
	var out []eventlog.Event
	err := database.InTx(ctx, db, func(tx *sql.Tx) error {
		for _, ev := range events {
			if ev.At.IsZero() {
				ev.At = time.Now()
			}
			ev.At = ev.At.UTC().Truncate(time.Microsecond)
			if ev.Payload == nil {
				ev.Payload = []byte{}
			}
			seq, err := sqllog.Append(ctx, tx, e.dialect, ev)
			if err != nil {
				return err
			}
			ev.Seq = seq
			out = append(out, ev)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("append %d events: %v", len(events), err)
	}
	return out
}

func subscribe(t *testing.T, l *eventlog.Log, from int64) *eventlog.Subscription {
	t.Helper()
	s, err := l.Subscribe(testContext(t), from)
	if err != nil {
		t.Fatalf("Subscribe(%d): %v", from, err)
	}
	t.Cleanup(s.Close)
	return s
}

// receive reads n events from s.
func receive(t *testing.T, s *eventlog.Subscription, n int) []eventlog.Event {
	t.Helper()
	ctx := testContext(t)
	var got []eventlog.Event
	for len(got) < n {
		batch, err := s.NextBatch(ctx, n-len(got))
		if err != nil {
			t.Fatalf("NextBatch after %d of %d events: %v", len(got), n, err)
		}
		got = append(got, batch...)
	}
	return got
}

func ev(topic, key, payload string) eventlog.Event {
	return eventlog.Event{Topic: topic, Key: key, Payload: []byte(payload)}
}

func TestCommittedAppendReachesEveryReplicaInOrder(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		rs := e.open(t, 2)
		// The second replica polls once an hour on PostgreSQL: only a notification can wake it there.
		// On SQLite it polls, as a process that shares the file would.
		poll2 := time.Hour
		if e.dialect == database.SQLite {
			poll2 = 5 * time.Millisecond
		}
		l1 := startLog(t, e, rs[0], eventlog.Options{Poll: time.Hour})
		l2 := startLog(t, e, rs[1], eventlog.Options{Poll: poll2})
		s1 := subscribe(t, l1, eventlog.FromHead)
		s2 := subscribe(t, l2, eventlog.FromHead)

		want := appendTx(t, e, rs[0].db, ev("svc.thing.created", "t1", "a"), ev("svc.thing.updated", "t1", ""))
		l1.Nudge()
		want = append(want, appendTx(t, e, rs[1].db, ev("svc.thing.created", "t2", "b"))...)
		l1.Nudge()
		if want[0].Seq >= want[1].Seq || want[1].Seq >= want[2].Seq {
			t.Fatalf("sequence numbers %d, %d, %d: want increasing", want[0].Seq, want[1].Seq, want[2].Seq)
		}
		for i, s := range []*eventlog.Subscription{s1, s2} {
			if diff := cmp.Diff(want, receive(t, s, len(want))); diff != "" {
				t.Errorf("replica %d received (-want +got):\n%s", i+1, diff)
			}
			if got := s.Cursor(); got != want[2].Seq {
				t.Errorf("replica %d: Cursor() = %d, want %d", i+1, got, want[2].Seq)
			}
		}
	})
}

func TestRolledBackAppendIsNeverDelivered(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		rs := e.open(t, 1)
		l := startLog(t, e, rs[0], eventlog.Options{Poll: 5 * time.Millisecond})
		s := subscribe(t, l, eventlog.FromHead)
		ctx := testContext(t)

		errRollback := errors.New("roll back")
		err := database.InTx(ctx, rs[0].db, func(tx *sql.Tx) error {
			if _, err := sqllog.Append(ctx, tx, e.dialect, ev("svc.thing.created", "lost", "")); err != nil {
				return err
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatalf("InTx = %v, want %v", err, errRollback)
		}
		l.Nudge()
		want := appendTx(t, e, rs[0].db, ev("svc.thing.created", "kept", ""))
		l.Nudge()
		if diff := cmp.Diff(want, receive(t, s, 1)); diff != "" {
			t.Errorf("received (-want +got):\n%s", diff)
		}
		// A subscriber reading the whole log from the database sees the same.
		if diff := cmp.Diff(want, receive(t, subscribe(t, l, 0), 1)); diff != "" {
			t.Errorf("received from cursor 0 (-want +got):\n%s", diff)
		}
	})
}

func TestSubscribeResumesFromCursor(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		rs := e.open(t, 1)
		past := appendTx(t, e, rs[0].db,
			ev("svc.a", "1", "one"), ev("svc.a", "2", "two"), ev("svc.a", "3", "three"), ev("svc.a", "4", "four"))
		l := startLog(t, e, rs[0], eventlog.Options{Poll: time.Hour, Batch: 2})

		s := subscribe(t, l, past[1].Seq)
		if diff := cmp.Diff(past[2:], receive(t, s, 2)); diff != "" {
			t.Errorf("catch-up from %d (-want +got):\n%s", past[1].Seq, diff)
		}
		live := appendTx(t, e, rs[0].db, ev("svc.a", "5", "five"))
		l.Nudge()
		if diff := cmp.Diff(live, receive(t, s, 1)); diff != "" {
			t.Errorf("live event after catch-up (-want +got):\n%s", diff)
		}

		all := subscribe(t, l, 0)
		if diff := cmp.Diff(append(past, live...), receive(t, all, 5)); diff != "" {
			t.Errorf("from 0 (-want +got):\n%s", diff)
		}
		head := subscribe(t, l, eventlog.FromHead)
		if got := head.Cursor(); got != live[0].Seq {
			t.Errorf("FromHead: Cursor() = %d, want %d", got, live[0].Seq)
		}
		if got, err := l.Head(testContext(t)); err != nil || got != live[0].Seq {
			t.Errorf("Head() = %d, %v, want %d, nil", got, err, live[0].Seq)
		}
	})
}

func TestSubscribeRejectsBadCursors(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		rs := e.open(t, 1)
		appendTx(t, e, rs[0].db, ev("svc.a", "1", ""))
		l := startLog(t, e, rs[0], eventlog.Options{Poll: time.Hour})
		for _, from := range []int64{-2, 2} {
			_, err := l.Subscribe(testContext(t), from)
			if got := apperr.CodeOf(err); got != apperr.Invalid {
				t.Errorf("Subscribe(%d) = %v (code %s), want code %s", from, err, got, apperr.Invalid)
			}
		}
	})
}

// TestAppendWaitsForOpenAppenderOnPostgres is the case a tailer reading "seq > cursor" must survive:
// a transaction that drew a sequence number and has not committed. The second appender must not
// draw a higher number and commit first, or a tailer that read it would skip the first for good.
func TestAppendWaitsForOpenAppenderOnPostgres(t *testing.T) {
	e := postgresEngine()
	rs := e.open(t, 2)
	ctx := testContext(t)
	l := startLog(t, e, rs[1], eventlog.Options{Poll: time.Hour})
	s := subscribe(t, l, eventlog.FromHead)

	tx1, err := rs[0].db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer func() { _ = tx1.Rollback() }()
	seq1, err := sqllog.Append(ctx, tx1, e.dialect, ev("svc.a", "first", ""))
	if err != nil {
		t.Fatalf("Append in tx1: %v", err)
	}

	type result struct {
		seq int64
		err error
	}
	second := make(chan result, 1)
	go func() {
		var seq int64
		err := database.InTx(ctx, rs[0].db, func(tx *sql.Tx) error {
			var err error
			seq, err = sqllog.Append(ctx, tx, e.dialect, ev("svc.a", "second", ""))
			return err
		})
		second <- result{seq, err}
	}()
	// The second appender must be waiting for tx1's lock, not past it.
	for {
		var waiting int
		err := rs[1].db.QueryRowContext(ctx,
			"SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype = 'advisory'").Scan(&waiting)
		if err != nil {
			t.Fatalf("read pg_locks: %v", err)
		}
		if waiting == 1 {
			break
		}
		select {
		case r := <-second:
			t.Fatalf("second append finished (seq %d, err %v) while the first transaction was open", r.seq, r.err)
		case <-ctx.Done():
			t.Fatalf("second appender never waited: %v", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	if err := tx1.Commit(); err != nil {
		t.Fatalf("commit tx1: %v", err)
	}
	r := <-second
	if r.err != nil {
		t.Fatalf("second append: %v", r.err)
	}
	if r.seq <= seq1 {
		t.Fatalf("second seq %d <= first seq %d", r.seq, seq1)
	}
	got := receive(t, s, 2)
	if got[0].Seq != seq1 || got[0].Key != "first" || got[1].Seq != r.seq || got[1].Key != "second" {
		t.Errorf("received %d %q, %d %q; want %d first, %d second", got[0].Seq, got[0].Key, got[1].Seq, got[1].Key, seq1, r.seq)
	}
}

func TestSlowSubscriberIsDropped(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		rs := e.open(t, 1)
		l := startLog(t, e, rs[0], eventlog.Options{Poll: time.Hour, Buffer: 2})
		slow := subscribe(t, l, eventlog.FromHead)
		fast := subscribe(t, l, eventlog.FromHead)

		first := appendTx(t, e, rs[0].db, ev("svc.a", "1", ""), ev("svc.a", "2", ""))
		l.Nudge()
		if diff := cmp.Diff(first, receive(t, fast, 2)); diff != "" {
			t.Errorf("fast subscriber (-want +got):\n%s", diff)
		}
		second := appendTx(t, e, rs[0].db, ev("svc.a", "3", ""))
		l.Nudge()
		if diff := cmp.Diff(second, receive(t, fast, 1)); diff != "" {
			t.Errorf("fast subscriber (-want +got):\n%s", diff)
		}
		<-slow.Done()
		_, err := slow.Next(testContext(t))
		if !errors.Is(err, eventlog.ErrTooSlow) || apperr.CodeOf(err) != apperr.ResourceExhausted {
			t.Errorf("slow Next = %v (code %s), want ErrTooSlow with code %s", err, apperr.CodeOf(err), apperr.ResourceExhausted)
		}
	})
}

func TestRunEndsSubscriptions(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		rs := e.open(t, 1)
		l := newLog(t, e, rs[0], eventlog.Options{Poll: time.Hour})
		ctx, cancel := context.WithCancel(testContext(t))
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx) }()
		s := subscribe(t, l, eventlog.FromHead)
		if err := l.Run(ctx); err == nil {
			t.Errorf("second Run = nil, want an error")
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("Run = %v, want nil", err)
		}
		<-s.Done()
		if _, err := s.Next(testContext(t)); !errors.Is(err, eventlog.ErrClosed) || apperr.CodeOf(err) != apperr.Unavailable {
			t.Errorf("Next after Run = %v, want ErrClosed with code %s", err, apperr.Unavailable)
		}
		if _, err := l.Subscribe(testContext(t), eventlog.FromHead); !errors.Is(err, eventlog.ErrClosed) {
			t.Errorf("Subscribe after Run = %v, want ErrClosed", err)
		}
	})
}

// fakeTimer hands each wait the tailer asks for to the test, which ends it with fire. The log must not
// listen for notifications, which would wake it without the test.
type fakeTimer struct {
	asked chan time.Duration
	fire  chan time.Time
}

func newFakeTimer(l *eventlog.Log) *fakeTimer {
	// Buffered, so a tailer asking for a wait never blocks its own shutdown.
	f := &fakeTimer{asked: make(chan time.Duration, 100), fire: make(chan time.Time)}
	eventlog.SetTimer(l, func(d time.Duration) (<-chan time.Time, func()) {
		f.asked <- d
		return f.fire, func() {}
	})
	return f
}

// end ends the current wait.
func (f *fakeTimer) end(t *testing.T) {
	t.Helper()
	select {
	case f.fire <- time.Now():
	case <-testContext(t).Done():
		t.Fatal("the tailer is not waiting")
	}
}

// next returns the next wait asked for.
func (f *fakeTimer) next(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-f.asked:
		return d
	case <-testContext(t).Done():
		t.Fatal("the tailer asked for no wait")
		return 0
	}
}

// recorder keeps the log records written through it.
type recorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, rec.Clone())
	return nil
}
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recorder) WithGroup(string) slog.Handler      { return r }

// logged returns "LEVEL message error=<set>" for each record.
func (r *recorder) logged() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range r.records {
		line := rec.Level.String() + " " + rec.Message
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "error" && a.Value.String() != "" {
				line += " error=<set>"
			}
			return true
		})
		out = append(out, line)
	}
	return out
}

func TestOutageBacksOffAndLogsOncePerStateChange(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		rs := e.open(t, 1)
		rec := &recorder{}
		const poll = 10 * time.Millisecond
		l := newPollingLog(t, e, rs[0], eventlog.Options{Poll: poll, MaxBackoff: 80 * time.Millisecond, Logger: slog.New(rec)})
		timer := newFakeTimer(l)
		run(t, l)
		if d := timer.next(t); d != poll {
			t.Fatalf("first wait %v, want %v", d, poll)
		}
		s := subscribe(t, l, eventlog.FromHead)
		ctx := testContext(t)

		// The table going away fails every read the way a database outage does, on both engines.
		if _, err := rs[0].db.ExecContext(ctx, "ALTER TABLE event_log RENAME TO event_log_away"); err != nil {
			t.Fatalf("rename: %v", err)
		}
		var waits []time.Duration
		for range 6 {
			timer.end(t)
			waits = append(waits, timer.next(t))
		}
		want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond,
			80 * time.Millisecond, 80 * time.Millisecond, 80 * time.Millisecond}
		if diff := cmp.Diff(want, waits); diff != "" {
			t.Errorf("waits while down (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{"ERROR event log unreachable; retrying with backoff error=<set>"}, rec.logged()); diff != "" {
			t.Errorf("log while down (-want +got):\n%s", diff)
		}

		if _, err := rs[0].db.ExecContext(ctx, "ALTER TABLE event_log_away RENAME TO event_log"); err != nil {
			t.Fatalf("rename back: %v", err)
		}
		timer.end(t)
		if d := timer.next(t); d != poll {
			t.Errorf("wait after recovery %v, want %v", d, poll)
		}
		wantLog := []string{"ERROR event log unreachable; retrying with backoff error=<set>", "INFO event log reachable again"}
		if diff := cmp.Diff(wantLog, rec.logged()); diff != "" {
			t.Errorf("log after recovery (-want +got):\n%s", diff)
		}

		// The subscription lived through the outage and receives what commits after it.
		want2 := appendTx(t, e, rs[0].db, ev("svc.a", "after", ""))
		timer.end(t)
		if diff := cmp.Diff(want2, receive(t, s, 1)); diff != "" {
			t.Errorf("received after recovery (-want +got):\n%s", diff)
		}
		timer.next(t)
		if diff := cmp.Diff(wantLog, rec.logged()); diff != "" {
			t.Errorf("log after delivery (-want +got):\n%s", diff)
		}
	})
}

func TestRunPrunesByAge(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		rs := e.open(t, 1)
		ctx := testContext(t)
		old := time.Now().Add(-2 * time.Hour)
		past := appendTx(t, e, rs[0].db,
			eventlog.Event{Topic: "svc.a", Key: "1", At: old, Payload: []byte{}},
			eventlog.Event{Topic: "svc.a", Key: "2", At: old, Payload: []byte{}})
		recent := appendTx(t, e, rs[0].db, ev("svc.a", "3", ""), ev("svc.a", "4", ""))

		l := newPollingLog(t, e, rs[0], eventlog.Options{Poll: time.Hour, Retention: eventlog.Retention{MaxAge: time.Hour}})
		timer := newFakeTimer(l)
		run(t, l)
		timer.next(t) // the first pass, which prunes, is over

		var n int
		if err := rs[0].db.QueryRowContext(ctx, "SELECT count(*) FROM event_log").Scan(&n); err != nil || n != 2 {
			t.Errorf("events after pruning = %d, %v; want 2", n, err)
		}
		for _, from := range []int64{0, past[0].Seq} {
			_, err := l.Subscribe(ctx, from)
			if !errors.Is(err, eventlog.ErrCursorExpired) || apperr.CodeOf(err) != apperr.FailedPrecondition {
				t.Errorf("Subscribe(%d) = %v, want ErrCursorExpired with code %s", from, err, apperr.FailedPrecondition)
			}
		}
		if diff := cmp.Diff(recent, receive(t, subscribe(t, l, past[1].Seq), 2)); diff != "" {
			t.Errorf("from the retention floor (-want +got):\n%s", diff)
		}
	})
}

func TestPruneByCountOvertakesSubscriber(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e engine) {
		rs := e.open(t, 1)
		ctx := testContext(t)
		events := appendTx(t, e, rs[0].db, ev("svc.a", "1", ""), ev("svc.a", "2", ""), ev("svc.a", "3", ""))
		l := startLog(t, e, rs[0], eventlog.Options{Poll: time.Hour})
		behind := subscribe(t, l, 0)
		tail := subscribe(t, l, events[1].Seq)

		pruner := newLog(t, e, rs[0], eventlog.Options{Retention: eventlog.Retention{MaxCount: 1}})
		if n, err := pruner.Prune(ctx); err != nil || n != 2 {
			t.Fatalf("Prune() = %d, %v; want 2, nil", n, err)
		}
		if n, err := pruner.Prune(ctx); err != nil || n != 0 {
			t.Fatalf("second Prune() = %d, %v; want 0, nil", n, err)
		}
		_, err := behind.Next(ctx)
		if !errors.Is(err, eventlog.ErrCursorExpired) || apperr.CodeOf(err) != apperr.FailedPrecondition {
			t.Errorf("Next behind retention = %v, want ErrCursorExpired with code %s", err, apperr.FailedPrecondition)
		}
		if diff := cmp.Diff(events[2:], receive(t, tail, 1)); diff != "" {
			t.Errorf("subscriber at the floor (-want +got):\n%s", diff)
		}
		if got, err := l.Head(ctx); err != nil || got != events[2].Seq {
			t.Errorf("Head() = %d, %v; want %d", got, err, events[2].Seq)
		}
		// Once every event is gone, the head stays where it was and new numbers keep rising.
		if _, err := rs[0].db.ExecContext(ctx, "DELETE FROM event_log"); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if got, err := l.Head(ctx); err != nil || got != events[1].Seq {
			t.Errorf("Head() of an emptied log = %d, %v; want the retention floor %d", got, err, events[1].Seq)
		}
		if next := appendTx(t, e, rs[0].db, ev("svc.a", "4", "")); next[0].Seq <= events[2].Seq {
			t.Errorf("seq after emptying = %d, want above %d", next[0].Seq, events[2].Seq)
		}
	})
}

func TestSubscribeToALogThatNeverStarted(t *testing.T) {
	e := sqliteEngine()
	rs := e.open(t, 1)
	if _, err := rs[0].db.ExecContext(testContext(t), "DROP TABLE event_log"); err != nil {
		t.Fatalf("drop: %v", err)
	}
	l := newLog(t, e, rs[0], eventlog.Options{Poll: time.Hour})
	ctx, cancel := context.WithCancel(testContext(t))
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	short, cancelShort := context.WithCancel(testContext(t))
	cancelShort()
	if _, err := l.Subscribe(short, eventlog.FromHead); apperr.CodeOf(err) != apperr.Unavailable || !errors.Is(err, context.Canceled) {
		t.Errorf("Subscribe before the log reached its database = %v, want Unavailable wrapping context.Canceled", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if _, err := l.Subscribe(testContext(t), eventlog.FromHead); !errors.Is(err, eventlog.ErrClosed) {
		t.Errorf("Subscribe after a Run that never reached the database = %v, want ErrClosed", err)
	}
}
