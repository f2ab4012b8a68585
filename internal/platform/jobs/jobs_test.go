package jobs_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
	"go.uber.org/goleak"

	"lastmile/internal/platform/database"
	"lastmile/internal/platform/database/databasetest"
	"lastmile/internal/platform/jobs"
	"lastmile/internal/platform/telemetry/logtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const schema = "svc"

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// env is a service database with River's tables and a table of the service's own.
type env struct {
	dialect database.Dialect
	db      *sql.DB
	pool    *pgxpool.Pool
}

func sqliteEnv(t *testing.T) env {
	t.Helper()
	db := databasetest.SQLite(t)
	e := env{dialect: database.SQLite, db: db}
	e.migrate(t, "")
	return e
}

func postgresEnv(t *testing.T) env {
	t.Helper()
	pool := databasetest.Postgres(t, schema)
	db := database.SQLDB(pool)
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.ExecContext(testContext(t), "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	e := env{dialect: database.Postgres, db: db, pool: pool}
	e.migrate(t, schema)
	return e
}

func (e env) migrate(t *testing.T, schema string) {
	t.Helper()
	ctx := testContext(t)
	for range 2 { // idempotent
		if err := jobs.Migrate(ctx, e.db, e.dialect, schema); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	if _, err := e.db.ExecContext(ctx, "CREATE TABLE things (id TEXT PRIMARY KEY)"); err != nil {
		t.Fatalf("create things: %v", err)
	}
}

func forEachEngine(t *testing.T, test func(t *testing.T, e env)) {
	t.Run("sqlite", func(t *testing.T) { test(t, sqliteEnv(t)) })
	t.Run("postgres", func(t *testing.T) { test(t, postgresEnv(t)) })
}

// run starts a client working jobs with workers, until the test ends.
func run(t *testing.T, e env, workers *river.Workers, opts jobs.Options) *jobs.Client {
	t.Helper()
	opts.Workers = workers
	opts.FetchPollInterval = 20 * time.Millisecond
	if e.dialect == database.Postgres {
		opts.Listener = e.pool
		opts.Schema = schema
	}
	c, err := jobs.New(e.db, e.dialect, opts)
	if err != nil {
		t.Fatalf("jobs.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
	return c
}

// thingArgs is a job about a thing the service stored.
type thingArgs struct {
	ID string `json:"id"`
}

func (thingArgs) Kind() string { return "thing" }

// run is one run of a job, as a worker saw it.
type attempt struct {
	id      string
	attempt int
	at      time.Time
}

// thingWorker reports each run, and fails the first failFirst attempts of each job.
type thingWorker struct {
	river.WorkerDefaults[thingArgs]
	runs      chan attempt
	failFirst int
}

func (w *thingWorker) Work(ctx context.Context, job *river.Job[thingArgs]) error {
	w.runs <- attempt{id: job.Args.ID, attempt: job.Attempt, at: time.Now()}
	if job.Attempt <= w.failFirst {
		return errors.New("not yet")
	}
	return nil
}

func newWorkers(w *thingWorker) *river.Workers {
	workers := river.NewWorkers()
	river.AddWorker(workers, w)
	return workers
}

// store writes a thing and enqueues its job in one transaction, which commits only when fail is nil.
func store(ctx context.Context, e env, c *jobs.Client, id string, opts *river.InsertOpts, fail error) (*rivertype.JobInsertResult, error) {
	var res *rivertype.JobInsertResult
	err := database.InTx(ctx, e.db, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO things (id) VALUES ($1)", id); err != nil {
			return err
		}
		var err error
		if res, err = c.EnqueueTx(ctx, tx, thingArgs{ID: id}, opts); err != nil {
			return err
		}
		return fail
	})
	return res, err
}

func next(t *testing.T, runs <-chan attempt) attempt {
	t.Helper()
	select {
	case a := <-runs:
		return a
	case <-testContext(t).Done():
		t.Fatal("no job ran")
		return attempt{}
	}
}

func TestJobEnqueuedInCommittedTxRunsAndRolledBackNever(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e env) {
		w := &thingWorker{runs: make(chan attempt, 10)}
		c := run(t, e, newWorkers(w), jobs.Options{Queues: map[string]int{river.QueueDefault: 1}})
		ctx := testContext(t)

		errRollback := errors.New("roll back")
		if _, err := store(ctx, e, c, "lost", nil, errRollback); !errors.Is(err, errRollback) {
			t.Fatalf("store(lost) = %v, want %v", err, errRollback)
		}
		if _, err := store(ctx, e, c, "kept", nil, nil); err != nil {
			t.Fatalf("store(kept): %v", err)
		}
		if got := next(t, w.runs); got.id != "kept" || got.attempt != 1 {
			t.Errorf("ran %q attempt %d, want kept attempt 1", got.id, got.attempt)
		}
		// The rolled-back job is not in the queue at all, so it can never run.
		var n int
		if err := e.db.QueryRowContext(ctx, "SELECT count(*) FROM river_job").Scan(&n); err != nil || n != 1 {
			t.Errorf("jobs stored = %d, %v; want 1", n, err)
		}
		select {
		case a := <-w.runs:
			t.Errorf("unexpected run of %q", a.id)
		default:
		}
	})
}

