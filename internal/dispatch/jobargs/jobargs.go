// Package jobargs defines the River job arguments of dispatch's durable jobs (dispatch.Job): the store
// enqueues them in the transaction of the change that needs them (sqlstore.RiverJobs), and the workers
// that call the courier service (registered by the cli wiring) take them. Both sides import this
// package, so a job's kind and fields are written once.
//
// The jobs must happen eventually, whatever the courier service's outages, and soon after it is back. So
// a job that fails is snoozed (river.JobSnooze), not failed: it runs again after RetryDelay, 1 s doubling
// to at most MaxRetryDelay (1 min), less up to a fifth at random, so that the claims of an outage do not
// all come back at once. A snooze spends no attempt and stores no error in the job's row (River 0.51
// gives the attempt back and only counts the snoozes in the row's metadata), so a job is never discarded
// however long the outage, and its row does not grow. After an hour-long outage the claims land within
// a minute of courier's return, where River's own backoff (attempt^4 seconds) would have had them wait
// about as long again. The failures are logged (the first, then the 2nd, 4th, 8th… of each job).
//
// What still spends attempts (a panic) is retried by RetryPolicy, capped alike, and discarded after
// MaxAttempts. Workers must be idempotent (the courier service's Claim and Release are).
package jobargs

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"lastmile/internal/dispatch"
)

// MaxAttempts is how many attempts a dispatch job may spend before River discards it. Failures snooze
// instead (see the package comment), so only panics spend them.
const MaxAttempts = 1000

// MaxRetryDelay bounds the wait before a failed dispatch job runs again.
const MaxRetryDelay = time.Minute

// RetryJitter is the largest share of a retry's delay taken off at random.
const RetryJitter = 0.2

// RetryDelay is the wait before the n-th retry of a job (n from 1): 1 s, doubling per retry, at most
// MaxRetryDelay (from the 7th on), less jitter times RetryJitter of it; jitter is in [0, 1).
func RetryDelay(n int, jitter float64) time.Duration {
	base := MaxRetryDelay
	if n < 7 {
		base = min(time.Second<<max(n-1, 0), MaxRetryDelay)
	}
	return base - time.Duration(jitter*RetryJitter*float64(base))
}

// RetryPolicy is River's retry policy (jobs.Options.RetryPolicy) for dispatch's jobs: the n-th failure
// that spends an attempt is retried after RetryDelay(n).
type RetryPolicy struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Rand returns the jitter, in [0, 1); nil means math/rand/v2's Float64.
	Rand func() float64
}

// NextRetry implements river.ClientRetryPolicy.
func (p RetryPolicy) NextRetry(job *rivertype.JobRow) time.Time {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	return now().Add(RetryDelay(len(job.Errors)+1, p.jitter()))
}

func (p RetryPolicy) jitter() float64 {
	if p.Rand != nil {
		return p.Rand()
	}
	return rand.Float64()
}

// Retry is what a worker returns for a job that failed with err, whose row's metadata is metadata:
// river.JobSnooze(RetryDelay(n)) for its n-th snooze, so that it runs again without spending an
// attempt. While River stops (ctx cancelled) err itself, which River answers by making the job available
// again at once, also without spending an attempt. logger (nil for none) gets the job's first failure,
// then its 2nd, 4th, 8th…
func (p RetryPolicy) Retry(ctx context.Context, logger *slog.Logger, job dispatch.Job, metadata []byte, err error) error {
	if err == nil || errors.Is(ctx.Err(), context.Canceled) {
		return err
	}
	var m struct {
		Snoozes int `json:"snoozes"`
	}
	_ = json.Unmarshal(metadata, &m) // River's own metadata: a malformed one counts as no snooze yet
	n := max(m.Snoozes, 0) + 1
	delay := RetryDelay(n, p.jitter())
	if logger != nil && n&(n-1) == 0 {
		logger.Warn("dispatch job failed; retrying", "kind", job.Kind, "courier", job.CourierID, "task", job.TaskID,
			"retry", n, "delay", delay, "error", err)
	}
	return river.JobSnooze(delay)
}

