// Package jobs runs a service's durable background jobs on River (github.com/riverqueue/river): side
// effects that must happen exactly once eventually, such as a call to another service after a change,
// an offer's deadline or a payment step. The job is enqueued in the same transaction as the change
// (EnqueueTx, or EnqueueManyTx for several), so it exists exactly when the change commits, and River
// works it at least once, retrying with backoff until it succeeds or runs out of attempts.
//
// Both engines go through database/sql, like the stores: River's riversqlite driver on SQLite and its
// riverdatabasesql driver on PostgreSQL (with a pgx listener, so a replica hears of new jobs at once),
// so a store's *sql.Tx is also River's transaction. River's tables live next to the service's own,
// created by Migrate.
//
// What River provides, set per job kind through the args' InsertOpts method or per call:
//
//   - Retries with backoff: a Work method that returns an error is retried after attempt^4 seconds
//     (plus jitter) until river.InsertOpts.MaxAttempts (default Options.MaxAttempts, 25) is spent; then
//     the job is discarded. river.JobSnooze(d) retries later without spending an attempt, and
//     river.JobCancel(err) gives up at once. Options.RetryPolicy replaces the schedule.
//   - Unique jobs: river.InsertOpts.UniqueOpts (ByArgs, ByPeriod, ByQueue, ByState) makes a second
//     insert of the same job a no-op while the first is pending; the result's
//     UniqueSkippedAsDuplicate reports it. Use it for "at most one reminder per task".
//   - Scheduled jobs: river.InsertOpts.ScheduledAt runs the job no earlier than that time (an offer's
//     deadline). River's leader makes scheduled jobs available every few seconds, so a job runs
//     within about 5 s after its time.
//
// A worker is a type with a Work(ctx, *river.Job[Args]) method, registered with river.AddWorker on
// Options.Workers. Workers must be idempotent: a job whose worker finished but whose completion was
// not recorded (a crash in between) runs again.
package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverdatabasesql"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"lastmile/internal/platform/database"
)

// Options configures a Client. Workers is required to work jobs; the rest may stay zero.
type Options struct {
	// Workers holds the service's workers (river.NewWorkers, river.AddWorker). Nil makes an
	// insert-only client, whose Run fails.
	Workers *river.Workers
	// Queues maps each queue to how many of its jobs this replica works at once. Default:
	// river.QueueDefault with 10.
	Queues map[string]int
	// MaxAttempts is how many times a job runs before it is discarded, unless its InsertOpts say
	// otherwise. Default 25.
	MaxAttempts int
	// RetryPolicy, when set, replaces River's default backoff (attempt^4 seconds, with jitter).
	RetryPolicy river.ClientRetryPolicy
	// JobTimeout bounds one run of a job. Default 1 min.
	JobTimeout time.Duration
	// RescueAfter is how long after it started a job still marked running counts as stuck: the
	// process running it died (kill -9, a crash, a lost machine) before it could record the outcome.
	// The elected replica (or the process itself, restarted) then schedules it again by the retry
	// policy, checking every 30 s. It must exceed JobTimeout, after which a live run has given up.
	// Default: JobTimeout plus a minute (2 min), where River's own default, an hour, would leave
	// such a job waiting that long (with JobTimeout -1, no timeout, River's hour stays).
	RescueAfter time.Duration
	// FetchPollInterval is how often a replica looks for jobs when nothing told it of new ones.
	// Default 1 s.
	FetchPollInterval time.Duration
	// StopTimeout bounds how long Run waits for running jobs after its context ends before it
	// cancels them. Default 10 s.
	StopTimeout time.Duration
	// Listener, on PostgreSQL, is the pgx pool behind the *sql.DB (database.SQLDB(pool)); one of its
	// connections listens for River's notifications. Nil polls only.
	Listener *pgxpool.Pool
	// Schema, on PostgreSQL, is the schema holding River's tables: the service's schema. It must
	// be the one Migrate was given. Empty follows the search_path.
	Schema string
	// Logger receives River's log lines. Default: discard. River's ERROR lines, one per failed attempt
	// of each of its loops (about two a second while the database is away), are folded: each of its
	// messages is logged once per outage, with a reminder every 5 minutes while it lasts and an INFO line
	// "jobs: River's errors stopped" once 30 s passed without one (see errorlog.go).
	Logger *slog.Logger
	// Errors, when set, counts every ERROR line River logs, whether it was logged or folded.
	Errors prometheus.Counter
}