func TestJobsEnqueuedManyInCommittedTxRunAndRolledBackNever(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e env) {
		w := &thingWorker{runs: make(chan attempt, 10)}
		c := run(t, e, newWorkers(w), jobs.Options{Queues: map[string]int{river.QueueDefault: 1}})
		ctx := testContext(t)

		storeMany := func(ids []string, fail error) (int, error) {
			var n int
			err := database.InTx(ctx, e.db, func(tx *sql.Tx) error {
				args := make([]river.JobArgs, len(ids))
				for i, id := range ids {
					if _, err := tx.ExecContext(ctx, "INSERT INTO things (id) VALUES ($1)", id); err != nil {
						return err
					}
					args[i] = thingArgs{ID: id}
				}
				var err error
				if n, err = c.EnqueueManyTx(ctx, tx, args); err != nil {
					return err
				}
				return fail
			})
			return n, err
		}
		errRollback := errors.New("roll back")
		if _, err := storeMany([]string{"lost1", "lost2"}, errRollback); !errors.Is(err, errRollback) {
			t.Fatalf("storeMany(lost) = %v, want %v", err, errRollback)
		}
		if n, err := storeMany(nil, nil); n != 0 || err != nil {
			t.Fatalf("storeMany(none) = %d, %v; want 0, nil", n, err)
		}
		if n, err := storeMany([]string{"kept1", "kept2"}, nil); n != 2 || err != nil {
			t.Fatalf("storeMany(kept) = %d, %v; want 2, nil", n, err)
		}
		got := map[string]int{}
		for range 2 {
			a := next(t, w.runs)
			got[a.id] = a.attempt
		}
		if want := map[string]int{"kept1": 1, "kept2": 1}; !maps.Equal(got, want) {
			t.Errorf("ran %v, want %v", got, want)
		}
		var n int
		if err := e.db.QueryRowContext(ctx, "SELECT count(*) FROM river_job").Scan(&n); err != nil || n != 2 {
			t.Errorf("jobs stored = %d, %v; want 2", n, err)
		}
		select {
		case a := <-w.runs:
			t.Errorf("unexpected run of %q", a.id)
		default:
		}
	})
}

// fixedRetry retries after a fixed delay.
type fixedRetry time.Duration

func (d fixedRetry) NextRetry(*rivertype.JobRow) time.Time { return time.Now().Add(time.Duration(d)) }