// DefaultWorkers is how many of dispatch's jobs one replica runs at once. Each is a call to the courier
// service that mostly waits (on the network, on courier's database), so the bound is on calls in
// flight, not on cores: at River's usual 10 a replica finished about 95 claims a second while it
// accepted 500 offers a second (the dispatch load test), and the claims fell further behind for as long
// as the load lasted.
const DefaultWorkers = 100

// MaxWorkers bounds --dispatch-job-workers.
const MaxWorkers = 10000

// Queues is the job client's queue configuration (jobs.Options.Queues) for workers jobs at once.
func Queues(workers int) map[string]int { return map[string]int{river.QueueDefault: workers} }

// The job kinds, as River names them.
const (
	KindClaim   = "dispatch.claim"
	KindRelease = "dispatch.release"
)

// ClaimArgs reserves capacity on a courier for a task (dispatch.JobClaim).
type ClaimArgs struct {
	CourierID       string    `json:"courier_id"`
	TaskID          string    `json:"task_id"`
	ExpectedRelease time.Time `json:"expected_release"`
	// PreviousCourierID is released first (a reassignment).
	PreviousCourierID string `json:"previous_courier_id,omitempty"`
}

// Kind implements river.JobArgs.
func (ClaimArgs) Kind() string { return KindClaim }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (ClaimArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: MaxAttempts} }

// ReleaseArgs frees the capacity a task holds on a courier (dispatch.JobRelease).
type ReleaseArgs struct {
	CourierID string `json:"courier_id"`
	TaskID    string `json:"task_id"`
	// Final says that the task was final when the release was enqueued (dispatch.Job.Final). Jobs
	// enqueued before the field existed lack it: their release reads the task, which is always sound.
	Final bool `json:"final,omitempty"`
}

// Kind implements river.JobArgs.
func (ReleaseArgs) Kind() string { return KindRelease }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (ReleaseArgs) InsertOpts() river.InsertOpts { return river.InsertOpts{MaxAttempts: MaxAttempts} }

// For returns the River job arguments of j. ok is false for a kind this package does not know.
func For(j dispatch.Job) (args river.JobArgs, ok bool) {
	switch j.Kind {
	case dispatch.JobClaim:
		return ClaimArgs{CourierID: j.CourierID, TaskID: j.TaskID, ExpectedRelease: j.ExpectedRelease.UTC(), PreviousCourierID: j.Previous}, true
	case dispatch.JobRelease:
		return ReleaseArgs{CourierID: j.CourierID, TaskID: j.TaskID, Final: j.Final}, true
	}
	return nil, false
}

// Workers returns River workers for both kinds that hand each job to run (dispatch.Service.RunJob), which
// must be idempotent: River runs a job again when its completion was not recorded. A failed job is
// snoozed by policy.Retry, logged to logger (nil for none).
func Workers(run func(context.Context, dispatch.Job) error, policy RetryPolicy, logger *slog.Logger) *river.Workers {
	w := river.NewWorkers()
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[ClaimArgs]) error {
		job := dispatch.Job{Kind: dispatch.JobClaim, CourierID: j.Args.CourierID, TaskID: j.Args.TaskID, ExpectedRelease: j.Args.ExpectedRelease, Previous: j.Args.PreviousCourierID}
		return policy.Retry(ctx, logger, job, j.Metadata, run(ctx, job))
	}))
	river.AddWorker(w, river.WorkFunc(func(ctx context.Context, j *river.Job[ReleaseArgs]) error {
		job := dispatch.Job{Kind: dispatch.JobRelease, CourierID: j.Args.CourierID, TaskID: j.Args.TaskID, Final: j.Args.Final}
		return policy.Retry(ctx, logger, job, j.Metadata, run(ctx, job))
	}))
	return w
}