// Client enqueues and works one service's jobs.
type Client struct {
	river       *river.Client[*sql.Tx]
	stopTimeout time.Duration
	errors      *outage // River's errors (errorlog.go)
}

// New returns a client for the jobs in db, whose engine is d. Call Run to work jobs; EnqueueTx works
// without it.
func New(db *sql.DB, d database.Dialect, opts Options) (*Client, error) {
	if opts.Listener != nil && d != database.Postgres {
		return nil, errors.New("jobs: a listener needs PostgreSQL")
	}
	if opts.StopTimeout < 0 {
		return nil, fmt.Errorf("jobs: stop timeout %v is negative", opts.StopTimeout)
	}
	if opts.StopTimeout == 0 {
		opts.StopTimeout = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	folded := newFoldedLog(opts.Logger.Handler(), opts.Errors)
	timeout := opts.JobTimeout
	if timeout == 0 {
		timeout = river.JobTimeoutDefault
	}
	switch {
	case opts.RescueAfter < 0:
		return nil, fmt.Errorf("jobs: rescue after %v is negative", opts.RescueAfter)
	case opts.RescueAfter == 0 && timeout > 0:
		opts.RescueAfter = timeout + time.Minute
	case timeout > 0 && opts.RescueAfter <= timeout:
		return nil, fmt.Errorf("jobs: rescue after %v is not above the job timeout %v", opts.RescueAfter, timeout)
	}
	cfg := &river.Config{
		FetchPollInterval: opts.FetchPollInterval,
		JobTimeout:        opts.JobTimeout,
		Logger:            slog.New(folded),
		MaxAttempts:       opts.MaxAttempts,
		RetryPolicy:       opts.RetryPolicy,
		// River's default, an hour, would leave a job that a crash cut off for that long: a claim
		// of a courier's capacity that never reached courier, or a release.
		RescueStuckJobsAfter: opts.RescueAfter,
		Schema:               opts.Schema,
		Workers:              opts.Workers,
	}
	if opts.FetchPollInterval > 0 && opts.FetchPollInterval < river.FetchCooldownDefault {
		cfg.FetchCooldown = opts.FetchPollInterval // River refuses a poll interval below the cooldown
	}
	if opts.Workers != nil {
		queues := opts.Queues
		if len(queues) == 0 {
			queues = map[string]int{river.QueueDefault: 10}
		}
		cfg.Queues = make(map[string]river.QueueConfig, len(queues))
		for name, n := range queues {
			cfg.Queues[name] = river.QueueConfig{MaxWorkers: n}
		}
	}
	c, err := river.NewClient(driver(db, d, opts.Listener), cfg)
	if err != nil {
		return nil, fmt.Errorf("jobs: new river client: %w", err)
	}
	return &Client{river: c, stopTimeout: opts.StopTimeout, errors: folded.o}, nil
}

func driver(db *sql.DB, d database.Dialect, listener *pgxpool.Pool) riverdriver.Driver[*sql.Tx] {
	switch {
	case d == database.SQLite:
		// River's SQLite driver asks for a single-connection pool, which is what
		// database.OpenSQLite gives.
		return riversqlite.New(db)
	case listener != nil:
		return riverdatabasesql.NewWithPgxListener(db, listener)
	default:
		return riverdatabasesql.New(db)
	}
}

// EnqueueTx inserts a job as part of tx, so it runs only if tx commits. opts may be nil: the args'
// InsertOpts method and the client's defaults apply.
func (c *Client) EnqueueTx(ctx context.Context, tx *sql.Tx, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error) {
	res, err := c.river.InsertTx(ctx, tx, args, opts)
	if err != nil {
		return nil, fmt.Errorf("enqueue job %s: %w", args.Kind(), err)
	}
	return res, nil
}

// EnqueueManyTx inserts jobs as part of tx in one statement, so they run only if tx commits, and
// returns how many it inserted. It is cheaper than an EnqueueTx per job (River's fast insert: no row is
// read back), and it is meant for jobs without river.UniqueOpts: it does not report duplicates, and a
// job that a unique job would make a duplicate fails the insert instead of being skipped. Each job's
// InsertOpts method and the client's defaults apply.
func (c *Client) EnqueueManyTx(ctx context.Context, tx *sql.Tx, args []river.JobArgs) (int, error) {
	if len(args) == 0 {
		return 0, nil
	}
	params := make([]river.InsertManyParams, len(args))
	for i, a := range args {
		params[i] = river.InsertManyParams{Args: a}
	}
	n, err := c.river.InsertManyFastTx(ctx, tx, params)
	if err != nil {
		return 0, fmt.Errorf("enqueue %d jobs (first %s): %w", len(args), args[0].Kind(), err)
	}
	return n, nil
}

// Run works jobs until ctx is done, then stops: running jobs get Options.StopTimeout to finish before
// their contexts are cancelled. It returns nil after a clean stop.
func (c *Client) Run(ctx context.Context) error {
	// River's own context must outlive ctx, so the stop below is graceful rather than immediate.
	if err := c.river.Start(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("start jobs: %w", err)
	}
	<-ctx.Done()
	defer c.errors.close()
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.stopTimeout)
	defer cancel()
	if err := c.river.Stop(stopCtx); err != nil {
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("stop jobs: %w", err)
		}
		// The jobs still running did not finish in time: cancel them and wait for them to return.
		hardCtx, hardCancel := context.WithTimeout(context.WithoutCancel(ctx), c.stopTimeout)
		defer hardCancel()
		if err := c.river.StopAndCancel(hardCtx); err != nil {
			return fmt.Errorf("stop jobs after %v: %w", c.stopTimeout, err)
		}
	}
	return nil
}