func TestFailingJobIsRetriedAfterBackoff(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e env) {
		w := &thingWorker{runs: make(chan attempt, 10), failFirst: 2}
		const delay = 100 * time.Millisecond
		c := run(t, e, newWorkers(w), jobs.Options{RetryPolicy: fixedRetry(delay)})
		if _, err := store(testContext(t), e, c, "flaky", nil, nil); err != nil {
			t.Fatalf("store: %v", err)
		}
		prev := next(t, w.runs)
		for want := 2; want <= 3; want++ {
			got := next(t, w.runs)
			if got.id != "flaky" || got.attempt != want {
				t.Fatalf("ran %q attempt %d, want flaky attempt %d", got.id, got.attempt, want)
			}
			if gap := got.at.Sub(prev.at); gap < delay {
				t.Errorf("attempt %d came %v after the previous one, want at least %v", want, gap, delay)
			}
			prev = got
		}
	})
}

func TestScheduledJobWaitsForItsTime(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e env) {
		w := &thingWorker{runs: make(chan attempt, 10)}
		c := run(t, e, newWorkers(w), jobs.Options{})
		at := time.Now().Add(500 * time.Millisecond)
		res, err := store(testContext(t), e, c, "later", &river.InsertOpts{ScheduledAt: at}, nil)
		if err != nil {
			t.Fatalf("store: %v", err)
		}
		if res.Job.State != rivertype.JobStateScheduled {
			t.Errorf("state after insert = %s, want %s", res.Job.State, rivertype.JobStateScheduled)
		}
		got := next(t, w.runs)
		if got.id != "later" || got.at.Before(at) {
			t.Errorf("ran %q at %v, want later at or after %v", got.id, got.at, at)
		}
	})
}

func TestUniqueJobIsEnqueuedOnce(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e env) {
		c, err := jobs.New(e.db, e.dialect, jobs.Options{})
		if err != nil {
			t.Fatalf("jobs.New: %v", err)
		}
		ctx := testContext(t)
		opts := &river.InsertOpts{UniqueOpts: river.UniqueOpts{ByArgs: true}}
		first, err := store(ctx, e, c, "a", opts, nil)
		if err != nil {
			t.Fatalf("store: %v", err)
		}
		var second *rivertype.JobInsertResult
		err = database.InTx(ctx, e.db, func(tx *sql.Tx) error {
			second, err = c.EnqueueTx(ctx, tx, thingArgs{ID: "a"}, opts)
			return err
		})
		if err != nil {
			t.Fatalf("second EnqueueTx: %v", err)
		}
		if first.UniqueSkippedAsDuplicate || !second.UniqueSkippedAsDuplicate || second.Job.ID != first.Job.ID {
			t.Errorf("skipped = %t, %t, ids %d, %d; want false, true and one id",
				first.UniqueSkippedAsDuplicate, second.UniqueSkippedAsDuplicate, first.Job.ID, second.Job.ID)
		}
	})
}

func TestRunWithoutWorkersFails(t *testing.T) {
	e := sqliteEnv(t)
	c, err := jobs.New(e.db, e.dialect, jobs.Options{})
	if err != nil {
		t.Fatalf("jobs.New: %v", err)
	}
	if err := c.Run(testContext(t)); err == nil {
		t.Error("Run without workers = nil, want an error")
	}
}

// TestJobOfADeadProcessRunsAgain: a job left running by a process that died (kill -9: no outcome was
// recorded) runs again once it has been running longer than RescueAfter (2 min by default), not after
// River's hour.
func TestJobOfADeadProcessRunsAgain(t *testing.T) {
	forEachEngine(t, func(t *testing.T, e env) {
		ctx := testContext(t)
		dead, err := jobs.New(e.db, e.dialect, jobs.Options{})
		if err != nil {
			t.Fatalf("jobs.New: %v", err)
		}
		if _, err := store(ctx, e, dead, "orphan", nil, nil); err != nil {
			t.Fatalf("store: %v", err)
		}
		// What a process killed 10 minutes into the job's run leaves behind.
		stuck := `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = datetime('now', '-10 minutes'), attempted_by = '["dead"]'`
		if e.dialect == database.Postgres {
			stuck = `UPDATE river_job SET state = 'running', attempt = 1, attempted_at = now() - interval '10 minutes', attempted_by = ARRAY['dead']`
		}
		if _, err := e.db.ExecContext(ctx, stuck); err != nil {
			t.Fatalf("mark the job running: %v", err)
		}
		w := &thingWorker{runs: make(chan attempt, 10)}
		run(t, e, newWorkers(w), jobs.Options{RetryPolicy: fixedRetry(0)})
		if got := next(t, w.runs); got.id != "orphan" || got.attempt != 2 {
			t.Errorf("ran %q attempt %d, want orphan attempt 2", got.id, got.attempt)
		}
	})
}

func TestNewRefusesARescueTheTimeoutWouldCatch(t *testing.T) {
	e := sqliteEnv(t)
	for _, opts := range []jobs.Options{
		{RescueAfter: -time.Second},
		{RescueAfter: time.Minute},                                  // the default timeout
		{JobTimeout: 5 * time.Minute, RescueAfter: 4 * time.Minute}, // below its timeout
	} {
		if _, err := jobs.New(e.db, e.dialect, opts); err == nil {
			t.Errorf("jobs.New(RescueAfter %v, JobTimeout %v) = nil error, want one", opts.RescueAfter, opts.JobTimeout)
		}
	}
	if _, err := jobs.New(e.db, e.dialect, jobs.Options{JobTimeout: 5 * time.Minute, RescueAfter: 6 * time.Minute}); err != nil {
		t.Errorf("jobs.New(RescueAfter 6m, JobTimeout 5m) = %v, want nil", err)
	}
}

// TestRiverErrorsWhileTheDatabaseIsAwayAreFolded: River's loops log an ERROR line at every failed attempt;
// with its jobs table gone for a while, twenty and more of them are counted, but each of River's messages
// is logged once.
func TestRiverErrorsWhileTheDatabaseIsAwayAreFolded(t *testing.T) {
	e := sqliteEnv(t)
	logs := &logtest.Buffer{}
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "river_errors_total"})
	w := &thingWorker{runs: make(chan attempt, 10)}
	c := run(t, e, newWorkers(w), jobs.Options{Logger: slog.New(slog.NewJSONHandler(logs, nil)), Errors: errs})
	ctx := testContext(t)
	if _, err := store(ctx, e, c, "before", nil, nil); err != nil {
		t.Fatalf("store: %v", err)
	}
	next(t, w.runs) // River works
	// River's jobs table goes away, which fails River's calls as a database that is away does, and comes
	// back before River stops (which it could not do cleanly without it).
	if _, err := e.db.ExecContext(ctx, "ALTER TABLE river_job RENAME TO river_job_away"); err != nil {
		t.Fatal(err)
	}
	// errorLines counts the ERROR lines logged, by message.
	errorLines := func() (map[string]int, int) {
		seen, n := map[string]int{}, 0
		for line := range strings.Lines(logs.String()) {
			var l struct{ Level, Msg string }
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("log line %q: %v", line, err)
			}
			if l.Level == "ERROR" {
				seen[l.Msg]++
				n++
			}
		}
		return seen, n
	}
	for _, n := errorLines(); testutil.ToFloat64(errs) < 20 && n < 20; _, n = errorLines() {
		if ctx.Err() != nil {
			t.Fatalf("River counted %v errors, want 20; logs:\n%s", testutil.ToFloat64(errs), logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := e.db.ExecContext(ctx, "ALTER TABLE river_job_away RENAME TO river_job"); err != nil {
		t.Fatal(err)
	}
	seen, _ := errorLines()
	if len(seen) == 0 {
		t.Fatalf("no ERROR line logged; logs:\n%s", logs)
	}
	for msg, n := range seen {
		if n != 1 {
			t.Errorf("ERROR %q logged %d times, want once", msg, n)
		}
	}
	if got := testutil.ToFloat64(errs); got < 20 {
		t.Errorf("errors counted = %v, want at least 20", got)
	}
}