// River returns the underlying River client, for what this package does not wrap (listing or
// cancelling jobs, subscribing to job events in tests).
func (c *Client) River() *river.Client[*sql.Tx] { return c.river }

// Migrate creates or updates River's tables in db: in SQLite next to the service's tables, in
// PostgreSQL in schema (the service's schema, which must exist: run the service's migrations first).
// It is idempotent. On PostgreSQL concurrent runs by several replicas take turns through an advisory
// lock; on SQLite each migration runs in a write transaction, and the replicas of a SQLite service are
// one process.
func Migrate(ctx context.Context, db *sql.DB, d database.Dialect, schema string) error {
	switch d {
	case database.SQLite:
		return migrate(ctx, riversqlite.New(db), "")
	case database.Postgres:
		conn, err := db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("migrate jobs: %w", err)
		}
		defer conn.Close()
		key := advisoryKey(schema)
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
			return fmt.Errorf("migrate jobs: take advisory lock: %w", err)
		}
		defer func() {
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key)
		}()
		return migrate(ctx, riverdatabasesql.New(db), schema)
	}
	return fmt.Errorf("migrate jobs: unknown dialect %q", d)
}

func migrate(ctx context.Context, drv riverdriver.Driver[*sql.Tx], schema string) error {
	m, err := rivermigrate.New(drv, &rivermigrate.Config{Schema: schema, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return fmt.Errorf("migrate jobs: %w", err)
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate jobs: %w", err)
	}
	return nil
}

// advisoryKey is the lock that serializes River migrations of one schema.
func advisoryKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("lastmile/jobs/migrate/" + schema))
	return int64(h.Sum64())
}
